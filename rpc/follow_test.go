package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// waitReply waits for the reply with raw id on src/rpc.
func (e *env) waitReply(t testing.TB, src, id string) reply {
	t.Helper()
	m := e.pub.wait(t, "reply "+id, func(m Message) bool {
		return m.Topic == src+"/rpc" && bytes.Contains(m.Payload, []byte(`"id":`+id+`,`))
	})
	return decodeReply(t, m)
}

// answered reports whether a reply with raw id was published on src/rpc.
func (e *env) answered(src, id string) bool {
	for _, m := range e.pub.on(src + "/rpc") {
		if bytes.Contains(m.Payload, []byte(`"id":`+id+`,`)) {
			return true
		}
	}
	return false
}

// waiting waits until n follows wait.
func (e *env) waiting(t testing.TB, n int64) {
	t.Helper()
	await.Until(t, waitFor, fmt.Sprintf("%d follows waiting", n), func() bool { return e.svc.Stats().Waiting == n })
}

func TestFollow(t *testing.T) {
	t.Run("WokenByOtherConnMatchingStreamOnly", func(t *testing.T) {
		e := newEnv(t, Config{})
		a, b := e.svc.Open("a"), e.svc.Open("b")
		submit(a, `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true,"stream":"s1"},"timeout":60}`)
		e.waiting(t, 1)
		e.log(b, "dev1", "s2", `"other stream"`)
		e.log(b, "dev2", "s1", `"other source"`)
		want := e.log(b, "dev1", "s1", `"match"`)
		r := e.waitReply(t, "dev1", `"f"`)
		if es := r.entries(t); len(es) != 1 || es[0].ID != want || string(es[0].Msg) != `"match"` {
			t.Errorf("follow answered %s, want only entry %s", r.Result, want)
		}
		e.waiting(t, 0)
	})

	t.Run("AnswersAtOnceWhenEntriesExist", func(t *testing.T) {
		e := newEnv(t, Config{})
		c := e.svc.Open("c")
		first := e.log(c, "dev1", "console", "1")
		e.log(c, "dev1", "console", "2")
		e.log(c, "dev1", "console", "3")
		r := e.call(c, "dev1", "Log.List", `{"follow":true,"after":"`+first+`","limit":1}`)
		if es := r.entries(t); len(es) != 1 || string(es[0].Msg) != "2" {
			t.Errorf("follow answered %s, want entry 2", r.Result)
		}
		r = e.call(c, "dev1", "Log.List", `{"follow":true,"last":2}`)
		if es := r.entries(t); len(es) != 2 || string(es[0].Msg) != "2" || string(es[1].Msg) != "3" {
			t.Errorf("follow last 2 answered %s, want entries 2 and 3", r.Result)
		}
	})

	t.Run("LastZeroWaitsForNextEntry", func(t *testing.T) {
		e := newEnv(t, Config{})
		c := e.svc.Open("c")
		e.log(c, "dev1", "console", `"old"`)
		submit(c, `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`)
		e.waiting(t, 1)
		if e.answered("dev1", `"f"`) {
			t.Fatal("follow with last 0 answered with old entries")
		}
		next := e.log(c, "dev1", "console", `"new"`)
		if es := e.waitReply(t, "dev1", `"f"`).entries(t); len(es) != 1 || es[0].ID != next {
			t.Errorf("follow answered %+v, want only %s", es, next)
		}
	})

	t.Run("LastZeroAfterDelete", func(t *testing.T) {
		// Head counts deleted entries: the next entry, not a deleted one.
		e := newEnv(t, Config{})
		c := e.svc.Open("c")
		e.log(c, "dev1", "console", `"gone"`)
		e.mustCall(c, "dev1", "Log.Delete", "")
		submit(c, `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`)
		e.waiting(t, 1)
		next := e.log(c, "dev1", "console", `"new"`)
		if es := e.waitReply(t, "dev1", `"f"`).entries(t); len(es) != 1 || es[0].ID != next {
			t.Errorf("follow answered %+v, want only %s", es, next)
		}
	})

	t.Run("TimesOutEmpty", func(t *testing.T) {
		for _, tt := range []struct {
			name  string
			cfg   Config
			frame string
		}{
			{"FrameTimeout", Config{}, `"timeout":0.05`},
			{"FrameTimeoutZero", Config{}, `"timeout":0`},
			{"DeadlinePast", Config{}, `"deadline":1`},
			{"DeadlineSoon", Config{}, fmt.Sprintf(`"deadline":%.3f`, float64(time.Now().Add(50*time.Millisecond).UnixMilli())/1000)},
			{"EarlierOfBoth", Config{}, `"timeout":3600,"deadline":1`},
			{"DefaultTimeout", Config{FollowTimeout: 50 * time.Millisecond}, ``},
			{"ClampedToFollowMax", Config{FollowMax: 50 * time.Millisecond}, `"timeout":3600`},
			{"HugeTimeoutClamped", Config{FollowMax: 50 * time.Millisecond}, `"timeout":1e400`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, tt.cfg)
				c := e.svc.Open("c")
				frame := `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true}`
				if tt.frame != "" {
					frame += "," + tt.frame
				}
				submit(c, frame+"}")
				r := e.waitReply(t, "dev1", `"f"`)
				if r.Error != nil || string(r.Result) != "[]" {
					t.Errorf("follow reply %s, want []", r.raw)
				}
				e.waiting(t, 0)
			})
		}
	})

	t.Run("MaxFollows", func(t *testing.T) {
		e := newEnv(t, Config{MaxFollows: 2})
		a, b := e.svc.Open("a"), e.svc.Open("b")
		follow := `{"id":%d,"src":"dev1","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`
		submit(a, fmt.Sprintf(follow, 1))
		submit(a, fmt.Sprintf(follow, 2))
		submit(a, fmt.Sprintf(follow, 3))
		r := e.waitReply(t, "dev1", "3")
		if r.code() != 429 || !strings.Contains(r.Error.Message, "too many waiting follow calls") {
			t.Errorf("third follow: %s, want 429", r.raw)
		}
		e.waiting(t, 2)
		// The limit is per connection.
		submit(b, fmt.Sprintf(follow, 4))
		e.waiting(t, 3)
		// An answered follow frees its slot.
		e.log(b, "dev1", "console", "1")
		for _, id := range []string{"1", "2", "4"} {
			if es := e.waitReply(t, "dev1", id).entries(t); len(es) != 1 {
				t.Errorf("follow %s answered %+v", id, es)
			}
		}
		submit(a, fmt.Sprintf(follow, 5))
		submit(a, fmt.Sprintf(follow, 6))
		e.waiting(t, 2)
		if e.answered("dev1", "5") || e.answered("dev1", "6") {
			t.Error("follows refused after the earlier ones were answered")
		}
	})

	t.Run("CloseDropsWaitingFollows", func(t *testing.T) {
		e := newEnv(t, Config{})
		a, b := e.svc.Open("a"), e.svc.Open("b")
		submit(a, `{"id":"gone1","src":"dev1","method":"Log.List","args":{"follow":true},"timeout":60}`)
		submit(a, `{"id":"gone2","src":"dev1","method":"Log.List","args":{"follow":true},"timeout":0.05}`)
		e.waiting(t, 2)
		a.Close()
		e.waiting(t, 0)
		a.Close() // idempotent
		submit(a, `{"id":"late","src":"dev1","method":"RPC.Ping"}`)
		// A follow on b that starts now and times out after a's short one
		// would have: once it is answered, a's timer has had its chance.
		submit(b, `{"id":"sentinel","src":"dev1","method":"Log.List","args":{"follow":true,"stream":"x"},"timeout":0.1}`)
		e.waitReply(t, "dev1", `"sentinel"`)
		// An entry that would have woken them.
		e.log(b, "dev1", "console", "1")
		e.log(b, "dev1", "console", "2") // its live publish comes after the first's wake
		e.pub.wait(t, "live publish", func(m Message) bool {
			return m.Topic == "dev1/log/console" && bytes.Contains(m.Payload, []byte(`"msg":2}`))
		})
		for _, id := range []string{`"gone1"`, `"gone2"`, `"late"`} {
			if e.answered("dev1", id) {
				t.Errorf("call %s of a closed connection was answered", id)
			}
		}
	})

	t.Run("QueuedFollowAfterClose", func(t *testing.T) {
		// A follow still queued when its connection closes runs, finds it
		// gone, and neither waits nor answers.
		e := newEnv(t, Config{})
		a := e.svc.Open("a")
		submit(a, `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true},"timeout":60}`)
		a.Close()
		e.waiting(t, 0)
		if e.answered("dev1", `"f"`) {
			t.Error("follow of a closed connection answered")
		}
	})
}

// TestShutdown checks PROTOCOL §5: the broker answers every waiting call
// ([] or 503) before it exits, and new calls get 503.
func TestShutdown(t *testing.T) {
	t.Run("AnswersFollowsAndRefusesNewCalls", func(t *testing.T) {
		e := newEnv(t, Config{})
		a := e.svc.Open("a")
		submit(a, `{"id":"f1","src":"dev1","method":"Log.List","args":{"follow":true},"timeout":60}`)
		submit(a, `{"id":"f2","src":"dev2","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`)
		e.waiting(t, 2)
		if err := e.svc.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		for _, src := range []string{"dev1", "dev2"} {
			if r := e.waitReply(t, src, `"f`+src[3:]+`"`); string(r.Result) != "[]" {
				t.Errorf("follow of %s answered %s, want []", src, r.raw)
			}
		}
		if got := e.svc.Stats().Waiting; got != 0 {
			t.Errorf("Waiting = %d after Shutdown", got)
		}
		// A connection Shutdown closed, and one opened after it.
		b := e.svc.Open("b")
		for i, c := range []*Conn{a, b} {
			for _, method := range []string{"Log.Log", "Log.List", "RPC.Ping"} {
				r := e.call(c, "dev1", method, `{"msg":1,"follow":true}`)
				if r.code() != 503 || r.Error.Message != unavailableReason {
					t.Errorf("conn %d: %s after Shutdown: %s, want 503", i, method, r.raw)
				}
			}
			// Its own errors still come first.
			if r := e.call(c, "dev1", "Log.Nope", ""); r.code() != 404 {
				t.Errorf("conn %d: unknown method after Shutdown: %s, want 404", i, r.raw)
			}
			submit(c, `{"src":"dev1","method":"RPC.Ping"}`) // a notification: nothing
		}
		b.Close()
		if err := e.svc.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
		if n := len(e.pub.on("dev1/rpc")); n != 1+8 {
			t.Errorf("%d replies on dev1/rpc, want 9:%s", n, e.pub)
		}
		es, err := e.store.List(context.Background(), storageQuery("dev1"))
		if err != nil || len(es) != 0 {
			t.Errorf("store has %v (%v): a call ran after Shutdown", es, err)
		}
	})

	t.Run("EveryQueuedCallAnsweredOnce", func(t *testing.T) {
		e := newEnv(t, Config{MaxFollows: 1000})
		conns := []*Conn{e.svc.Open("a"), e.svc.Open("b"), e.svc.Open("c")}
		const n = 300
		for i := range n {
			method := []string{"Log.Log", "Log.List", "RPC.Ping"}[i%3]
			submit(conns[i%len(conns)], fmt.Sprintf(`{"id":%d,"src":"dev1","method":%q,"args":{"msg":%d,"follow":true,"last":0},"timeout":60}`, i+1, method, i))
		}
		if err := e.svc.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		// Shutdown returns once every queued call has run and its response
		// is sent: no waiting here.
		counts := map[string]int{}
		for _, m := range e.pub.on("dev1/rpc") {
			r := decodeReply(t, m)
			counts[string(r.ID)]++
			if r.Error != nil && r.Error.Code != 503 {
				t.Errorf("reply %s: want a result or 503", r.raw)
			}
		}
		for i := range n {
			if c := counts[fmt.Sprint(i+1)]; c != 1 {
				t.Errorf("call %d answered %d times, want once", i+1, c)
			}
		}
	})

	t.Run("PendingAppendsOutliveShutdown", func(t *testing.T) {
		// The disk stalls on the WAL: Log.Log calls wait for their fsync
		// past Shutdown's deadline. Their answers come later, without a
		// panic or a deadlock, and nothing is left running.
		var stall atomic.Bool
		var stalled atomic.Int32
		release := make(chan struct{})
		e := newEnvFS(t, Config{}, stallFS(&stall, &stalled, release))
		var once sync.Once
		unstall := func() { once.Do(func() { close(release) }) }
		t.Cleanup(unstall) // runs before env's cleanup (LIFO)
		c := e.svc.Open("c")
		e.log(c, "dev1", "console", `"before"`)
		stall.Store(true)
		submit(c, `{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":"pending"}}`)
		submit(c, `{"id":2,"src":"dev1","method":"Log.List","args":{"follow":true},"timeout":60}`)
		await.Until(t, waitFor, "WAL write stalled", func() bool { return stalled.Load() > 0 })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := e.svc.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with a stalled disk: %v, want its deadline", err)
		}
		if e.answered("dev1", "1") {
			t.Fatal("Log.Log answered before its entry was durable")
		}
		// After Shutdown gave up, new calls are still refused at once.
		if r := e.call(c, "dev1", "RPC.Ping", ""); r.code() != 503 {
			t.Errorf("Ping after Shutdown: %s, want 503", r.raw)
		}
		unstall()
		r := e.waitReply(t, "dev1", "1")
		if r.Error != nil {
			t.Errorf("pending Log.Log answered %s, want its id", r.raw)
		}
		// The List queued behind it ran (it had to wait for the Log.Log)
		// and was refused: Shutdown had begun.
		if r := e.waitReply(t, "dev1", "2"); r.code() != 503 {
			t.Errorf("follow queued behind the stall: %s, want 503", r.raw)
		}
	})

	t.Run("ConcurrentWithTraffic", func(t *testing.T) {
		// Shutdown while connections submit, follow and close: every
		// answered call is answered once, and nothing is left running
		// (env's cleanup checks goroutines).
		e := newEnv(t, Config{MaxFollows: 4})
		var wg sync.WaitGroup
		var sent atomic.Int64
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := e.svc.Open(fmt.Sprint(g))
				for i := range 200 {
					id := g*1000 + i + 1
					switch i % 4 {
					case 0:
						submit(c, fmt.Sprintf(`{"id":%d,"src":"dev%d","method":"Log.Log","args":{"msg":%d}}`, id, g, i))
					case 1:
						submit(c, fmt.Sprintf(`{"id":%d,"src":"dev%d","method":"Log.List","args":{"follow":true,"last":0},"timeout":0.01}`, id, (g+1)%4))
					case 2:
						submit(c, fmt.Sprintf(`{"id":%d,"src":"dev%d","method":"RPC.Ping"}`, id, g))
					case 3:
						submit(c, fmt.Sprintf(`{"src":"dev%d","method":"Log.Log","args":{"msg":%d}}`, g, i))
					}
					sent.Add(1)
				}
				if g%2 == 0 {
					c.Close()
				}
			}()
		}
		await.Until(t, waitFor, "traffic under way", func() bool { return sent.Load() > 100 })
		if err := e.svc.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		wg.Wait()
		counts := map[string]int{}
		for _, m := range e.pub.all() {
			if strings.HasSuffix(m.Topic, "/rpc") {
				counts[string(decodeReply(t, m).ID)]++
			}
		}
		for id, n := range counts {
			if n != 1 {
				t.Errorf("call %s answered %d times", id, n)
			}
		}
	})
}

// TestFollowRace runs many follows with short timeouts against a stream of
// entries and closing connections: each follow is answered at most once (on
// a closed connection) or exactly once, and none is left waiting.
func TestFollowRace(t *testing.T) {
	e := newEnv(t, Config{MaxFollows: 1000})
	writer := e.svc.Open("writer")
	const conns, per = 4, 50
	var wg sync.WaitGroup
	cs := make([]*Conn, conns)
	for g := range conns {
		cs[g] = e.svc.Open(fmt.Sprint(g))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range per {
				submit(cs[g], fmt.Sprintf(`{"id":%d,"src":"dev1","method":"Log.List","args":{"follow":true,"last":0},"timeout":%.3f}`,
					g*1000+i+1, rng.Float64()*0.02))
			}
		}()
	}
	for i := range 100 {
		submit(writer, fmt.Sprintf(`{"src":"dev1","method":"Log.Log","args":{"msg":%d}}`, i))
	}
	wg.Wait()
	cs[0].Close() // its follows: answered or dropped, never both
	e.mustCall(writer, "dev1", "Log.Log", `{"msg":"last"}`)
	for g := 1; g < conns; g++ {
		for i := range per {
			e.waitReply(t, "dev1", fmt.Sprint(g*1000+i+1))
		}
	}
	e.waiting(t, 0)
	counts := map[string]int{}
	for _, m := range e.pub.on("dev1/rpc") {
		counts[string(decodeReply(t, m).ID)]++
	}
	for id, n := range counts {
		if n != 1 {
			t.Errorf("follow %s answered %d times", id, n)
		}
	}
}

// stallFS returns a file system whose WAL writes block while stall is set,
// until release is closed; stalled counts the blocked writes.
func stallFS(stall *atomic.Bool, stalled *atomic.Int32, release <-chan struct{}) vfs.FS {
	return errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if stall.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			stalled.Add(1)
			<-release
		}
		return nil
	}))
}

// holdPub is a Publisher that holds the publish of one reply until release
// is closed, as a slow broker would.
type holdPub struct {
	*recorder
	hold    []byte        // held: the payload contains it
	held    chan struct{} // closed when the held publish began
	release chan struct{}
	once    sync.Once
}

func (h *holdPub) Publish(m Message) error {
	if bytes.Contains(m.Payload, h.hold) {
		h.once.Do(func() { close(h.held) })
		<-h.release
	}
	return h.recorder.Publish(m)
}

// TestShutdownFullQueue: a connection's worker is stuck (here publishing a
// reply), its queue is full, and its reader waits in Submit. Shutdown must
// still return when its context ends, and the waiting Submit must return
// too, its call answered 503.
func TestShutdownFullQueue(t *testing.T) {
	h := &holdPub{hold: []byte(`"id":1,`), held: make(chan struct{}), release: make(chan struct{})}
	e := newEnvPub(t, Config{QueueLen: 1}, vfs.NewMem(), func(r *recorder) Publisher { h.recorder = r; return h })
	var once sync.Once
	unhold := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(unhold)
	c := e.svc.Open("c")
	submit(c, `{"id":1,"src":"dev1","method":"RPC.Ping"}`)
	<-h.held                                               // the worker is stuck in id 1
	submit(c, `{"id":2,"src":"dev1","method":"RPC.Ping"}`) // fills the queue
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		submit(c, `{"id":3,"src":"dev1","method":"RPC.Ping"}`) // waits: the queue is full
	}()
	// Submit holds the connection's lock while it waits.
	await.Until(t, waitFor, "Submit waiting", func() bool {
		if c.mu.TryLock() {
			c.mu.Unlock()
			return false
		}
		return true
	})
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		shut <- e.svc.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want its deadline exceeded", err)
		}
	case <-time.After(waitFor):
		unhold()
		t.Fatal("Shutdown did not return when its context ended")
	}
	select {
	case <-submitted:
	case <-time.After(waitFor):
		unhold()
		t.Fatal("Submit still waiting after Shutdown")
	}
	if r := e.waitReply(t, "dev1", "3"); r.code() != 503 {
		t.Errorf("call waiting in Submit at Shutdown: %s, want 503", r.raw)
	}
	unhold()
	for id, code := range map[string]int{"1": 0, "2": 503} {
		if r := e.waitReply(t, "dev1", id); r.code() != code {
			t.Errorf("call %s: %s, want code %d", id, r.raw, code)
		}
	}
}

// TestShutdownKeepsLivePublishes: the store tells its subscribers of a
// group after the group's done callbacks, so an answered Log.Log may still
// be on its way to the live topic when Shutdown runs. Shutdown must not cut
// it off: every durable entry is published on <src>/log/<stream>.
func TestShutdownKeepsLivePublishes(t *testing.T) {
	e := newEnv(t, Config{})
	// A subscriber ahead of the service's holds the store's notifier after
	// the done callbacks of the held group, widening the window.
	hold, release := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool
	cancel := e.store.Subscribe(func(es []storage.Entry) {
		if holding.Load() && string(es[len(es)-1].Msg) == `"last"` {
			close(hold)
			<-release
		}
	})
	defer cancel()
	// The store calls subscribers in the order they subscribed: make the
	// service's come after the test's.
	e.svc.unsub()
	e.svc.unsub = e.store.Subscribe(e.svc.onCommit)

	c := e.svc.Open("c")
	e.log(c, "dev1", "console", `"first"`)
	holding.Store(true)
	e.log(c, "dev1", "console", `"last"`) // answered: durable
	<-hold
	shut := make(chan error, 1)
	go func() { shut <- e.svc.Shutdown(context.Background()) }()
	select {
	case err := <-shut: // Shutdown did not wait for the live publish
		close(release)
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(200 * time.Millisecond): // it waits, as it should
		close(release)
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.Close(); err != nil { // waits for every subscriber call
		t.Fatal(err)
	}
	if got := e.pub.on("dev1/log/console"); len(got) != 2 {
		t.Errorf("%d live publishes, want 2 (every durable entry):%s", len(got), e.pub)
	}
}

// TestFollowHoldsNoGoroutine checks PROTOCOL §5: a waiting follow costs no
// goroutine; Shutdown answers each.
func TestFollowHoldsNoGoroutine(t *testing.T) {
	const n = 500
	e := newEnv(t, Config{MaxFollows: n})
	c := e.svc.Open("c")
	e.mustCall(c, "dev1", "RPC.Ping", "") // the connection's worker is up
	base := runtime.NumGoroutine()
	for i := range n {
		submit(c, fmt.Sprintf(`{"id":%d,"src":"dev%d","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`, i+1, i%7))
	}
	e.waiting(t, n)
	if got := runtime.NumGoroutine(); got > base+10 {
		t.Errorf("%d goroutines with %d follows waiting, %d before", got, n, base)
	}
	if err := e.svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, m := range e.pub.all() {
		if strings.HasSuffix(m.Topic, "/rpc") && string(decodeReply(t, m).Result) == "[]" {
			answered++
		}
	}
	if answered != n {
		t.Errorf("Shutdown answered %d follows with [], want %d", answered, n)
	}
}
