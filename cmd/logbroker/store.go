package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/jetstream"
)

// logStore is what a node needs of its store: the Pebble store or the
// JetStream one.
type logStore interface {
	rpc.LogStore
	Stats() storage.Stats
	Err() error
	Close() error
}

// openPebble opens the Pebble store in --data, the default.
func openPebble(c *serveConfig, log *slog.Logger) (logStore, error) {
	s, err := storage.Open(c.dataDir, storage.Options{
		Logger:         log.With("component", "storage"),
		MinFreeBytes:   c.minFreeBytes,
		TailCacheBytes: c.tailCacheBytes,
		DedupWindow:    c.dedupWindow,
		Retention: storage.Retention{
			MaxAge:              c.retentionAge,
			MaxEntriesPerStream: c.maxEntriesPerStream,
			MaxBytesPerSource:   c.maxBytesPerSource,
			Interval:            c.retentionInterval,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", c.dataDir, err)
	}
	return s, nil
}

// natsConfig holds the flags of the JetStream store.
type natsConfig struct {
	urls       string // comma-separated; empty: Pebble
	creds      string
	ca         string
	cert, key  string
	replicas   int
	partitions int
	name       string
	subject    string
}

func natsFlags(fs *flag.FlagSet, c *natsConfig) {
	fs.StringVar(&c.urls, "nats", "", "comma-separated nats:// URLs of a JetStream cluster to store the log in, instead of Pebble in --data (every NATS server must run with sync_interval: always)")
	fs.StringVar(&c.creds, "nats-creds", "", "NATS credentials file (JWT and NKey seed) for --nats")
	fs.StringVar(&c.ca, "nats-ca", "", "PEM CA bundle to verify the NATS servers' TLS certificates")
	fs.StringVar(&c.cert, "nats-cert", "", "PEM client certificate for NATS TLS (with --nats-key)")
	fs.StringVar(&c.key, "nats-key", "", "PEM private key for --nats-cert")
	fs.IntVar(&c.replicas, "nats-replicas", jetstream.DefaultReplicas, "replicas of each JetStream stream the node creates")
	fs.IntVar(&c.partitions, "nats-partitions", jetstream.DefaultPartitions, "JetStream streams sources are hashed over; never change it for existing data")
	fs.StringVar(&c.name, "nats-stream", jetstream.DefaultName, "JetStream stream name prefix (partition i is <prefix>_<i>)")
	fs.StringVar(&c.subject, "nats-subject", jetstream.DefaultSubject, "JetStream subject prefix")
}

// openNATSStore connects to the JetStream cluster of c.nats and opens the
// store there, with the retention flags mapped to the streams' limits;
// closing the store also closes the connection.
func openNATSStore(ctx context.Context, sc *serveConfig, log *slog.Logger) (logStore, error) {
	c := sc.nats
	if c.replicas < 1 || c.partitions < 1 {
		return nil, fmt.Errorf("--nats-replicas and --nats-partitions must be at least 1")
	}
	if sc.maxBytesPerSource > 0 {
		return nil, errors.New("--max-bytes-per-source: not available with --nats (JetStream limits streams, not sources)")
	}
	opts := []nats.Option{
		nats.Name("logbroker " + sc.id),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.ca != "" {
		opts = append(opts, nats.RootCAs(c.ca))
	}
	if (c.cert == "") != (c.key == "") {
		return nil, errors.New("--nats-cert and --nats-key go together")
	}
	if c.cert != "" {
		opts = append(opts, nats.ClientCert(c.cert, c.key))
	}
	nc, err := nats.Connect(c.urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", c.urls, err)
	}
	storeLog := log.With("component", "storage")
	rep, err := jetstream.CheckSync(ctx, nc, time.Second)
	switch {
	case err != nil || rep.Servers == 0:
		storeLog.Warn("cannot check that the NATS servers sync every write (needs a system account user); each must run with jetstream { sync_interval: always }, else acknowledged entries can be lost")
	case len(rep.Unsynced) > 0:
		storeLog.Warn("NATS servers without sync_interval: always acknowledge writes before they are on disk: acknowledged entries can be lost", "servers", strings.Join(rep.Unsynced, ","))
	default:
		storeLog.Info("every NATS server syncs every write", "servers", rep.Servers)
	}
	s, err := jetstream.Open(ctx, nc, jetstream.Options{
		Name:         c.name,
		Subject:      c.subject,
		Replicas:     c.replicas,
		Partitions:   c.partitions,
		MaxAge:       sc.retentionAge,
		MaxPerStream: sc.maxEntriesPerStream,
		DedupWindow:  sc.dedupWindow,
		Logger:       storeLog,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open jetstream store: %w", err)
	}
	return &natsStore{Store: s, nc: nc}, nil
}

// natsStore is a JetStream store that owns its connection.
type natsStore struct {
	*jetstream.Store
	nc *nats.Conn
}

// Close closes the store (which waits for its appends in flight), then
// the connection.
func (s *natsStore) Close() error {
	err := s.Store.Close()
	s.nc.Close()
	return err
}

// Both stores serve a node.
var (
	_ logStore = (*storage.Store)(nil)
	_ logStore = (*natsStore)(nil)
)
