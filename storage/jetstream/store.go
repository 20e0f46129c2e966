package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/queue"
)

// ErrConfig is returned by Open when a stream already exists with a
// layout this store cannot use (other subjects or partition count).
var ErrConfig = errors.New("jetstream stream configuration mismatch")

// Defaults of Options.
const (
	DefaultName         = "LOGBROKER"
	DefaultSubject      = "logbroker"
	DefaultReplicas     = 3
	DefaultPartitions   = 1
	DefaultDuplicates   = 2 * time.Minute
	DefaultAckWait      = 2 * time.Second
	DefaultAppendExpiry = time.Minute
	DefaultReadTimeout  = 10 * time.Second

	metaPartitions = "logbroker_partitions" // stream metadata key
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Name is the JetStream stream name prefix: partition i is stream
	// "<Name>_<i>". Default DefaultName.
	Name string
	// Subject is the subject prefix: partition i holds "<Subject>.<i>.>".
	// Default DefaultSubject.
	Subject string
	// Replicas of each stream, used when the store creates it. Default 3.
	Replicas int
	// Partitions is the number of streams sources are hashed over. It must
	// never change for existing data (Open refuses a mismatch). Default 1.
	Partitions int
	// Retention, mapped to each stream's limits (0: unlimited). MaxBytes and
	// MaxMsgs apply per partition; the oldest entries go first.
	MaxAge   time.Duration
	MaxBytes int64
	MaxMsgs  int64
	// MaxPerStream keeps at most this many messages per source and stream
	// (the stream's MaxMsgsPerSubject; a Delete's tombstone counts as one).
	MaxPerStream int64
	// Duplicates is the stream's duplicate window: a publish retried with
	// the same message id within it is stored once. Default 2 minutes, or
	// DedupWindow if that is longer.
	Duplicates time.Duration
	// DedupWindow > 0 turns on de-duplication of records with a Dedup key
	// (storage.Record): the key is their message id, so JetStream stores
	// one per Duplicates window and acknowledges the others with the
	// first's sequence. 0: off (each append has a message id of its own).
	DedupWindow time.Duration
	// AckWait is how long an append waits for its acknowledgement before
	// publishing it again (same message id). Default 2 s.
	AckWait time.Duration
	// AppendExpiry bounds the retries of one append: past it the append
	// fails. Keep it well under Duplicates. Default 1 minute.
	AppendExpiry time.Duration
	// ReadTimeout bounds List, Head and Delete when their context has no
	// earlier deadline, retries included. Default 10 s.
	ReadTimeout time.Duration
	// Logger receives the store's warnings; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Subject == "" {
		o.Subject = DefaultSubject
	}
	if o.Replicas <= 0 {
		o.Replicas = DefaultReplicas
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Duplicates <= 0 {
		o.Duplicates = max(DefaultDuplicates, o.DedupWindow)
	}
	if o.MaxAge > 0 && o.Duplicates > o.MaxAge {
		o.Duplicates = o.MaxAge // JetStream refuses a longer window; nothing older is kept anyway
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.AppendExpiry <= 0 {
		o.AppendExpiry = DefaultAppendExpiry
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is the JetStream-backed durable log. It is safe for concurrent use.
type Store struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	opts  Options
	log   *slog.Logger
	parts []*partition

	reads *mux // replies of direct gets

	pub     publisher
	markers atomic.Uint64 // tombstones written, for their message ids
	deletes atomic.Uint64 // Deletes done

	notify queue.Worker[storage.Entry] // subscriber calls, one at a time
	subs   storage.Subscribers

	consumers []jetstream.ConsumeContext

	life    context.Context // ends when the store closes
	endLife context.CancelFunc

	closed    atomic.Bool
	closeOnce sync.Once
}

// Open makes a store over the JetStream of nc, creating its streams when
// absent. The store does not own nc: close it after Close.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	s := &Store{nc: nc, js: js, opts: opts, log: opts.Logger}
	s.life, s.endLife = context.WithCancel(context.Background())
	for i := range opts.Partitions {
		s.parts = append(s.parts, &partition{
			index:  i,
			name:   opts.Name + "_" + strconv.Itoa(i),
			prefix: opts.Subject + "." + strconv.Itoa(i),
		})
	}
	s.notify.Start(s.deliver)
	s.reads, err = newMux(nc)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	fail := func(err error) (*Store, error) {
		s.stop()
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := s.pub.init(s); err != nil {
		return fail(err)
	}
	for _, p := range s.parts {
		last, err := s.ensureStream(ctx, p)
		if err != nil {
			return fail(err)
		}
		if err := s.follow(ctx, p, last+1); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// ensureStream creates p's stream when absent, or checks that the existing
// one has p's subjects and partition count. It returns its last sequence.
func (s *Store) ensureStream(ctx context.Context, p *partition) (uint64, error) {
	cfg := jetstream.StreamConfig{
		Name:              p.name,
		Description:       "logbroker log, partition " + strconv.Itoa(p.index),
		Subjects:          []string{p.prefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          s.opts.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            s.opts.MaxAge,
		MaxBytes:          orUnlimited(s.opts.MaxBytes),
		MaxMsgs:           orUnlimited(s.opts.MaxMsgs),
		MaxMsgsPerSubject: orUnlimited(s.opts.MaxPerStream),
		Duplicates:        s.opts.Duplicates,
		AllowDirect:       true,
		Metadata:          map[string]string{metaPartitions: strconv.Itoa(s.opts.Partitions)},
	}
	st, err := s.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = s.js.Stream(ctx, p.name)
		if err == nil {
			err = s.checkStream(st.CachedInfo().Config, cfg)
		}
		if have := st.CachedInfo().Config; err == nil && have.Duplicates < cfg.Duplicates {
			// A longer de-duplication window than the stream was made with.
			have.Duplicates = cfg.Duplicates
			st, err = s.js.UpdateStream(ctx, have)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", p.name, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// checkStream compares an existing stream's configuration with the one the
// store would create: a different layout is an error, other differences
// (limits, replicas: an operator may have changed them) a warning.
func (s *Store) checkStream(have, want jetstream.StreamConfig) error {
	if len(have.Subjects) != 1 || have.Subjects[0] != want.Subjects[0] {
		return fmt.Errorf("%w: subjects %v, want %v", ErrConfig, have.Subjects, want.Subjects)
	}
	if got := have.Metadata[metaPartitions]; got != want.Metadata[metaPartitions] {
		return fmt.Errorf("%w: made for %q partitions, not %s", ErrConfig, got, want.Metadata[metaPartitions])
	}
	if !have.AllowDirect {
		return fmt.Errorf("%w: direct get not allowed", ErrConfig)
	}
	if have.Storage != jetstream.FileStorage {
		s.log.Warn("jetstream stream is not on file storage", "stream", have.Name)
	}
	if have.Replicas != want.Replicas || have.MaxAge != want.MaxAge ||
		have.MaxBytes != want.MaxBytes || have.MaxMsgs != want.MaxMsgs || have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		s.log.Warn("jetstream stream exists with other replicas or limits; keeping them",
			"stream", have.Name, "replicas", have.Replicas, "max_age", have.MaxAge,
			"max_bytes", have.MaxBytes, "max_msgs", have.MaxMsgs)
	}
	return nil
}

// follow starts p's ordered consumer, which feeds the subscribers with the
// entries of p from sequence start on.
func (s *Store) follow(ctx context.Context, p *partition, start uint64) error {
	c, err := s.js.OrderedConsumer(ctx, p.name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{p.prefix + "." + kindEntry + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", p.name, err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		if m.Headers().Get(hdrTombstone) != "" {
			return
		}
		e, err := decodeConsumed(p, m)
		if err != nil {
			s.log.Warn("skipping stream message", "stream", p.name, "subject", m.Subject(), "err", err)
			return
		}
		s.notify.Push(e)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !s.closed.Load() {
			s.log.Debug("jetstream consumer", "stream", p.name, "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("follow %s: %w", p.name, err)
	}
	s.consumers = append(s.consumers, cc)
	return nil
}

func decodeConsumed(p *partition, m jetstream.Msg) (storage.Entry, error) {
	md, err := m.Metadata()
	if err != nil {
		return storage.Entry{}, err
	}
	src, stream, err := p.parseEntrySubject(m.Subject())
	if err != nil {
		return storage.Entry{}, err
	}
	ts, level, msg, err := decodeValue(m.Data())
	if err != nil {
		return storage.Entry{}, err
	}
	return storage.Entry{Seq: md.Sequence.Stream, Src: src, Stream: stream, Timestamp: ts, Msg: msg, Level: level}, nil
}

// deliver runs on the notifier goroutine with the entries received since
// the previous call, in the order of their streams. It first waits until
// each partition's stream leader has stored them (see awaitLeader); it
// drops them if the store closes meanwhile.
func (s *Store) deliver(group []storage.Entry) {
	for i, p := range s.parts {
		var top uint64
		for j := range group {
			if len(s.parts) == 1 || partitionOf(group[j].Src, len(s.parts)) == i {
				top = max(top, group[j].Seq)
			}
		}
		if !s.awaitLeader(p, top) {
			return
		}
	}
	s.subs.Deliver(group)
}

// awaitLeader waits until p's stream leader has stored sequence seq; false
// if the store closed first. The consumer may run on a follower, which
// stores a message once a quorum has it in its log, possibly before the
// leader does: Head and List, which ask the leader, would not see it yet.
// The leader's acknowledgements of this store's appends usually answer at
// once; entries appended through other nodes cost a request.
func (s *Store) awaitLeader(p *partition, seq uint64) bool {
	wait := time.Millisecond
	for p.stored.Load() < seq {
		stored, err := s.leaderStored(p, seq)
		switch {
		case err == nil:
			p.noteStored(stored)
			if stored >= seq {
				return true
			}
		case s.life.Err() == nil:
			s.log.Warn("subscribers wait for the stream leader", "stream", p.name, "seq", seq, "err", err)
		}
		if pause(s.life, &wait) != nil {
			return false
		}
	}
	return true
}

// leaderStored returns a sequence up to which p's stream leader has stored
// every message: its first message at or after seq, or, when it has none
// (not stored yet, or removed since by the limits), its last sequence.
func (s *Store) leaderStored(p *partition, seq uint64) (uint64, error) {
	ctx, cancel := s.readContext(s.life)
	defer cancel()
	m, err := s.leaderGet(ctx, p, dgRequest{Seq: seq, NextFor: p.prefix + ".>"})
	if err != nil || m != nil {
		return m.seq(), err
	}
	st, err := s.js.Stream(ctx, p.name) // its info, from the leader
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq, nil
}

// Subscribe registers fn to be called with groups of entries as this
// node's consumers receive them from JetStream: each entry once it is
// stored on a quorum and listable through this store, in sequence order
// per source (per partition), one call at a time on the notifier
// goroutine. Entries appended through any node are delivered. fn must not
// modify the slice, may keep it, and must not call Close. After cancel
// returns, fn is not called with entries received later.
func (s *Store) Subscribe(fn func([]storage.Entry)) (cancel func()) {
	return s.subs.Add(fn)
}

// Close refuses new calls, waits for the acknowledgements of the appends
// already published (up to 2 × AckWait, at least 5 s; what is still
// unacknowledged then fails with storage.ErrClosed, and may yet be
// stored), stops the consumers, and waits for the done and Subscribe
// callbacks.
// Calls made after Close get storage.ErrClosed. It does not close the NATS
// connection. Close is idempotent; it must not be called from a callback.
func (s *Store) Close() error {
	s.closeOnce.Do(s.stop)
	return nil
}

func (s *Store) stop() {
	s.closed.Store(true)
	for _, cc := range s.consumers {
		cc.Stop()
	}
	s.endLife()
	s.pub.close()
	s.reads.close()
	s.notify.Stop()
}

// Stats returns the store's counters since Open, for metrics: Entries and
// Bytes of the appends acknowledged through this store, its Deletes.
// Syncs, Batches and DiskBytes, which belong to the NATS servers, are 0.
func (s *Store) Stats() storage.Stats {
	return storage.Stats{
		Entries: s.pub.entries.Load(),
		Bytes:   s.pub.bytes.Load(),
		Deletes: s.deletes.Load(),
	}
}

// Err returns why the store cannot serve now, or nil: closed, or its NATS
// connection down (calls wait and retry meanwhile, up to their bounds).
// A health check can report it.
func (s *Store) Err() error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats connection %s: %w", st, errUnavailable)
	}
	return nil
}

// partitionFor returns the partition holding src.
func (s *Store) partitionFor(src string) *partition {
	return s.parts[partitionOf(src, len(s.parts))]
}

// precheck returns the error of a call made after Close or with ctx done.
func (s *Store) precheck(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return ctx.Err()
}
