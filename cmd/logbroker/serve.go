package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/logbroker/logbroker/broker"
	"github.com/logbroker/logbroker/cmd/internal/metrics"
	"github.com/logbroker/logbroker/hooks"
	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// serveConfig is everything `logbroker serve` reads from flags.
type serveConfig struct {
	mqttAddr, wsAddr, httpAddr string
	dataDir                    string
	id                         string
	aliases                    string
	auth                       string
	tlsCert, tlsKey            string
	plainMQTT                  string
	insecureOpen               bool
	rate                       float64
	rateBurst                  int
	maxConns                   int
	maxMsg, maxFrame           int
	maxPacket                  int
	clientQueue                int
	followTimeout, followMax   time.Duration
	scanTimeout                time.Duration
	maxFollows                 int
	fleetSources               int
	shutdownTimeout            time.Duration
	logFormat, logLevel        string
	retentionAge               time.Duration
	maxEntriesPerStream        int64
	maxBytesPerSource          int64
	minFreeBytes               int64
	tailCacheBytes             int64
	gcHeapFloor                uint64
	retentionInterval          time.Duration
	dedupWindow                time.Duration
	nats                       natsConfig // --nats: JetStream instead of Pebble
	limits                     limitFlags // limits.go
	capture                    captureFlag
	captureLevels              bool
}

// Default limits of serve (issue 3: every limit has a sane default).
const (
	defaultRate     = 5000 // calls/s per connection; bench peaks near 2000 per client
	defaultMaxConns = 100  // connections per identity (secured mode)

	defaultDedupWindow = 10 * time.Minute // longer than any device's retry
)

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := newFlagSet("serve", "serve [flags]", stderr)
	fs.StringVar(&c.mqttAddr, "mqtt", "127.0.0.1:1883", "MQTT over TCP listen address (port 0 picks a free port)")
	fs.StringVar(&c.wsAddr, "ws", "127.0.0.1:8083", "MQTT over WebSocket listen address; empty disables")
	fs.StringVar(&c.httpAddr, "http", "127.0.0.1:8080", "HTTP address for /healthz, /metrics and the dashboard at /; empty disables")
	fs.StringVar(&c.dataDir, "data", "./logbroker-data", "directory of the Pebble store (created if missing)")
	natsFlags(fs, &c.nats)
	limitsFlags(fs, &c.limits)
	fs.StringVar(&c.id, "id", rpc.DefaultID, "service id: requests go to <id>/rpc")
	fs.StringVar(&c.aliases, "alias", "", "comma-separated extra service ids that also answer")
	fs.StringVar(&c.auth, "auth", "", "users file (YAML or JSON) for secured mode; SIGHUP reloads it. Empty: open mode, loopback only")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate: with --tls-key, the MQTT and WebSocket listeners speak TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.plainMQTT, "plain-mqtt", "", "with TLS on, also listen for plain MQTT (no TLS) on this address; empty: none")
	fs.BoolVar(&c.insecureOpen, "insecure-open", false, "allow open mode (no --auth) on non-loopback addresses")
	fs.Float64Var(&c.rate, "rate", defaultRate, "calls per second allowed per connection (token bucket; more: error 429); 0 = unlimited.\nThe default is far above what a device needs and caps one runaway client well below the broker's capacity")
	fs.IntVar(&c.rateBurst, "rate-burst", 0, "calls a connection may make at once before --rate applies; 0 = not off: one second's worth of --rate (at least 1)")
	fs.IntVar(&c.maxConns, "max-conns-per-user", defaultMaxConns, "connections per identity in secured mode (more are refused); --max-conns bounds all of them together; 0 = unlimited")
	fs.IntVar(&c.maxMsg, "max-msg", rpc.DefaultMaxMsg, fmt.Sprintf("largest msg of Log.Log in bytes (larger: error 413); 0 = not off: the default, %d", rpc.DefaultMaxMsg))
	fs.IntVar(&c.maxFrame, "max-frame", rpc.DefaultMaxFrame, fmt.Sprintf("largest request frame in bytes (larger: error 413); 0 = not off: the default, %d", rpc.DefaultMaxFrame))
	fs.IntVar(&c.maxPacket, "max-packet", 4<<20, "largest MQTT packet in bytes; a client sending more is disconnected; 0 = no limit")
	fs.IntVar(&c.clientQueue, "client-queue", broker.DefaultClientQueue, fmt.Sprintf("messages of other clients (device to device, mochi's path) queued per client before messages to it are dropped; 8 bytes of memory per slot per connection (the broker's answers and live entries use their own outbox); 0 = not off: the default, %d", broker.DefaultClientQueue))
	fs.DurationVar(&c.followTimeout, "follow-timeout", rpc.DefaultFollowTimeout, fmt.Sprintf("how long a Log.List follow waits when the frame sets no timeout; 0 = not off: the default, %v", rpc.DefaultFollowTimeout))
	fs.DurationVar(&c.followMax, "follow-max", rpc.DefaultFollowMax, fmt.Sprintf("longest any Log.List follow may wait; 0 = not off: the default, %v", rpc.DefaultFollowMax))
	fs.DurationVar(&c.scanTimeout, "scan-timeout", rpc.DefaultScanTimeout, "longest scan of a filtered Log.List when the frame sets no timeout (then: error 504); 0 = no limit")
	fs.IntVar(&c.maxFollows, "max-follows", rpc.DefaultMaxFollows, fmt.Sprintf("waiting follow calls per connection (more: error 429); 0 = not off: the default, %d", rpc.DefaultMaxFollows))
	fs.IntVar(&c.fleetSources, "fleet-sources", rpc.DefaultFleetMax, "sources the dashboard's fleet view (Log.Fleet) keeps counts for, in memory (~0.1 KB each, up to ~0.9 KB for one that logs every minute); 0 = off (Log.Fleet not served)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGINT/SIGTERM waits for calls in flight; 0 = no wait")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.retentionAge, "retention-age", 0, "remove entries appended longer ago than this (server clock, to the minute; e.g. 720h); 0 = keep")
	fs.Int64Var(&c.maxEntriesPerStream, "max-entries-per-stream", 0, "keep at most this many entries per stream, removing the oldest; 0 = unlimited")
	fs.Int64Var(&c.maxBytesPerSource, "max-bytes-per-source", 0, "keep at most this many bytes of entries per source (before compression), removing its oldest; 0 = unlimited")
	fs.DurationVar(&c.retentionInterval, "retention-interval", storage.DefaultRetentionInterval, "how often the retention limits are applied (in the background); must be positive")
	fs.Int64Var(&c.tailCacheBytes, "tail-cache-bytes", storage.DefaultTailCacheBytes, fmt.Sprintf("memory for the newest entries of the streams clients list, so that Log.List and follows near a stream's end read no disk; -1 = off; 0 = not off: the default, %d", storage.DefaultTailCacheBytes))
	fs.Uint64Var(&c.gcHeapFloor, "gc-heap-floor", defaultGCHeapFloor, "bytes of garbage the Go heap may gather before a collection while the live heap is smaller (less CPU spent collecting a small heap); 0 = Go's default pacing; ignored if GOGC is set")
	fs.DurationVar(&c.dedupWindow, "dedup-window", defaultDedupWindow, "a Log.Log frame with an id whose src, id and bytes equal those of one stored this recently is answered with the first entry's id, not stored again (exactly-once across resends, reconnects and restarts); 0 = off")
	fs.Int64Var(&c.minFreeBytes, "min-free-bytes", storage.DefaultMinFreeBytes, fmt.Sprintf("free space kept on the --data volume: with less, appends are refused (error 500) until space is freed; -1 = no check; 0 = not off: the default, %d", storage.DefaultMinFreeBytes))
	c.capture = captureFlag{filters: []string{"+/log"}}
	fs.Var(&c.capture, "capture", "topic filter of stock Mongoose OS consoles to store (PROTOCOL §8); its first '+' level names the source.\nRepeatable; given, it replaces the default; an empty value turns capture off")
	fs.BoolVar(&c.captureLevels, "capture-levels", false, "captured consoles send log levels, not file descriptors (firmware with mqtt.debug_use_log_level)")
	return fs, c
}

// captureFlag is --capture: repeatable, the first use replacing the default,
// an empty value meaning none.
type captureFlag struct {
	filters []string
	set     bool
}

func (f *captureFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.filters, " ")
}

func (f *captureFlag) Set(v string) error {
	if !f.set {
		f.filters, f.set = nil, true
	}
	if v != "" {
		f.filters = append(f.filters, v)
	}
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// checkOpenAddr refuses a non-loopback address in open mode.
func checkOpenAddr(flagName, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: %w", flagName, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--%s %s is not a loopback address: without --auth anyone who reaches it could read and delete every log; use --auth FILE, or pass --insecure-open if the network is trusted", flagName, addr)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := serveFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	setGCHeapFloor(c.gcHeapFloor)
	n, err := startNode(c, log)
	if err != nil {
		return err
	}
	log.Info("logbroker started", "mqtt", n.broker.MQTTAddr(), "ws", n.broker.WSAddr(), "http", n.httpAddr,
		"plain_mqtt", n.broker.PlainAddr(), "tls", n.tls, "data", c.dataDir, "id", c.id, "mode", n.mode)

	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	n.Close(sctx)
	return nil
}

// node is one running logbroker: store, rpc service, hooks, broker and
// HTTP server, wired together. `serve` runs one until a signal arrives;
// `bench --embedded` runs one in-process.
type node struct {
	log      *slog.Logger
	store    logStore // Pebble, or JetStream with --nats
	broker   *broker.Broker
	svc      *rpc.Service
	auth     *hooks.Auth  // secured mode; nil in open mode
	capture  *rpc.Capture // console capture; nil when --capture is off
	hs       *http.Server // nil when --http is empty
	httpAddr string       // the bound HTTP address; "" when disabled
	mode     string       // "open" or "secured"
	tls      bool

	stopReload func() // stops the SIGHUP reloader (secured mode); nil in open mode
	started    bool   // the broker's listeners are up
}

// startNode checks c, opens the store, builds the service, hooks and
// broker, and starts the listeners: storage first, broker last. On error
// whatever was started is closed again, in reverse order.
func startNode(c *serveConfig, log *slog.Logger) (_ *node, err error) {
	var users hooks.Users
	if c.auth != "" {
		if users, err = hooks.LoadUsers(c.auth); err != nil {
			return nil, err
		}
	}
	tlsConf, err := loadTLS(c.tlsCert, c.tlsKey)
	if err != nil {
		return nil, err
	}
	if c.auth == "" && !c.insecureOpen {
		for _, a := range []struct{ name, addr string }{{"mqtt", c.mqttAddr}, {"ws", c.wsAddr}, {"http", c.httpAddr}, {"plain-mqtt", c.plainMQTT}} {
			if err := checkOpenAddr(a.name, a.addr); err != nil {
				return nil, err
			}
		}
	}
	if err := rpc.ValidSrc(c.id); err != nil || strings.Contains(c.id, "/") {
		return nil, fmt.Errorf("--id %q: must be a non-empty topic level without '/', '+', '#'", c.id)
	}
	for _, a := range strings.Split(c.aliases, ",") {
		if a = strings.TrimSpace(a); a != "" && (rpc.ValidSrc(a) != nil || strings.Contains(a, "/")) {
			return nil, fmt.Errorf("--alias %q: each alias must be a topic level without '/', '+', '#'", a)
		}
	}

	if c.retentionAge < 0 || c.maxEntriesPerStream < 0 || c.maxBytesPerSource < 0 {
		return nil, errors.New("--retention-age, --max-entries-per-stream, --max-bytes-per-source: must not be negative (0 = off)")
	}
	if err := c.limits.check(); err != nil {
		return nil, err
	}
	if c.dedupWindow < 0 {
		return nil, errors.New("--dedup-window: must not be negative (0 = off)")
	}
	if c.retentionInterval <= 0 {
		return nil, errors.New("--retention-interval: must be positive")
	}
	capture, err := hooks.ParseCaptureFilters(c.capture.filters)
	if err != nil {
		return nil, fmt.Errorf("--capture: %w", err)
	}

	n := &node{log: log, mode: "open", tls: tlsConf != nil}
	if c.nats.urls != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n.store, err = openNATSStore(ctx, c, log)
		cancel()
	} else {
		n.store, err = openPebble(c, log)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.unwind()
		}
	}()

	n.broker = broker.New(broker.Config{
		MQTTAddr:    c.mqttAddr,
		WSAddr:      c.wsAddr,
		PlainAddr:   c.plainMQTT,
		TLS:         tlsConf,
		MaxPacket:   uint32(c.maxPacket),
		ClientQueue: int32(c.clientQueue),
		Logger:      mochiLogger(log),
		Limits:      c.limits.broker(),
	})
	var aliases []string
	for _, a := range strings.Split(c.aliases, ",") {
		if a = strings.TrimSpace(a); a != "" {
			aliases = append(aliases, a)
		}
	}
	m := newMetrics(n)
	n.svc = rpc.New(n.store, hooks.Sender{P: n.broker}, rpc.Config{
		ID:            c.id,
		Aliases:       aliases,
		MaxMsg:        c.maxMsg,
		MaxFrame:      c.maxFrame,
		FollowTimeout: c.followTimeout,
		FollowMax:     c.followMax,
		ScanTimeout:   cmp.Or(c.scanTimeout, -1), // 0: no limit
		MaxFollows:    c.maxFollows,
		FleetMax:      fleetMax(c.fleetSources),
		Rate:          c.rate,
		RateBurst:     c.rateBurst,
		Logger:        log,
		Observe:       m.Observe,
		Dedup:         c.dedupWindow > 0,
	})
	var identify func(*mqtt.Client) rpc.Caller
	if users != nil {
		n.mode = "secured"
		auth := hooks.NewAuth(n.broker.Server(), users, n.svc.Names(), c.maxConns, log)
		auth.AllowCapture(capture)
		n.auth = auth
		identify = auth.Caller
		if err := n.broker.AddHook(auth, nil); err != nil {
			return nil, err
		}
		n.stopReload = reloadOnHUP(c.auth, auth, log)
	} else if err := n.broker.AddHook(new(hooks.Open), nil); err != nil {
		return nil, err
	}
	if err := n.broker.AddHook(hooks.NewRPC(n.svc, identify), nil); err != nil {
		return nil, err
	}
	if len(capture) > 0 {
		n.capture = n.svc.Capture(rpc.CaptureConfig{Levels: c.captureLevels})
		if err := n.broker.AddHook(hooks.NewCapture(n.capture, capture), nil); err != nil {
			return nil, err
		}
	}
	if err := n.broker.Start(); err != nil {
		return nil, err
	}
	n.started = true

	if c.httpAddr != "" {
		ln, err := net.Listen("tcp", c.httpAddr)
		if err != nil {
			return nil, fmt.Errorf("listen http %s: %w", c.httpAddr, err)
		}
		n.httpAddr = ln.Addr().String()
		n.hs = &http.Server{Handler: httpHandler(n.broker, m, newDashboard(c, n), n.store.Err), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := n.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server stopped", "err", err)
			}
		}()
	}
	return n, nil
}

// unwind undoes a startNode that failed half-way.
func (n *node) unwind() {
	_ = n.svc.Shutdown(context.Background())
	if n.started {
		_ = n.broker.Close()
	}
	n.closeLast()
}

// Close shuts n down in reverse start order: the service answers waiting
// calls and lets calls in flight finish (until ctx ends), the HTTP server
// and the broker stop, and the store is flushed and closed last.
func (n *node) Close(ctx context.Context) {
	if err := n.svc.Shutdown(ctx); err != nil {
		n.log.Warn("calls still running at shutdown", "err", err)
	}
	if n.hs != nil {
		_ = n.hs.Shutdown(ctx)
	}
	if err := n.broker.Close(); err != nil {
		n.log.Error("close broker", "err", err)
	}
	st := n.svc.Stats()
	n.log.Info("stopped", "calls", st.Calls, "failed", st.Failed, "dropped", st.Dropped)
	n.closeLast()
}

// closeLast stops the SIGHUP reloader and closes the store.
func (n *node) closeLast() {
	if n.stopReload != nil {
		n.stopReload()
	}
	if err := n.store.Close(); err != nil {
		n.log.Error("close store", "err", err)
	}
}

// mochiLogger quiets mochi's own chatter below warnings.
func mochiLogger(log *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{log.Handler(), slog.LevelWarn}).With("component", "mqtt")
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}

func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}

// httpHandler serves /metrics, the dashboard and /healthz, which answers
// 503 with the cause while storeErr reports the store failed (a disk
// error or a full disk: writes are refused until it recovers by itself).
func httpHandler(b *broker.Broker, m *metrics.Metrics, dash http.Handler, storeErr func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("/", dash)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if err := storeErr(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "storage failed, writes refused until it recovers:", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// fleetMax maps --fleet-sources (0: off) to rpc.Config.FleetMax (0: the
// default, negative: off).
func fleetMax(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
