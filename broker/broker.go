package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrNotStarted is returned by Publish before Start.
var ErrNotStarted = errors.New("broker not started")

// Config holds the listener addresses and limits of a Broker.
type Config struct {
	MQTTAddr    string      // TCP address for MQTT; "" disables
	WSAddr      string      // TCP address for MQTT over WebSocket; "" disables
	PlainAddr   string      // with TLS set: an extra MQTT listener without TLS; "" none
	TLS         *tls.Config // when set, both listeners speak TLS
	MaxPacket   uint32      // largest MQTT packet accepted, bytes; 0 = no limit
	ClientQueue int32       // messages of other clients (mochi's path) queued per client before drops; 0 = DefaultClientQueue
	// MaxPending is how many bytes may wait for one client, in its
	// outbox and, apart, for its socket; a client that falls further
	// behind is disconnected as a slow consumer rather than stalling
	// anyone. 0 = 32 MiB.
	MaxPending int
	// DrainTimeout bounds how long Close waits for clients to acknowledge
	// what was published to them; 0 = 2 s, negative = no wait.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Limits       Limits // limits.go; the zero value limits nothing
}

// DefaultClientQueue is mochi's per-client outbound queue when
// Config.ClientQueue is 0. Only messages of other clients use it (the
// broker's own go through its outboxes), each slot 8 bytes of every
// connection's memory; mochi's own default is 8192.
const DefaultClientQueue = 64

// readBufferSize is the read buffer of each connection (mochi's default):
// an idle connection costs it, and a request larger than it is read
// straight into its packet. 512 bytes saved 1.5 KiB per idle connection
// but cost about 6 % of Log.Log calls/s at 16 x 32 (BENCHMARKS.md, issue 11).
const readBufferSize = 2048

// DefaultDrainTimeout is Config.DrainTimeout when it is 0.
const DefaultDrainTimeout = 2 * time.Second

// Broker is the running MQTT server.
type Broker struct {
	cfg    Config
	srv    *mqtt.Server
	mochi  mochiServer
	inline *mqtt.Client
	maxQos byte
	subs   *interest // answers Interested, finds a topic's subscribers
	drops  *dropLog
	hold   *readHold
	hooks  userHooks // hooks added with AddHook that Publish and the outboxes ask
	qos    *inflightLog
	limits limits // limits.go

	outboxes      sync.Map // client id -> *outbox
	live          gauge    // outboxes in outboxes
	sending       gauge    // outbox goroutines running
	draining      gauge    // outboxes Close waits for
	slow          atomic.Int64
	tooLarge      atomic.Int64
	inflightDrops atomic.Int64

	started atomic.Bool

	mu        sync.Mutex
	closed    bool
	mqttAddr  net.Addr
	wsAddr    net.Addr
	plainAddr net.Addr
}

// New makes a broker; it listens on nothing until Start.
func New(cfg Config) *Broker {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ClientQueue <= 0 {
		cfg.ClientQueue = DefaultClientQueue
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacket
	caps.MaximumClientWritesPending = cfg.ClientQueue
	limitCapabilities(caps, cfg) // limits.go
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   slog.New(quietHandler{cfg.Logger.Handler()}),
		ClientNetWriteBufferSize: 1, // no buffer: queuedConn queues; mochi's lost the last packets at a close (limitconn.go)
		ClientNetReadBufferSize:  readBufferSize,
	})
	b := &Broker{
		cfg:    cfg,
		srv:    srv,
		mochi:  mochiServer{srv},
		inline: srv.NewClient(nil, "local", "logbroker", true),
		maxQos: caps.MaximumQos,
		drops:  &dropLog{log: cfg.Logger},
		hold:   newReadHold(),
	}
	b.subs = &interest{mochi: b.mochi}
	b.qos = &inflightLog{draining: &b.draining}
	return b
}

// AddHook adds a mochi hook; call it before Start.
func (b *Broker) AddHook(h mqtt.Hook, config any) error {
	if err := b.srv.AddHook(h, config); err != nil {
		return fmt.Errorf("add hook %s: %w", h.ID(), err)
	}
	b.hooks.add(h)
	return nil
}

// Start binds the listeners and starts serving. It returns once every
// listener accepts connections.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started.Load() || b.closed {
		return errors.New("start: already started")
	}
	for _, h := range []mqtt.Hook{&events{b: b}, b.subs, b.drops, b.qos} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	b.subs.active.Store(true)
	if err := b.addLimitHooks(); err != nil { // limits.go
		return fmt.Errorf("start: %w", err)
	}
	if b.cfg.MQTTAddr != "" {
		ln, err := b.listen(b.cfg.MQTTAddr)
		if err != nil {
			return fmt.Errorf("start mqtt listener: %w", err)
		}
		b.mqttAddr = ln.Addr()
		if err := b.srv.AddListener(safeClose{listeners.NewNet("mqtt", ln), b}); err != nil {
			ln.Close()
			return fmt.Errorf("start mqtt listener: %w", err)
		}
	}
	if b.cfg.PlainAddr != "" {
		raw, err := net.Listen("tcp", b.cfg.PlainAddr)
		if err != nil {
			b.srv.Listeners.CloseAll(func(string) {})
			return fmt.Errorf("start plain mqtt listener: %w", err)
		}
		ln := queuedListener{b.limitListener(raw), b.cfg.MaxPending, b.hold}
		b.plainAddr = ln.Addr()
		if err := b.srv.AddListener(safeClose{listeners.NewNet("mqtt-plain", ln), b}); err != nil {
			ln.Close()
			return fmt.Errorf("start plain mqtt listener: %w", err)
		}
	}
	if b.cfg.WSAddr != "" {
		ln, err := b.listen(b.cfg.WSAddr)
		if err != nil {
			b.srv.Listeners.CloseAll(func(string) {})
			return fmt.Errorf("start websocket listener: %w", err)
		}
		b.wsAddr = ln.Addr()
		if err := b.srv.AddListener(safeClose{newWebsocket("ws", ln), b}); err != nil {
			ln.Close()
			return fmt.Errorf("start websocket listener: %w", err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	b.started.Store(true)
	return nil
}

// listen binds addr; accepted connections queue their writes (queuedConn),
// under TLS when configured.
func (b *Broker) listen(addr string) (net.Listener, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var ln net.Listener = queuedListener{b.limitListener(raw), b.cfg.MaxPending, b.hold}
	if b.cfg.TLS != nil {
		ln = tls.NewListener(ln, b.cfg.TLS)
	}
	return ln, nil
}

// MQTTAddr is the bound MQTT address ("" when disabled or not started).
func (b *Broker) MQTTAddr() string { return addrString(b.mqttAddr) }

// PlainAddr is the bound plain MQTT address beside TLS ("" when none).
func (b *Broker) PlainAddr() string { return addrString(b.plainAddr) }

// WSAddr is the bound WebSocket address ("" when disabled or not started).
func (b *Broker) WSAddr() string { return addrString(b.wsAddr) }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Publish delivers pk to its subscribers as the broker itself, bypassing
// ACLs on the way in (the read ACL of each subscriber still applies). It
// never waits: it runs the OnPublish hooks added with AddHook (the log
// service consumes what is published on its request topics), finds the
// topic's subscribers, and appends one shared copy of the message to each
// subscriber's outbox (outbox.go). Retained messages, and topics with
// inline subscriptions, take mochi's own path (the log service publishes
// neither).
func (b *Broker) Publish(pk packets.Packet) error {
	if !b.started.Load() {
		return ErrNotStarted
	}
	pk.FixedHeader.Type = packets.Publish
	if pk.FixedHeader.Retain {
		return b.inject(pk)
	}
	pk, ok := b.hooks.onPublish(b.inline, pk)
	if !ok {
		return nil
	}
	r := b.subs.lookup(pk.TopicName)
	if r.inline {
		return b.inject(pk)
	}
	if len(r.targets) == 0 {
		return nil
	}
	m := &message{topic: pk.TopicName, payload: bytes.Clone(pk.Payload), qos: pk.FixedHeader.Qos}
	if pk.Properties.CorrelationData != nil {
		m.corr = bytes.Clone(pk.Properties.CorrelationData)
	}
	for _, t := range r.targets {
		b.enqueue(m, t)
	}
	return nil
}

// inject publishes pk through mochi's own path.
func (b *Broker) inject(pk packets.Packet) error {
	if pk.FixedHeader.Qos > 0 && pk.PacketID == 0 {
		pk.PacketID = 1 // never used for inline publishes, but must be valid
	}
	if err := b.mochi.inject(b.inline, pk); err != nil {
		return fmt.Errorf("publish %s: %w", pk.TopicName, err)
	}
	return nil
}

// Clients is the number of sessions: connected clients, and persistent
// sessions whose client is away.
func (b *Broker) Clients() int { return b.mochi.clients() }

// Server exposes the mochi server for hooks that need to look up clients.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Close disconnects every client and stops the listeners. It first waits,
// up to Config.DrainTimeout, until what the outboxes held when Close began
// is sent and, at QoS 1, acknowledged by clients still connected (and the
// QoS 1 and 2 messages of mochi's own path then in flight: inflightLog), so that
// the answers published just before (to waiting calls at shutdown) are
// delivered rather than cut off with the connection; later messages do
// not prolong it. Then it stops reading from clients (a call read now
// would be acknowledged and answered on a connection about to close),
// waits, up to a second, until the packets already read are handled and
// the outboxes have written what that queued; closing connections flush
// it. Every wait is on a channel that the events themselves close: no
// polling.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.started.Load() {
		if d := b.cfg.DrainTimeout; d > 0 {
			b.outboxes.Range(func(_, v any) bool {
				v.(*outbox).markDrain()
				return true
			})
			b.qos.markDrain(func(id string) bool {
				cl, ok := b.mochi.client(id)
				return ok && online(cl)
			})
			waitZero(&b.draining, d)
		}
		b.hold.hold()
		if d := min(b.cfg.DrainTimeout, settleTimeout); d > 0 {
			deadline := time.Now().Add(d)
			if waitZero(&b.hold.busy, d) {
				waitZero(&b.sending, time.Until(deadline))
			}
		}
	}
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// finished is told, by the listeners, when mochi is done with connection
// c: a takeover waiting for it goes on, and an outbox it held while it
// connected (its CONNACK or resend failed, so OnSessionEstablished never
// came) is released.
func (b *Broker) finished(c net.Conn) {
	q := queuedConnOf(c)
	if q == nil {
		return
	}
	if id := q.finish(); id != "" {
		b.releaseOutbox(id, nil)
	}
}
