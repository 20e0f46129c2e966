package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// waitFor is how long a test waits for something that should happen: long,
// so a busy machine under -race does not fail it.
const waitFor = 15 * time.Second

// recorder is a Publisher that keeps every message, for tests to wait on.
type recorder struct {
	mu      sync.Mutex
	msgs    []Message
	changed chan struct{} // closed and replaced on every Publish
}

var _ Publisher = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

// Publish records m.
func (r *recorder) Publish(m Message) error {
	m.Payload = bytes.Clone(m.Payload)
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return nil
}

// all returns a copy of what was published so far.
func (r *recorder) all() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// on returns the messages published on topic so far.
func (r *recorder) on(topic string) []Message {
	var out []Message
	for _, m := range r.all() {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// wait returns the first message that match accepts, waiting up to waitFor.
func (r *recorder) wait(t testing.TB, what string, match func(Message) bool) Message {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, m := range r.msgs {
			if match(m) {
				r.mu.Unlock()
				return m
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v; published: %s", what, waitFor, r)
		}
	}
}

func (r *recorder) String() string {
	var b strings.Builder
	for _, m := range r.all() {
		fmt.Fprintf(&b, "\n  %s q%d %s", m.Topic, m.QoS, m.Payload)
	}
	return b.String()
}

// reply is a decoded response frame.
type reply struct {
	V      int             `json:"v"`
	ID     json.RawMessage `json:"id"`
	Src    string          `json:"src"`
	Dst    string          `json:"dst"`
	Tag    *string         `json:"tag"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	topic string
	raw   []byte
}

// code is the error code of the reply, 0 for a result.
func (r reply) code() int {
	if r.Error == nil {
		return 0
	}
	return r.Error.Code
}

// entry is a decoded entry object (PROTOCOL §4), msg kept raw.
type entry struct {
	ID        string          `json:"id"`
	Src       string          `json:"src"`
	Stream    string          `json:"stream"`
	Timestamp int64           `json:"timestamp"`
	Level     *int            `json:"level"` // nil: absent
	Msg       json.RawMessage `json:"msg"`
}

// entries decodes the result of a Log.List.
func (r reply) entries(t testing.TB) []entry {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("want entries, got error %d %s", r.Error.Code, r.Error.Message)
	}
	var es []entry
	d := json.NewDecoder(bytes.NewReader(r.Result))
	d.DisallowUnknownFields()
	if err := d.Decode(&es); err != nil || es == nil {
		t.Fatalf("result %s is not an array of entries: %v", r.Result, err)
	}
	return es
}

// callIDs is where the ids env.call hands out start, above those tests
// write into frames themselves.
const callIDs = 1 << 40

// env is a Service over a real Pebble store in memory.
type env struct {
	t     testing.TB
	store *storage.Store
	pub   *recorder
	svc   *Service
	ids   int // ids handed out by call
}

// newEnv starts a service over a fresh store. Cleanup shuts both down and
// checks that no goroutine was left behind.
func newEnv(t testing.TB, cfg Config) *env {
	return newEnvFS(t, cfg, vfs.NewMem())
}

func newEnvFS(t testing.TB, cfg Config, fs vfs.FS) *env {
	t.Helper()
	return newEnvPub(t, cfg, fs, nil)
}

// newEnvPub is newEnvFS with the service publishing through wrap(recorder),
// when wrap is not nil.
func newEnvPub(t testing.TB, cfg Config, fs vfs.FS, wrap func(*recorder) Publisher) *env {
	t.Helper()
	before := runtime.NumGoroutine()
	store, err := storage.Open("db", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, pub: newRecorder()}
	var pub Publisher = e.pub
	if wrap != nil {
		pub = wrap(e.pub)
	}
	e.svc = New(store, pub, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := e.svc.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := store.Close(); err != nil && !t.Failed() {
			t.Logf("store.Close: %v", err)
		}
		checkGoroutines(t, before)
	})
	return e
}

// checkGoroutines waits until no more than n goroutines run.
func checkGoroutines(t testing.TB, n int) {
	t.Helper()
	if !await.Within(waitFor, func() bool { return runtime.NumGoroutine() <= n }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
	}
}

// submit queues frame on c as a call to the service id.
func submit(c *Conn, frame string) {
	c.Submit(Call{Payload: []byte(frame), Service: DefaultID})
}

// replyTo waits for the response to dev's call with the given raw id.
func (e *env) replyTo(src, id string) reply {
	e.t.Helper()
	m := e.pub.wait(e.t, "reply to "+src+" id "+id, func(m Message) bool {
		return m.Topic == src+"/rpc" && bytes.Contains(m.Payload, []byte(`"id":`+id+`,`))
	})
	return decodeReply(e.t, m)
}

func decodeReply(t testing.TB, m Message) reply {
	t.Helper()
	var r reply
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("reply %s: %v", m.Payload, err)
	}
	if m.QoS != 1 {
		t.Errorf("reply on %s at QoS %d, want 1", m.Topic, m.QoS)
	}
	r.topic, r.raw = m.Topic, m.Payload
	return r
}

// call sends method(args) for src over c with a fresh id and returns the
// response. args is a JSON object or "".
func (e *env) call(c *Conn, src, method, args string) reply {
	e.t.Helper()
	e.ids++
	id := fmt.Sprint(callIDs + e.ids)
	frame := `{"id":` + id + `,"src":` + quote(src) + `,"method":` + quote(method)
	if args != "" {
		frame += `,"args":` + args
	}
	submit(c, frame+"}")
	return e.replyTo(src, id)
}

// mustCall is call that fails the test on an error response.
func (e *env) mustCall(c *Conn, src, method, args string) reply {
	e.t.Helper()
	r := e.call(c, src, method, args)
	if r.Error != nil {
		e.t.Fatalf("%s %s: error %d %s", method, args, r.Error.Code, r.Error.Message)
	}
	return r
}

// log appends msg to src's stream through c and returns the entry id.
func (e *env) log(c *Conn, src, stream, msg string) string {
	e.t.Helper()
	r := e.mustCall(c, src, "Log.Log", `{"stream":`+quote(stream)+`,"msg":`+msg+`}`)
	var res struct{ ID string }
	if err := json.Unmarshal(r.Result, &res); err != nil || res.ID == "" {
		e.t.Fatalf("Log.Log result %s", r.Result)
	}
	return res.ID
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// storageQuery selects every entry of src, for reading the store directly.
func storageQuery(src string) storage.Query {
	return storage.Query{Src: src, Last: -1, Limit: 1000}
}
