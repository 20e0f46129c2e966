package hooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/logbroker/logbroker/broker"
	"github.com/logbroker/logbroker/hooks"
	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// wait is the generous bound of every wait here: -race on two busy cores.
const wait = 10 * time.Second

// node is the log service wired in process as `logbroker serve` wires it
// in open mode: store, service, hooks and broker on loopback port 0.
type node struct {
	store  *storage.Store
	svc    *rpc.Service
	broker *broker.Broker
	addr   string
	closed bool
}

func startNode(t testing.TB, cfg rpc.Config) *node {
	t.Helper()
	return startNodeWith(t, broker.Config{}, cfg)
}

// startNodeWith is startNode with broker settings (its MQTTAddr is set).
func startNodeWith(t testing.TB, bcfg broker.Config, cfg rpc.Config) *node {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bcfg.MQTTAddr = "127.0.0.1:0"
	b := broker.New(bcfg)
	n := &node{store: st, broker: b, svc: rpc.New(st, hooks.Sender{P: b}, cfg)}
	if err := b.AddHook(new(hooks.Open), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.AddHook(hooks.NewRPC(n.svc, nil), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	n.addr = "tcp://" + b.MQTTAddr()
	t.Cleanup(func() { n.close(t) })
	return n
}

// close stops n as serve does: service, broker, store. The broker must
// close within the wait: it disconnects every client first.
func (n *node) close(t testing.TB) {
	if n.closed {
		return
	}
	n.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = n.svc.Shutdown(ctx)
	closed := make(chan struct{})
	go func() {
		_ = n.broker.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(wait):
		buf := make([]byte, 1<<20)
		t.Errorf("broker.Close did not return within %v:\n%s", wait, buf[:runtime.Stack(buf, true)])
		return // the store stays open: the broker may still use it
	}
	_ = n.store.Close()
}

// pclient is a paho client that hands every message it gets to a channel
// per topic it subscribed.
type pclient struct {
	t  testing.TB
	pc mqtt.Client

	mu   sync.Mutex
	msgs map[string][][]byte // topic -> payloads, in arrival order
	cond chan struct{}       // closed and replaced on every message
}

func dialOpts(t testing.TB, n *node, id string, clean bool) *pclient {
	t.Helper()
	c := &pclient{t: t, msgs: map[string][][]byte{}, cond: make(chan struct{})}
	opts := mqtt.NewClientOptions().
		AddBroker(n.addr).
		SetClientID(id).
		SetCleanSession(clean).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetConnectTimeout(wait).
		SetKeepAlive(60 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			c.mu.Lock()
			c.msgs[m.Topic()] = append(c.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
			close(c.cond)
			c.cond = make(chan struct{})
			c.mu.Unlock()
		})
	c.pc = mqtt.NewClient(opts)
	if tok := c.pc.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

func (c *pclient) subscribe(filter string) {
	c.t.Helper()
	if tok := c.pc.Subscribe(filter, 1, nil); !tok.WaitTimeout(wait) || tok.Error() != nil {
		c.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

func (c *pclient) publish(payload string) {
	c.t.Helper()
	if tok := c.pc.Publish("logbroker/rpc", 1, false, payload); !tok.WaitTimeout(wait) || tok.Error() != nil {
		c.t.Fatalf("publish: %v", tok.Error())
	}
}

// reply is a response frame.
type reply struct {
	ID     json.RawMessage `json:"id"`
	Dst    string          `json:"dst"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code int `json:"code"`
	} `json:"error"`
}

// replies decodes what arrived on topic.
func (c *pclient) replies(topic string) []reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []reply
	for _, p := range c.msgs[topic] {
		var r reply
		if err := json.Unmarshal(p, &r); err != nil {
			c.t.Errorf("undecodable message on %s: %s", topic, p)
			continue
		}
		out = append(out, r)
	}
	return out
}

// waitReply waits for the reply with id on topic.
func (c *pclient) waitReply(topic, id string) reply {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		cond := c.cond // taken first: a message after it closes it
		c.mu.Unlock()
		for _, r := range c.replies(topic) {
			if string(r.ID) == id {
				return r
			}
		}
		select {
		case <-cond:
		case <-deadline:
			c.t.Fatalf("no reply %s on %s within %v", id, topic, wait)
		}
	}
}

// TestNoLeaks connects, follows and disconnects thousands of times: the
// goroutines and the heap return to their baseline, and no follow is left
// waiting.
func TestNoLeaks(t *testing.T) {
	cycles := 2000
	if testing.Short() {
		cycles = 200
	}
	n := startNode(t, rpc.Config{})
	var seq atomic.Int64
	// cycle connects a client that subscribes to its replies, leaves a
	// follow waiting (and every tenth a Log.Log), and disconnects.
	cycle := func() error {
		i := seq.Add(1)
		id := fmt.Sprintf("leak-%d", i)
		got := make(chan struct{}, 1)
		opts := mqtt.NewClientOptions().AddBroker(n.addr).SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(wait)
		pc := mqtt.NewClient(opts)
		if tok := pc.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
			return fmt.Errorf("%s: connect: %v", id, tok.Error())
		}
		defer pc.Disconnect(0)
		tok := pc.Subscribe(id+"/rpc", 1, func(_ mqtt.Client, m mqtt.Message) {
			if strings.Contains(string(m.Payload()), `"id":3,`) {
				got <- struct{}{}
			}
		})
		if !tok.WaitTimeout(wait) || tok.Error() != nil {
			return fmt.Errorf("%s: subscribe: %v", id, tok.Error())
		}
		frames := []string{
			fmt.Sprintf(`{"id":2,"src":%q,"method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`, id),
			// Calls of one connection run in order: once the ping is
			// answered, the follow is waiting.
			fmt.Sprintf(`{"id":3,"src":%q,"method":"RPC.Ping"}`, id),
		}
		if i%10 == 0 {
			frames = append([]string{fmt.Sprintf(`{"id":1,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, id, i)}, frames...)
		}
		for _, f := range frames {
			if tok := pc.Publish("logbroker/rpc", 1, false, f); !tok.WaitTimeout(wait) || tok.Error() != nil {
				return fmt.Errorf("%s: publish: %v", id, tok.Error())
			}
		}
		select {
		case <-got:
			return nil
		case <-time.After(wait):
			return fmt.Errorf("%s: no answer to RPC.Ping within %v", id, wait)
		}
	}
	// Warm up: the first cycles start what stays (timers, pools, caches).
	for range 20 {
		if err := cycle(); err != nil {
			t.Fatal(err)
		}
	}
	baseG, baseHeap := settle(t, n)
	t.Logf("baseline: %d goroutines, heap %d KiB", baseG, baseHeap>>10)

	const workers = 4
	var wg sync.WaitGroup
	began := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles / workers {
				if err := cycle(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d connect/follow/disconnect cycles in %v", cycles, time.Since(began).Round(time.Millisecond))
	await.Until(t, wait, "every follow released", func() bool { return n.svc.Stats().Waiting == 0 })
	await.Until(t, wait, "every client gone", func() bool { return n.broker.Clients() == 0 })
	var g int
	if !await.Within(wait, func() bool { g = runtime.NumGoroutine(); return g <= baseG }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after %d cycles, baseline %d:\n%s", g, cycles, baseG, buf[:runtime.Stack(buf, true)])
	}
	_, heap := settle(t, n)
	t.Logf("after: %d goroutines, heap %d KiB (%+d KiB)", g, heap>>10, (int64(heap)-int64(baseHeap))>>10)
	// A leak of one client's state per cycle (mochi keeps 8 KiB of write
	// queue alone) would be tens of MiB by now.
	if limit := baseHeap + 16<<20; heap > limit {
		t.Errorf("heap %d KiB after %d cycles, over baseline %d KiB + 16 MiB", heap>>10, cycles, baseHeap>>10)
	}
}

// settle waits for no client and no waiting follow, then returns the
// goroutine count and the heap in use after a garbage collection.
func settle(t *testing.T, n *node) (int, uint64) {
	t.Helper()
	await.Until(t, wait, "clients gone", func() bool { return n.broker.Clients() == 0 && n.svc.Stats().Waiting == 0 })
	// Exited clients' goroutines wind down: wait until the count holds
	// still for a while.
	g, still := runtime.NumGoroutine(), 0
	deadline := time.Now().Add(wait)
	for still < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if now := runtime.NumGoroutine(); now != g {
			g, still = now, 0
		} else {
			still++
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return g, ms.HeapAlloc
}

// TestSessionTakeover: a client reconnects with the same client id (mochi
// ends the old connection: session takeover) while its Log.Log calls and a
// follow are pending. Another client does the same beside it, with its own
// src. Each gets only its own responses, each call is stored once, and the
// old connection's follow is dropped (a clean end) or answered to its own
// src. With a persistent session, the responses still owed are delivered to
// the new connection.
func TestSessionTakeover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"CleanSession", true}, {"PersistentSession", false}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, rpc.Config{})
			const calls = 200
			sides := []*takeoverSide{
				{id: "tk-" + tc.name + "-a", src: "src-a"},
				{id: "tk-" + tc.name + "-b", src: "src-b"},
			}
			// Both old connections start a follow (of a stream nobody logs
			// to yet) and queue their calls without waiting for answers.
			for _, s := range sides {
				s.old = dialOpts(t, n, s.id, tc.clean)
				s.old.subscribe(s.src + "/rpc")
				s.old.publish(fmt.Sprintf(`{"id":"follow","src":%q,"method":"Log.List","args":{"stream":"watch","follow":true,"last":0},"timeout":60}`, s.src))
				var toks []mqtt.Token
				for i := 1; i <= calls; i++ {
					toks = append(toks, s.old.pc.Publish("logbroker/rpc", 1, false,
						fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, i, s.src, i)))
				}
				for _, tok := range toks {
					if !tok.WaitTimeout(wait) || tok.Error() != nil {
						t.Fatalf("%s: publish: %v", s.id, tok.Error())
					}
				}
			}
			// Take both over at once while answers are on their way.
			var wg sync.WaitGroup
			for _, s := range sides {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.new = dialOpts(t, n, s.id, tc.clean)
				}()
			}
			wg.Wait()
			for _, s := range sides {
				s.new.subscribe(s.src + "/rpc")
			}
			// Wake any follow still registered, then wait until none is.
			waker := dialOpts(t, n, "tk-"+tc.name+"-waker", true)
			waker.subscribe("tk-waker/rpc")
			for _, s := range sides {
				waker.publish(fmt.Sprintf(`{"id":1,"src":"tk-waker","method":"Log.Log","args":{"src":%q,"stream":"watch","msg":"wake"}}`, s.src))
			}
			await.Until(t, wait, "no follow waiting", func() bool { return n.svc.Stats().Waiting == 0 })
			for _, s := range sides {
				// The new connection is served, and its calls run after
				// everything the old one queued.
				// The old connection's queued calls still run: every one
				// it published is stored, once.
				if cl, ok := n.broker.Server().Clients.Get(s.id); !ok || cl.Closed() {
					t.Errorf("%s: the new connection is not registered with the broker (found %v): it would receive nothing", s.id, ok)
				}
				var stored map[string]int
				for try := 0; ; try++ {
					stored = s.new.listMsgs(t, s.src, fmt.Sprintf(`"list-%d"`, try))
					if len(stored) >= calls || try == 100 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				for i := 1; i <= calls; i++ {
					if got := stored[fmt.Sprint(i)]; got != 1 {
						t.Errorf("%s: call %d stored %d times, want once", s.src, i, got)
					}
				}

				// Responses to the old connection's last calls may still be
				// on their way: they are sent after the entries are listable.
				var answered map[string]string // call id -> result
				got := 0
				deadline := time.Now().Add(2 * time.Second)
				for {
					answered = s.answers(t)
					got = 0
					for i := 1; i <= calls; i++ {
						if _, ok := answered[fmt.Sprint(i)]; ok {
							got++
						}
					}
					if got == calls || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if res, ok := answered[`"follow"`]; ok && !strings.Contains(res, `"src":"`+s.src+`"`) {
					t.Errorf("%s: the old follow was answered with %s, not its own source's entry", s.id, res)
				}
				_, followed := answered[`"follow"`]
				t.Logf("%s: %d of %d Log.Log responses arrived (old or new connection); old follow answered: %v", s.id, got, calls, followed)
				// A persistent session gets every response still owed to
				// it (its outbox is held while mochi moves the
				// session: broker/session.go).
				if !tc.clean && got != calls {
					t.Errorf("%s: persistent session: %d of %d responses arrived, want every one", s.id, got, calls)
				}
			}
		})
	}
}

// takeoverSide is one client id of TestSessionTakeover: its src, its old
// connection and the one that took it over.
type takeoverSide struct {
	id, src  string
	old, new *pclient
}

// answers checks that the old and new connections of s received only their
// own responses, and returns them by call id.
func (s *takeoverSide) answers(t *testing.T) map[string]string {
	t.Helper()
	answered := map[string]string{}
	for _, c := range []*pclient{s.old, s.new} {
		c.mu.Lock()
		for topic := range c.msgs {
			if topic != s.src+"/rpc" {
				t.Errorf("%s: got messages on %s, not its own reply topic", s.id, topic)
			}
		}
		c.mu.Unlock()
		for _, r := range c.replies(s.src + "/rpc") {
			if r.Dst != s.src {
				t.Errorf("%s: a response to %s reached it: %+v", s.id, r.Dst, r)
			}
			id := string(r.ID)
			if prev, dup := answered[id]; dup && prev != string(r.Result) {
				t.Errorf("%s: call %s answered twice, differently: %s and %s", s.id, id, prev, r.Result)
			}
			answered[id] = string(r.Result)
		}
	}
	return answered
}

// TestTakeoverKeepsClient takes a session over many times: the new
// connection must stay registered with the broker (mochi's old connection,
// ending concurrently, must not remove it), so it still receives messages,
// and the broker still closes promptly.
func TestTakeoverKeepsClient(t *testing.T) {
	n := startNode(t, rpc.Config{})
	for i := range 200 {
		id := fmt.Sprintf("keep-%d", i)
		old := dialOpts(t, n, id, true)
		nw := dialOpts(t, n, id, true)
		await.Until(t, wait, "old connection ended", func() bool { return !old.pc.IsConnectionOpen() })
		cl, ok := n.broker.Server().Clients.Get(id)
		if !ok || cl.Closed() {
			t.Fatalf("cycle %d: after the takeover the broker has no open client %s (found %v)", i, id, ok)
		}
		nw.pc.Disconnect(0)
	}
}

// listMsgs lists src's entries (up to 1000) with call id callID and counts
// them by msg.
func (c *pclient) listMsgs(t *testing.T, src, callID string) map[string]int {
	t.Helper()
	c.publish(fmt.Sprintf(`{"id":%s,"src":%q,"method":"Log.List","args":{"limit":1000}}`, callID, src))
	r := c.waitReply(src+"/rpc", callID)
	var es []struct {
		Msg json.RawMessage `json:"msg"`
	}
	if r.Error != nil || json.Unmarshal(r.Result, &es) != nil {
		t.Fatalf("%s: Log.List: %+v", src, r)
	}
	stored := map[string]int{}
	for _, e := range es {
		stored[string(e.Msg)]++
	}
	return stored
}
