package broker

import (
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
	ClientQueue int32       // QoS 1 and 2 messages queued per client before drops; 0 = DefaultClientQueue
	// MaxPending is how many bytes may wait to be sent to one client; a
	// client that reads slower is disconnected rather than stalling the
	// publishers to its topics (ErrSlowConsumer). 0 = 32 MiB.
	MaxPending int
	// DrainTimeout bounds how long Close waits for clients to acknowledge
	// the QoS 1 and 2 messages sent to them; 0 = 2 s, negative = no wait.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Limits       Limits // limits.go; the zero value limits nothing
}

// DefaultClientQueue is the per-client outbound queue when Config.ClientQueue
// is 0. It holds responses, follow answers and messages of other clients at
// QoS 1 and 2 (live messages skip it: live.go), each slot 8 bytes of every
// connection's memory; mochi's own default is 8192.
const DefaultClientQueue = 256

// readBufferSize is the read buffer of each connection (mochi's default):
// an idle connection costs it, and a request larger than it is read
// straight into its packet.
const readBufferSize = 2048

// DefaultDrainTimeout is Config.DrainTimeout when it is 0.
const DefaultDrainTimeout = 2 * time.Second

// Broker is the running MQTT server.
type Broker struct {
	cfg    Config
	srv    *mqtt.Server
	inline *mqtt.Client
	pubs   sync.RWMutex // Publish holds it shared; a takeover alone (see takeover)
	subs   *interest    // answers Interested
	drops  *dropLog
	hold   *readHold
	unsent *unsentLog
	hooks  userHooks    // hooks the direct paths ask (live.go)
	waits  atomic.Int64 // publishes that waited for room (waitRoom)
	limits limits       // limits.go

	mu        sync.Mutex
	started   bool
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
	return &Broker{
		cfg:    cfg,
		srv:    srv,
		inline: srv.NewClient(nil, "local", "logbroker", true),
		subs:   &interest{srv: srv},
		drops:  &dropLog{log: cfg.Logger},
		hold:   newReadHold(),
		unsent: &unsentLog{},
	}
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
	if b.started {
		return errors.New("start: already started")
	}
	if err := b.srv.AddHook(&takeover{srv: b.srv, log: b.cfg.Logger, pubs: &b.pubs}, nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := b.srv.AddHook(b.subs, nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	b.subs.active.Store(true)
	if err := b.addLimitHooks(); err != nil { // limits.go
		return fmt.Errorf("start: %w", err)
	}
	if err := b.srv.AddHook(new(strayAck), nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := b.srv.AddHook(new(noSendQuota), nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := b.srv.AddHook(b.drops, nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := b.srv.AddHook(b.unsent, nil); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if b.cfg.MQTTAddr != "" {
		ln, err := b.listen(b.cfg.MQTTAddr)
		if err != nil {
			return fmt.Errorf("start mqtt listener: %w", err)
		}
		b.mqttAddr = ln.Addr()
		if err := b.srv.AddListener(safeClose{listeners.NewNet("mqtt", ln), b.srv}); err != nil {
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
		if err := b.srv.AddListener(safeClose{listeners.NewNet("mqtt-plain", ln), b.srv}); err != nil {
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
		if err := b.srv.AddListener(safeClose{newWebsocket("ws", ln), b.srv}); err != nil {
			ln.Close()
			return fmt.Errorf("start websocket listener: %w", err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	b.started = true
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

// Publish delivers pk to its subscribers as the broker itself. A QoS 0
// message that is not retained is written to each subscriber's connection
// at once, never dropped for a full client queue (see live.go); others go
// through mochi's queues.
func (b *Broker) Publish(pk packets.Packet) error {
	pk.FixedHeader.Type = packets.Publish
	if pk.FixedHeader.Qos > 0 && pk.PacketID == 0 {
		pk.PacketID = 1 // never used for inline publishes, but must be valid
	}
	// A QoS 1 or 2 message's topic is looked up once, for both waitRoom
	// and publishSole.
	var t topic
	if pk.FixedHeader.Qos > 0 && b.subs.active.Load() {
		t = b.subs.lookup(pk.TopicName)
		b.waitRoom(t.sole)
	}
	b.pubs.RLock()
	defer b.pubs.RUnlock()
	switch {
	case isLive(&pk):
		if b.publishLive(pk) {
			return nil
		}
	case !pk.FixedHeader.Retain && t.sole != "":
		if b.publishSole(pk, t) {
			return nil
		}
	}
	if err := b.srv.InjectPacket(b.inline, pk); err != nil {
		return fmt.Errorf("publish %s: %w", pk.TopicName, err)
	}
	return nil
}

// roomTimeout bounds how long a publish waits for room in its subscriber's
// queue (waitRoom).
const roomTimeout = 2 * time.Second

// waitRoom waits while sole, the only subscriber of a topic (the caller,
// for a response; "" for none), has three quarters of its queue (Config.ClientQueue) taken by
// QoS 1 and 2 messages not yet written, until it has room, is gone, or
// roomTimeout passes; mochi would drop the message. The queue drains as
// fast as the client's write loop runs (writes never wait for the network:
// queuedConn), so this only evens out bursts, such as one commit group
// answering hundreds of a client's calls at once. Topics with several
// subscribers are not waited for.
func (b *Broker) waitRoom(sole string) {
	if sole == "" {
		return
	}
	cl, ok := b.srv.Clients.Get(sole)
	if !ok {
		return
	}
	limit := max(1, int64(b.cfg.ClientQueue)*3/4)
	if b.unsent.count(cl) < limit {
		return
	}
	b.waits.Add(1)
	deadline := time.Now().Add(roomTimeout)
	for b.unsent.count(cl) >= limit && !cl.Closed() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

// Clients is the number of connected clients.
func (b *Broker) Clients() int {
	return len(b.srv.Clients.GetAll())
}

// Server exposes the mochi server for hooks that need to look up clients.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Close disconnects every client and stops the listeners. It first waits,
// up to Config.DrainTimeout, until every connected client has acknowledged
// the QoS 1 and 2 messages sent to it, so that responses published just
// before (the answers to waiting calls at shutdown) are delivered rather
// than cut off with the connection. Then it stops reading from clients (a
// call read now would be acknowledged and answered on a connection about to
// close) and waits, up to a second, until what was sent to them meanwhile
// is written; closing connections flush it.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.started {
		b.drain(b.cfg.DrainTimeout)
		b.hold.hold()
		b.settle(min(b.cfg.DrainTimeout, settleTimeout))
	}
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// drain waits until every connected client has acknowledged the QoS 1
// and 2 messages in flight to it when drain began, or d passes. Messages
// sent later (answers to calls still arriving) do not prolong it. mochi
// exposes no event for an acknowledgement, so it checks every few
// milliseconds; it runs once, at shutdown.
func (b *Broker) drain(d time.Duration) {
	if d <= 0 {
		return
	}
	type pending struct {
		cl *mqtt.Client
		id uint16
	}
	var wait []pending
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() {
			continue
		}
		for _, pk := range cl.State.Inflight.GetAll(false) {
			wait = append(wait, pending{cl, pk.PacketID})
		}
	}
	deadline := time.Now().Add(d)
	for len(wait) > 0 && time.Now().Before(deadline) {
		left := wait[:0]
		for _, p := range wait {
			if _, ok := p.cl.State.Inflight.Get(p.id); ok && !p.cl.Closed() {
				left = append(left, p)
			}
		}
		wait = left
		if len(wait) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
