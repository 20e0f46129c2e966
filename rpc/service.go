package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// LogStore is the storage the Log methods need. storage.Store implements it,
// and so must any other backend (see storage/storetest).
type LogStore interface {
	AppendAsync(rec storage.Record, done func(storage.Entry, error))
	List(ctx context.Context, q storage.Query) ([]storage.Entry, error)
	Head(ctx context.Context, src string) (uint64, error)
	Delete(ctx context.Context, src, stream string) error
	Subscribe(fn func([]storage.Entry)) (cancel func())
}

// SharedLister is a LogStore that can list without copying the msgs it
// holds in memory (storage.Store: its tail cache). The service only
// encodes the msgs of a List, so it uses ListShared when the store has it.
type SharedLister interface {
	ListShared(ctx context.Context, q storage.Query) ([]storage.Entry, error)
}

// Message is one MQTT message the service sends.
type Message struct {
	Topic       string
	Payload     []byte
	QoS         byte
	Correlation []byte // MQTT 5 Correlation Data, copied from the request
}

// Publisher sends messages to MQTT subscribers. It must never wait on a
// client: it is called from the commit path (broker.Broker only appends to
// an outbox). It must not keep m.Payload, nor
// modify it, after it returns: the service may build the next message in
// the same array.
type Publisher interface {
	Publish(Message) error
}

// Interest is an optional interface of a Publisher: Interested reports
// whether a message published on topic now would reach any subscriber.
// With it the service publishes a live <src>/log/<stream> message only
// when someone listens. It may answer true when unsure, but never false
// for a topic that a subscription acknowledged before the call matches.
type Interest interface {
	Interested(topic string) bool
}

// Config holds the service's settings. Zero values take the defaults below.
type Config struct {
	ID            string        // service id; default "logbroker"
	Aliases       []string      // other names the service answers to
	MaxMsg        int           // bytes of msg; default 65536
	MaxFrame      int           // bytes of a request frame; default 1 MiB
	FollowTimeout time.Duration // default wait of a follow; default 15 s (mos gives up after 20 s)
	FollowMax     time.Duration // upper bound of any follow wait; default 300 s
	ScanTimeout   time.Duration // bound of a filtered Log.List's scan when the frame sets no timeout; default 10 s, < 0: none
	MaxFollows    int           // waiting follows per connection; default 64
	QueueLen      int           // calls queued per connection before its reader waits; default 128
	Rate          float64       // calls per second per connection (token bucket); 0 = unlimited
	RateBurst     int           // bucket size; default max(1, Rate)
	Logger        *slog.Logger
	Observe       Observer // told of every call's end (metrics); nil: nobody
	// Dedup gives each Log.Log call with an id a storage.Record.Dedup key
	// (DedupKey), for a store that de-duplicates (--dedup-window).
	Dedup bool

	// FleetMax is the number of sources Log.Fleet tracks (see fleet);
	// 0: DefaultFleetMax; negative: Log.Fleet is not served.
	FleetMax int

	now func() time.Time // the fleet's clock; nil: time.Now (tests set it)
}

// Defaults of Config.
const (
	DefaultID            = "logbroker"
	DefaultMaxMsg        = 64 << 10
	DefaultMaxFrame      = 1 << 20
	DefaultFollowTimeout = 15 * time.Second
	DefaultFollowMax     = 300 * time.Second
	DefaultScanTimeout   = 10 * time.Second
	DefaultMaxFollows    = 64
	DefaultQueueLen      = 128 // 128 × ~100 B a connection; pipelining clients rarely keep more in flight
	defaultStream        = "console"
	defaultLimit         = 100
	maxLimit             = 1000
	maxTimestamp         = 253402300800000 // year 10000, exclusive
)

func (c *Config) setDefaults() {
	if c.ID == "" {
		c.ID = DefaultID
	}
	if c.MaxMsg <= 0 {
		c.MaxMsg = DefaultMaxMsg
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.FollowTimeout <= 0 {
		c.FollowTimeout = DefaultFollowTimeout
	}
	if c.FollowMax <= 0 {
		c.FollowMax = DefaultFollowMax
	}
	if c.ScanTimeout == 0 {
		c.ScanTimeout = DefaultScanTimeout
	}
	if c.FollowTimeout > c.FollowMax {
		c.FollowTimeout = c.FollowMax
	}
	if c.MaxFollows <= 0 {
		c.MaxFollows = DefaultMaxFollows
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.FleetMax == 0 {
		c.FleetMax = DefaultFleetMax
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// Stats are counters of the service, for metrics and tests.
type Stats struct {
	Dropped     int64 // frames that could not be answered
	Calls       int64 // frames handled (answered or notifications)
	Failed      int64 // calls answered with an error
	Waiting     int64 // follows waiting now
	LivePublish int64 // entries published on <src>/log/<stream>
	LiveSkipped int64 // entries not published live: nobody subscribed (Interest)
}

// Service runs the Log methods for frames that hooks hand it, one ordered
// queue per MQTT connection.
type Service struct {
	cfg     Config
	store   LogStore
	list    func(context.Context, storage.Query) ([]storage.Entry, error) // store's ListShared, else List
	pub     Publisher
	listens Interest // pub's, if it has one; nil: publish every live message
	log     *slog.Logger
	names   map[string]bool // id and aliases
	methods map[string]handler
	hub     hub
	fan     fanout

	liveTopics map[liveKey]string // deliver's, on the fanout goroutine

	fleet     *fleet // nil: Log.Fleet not served
	stopFleet context.CancelFunc
	fleetDone chan struct{} // closed when runFleet returns
	unsub     func()

	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*Conn]struct{}
	workers sync.WaitGroup

	dropped, calls, failed, live, skipped atomic.Int64

	// unpublished counts entries Log.Log made durable that the store has
	// not yet handed to onCommit (it calls subscribers after the done
	// callbacks); Shutdown waits for it to drop to 0 before it
	// unsubscribes, so no answered entry misses its live publish.
	unpublished atomic.Int64
	published   chan struct{} // cap 1: unpublished dropped to 0 or below
	unsubbed    atomic.Bool   // Shutdown has unsubscribed: nothing to wait for

	capture atomic.Pointer[Capture] // console capture, if started (Service.Capture)
}

// New makes a service over store that sends through pub. It subscribes to
// store for live topics and follows; Shutdown undoes that.
func New(store LogStore, pub Publisher, cfg Config) *Service {
	cfg.setDefaults()
	s := &Service{
		cfg:   cfg,
		store: store,
		pub:   pub,
		log:   cfg.Logger,
		names: map[string]bool{cfg.ID: true},
		conns: map[*Conn]struct{}{},
	}
	s.listens, _ = pub.(Interest)
	s.list = store.List
	if sl, ok := store.(SharedLister); ok {
		s.list = sl.ListShared
	}
	for _, a := range cfg.Aliases {
		s.names[a] = true
	}
	s.methods = map[string]handler{
		"Log.Log":    (*Conn).logLog,
		"Log.List":   (*Conn).logList,
		"Log.Delete": (*Conn).logDelete,
		"RPC.List":   (*Conn).rpcList,
		"RPC.Ping":   (*Conn).rpcPing,
	}
	s.addCatalog() // Log.Sources, Log.Streams: only if store is a Catalog
	s.hub.init()
	if s.fleet != nil {
		var ctx context.Context
		ctx, s.stopFleet = context.WithCancel(context.Background())
		s.fleetDone = make(chan struct{})
		go s.runFleet(ctx)
	}
	s.fan.init(s.deliver)
	s.published = make(chan struct{}, 1)
	s.unsub = store.Subscribe(s.onCommit)
	return s
}

// Names returns the service id followed by its aliases.
func (s *Service) Names() []string {
	out := []string{s.cfg.ID}
	return append(out, s.cfg.Aliases...)
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	return Stats{
		Dropped:     s.dropped.Load(),
		Calls:       s.calls.Load(),
		Failed:      s.failed.Load(),
		Waiting:     s.hub.waiting.Load(),
		LivePublish: s.live.Load(),
		LiveSkipped: s.skipped.Load(),
	}
}

// Call is one request frame as it arrived over MQTT.
type Call struct {
	Payload       []byte // kept, not copied, until the call is answered: must not be modified after Submit
	Service       string // the service name the topic used (id or alias)
	Method        string // method named by the topic suffix, if HasMethod
	HasMethod     bool
	ResponseTopic string // MQTT 5 Response Topic; "" for <src>/rpc
	Correlation   []byte // MQTT 5 Correlation Data
}

// Conn is the ordered call queue of one MQTT connection. Calls submitted to
// a Conn run in submission order; a Log.Log does not hold up the calls after
// it while it waits for its fsync, but a later List or Delete sees it.
type Conn struct {
	svc     *Service
	client  string
	ch      chan Call
	mu      sync.RWMutex  // Submit holds it shared while it sends on ch; Close alone, to close ch
	closed  bool          // ch is closed; guarded by mu
	quit    chan struct{} // closed by Close first: a Submit waiting on a full ch gives up
	quitted sync.Once
	caller  Caller
	limit   *bucket        // nil: no rate limit
	appends sync.WaitGroup // Log.Log calls not yet durable
	follows int            // waiting follows; guarded by svc.hub.mu
	gone    bool           // closed: no new follows; guarded by svc.hub.mu
	reply   atomic.Pointer[replyTopic]
	argSrc  atomic.Pointer[string] // the last valid args.src: a dashboard names the same source each call
}

// replyTopic is <src>/rpc for the src a connection used last.
type replyTopic struct{ src, topic string }

// replyTopic returns src + "/rpc", built once for as long as the
// connection's calls keep the same src (a device's always do): responses
// are published from the worker, the committer and the fanout, so the
// remembered topic is swapped atomically.
func (c *Conn) replyTopic(src string) string {
	if t := c.reply.Load(); t != nil && t.src == src {
		return t.topic
	}
	t := &replyTopic{src: src, topic: src + "/rpc"}
	c.reply.Store(t)
	return t.topic
}

// Open starts the call queue of a new connection in open mode (every call
// allowed). client names it in logs.
func (s *Service) Open(client string) *Conn {
	return s.OpenAs(client, Caller{})
}

// OpenAs starts the call queue of a new connection made by caller.
func (s *Service) OpenAs(client string, caller Caller) *Conn {
	c := &Conn{svc: s, client: client, caller: caller, ch: make(chan Call, s.cfg.QueueLen), quit: make(chan struct{})}
	if s.cfg.Rate > 0 {
		burst := s.cfg.RateBurst
		if burst <= 0 {
			burst = max(1, int(s.cfg.Rate))
		}
		c.limit = newBucket(s.cfg.Rate, burst)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		// Shutdown has begun (it sets closing before it takes mu): no
		// worker, which could race its workers.Wait; Submit answers 503.
		c.closed = true
		c.gone = true
		return c
	}
	s.conns[c] = struct{}{}
	s.workers.Add(1)
	go c.run()
	return c
}

// Submit queues call. It waits only while the connection's queue is full,
// which slows that connection alone, and not past Close. Once Shutdown has
// begun, call is answered at once (503, or the frame's own error) instead.
func (c *Conn) Submit(call Call) {
	c.mu.RLock()
	if !c.closed {
		select {
		case c.ch <- call:
			c.mu.RUnlock()
			return
		case <-c.quit:
			// Closed while the queue was full (a stuck worker): waiting
			// on would hold up Close, and so Shutdown.
		}
	}
	c.mu.RUnlock()
	if c.svc.closing.Load() {
		c.handle(call) // never reaches a method while closing
	}
}

// Close ends the connection's queue: calls already queued still run (their
// publishes were acknowledged), its waiting follows are dropped unanswered.
// It does not wait for the queue to drain.
func (c *Conn) Close() {
	c.quitted.Do(func() { close(c.quit) }) // releases a Submit waiting on a full queue
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.ch)
	c.mu.Unlock()
	c.svc.hub.dropConn(c)
}

func (c *Conn) run() {
	defer c.svc.workers.Done()
	for call := range c.ch {
		c.handle(call)
	}
	c.appends.Wait()
	c.svc.mu.Lock()
	delete(c.svc.conns, c)
	c.svc.mu.Unlock()
}

// request is a call being served.
type request struct {
	f       *Frame // &frame
	frame   Frame
	call    Call
	method  string
	caller  Caller
	replyTo string // overrides <src>/rpc: a refused foreign src is answered at <identity>/rpc
	conn    *Conn
	started time.Time
}

type handler func(c *Conn, r *request)

// NormalizeMethod maps "/v1/Log.List" and "v1/Log.List" to "Log.List".
func NormalizeMethod(m string) string {
	m = strings.TrimPrefix(m, "/")
	return strings.TrimPrefix(m, "v1/")
}

func (c *Conn) handle(call Call) {
	s := c.svc
	r := &request{call: call, caller: c.caller, conn: c}
	var lastSrc string
	if t := c.reply.Load(); t != nil {
		lastSrc = t.src
	}
	err := decodeFrame(&r.frame, call.Payload, lastSrc)
	if errors.Is(err, ErrDropped) {
		s.dropped.Add(1)
		s.log.Debug("frame dropped", "client", c.client, "err", err)
		return
	}
	s.calls.Add(1)
	f := &r.frame
	r.f, r.started = f, time.Now()
	foreign := !c.caller.mayFrame(f.Src)
	if foreign {
		// Never answer at a foreign <src>/rpc: the caller's own topic.
		r.replyTo = c.caller.Identity + "/rpc"
		r.call.ResponseTopic = ""
	}
	// The rate limit comes first: refused and malformed frames cost a
	// token too, so a flood of them is throttled like any other.
	if c.limit != nil && !c.limit.take(r.started) {
		c.fail(r, errorf(CodeTooMany, "rate limit of %g calls per second exceeded", s.cfg.Rate))
		return
	}
	if foreign {
		c.fail(r, errorf(CodeForbidden, "src %q is not yours (%s)", f.Src, c.caller.Identity))
		return
	}
	if r.call.ResponseTopic != "" && !c.caller.mayFrame(r.call.ResponseTopic) {
		r.call.ResponseTopic = "" // a foreign Response Topic is ignored
	}
	if err != nil {
		c.fail(r, err)
		return
	}
	r.method = f.Method
	if call.HasMethod {
		r.method = call.Method
	}
	r.method = NormalizeMethod(r.method)
	switch {
	case len(call.Payload) > s.cfg.MaxFrame:
		c.fail(r, errorf(CodeTooLarge, "frame is %d bytes, over the limit of %d", len(call.Payload), s.cfg.MaxFrame))
		return
	case f.HasDst && !s.names[f.Dst]:
		c.fail(r, errorf(CodeBadRequest, "dst %q is not this service (%s)", f.Dst, s.cfg.ID))
		return
	case r.method == "":
		c.fail(r, errorf(CodeBadRequest, "method is required"))
		return
	}
	h, ok := s.methods[r.method]
	if !ok {
		c.fail(r, errorf(CodeNotFound, "no such method: %s", r.method))
		return
	}
	if s.closing.Load() {
		c.fail(r, ErrShuttingDown)
		return
	}
	h(c, r)
}

// respond sends the result of r (nil: no result field).
func (c *Conn) respond(r *request, result []byte) {
	if result == nil {
		c.observe(r, 0)
		if !r.f.Notification() {
			service := c.responder(r)
			buf := make([]byte, 0, responseSize(r.f, service, 0))
			c.svc.send(r, appendResponse(buf, r.f, service, nil, 0, ""))
		}
		return
	}
	if r.f.Notification() {
		c.observe(r, 0)
		return
	}
	c.finish(r, append(c.resultHead(r, len(result)), result...))
}

// respondReusing answers r with result like respond, building the
// response in buf's array, and returns that array for the next one.
func (c *Conn) respondReusing(buf []byte, r *request, result []byte) []byte {
	c.observe(r, 0)
	if r.f.Notification() {
		return buf
	}
	service := c.responder(r)
	if n := responseSize(r.f, service, len(result)); cap(buf) < n {
		buf = make([]byte, 0, n+n/4) // room for the next follower's longer id or tag
	}
	buf = appendResponse(buf[:0], r.f, service, result, 0, "")
	c.svc.send(r, buf)
	return buf
}

// resultHead starts the response to r in a buffer with room for n bytes of
// result, which the caller appends before it calls finish: one allocation,
// and a large result (a Log.List) is encoded in place, not copied. Only for
// calls that want a response (not r.f.Notification()).
func (c *Conn) resultHead(r *request, n int) []byte {
	service := c.responder(r)
	size := responseSize(r.f, service, n)
	var buf []byte
	if size >= pooledResult {
		if p, ok := bigResults.Get().(*[]byte); ok && cap(*p) >= size {
			buf = (*p)[:0]
		}
	}
	if buf == nil {
		buf = make([]byte, 0, size)
	}
	buf = appendResponseHead(buf, r.f, service)
	return append(buf, `,"result":`...)
}

// finish ends the response that resultHead started and sends it. A large
// buffer goes back to bigResults: the Publisher keeps no payload.
func (c *Conn) finish(r *request, buf []byte) {
	c.observe(r, 0)
	buf = append(buf, '}')
	c.svc.send(r, buf)
	if cap(buf) >= pooledResult {
		bigResults.Put(&buf)
	}
}

// pooledResult is the size from which response buffers are pooled: a
// Log.List answer of 100 console lines is ~15 KB, allocated and zeroed for
// every call otherwise.
const pooledResult = 4 << 10

// bigResults holds response buffers of at least pooledResult bytes.
var bigResults sync.Pool // *[]byte

// fail answers r with err, logging it; internal errors are logged in full
// and answered with a generic message.
func (c *Conn) fail(r *request, err error) {
	s := c.svc
	s.failed.Add(1)
	code, msg, internal := toWire(err)
	c.observe(r, code)
	var id string
	if r.f != nil {
		id = string(r.f.ID)
	}
	if internal {
		s.log.Error("call failed", "client", c.client, "src", r.f.Src, "method", r.method, "id", id, "code", code, "err", err)
	} else {
		s.log.Info("call failed", "client", c.client, "src", r.f.Src, "method", r.method, "id", id, "code", code, "err", msg)
	}
	if r.f.Notification() {
		return
	}
	service := c.responder(r)
	buf := make([]byte, 0, responseSize(r.f, service, len(msg)+len(`{"code":,"message":""}`)+4))
	s.send(r, appendResponse(buf, r.f, service, nil, code, msg))
}

// responder is the src of a response: the service name the request used.
func (c *Conn) responder(r *request) string {
	if r.call.Service != "" {
		return r.call.Service
	}
	return c.svc.cfg.ID
}

func (s *Service) send(r *request, payload []byte) {
	topic := r.call.ResponseTopic
	switch {
	case r.replyTo != "":
		topic = r.replyTo
	case topic == "":
		topic = r.conn.replyTopic(r.f.Src)
	}
	if err := s.pub.Publish(Message{Topic: topic, Payload: payload, QoS: 1, Correlation: r.call.Correlation}); err != nil {
		s.log.Warn("response not sent", "src", r.f.Src, "method", r.method, "id", string(r.f.ID), "err", err)
	}
}

// Shutdown stores console capture's partial lines and stops capturing,
// stops taking calls (new ones get 503), answers every waiting follow with
// [], and waits until queued calls have run, their responses
// are sent and their entries published live, or ctx ends.
func (s *Service) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	if c := s.capture.Load(); c != nil {
		if err := c.close(ctx); err != nil {
			s.log.Warn("captured lines not all stored at shutdown", "err", err)
		}
	}
	s.hub.releaseAll(func(f *follower) { f.c.respond(f.r, []byte("[]")) })
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
		err = s.waitPublished(ctx)
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.unsubbed.Store(true)
	s.unsub()
	s.fan.stop()
	if s.fleet != nil {
		s.stopFleet()
		<-s.fleetDone
	}
	return err
}

// onCommit is the store's subscriber: it queues each durable group for
// the live topics and followers.
func (s *Service) onCommit(group []storage.Entry) {
	s.fan.push(group)
	if s.unpublished.Add(-int64(len(group))) <= 0 {
		select {
		case s.published <- struct{}{}:
		default:
		}
	}
}

// waitPublished waits until every entry Log.Log made durable has reached
// onCommit, or ctx ends.
func (s *Service) waitPublished(ctx context.Context) error {
	for s.unpublished.Load() > 0 && !s.unsubbed.Load() {
		select {
		case <-s.published:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// methodNames returns the served method names, sorted.
func (s *Service) methodNames() []string {
	names := make([]string, 0, len(s.methods))
	for n := range s.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
