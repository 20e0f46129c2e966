package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Methods the generator can call.
const (
	MethodLog  = "Log.Log"
	MethodList = "Log.List"
	MethodPing = "RPC.Ping"
)

// Config describes a run. Zero values take the defaults of setDefaults.
type Config struct {
	Broker   string      // tcp://host:port, ws://host:port/path, ssl://host:port or wss://...
	User     string      // MQTT username; "" sends none
	Password string      // MQTT password
	TLS      *tls.Config // for ssl:// and wss://; nil: the system roots
	Service  string      // the service id; requests go to <Service>/rpc; default "logbroker"
	Prefix   string      // client ids (and default srcs) are <Prefix>-<i>, followers <Prefix>-f<i>, ...; default "bench"

	Clients  int           // callers; default 1
	Inflight int           // calls in flight per caller; default 1
	Method   string        // MethodLog, MethodList or MethodPing; default MethodPing
	MsgSize  int           // bytes of a Log.Log msg string; default 100
	QoS      byte          // QoS of requests and of the response subscription; default 1 unless QoSSet
	QoSSet   bool          // QoS was given (0 is a valid QoS)
	Duration time.Duration // how long callers send; default 10 s when Count is 0
	Count    int64         // calls to send in total; 0: until Duration
	Rate     float64       // calls per second in total; 0: as fast as answers come
	Timeout  time.Duration // a call unanswered this long is a timeout; default 10 s

	Source     string // the src Log.Log writes to and Log.List reads; "": each caller's own
	Streams    int    // Log.Log spreads over streams s0..s<n-1>; default 1 (stream "console")
	ListStream string // Log.List's stream; "": all streams of the source
	ListLast   int    // Log.List's last; default 100

	Followers  int    // clients keeping a Log.List follow waiting on a logged source
	Dashboards int    // clients subscribed to +/log/# at QoS 0, counting live messages
	Idle       int    // idle MQTT connections held open during the run (tcp:// only)
	BrokerPID  int    // the broker's process: its CPU time per call, and its VmRSS around the idle connections; 0: none
	Attack     string // one of Attacks, run beside the callers (tcp:// only); "": none

	Progress func(Progress)       // called about once a second while calls run; nil: never
	Warnf    func(string, ...any) // reports trouble during the run (a lost connection); nil: discarded
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Elapsed  time.Duration
	OK       int64
	Failed   int64
	Timeouts int64
	Rate     float64 // calls answered per second over the last interval
}

// Result is what a run measured.
type Result struct {
	Method   string  `json:"method"`
	Broker   string  `json:"broker"`
	Clients  int     `json:"clients"`
	Inflight int     `json:"inflight"`
	MsgSize  int     `json:"msg_size,omitempty"`
	QoS      int     `json:"qos"`
	Seconds  float64 `json:"seconds"` // from the first call to the last answer

	Calls    int64            `json:"calls"`    // sent
	OK       int64            `json:"ok"`       // answered with a result
	Failed   int64            `json:"failed"`   // answered with an error
	Timeouts int64            `json:"timeouts"` // not answered within Timeout
	Lost     int64            `json:"lost"`     // in flight when a connection was lost
	Errors   map[string]int64 `json:"errors"`   // error code -> calls
	Rate     float64          `json:"calls_per_sec"`
	Latency  Latency          `json:"latency"`
	Entries  int64            `json:"entries,omitempty"` // Log.List: entries returned in total

	// CPU time the broker process (BrokerPID) used from the first call to the
	// last answer, and per answered call. On a shared machine this is
	// steadier than calls/s: it does not depend on the CPU share the
	// process got.
	BrokerPID  int     `json:"broker_pid,omitempty"`
	CPUSeconds float64 `json:"broker_cpu_seconds,omitempty"`
	CPUPerCall float64 `json:"broker_cpu_us_per_call,omitempty"`

	Follow *FollowResult `json:"follow,omitempty"`
	FanOut *FanOutResult `json:"fanout,omitempty"`
	Idle   *IdleResult   `json:"idle,omitempty"`
	Attack *AttackResult `json:"attack,omitempty"`
}

// Succeeded reports whether every call sent was answered with a result and
// nothing was lost, dropped or missed.
func (r *Result) Succeeded() bool {
	ok := r.OK > 0 && r.Failed == 0 && r.Timeouts == 0 && r.Lost == 0
	if r.Follow != nil {
		ok = ok && r.Follow.Missed == 0
	}
	if r.Idle != nil {
		ok = ok && r.Idle.Failed == 0
	}
	return ok
}

// FollowResult measures the followers: from the Log.Log response of an
// entry to a follower's answer carrying it.
type FollowResult struct {
	Followers int     `json:"followers"`
	Answers   int64   `json:"answers"`  // follow calls answered
	Expected  int64   `json:"expected"` // entries logged to followed sources, times followers
	Seen      int64   `json:"seen"`     // entries followers were answered
	Missed    int64   `json:"missed"`   // Expected - Seen, when positive
	Early     int64   `json:"early"`    // answered before the logger's own response arrived (counted as 0)
	Latency   Latency `json:"latency"`
}

// FanOutResult measures the dashboards.
type FanOutResult struct {
	Dashboards int     `json:"dashboards"`
	Expected   int64   `json:"expected"` // entries logged times dashboards
	Received   int64   `json:"received"`
	Dropped    int64   `json:"dropped"`           // Expected - Received, when positive
	Delivered  float64 `json:"delivered_per_sec"` // (responses + live messages received) per second
}

// IdleResult measures the idle connections.
type IdleResult struct {
	Connections int     `json:"connections"` // connected
	Failed      int     `json:"failed"`      // refused or broken
	PID         int     `json:"pid,omitempty"`
	RSSBefore   int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter    int64   `json:"rss_after_bytes,omitempty"`
	PerConn     float64 `json:"rss_per_conn_bytes,omitempty"`
}

func (c *Config) setDefaults() error {
	if c.Broker == "" {
		return errors.New("no broker URL")
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		return fmt.Errorf("broker URL %q: %w", c.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("broker URL %q: want tcp://, ssl://, ws:// or wss://", c.Broker)
	}
	if c.Service == "" {
		c.Service = "logbroker"
	}
	if c.Prefix == "" {
		c.Prefix = "bench"
	}
	c.Clients = max(c.Clients, 1)
	c.Inflight = max(c.Inflight, 1)
	if c.Method == "" {
		c.Method = MethodPing
	}
	switch c.Method {
	case MethodLog, MethodList, MethodPing:
	default:
		return fmt.Errorf("method %q: want %s, %s or %s", c.Method, MethodLog, MethodList, MethodPing)
	}
	if c.MsgSize <= 0 {
		c.MsgSize = 100
	}
	if !c.QoSSet {
		c.QoS = 1
	}
	if c.QoS > 2 {
		return fmt.Errorf("qos %d: want 0, 1 or 2", c.QoS)
	}
	if c.Count <= 0 && c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	c.Streams = max(c.Streams, 1)
	if c.ListLast <= 0 {
		c.ListLast = 100
	}
	if c.Followers > 0 && c.Method != MethodLog {
		return errors.New("followers need --method Log.Log (they follow what it logs)")
	}
	if c.Dashboards > 0 && c.Method != MethodLog {
		return errors.New("dashboards need --method Log.Log (they count what it logs)")
	}
	if c.Idle > 0 && u.Scheme != "tcp" && u.Scheme != "mqtt" {
		return errors.New("idle connections need a tcp:// broker URL")
	}
	return nil
}

// run is the state of one Run.
type run struct {
	cfg      Config
	reqTopic string
	pad      []byte // msg padding

	sent, ok, failed, timeouts, lost, entries atomic.Int64
	stopped                                   atomic.Bool

	errMu  sync.Mutex
	errors map[int]int64

	// Followers: when each logged entry's response arrived, by src+"\x00"+id.
	respMu sync.Mutex
	respAt map[string]time.Time
	logged map[string]int64 // ok Log.Log per src

	callers    []*caller
	followers  []*follower
	dashboards []mqtt.Client
	live       atomic.Int64
}

// Run connects, runs the calls of cfg and returns what it measured. An
// error means the run could not be made (no connection, bad config); calls
// that failed are counted in the Result, see Result.Succeeded.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &run{
		cfg:      cfg,
		reqTopic: cfg.Service + "/rpc",
		errors:   map[int]int64{},
		respAt:   map[string]time.Time{},
		logged:   map[string]int64{},
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
	r.pad = make([]byte, cfg.MsgSize)
	for i := range r.pad {
		r.pad[i] = alphabet[i%len(alphabet)]
	}
	// A random tag starts the padding: a run's Log.Log frames differ from
	// every earlier run's with the same srcs and ids, which a broker's
	// de-duplication window (--dedup-window) would answer from memory
	// without storing anything.
	copy(r.pad, strconv.FormatUint(rand.Uint64(), 36)+" ")
	res := &Result{
		Method: cfg.Method, Broker: cfg.Broker, Clients: cfg.Clients, Inflight: cfg.Inflight,
		QoS: int(cfg.QoS), Errors: map[string]int64{},
	}
	if cfg.Method == MethodLog {
		res.MsgSize = cfg.MsgSize
	}
	defer r.disconnect()

	if cfg.Idle > 0 {
		idle, closeIdle, err := openIdle(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer closeIdle()
		res.Idle = idle
	}
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	for _, f := range r.followers {
		if err := f.sync(ctx); err != nil {
			return nil, err
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithTimeout(runCtx, cfg.Duration)
		defer stop()
	}
	var followers sync.WaitGroup
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	for _, f := range r.followers {
		followers.Add(1)
		go func() {
			defer followers.Done()
			f.loop(followCtx)
		}()
	}

	if cfg.Attack != "" {
		atk, stopAttack, err := startAttack(runCtx, cfg)
		if err != nil {
			return nil, err
		}
		defer func() {
			cancel()
			stopAttack()
			res.Attack = atk
		}()
	}
	cpu0, _ := cpuTime(cfg.BrokerPID)
	start := time.Now()
	var callers sync.WaitGroup
	for _, c := range r.callers {
		callers.Add(1)
		go func() {
			defer callers.Done()
			c.loop(runCtx, start)
		}()
	}
	sweepDone := make(chan struct{})
	go r.sweep(sweepDone)
	progressDone := make(chan struct{})
	go r.progress(start, progressDone)

	callers.Wait()
	// Calls in flight: wait for their answers (the sweeper times them out).
	for r.pending() > 0 && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond) // a poll of a condition, bounded by Timeout through the sweeper
	}
	elapsed := time.Since(start)
	cpu1, cpuErr := cpuTime(cfg.BrokerPID)
	r.stopped.Store(true)
	close(progressDone)
	close(sweepDone)

	// Followers and dashboards: wait until they have what was logged, or
	// nothing new arrives for a second.
	r.settle(ctx, func() (have, want int64) {
		for _, f := range r.followers {
			have += f.seen.Load()
			want += r.loggedTo(f.source)
		}
		return have, want
	})
	stopFollow()
	followers.Wait()
	r.settle(ctx, func() (int64, int64) {
		return r.live.Load(), r.ok.Load() * int64(len(r.dashboards))
	})

	res.Seconds = elapsed.Seconds()
	res.Calls = r.sent.Load()
	res.OK, res.Failed, res.Timeouts, res.Lost = r.ok.Load(), r.failed.Load(), r.timeouts.Load(), r.lost.Load()
	res.Entries = r.entries.Load()
	for code, n := range r.errors {
		res.Errors[strconv.Itoa(code)] = n
	}
	if elapsed > 0 {
		res.Rate = float64(res.OK+res.Failed) / elapsed.Seconds()
	}
	var lat []time.Duration
	for _, c := range r.callers {
		c.mu.Lock()
		lat = append(lat, c.lat...)
		c.mu.Unlock()
	}
	res.Latency = summarize(lat)
	if cfg.BrokerPID > 0 && cpuErr == nil {
		res.BrokerPID = cfg.BrokerPID
		res.CPUSeconds = (cpu1 - cpu0).Seconds()
		if n := res.OK + res.Failed; n > 0 {
			res.CPUPerCall = float64((cpu1 - cpu0).Microseconds()) / float64(n)
		}
	}
	if len(r.followers) > 0 {
		res.Follow = r.followResult()
	}
	if len(r.dashboards) > 0 {
		fo := &FanOutResult{Dashboards: len(r.dashboards), Expected: r.ok.Load() * int64(len(r.dashboards)), Received: r.live.Load()}
		fo.Dropped = max(0, fo.Expected-fo.Received)
		fo.Delivered = float64(res.OK+res.Failed+fo.Received) / elapsed.Seconds()
		res.FanOut = fo
	}
	return res, nil
}

// settle waits until have >= want, or have stops growing for a second, or
// ctx ends.
func (r *run) settle(ctx context.Context, counts func() (have, want int64)) {
	last, since := int64(-1), time.Now()
	for ctx.Err() == nil {
		have, want := counts()
		if have >= want {
			return
		}
		if have != last {
			last, since = have, time.Now()
		} else if time.Since(since) > settlePatience {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a bound
	}
}

func (r *run) connect(ctx context.Context) error {
	type job struct {
		id  string
		set func(mqtt.Client)
		sub string
		qos byte
		h   mqtt.MessageHandler
	}
	var jobs []job
	for i := range r.cfg.Clients {
		c := &caller{r: r, src: fmt.Sprintf("%s-%d", r.cfg.Prefix, i), pending: map[int64]time.Time{}, slots: make(chan struct{}, r.cfg.Inflight)}
		c.logTo = r.cfg.Source
		if c.logTo == "" {
			c.logTo = c.src
		}
		for range r.cfg.Inflight {
			c.slots <- struct{}{}
		}
		c.seq.Store(int64(i) << 40) // ids unique across callers, for readable logs
		r.callers = append(r.callers, c)
		jobs = append(jobs, job{c.src, func(pc mqtt.Client) { c.pc = pc }, c.src + "/rpc", r.cfg.QoS, c.onReply})
	}
	for i := range r.cfg.Followers {
		f := &follower{r: r, src: fmt.Sprintf("%s-f%d", r.cfg.Prefix, i), answers: make(chan followAnswer, 4)}
		f.source = r.callers[i%len(r.callers)].logTo
		r.followers = append(r.followers, f)
		jobs = append(jobs, job{f.src, func(pc mqtt.Client) { f.pc = pc }, f.src + "/rpc", 1, f.onReply})
	}
	dashboards := make([]mqtt.Client, r.cfg.Dashboards)
	for i := range r.cfg.Dashboards {
		jobs = append(jobs, job{fmt.Sprintf("%s-d%d", r.cfg.Prefix, i), func(pc mqtt.Client) { dashboards[i] = pc }, "+/log/#", 0,
			func(mqtt.Client, mqtt.Message) { r.live.Add(1) }})
	}
	// Connect a few at a time: a broker on two cores accepts faster that way.
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pc, err := r.dial(j.id)
			if err != nil {
				errs <- err
				return
			}
			j.set(pc)
			tok := pc.Subscribe(j.sub, j.qos, j.h)
			if !tok.WaitTimeout(r.cfg.Timeout) {
				errs <- fmt.Errorf("%s: subscribe %s: no SUBACK within %v", j.id, j.sub, r.cfg.Timeout)
				return
			}
			if err := tok.Error(); err != nil {
				errs <- fmt.Errorf("%s: subscribe %s: %w", j.id, j.sub, err)
			}
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	r.dashboards = dashboards
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func (r *run) dial(id string) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().
		AddBroker(r.cfg.Broker).
		SetClientID(id).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true). // handlers only count and signal
		SetConnectTimeout(r.cfg.Timeout).
		SetWriteTimeout(r.cfg.Timeout).
		SetKeepAlive(60 * time.Second).
		SetMessageChannelDepth(1024)
	if r.cfg.User != "" {
		opts.SetUsername(r.cfg.User).SetPassword(r.cfg.Password)
	}
	if r.cfg.TLS != nil {
		opts.SetTLSConfig(r.cfg.TLS)
	}
	if u, err := url.Parse(r.cfg.Broker); err == nil {
		if fn, ok := dialBuffered(u, r.cfg.TLS, r.cfg.Timeout); ok {
			opts.SetCustomOpenConnectionFn(fn)
		}
	}
	var c *caller
	for _, cl := range r.callers {
		if cl.src == id {
			c = cl
		}
	}
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		if c != nil {
			c.connLost(err)
		}
	})
	pc := mqtt.NewClient(opts)
	tok := pc.Connect()
	if !tok.WaitTimeout(r.cfg.Timeout + time.Second) {
		return nil, fmt.Errorf("connect %s as %s: no CONNACK within %v", r.cfg.Broker, id, r.cfg.Timeout)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s as %s: %w", r.cfg.Broker, id, err)
	}
	return pc, nil
}

func (r *run) disconnect() {
	var wg sync.WaitGroup
	disc := func(pc mqtt.Client) {
		if pc == nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc.Disconnect(100)
		}()
	}
	for _, c := range r.callers {
		disc(c.pc)
	}
	for _, f := range r.followers {
		disc(f.pc)
	}
	for _, d := range r.dashboards {
		disc(d)
	}
	wg.Wait()
}

// budget takes one call from the Count budget.
func (r *run) budget() bool {
	n := r.sent.Add(1)
	if r.cfg.Count > 0 && n > r.cfg.Count {
		r.sent.Add(-1)
		return false
	}
	return true
}

func (r *run) pending() int {
	n := 0
	for _, c := range r.callers {
		c.mu.Lock()
		n += len(c.pending)
		c.mu.Unlock()
	}
	return n
}

// sweep times out calls unanswered for Timeout.
func (r *run) sweep(done <-chan struct{}) {
	t := time.NewTicker(min(r.cfg.Timeout/4, 250*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			for _, c := range r.callers {
				c.expire(now)
			}
		}
	}
}

func (r *run) progress(start time.Time, done <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			ok, failed := r.ok.Load(), r.failed.Load()
			r.cfg.Progress(Progress{
				Elapsed: now.Sub(start), OK: ok, Failed: failed, Timeouts: r.timeouts.Load(),
				Rate: float64(ok+failed-last) / now.Sub(lastAt).Seconds(),
			})
			last, lastAt = ok+failed, now
		}
	}
}

func (r *run) fail(code int) {
	r.failed.Add(1)
	r.errMu.Lock()
	r.errors[code]++
	r.errMu.Unlock()
}

func (r *run) warnf(format string, args ...any) {
	if r.cfg.Warnf != nil {
		r.cfg.Warnf(format, args...)
	}
}

func (r *run) loggedTo(src string) int64 {
	r.respMu.Lock()
	defer r.respMu.Unlock()
	return r.logged[src]
}

// caller keeps Inflight calls in flight on one connection.
type caller struct {
	r     *run
	src   string // frame src: answers come to <src>/rpc
	logTo string // the source Log.Log writes to and Log.List reads
	pc    mqtt.Client
	seq   atomic.Int64
	slots chan struct{} // one token per call that may be sent
	lost  atomic.Bool

	mu      sync.Mutex
	pending map[int64]time.Time // call id -> when it was sent
	lat     []time.Duration
	buf     []byte
}

func (c *caller) loop(ctx context.Context, start time.Time) {
	var interval time.Duration
	if c.r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(c.r.cfg.Clients) / c.r.cfg.Rate)
	}
	next := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.slots:
		}
		if c.lost.Load() || ctx.Err() != nil || !c.r.budget() {
			return
		}
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				select { // pacing, not waiting for an event
				case <-time.After(d):
				case <-ctx.Done():
					c.r.sent.Add(-1)
					return
				}
			}
		}
		c.send()
	}
}

func (c *caller) send() {
	id := c.seq.Add(1)
	c.mu.Lock()
	c.buf = c.appendFrame(c.buf[:0], id)
	payload := append([]byte(nil), c.buf...) // paho keeps it until PUBACK
	c.pending[id] = time.Now()
	c.mu.Unlock()
	c.pc.Publish(c.r.reqTopic, c.r.cfg.QoS, false, payload)
}

// appendFrame appends the request frame of call id.
func (c *caller) appendFrame(b []byte, id int64) []byte {
	cfg := &c.r.cfg
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"src":`...)
	b = strconv.AppendQuote(b, c.src)
	b = append(b, `,"method":"`...)
	b = append(b, cfg.Method...)
	b = append(b, '"')
	switch cfg.Method {
	case MethodLog:
		b = append(b, `,"args":{"msg":"`...)
		n := len(b)
		b = append(b, c.src...)
		b = append(b, " #"...)
		b = strconv.AppendInt(b, id&(1<<40-1), 10)
		b = append(b, ' ')
		if used := len(b) - n; used < cfg.MsgSize {
			b = append(b, c.r.pad[:cfg.MsgSize-used]...)
		} else {
			b = b[:n+cfg.MsgSize]
		}
		b = append(b, '"')
		if cfg.Source != "" {
			b = append(b, `,"src":`...)
			b = strconv.AppendQuote(b, cfg.Source)
		}
		if cfg.Streams > 1 {
			b = append(b, `,"stream":"s`...)
			b = strconv.AppendInt(b, id%int64(cfg.Streams), 10)
			b = append(b, '"')
		}
		b = append(b, '}')
	case MethodList:
		b = append(b, `,"args":{"src":`...)
		b = strconv.AppendQuote(b, c.logTo)
		if cfg.ListStream != "" {
			b = append(b, `,"stream":`...)
			b = strconv.AppendQuote(b, cfg.ListStream)
		}
		b = append(b, `,"last":`...)
		b = strconv.AppendInt(b, int64(cfg.ListLast), 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

func (c *caller) onReply(_ mqtt.Client, m mqtt.Message) {
	now := time.Now()
	rep, err := scanReply(m.Payload())
	if err != nil {
		return // not an answer to us
	}
	c.mu.Lock()
	sent, ok := c.pending[rep.id]
	if ok {
		delete(c.pending, rep.id)
		c.lat = append(c.lat, now.Sub(sent))
	}
	c.mu.Unlock()
	if !ok {
		return // late (already timed out) or not ours
	}
	r := c.r
	switch {
	case rep.code != 0:
		r.fail(rep.code)
	default:
		r.ok.Add(1)
		switch r.cfg.Method {
		case MethodList:
			r.entries.Add(int64(rep.elems))
		case MethodLog:
			if len(r.followers) > 0 {
				c.logged(rep.result, now)
			}
		}
	}
	c.slots <- struct{}{}
}

// logged notes when the response of a logged entry arrived, for followers.
func (c *caller) logged(result []byte, at time.Time) {
	var res struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(result, &res) != nil || res.ID == "" {
		return
	}
	r := c.r
	r.respMu.Lock()
	r.respAt[c.logTo+"\x00"+res.ID] = at
	r.logged[c.logTo]++
	r.respMu.Unlock()
}

// expire times out calls sent before now-Timeout.
func (c *caller) expire(now time.Time) {
	c.mu.Lock()
	n := 0
	for id, sent := range c.pending {
		if now.Sub(sent) > c.r.cfg.Timeout {
			delete(c.pending, id)
			n++
		}
	}
	c.mu.Unlock()
	c.r.timeouts.Add(int64(n))
	for range n {
		c.slots <- struct{}{}
	}
}

// connLost counts the calls in flight as lost and stops the caller.
func (c *caller) connLost(err error) {
	c.lost.Store(true)
	c.mu.Lock()
	n := len(c.pending)
	clear(c.pending)
	c.mu.Unlock()
	c.r.lost.Add(int64(n))
	for range n {
		c.slots <- struct{}{}
	}
	if !c.r.stopped.Load() {
		c.r.warnf("%s: connection lost: %v", c.src, err)
	}
}

// settlePatience is how long settle waits without progress.
var settlePatience = 2 * time.Second
