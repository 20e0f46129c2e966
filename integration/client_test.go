package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// clientSeq makes client ids (and default srcs) unique within the process.
var clientSeq atomic.Int64

// message is one MQTT message a client received.
type message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
}

// client is a paho MQTT 3.1.1 client that records every message it
// receives, in order. Its id doubles as its default src, and it is
// subscribed to <src>/rpc at QoS 1 from the start.
type client struct {
	t   testing.TB
	id  string
	src string
	pc  mqtt.Client

	mu      sync.Mutex
	msgs    []message
	changed chan struct{} // closed and replaced on every message
	subs    map[string]bool
	lost    error
	lostCh  chan struct{}

	nextID atomic.Int64
}

// dial connects a paho client to s over TCP.
func (s *server) dial(t testing.TB) *client {
	t.Helper()
	return connect(t, "tcp://"+s.MQTT)
}

// connect connects a paho client to broker (tcp://host:port or
// ws://host:port/path) and subscribes it to <src>/rpc.
func connect(t testing.TB, broker string) *client {
	t.Helper()
	c := newClient(t, broker)
	c.subscribe(c.src+"/rpc", 1)
	return c
}

// newClient connects without subscribing to anything.
func newClient(t testing.TB, broker string) *client {
	t.Helper()
	return newClientOpts(t, broker, nil)
}

// newClientOpts is newClient with a chance to change paho's options.
func newClientOpts(t testing.TB, broker string, adjust func(*mqtt.ClientOptions)) *client {
	t.Helper()
	id := fmt.Sprintf("it-%d", clientSeq.Add(1))
	c, err := dialClient(t, broker, id, id, callTimeout, adjust)
	if err != nil {
		t.Fatalf("connect %s: %v", broker, err)
	}
	return c
}

// dialClient connects a recording client with client id id and default src
// src; adjust (if not nil) may change paho's options. It returns the
// CONNACK's error, or an error when none came within wait.
func dialClient(t testing.TB, broker, id, src string, wait time.Duration, adjust func(*mqtt.ClientOptions)) (*client, error) {
	t.Helper()
	c := &client{
		t:       t,
		id:      id,
		src:     src,
		changed: make(chan struct{}),
		subs:    map[string]bool{},
		lostCh:  make(chan struct{}),
	}
	opts := mqtt.NewClientOptions().
		AddBroker(broker).
		SetClientID(c.id).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true). // the handler only appends: order is what tests check
		SetConnectTimeout(callTimeout).
		SetWriteTimeout(callTimeout).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { c.record(m) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.lost == nil {
				c.lost = err
				close(c.lostCh)
			}
		})
	if adjust != nil {
		adjust(opts)
	}
	c.pc = mqtt.NewClient(opts)
	tok := c.pc.Connect()
	if !tok.WaitTimeout(wait) {
		return nil, fmt.Errorf("no CONNACK within %v", wait)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.pc.Disconnect(50) })
	return c, nil
}

func (c *client) record(m mqtt.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, message{
		Topic:    m.Topic(),
		Payload:  append([]byte(nil), m.Payload()...),
		QoS:      m.Qos(),
		Retained: m.Retained(),
	})
	close(c.changed)
	c.changed = make(chan struct{})
}

// subscribe subscribes to filter and waits for the SUBACK.
func (c *client) subscribe(filter string, qos byte) {
	c.t.Helper()
	tok := c.pc.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(callTimeout) {
		c.t.Fatalf("%s: subscribe %q: no SUBACK within %v", c.id, filter, callTimeout)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("%s: subscribe %q: %v", c.id, filter, err)
	}
	c.mu.Lock()
	c.subs[filter] = true
	c.mu.Unlock()
}

func (c *client) subscribed(filter string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[filter]
}

// publish publishes payload and waits for the QoS flow to complete.
func (c *client) publish(topic string, qos byte, retained bool, payload []byte) {
	c.t.Helper()
	tok := c.pc.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(callTimeout) {
		c.t.Fatalf("%s: publish to %q (qos %d): not acknowledged within %v", c.id, topic, qos, callTimeout)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("%s: publish to %q: %v", c.id, topic, err)
	}
}

// mark is the index of the next message the client will record.
func (c *client) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// messages returns a copy of every message recorded from index from on.
func (c *client) messages(from int) []message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]message(nil), c.msgs[min(from, len(c.msgs)):]...)
}

// waitMsg waits until a message recorded at index >= from satisfies match,
// and returns it with its index. It fails the test after d.
func (c *client) waitMsg(from int, d time.Duration, what string, match func(message) bool) (message, int) {
	c.t.Helper()
	m, i, ok := c.tryWaitMsg(from, d, match)
	if !ok {
		c.t.Fatalf("%s: no %s within %v; received %s", c.id, what, d, c.describe(from))
	}
	return m, i
}

// tryWaitMsg is waitMsg that reports failure instead of failing.
func (c *client) tryWaitMsg(from int, d time.Duration, match func(message) bool) (message, int, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i := from; i < len(c.msgs); i++ {
			if match(c.msgs[i]) {
				m := c.msgs[i]
				c.mu.Unlock()
				return m, i, true
			}
		}
		from = len(c.msgs)
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return message{}, 0, false
		}
	}
}

// describe lists the messages from index from on, for failure messages.
func (c *client) describe(from int) string {
	ms := c.messages(from)
	if len(ms) == 0 {
		return "nothing"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages:", len(ms))
	for i, m := range ms {
		if i == 20 {
			fmt.Fprintf(&b, "\n  ...")
			break
		}
		fmt.Fprintf(&b, "\n  %s (qos %d, retained %v): %s", m.Topic, m.QoS, m.Retained, abbrev(m.Payload, 300))
	}
	return b.String()
}

func abbrev(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("%s... (%d bytes)", b[:n], len(b))
}

// rpcError is the error object of a response.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// response is a decoded response frame (PROTOCOL §3).
type response struct {
	V      int             `json:"v"`
	ID     json.RawMessage `json:"id"`
	Src    string          `json:"src"`
	Dst    string          `json:"dst"`
	Tag    *string         `json:"tag"`
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
	Key    json.RawMessage `json:"key"`

	Topic string `json:"-"` // where it arrived
	Raw   string `json:"-"`
}

// entry is an entry object (PROTOCOL §4).
type entry struct {
	ID        string          `json:"id"`
	Src       string          `json:"src"`
	Stream    string          `json:"stream"`
	Timestamp int64           `json:"timestamp"`
	Level     *int            `json:"level"` // nil: no level
	Msg       json.RawMessage `json:"msg"`
}

func decodeResponse(m message) (response, bool) {
	var r response
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return r, false
	}
	r.Topic, r.Raw = m.Topic, string(m.Payload)
	return r, true
}

// ok fails the test unless r is a success.
func (r response) ok(t testing.TB) response {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("want success, got error %d %q: %s", r.Error.Code, r.Error.Message, r.Raw)
	}
	return r
}

// fails fails the test unless r is an error with code, and no result.
func (r response) fails(t testing.TB, code int) *rpcError {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("want error %d, got success: %s", code, r.Raw)
	}
	if r.Error.Code != code {
		t.Fatalf("want error %d, got %d %q: %s", code, r.Error.Code, r.Error.Message, r.Raw)
	}
	if r.Error.Message == "" {
		t.Errorf("error %d without a message: %s", code, r.Raw)
	}
	if r.Result != nil {
		t.Errorf("an error response carries a result: %s", r.Raw)
	}
	return r.Error
}

// entries decodes a successful Log.List result.
func (r response) entries(t testing.TB) []entry {
	t.Helper()
	r.ok(t)
	var es []entry
	if err := json.Unmarshal(r.Result, &es); err != nil || r.Result == nil {
		t.Fatalf("result is not an array of entries (%v): %s", err, r.Raw)
	}
	return es
}

// logID decodes the id of a successful Log.Log result.
func (r response) logID(t testing.TB) string {
	t.Helper()
	r.ok(t)
	var res struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(r.Result, &res); err != nil || res.ID == nil || *res.ID == "" {
		t.Fatalf(`want result {"id": "<entry id>"}, got: %s`, r.Raw)
	}
	return *res.ID
}

// frameOf builds a frame: a map gets the client's src and a fresh integer
// id unless it has them (a nil "id" value removes the id); raw bytes or a
// string are sent as they are.
func (c *client) frameOf(frame any, wantID bool) (payload []byte, src string, id json.RawMessage) {
	c.t.Helper()
	switch f := frame.(type) {
	case map[string]any:
		m := make(map[string]any, len(f)+2)
		for k, v := range f {
			m[k] = v
		}
		if _, ok := m["src"]; !ok {
			m["src"] = c.src
		}
		if v, ok := m["id"]; ok && v == nil {
			delete(m, "id")
		} else if !ok && wantID {
			m["id"] = c.nextID.Add(1)
		}
		b, err := json.Marshal(m)
		if err != nil {
			c.t.Fatalf("marshal frame: %v", err)
		}
		payload = b
	case []byte:
		payload = f
	case string:
		payload = []byte(f)
	default:
		c.t.Fatalf("frame of type %T", frame)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err == nil {
		_ = json.Unmarshal(fields["src"], &src)
		id = compact(fields["id"])
	}
	return payload, src, id
}

func compact(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// call publishes frame (map, []byte or string; see frameOf) at QoS 1 on
// topic ("" is logbroker/rpc) and returns the response on <src>/rpc whose
// id matches. It subscribes to <src>/rpc at QoS 1 first if need be.
func (c *client) call(frame any, topic string) response {
	c.t.Helper()
	return c.callWithin(frame, topic, callTimeout)
}

// callWithin is call with another deadline (for follows).
func (c *client) callWithin(frame any, topic string, d time.Duration) response {
	c.t.Helper()
	r, ok := c.tryCall(frame, topic, d)
	if !ok {
		payload, src, _ := c.frameOf(frame, true)
		c.t.Fatalf("%s: no response on %s/rpc within %v to %s; received %s", c.id, src, d, abbrev(payload, 300), c.describe(0))
	}
	return r
}

// tryCall is call that reports a missing response instead of failing.
func (c *client) tryCall(frame any, topic string, d time.Duration) (response, bool) {
	c.t.Helper()
	wait := c.send(frame, topic)
	return wait(d)
}

// send publishes a call and returns a function that waits for its response,
// so that a test can send several calls before waiting.
func (c *client) send(frame any, topic string) func(time.Duration) (response, bool) {
	c.t.Helper()
	payload, src, id := c.frameOf(frame, true)
	if src == "" || id == nil {
		c.t.Fatalf("call: frame %s has no src or no id", abbrev(payload, 200))
	}
	if topic == "" {
		topic = "logbroker/rpc"
	}
	replyTopic := src + "/rpc"
	if !c.subscribed(replyTopic) {
		c.subscribe(replyTopic, 1)
	}
	from := c.mark()
	c.publish(topic, 1, false, payload)
	return func(d time.Duration) (response, bool) {
		c.t.Helper()
		m, _, ok := c.tryWaitMsg(from, d, func(m message) bool {
			if m.Topic != replyTopic {
				return false
			}
			r, ok := decodeResponse(m)
			return ok && bytes.Equal(compact(r.ID), id)
		})
		if !ok {
			return response{}, false
		}
		r, _ := decodeResponse(m)
		return r, true
	}
}

// notify publishes frame without an id (a notification) at QoS 1.
func (c *client) notify(frame map[string]any, topic string) {
	c.t.Helper()
	f := map[string]any{"id": nil}
	for k, v := range frame {
		f[k] = v
	}
	payload, _, _ := c.frameOf(f, false)
	if topic == "" {
		topic = "logbroker/rpc"
	}
	c.publish(topic, 1, false, payload)
}

// log calls Log.Log with args and returns the entry id.
func (c *client) log(args map[string]any) string {
	c.t.Helper()
	return c.call(map[string]any{"method": "Log.Log", "args": args}, "").logID(c.t)
}

// list calls Log.List with args and returns the entries.
func (c *client) list(args map[string]any) []entry {
	c.t.Helper()
	return c.call(map[string]any{"method": "Log.List", "args": args}, "").entries(c.t)
}

// listAll pages through every entry of src (after = last id returned).
func (c *client) listAll(src string) []entry {
	c.t.Helper()
	var all []entry
	args := map[string]any{"src": src, "limit": 1000}
	for {
		page := c.list(args)
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
		args["after"] = page[len(page)-1].ID
	}
}
