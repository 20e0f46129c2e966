package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestRestart checks that entries survive a clean restart, that SIGTERM
// answers waiting follows with [] before exiting 0, and that ids keep
// increasing afterwards.
func TestRestart(t *testing.T) {
	t.Parallel()
	s := start(t)
	c := s.dial(t)
	var ids []string
	for i, stream := range []string{"console", "a", "console", "b", "a"} {
		args := map[string]any{"msg": map[string]any{"i": i}, "stream": stream}
		if i%2 == 0 {
			args["timestamp"] = 1764080000000 + i
		}
		ids = append(ids, c.log(args))
	}
	before := c.listAll(c.src)
	f := s.dial(t)
	wait := f.startFollow(nil, map[string]any{"timeout": 60, "tag": "waiting"})

	s.terminate()
	r := mustAnswer(t, wait, stopTimeout, "the waiting follow at SIGTERM")
	checkShape(t, r, "logbroker", f.src, r.ID, strp("waiting"))
	if string(r.ok(t).Result) != "[]" {
		t.Errorf("waiting follow at shutdown = %s, want []", r.Raw)
	}
	if code := s.wait(stopTimeout); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, s.logs())
	}
	if bad := problems(s.logs()); len(bad) > 0 {
		t.Errorf("errors or warnings logged:\n%s", strings.Join(bad, "\n"))
	}

	s2 := s.restart()
	d := s2.dial(t)
	after := d.listAll(c.src)
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("entries changed across the restart:\nbefore %s\nafter  %s", b1, b2)
	}
	next := d.log(map[string]any{"msg": "after restart", "src": c.src})
	if next <= ids[len(ids)-1] {
		t.Errorf("id after restart %s <= last id before %s", next, ids[len(ids)-1])
	}
	// Delete, restart, and the id sequence still does not go back.
	d.call(map[string]any{"method": "Log.Delete", "args": map[string]any{"src": c.src}}, "").ok(t)
	s3 := s2.restart()
	e := s3.dial(t)
	if es := e.listAll(c.src); len(es) != 3 {
		t.Errorf("after Delete of console and a restart: %d entries, want the 3 of streams a and b", len(es))
	}
	if again := e.log(map[string]any{"msg": "again", "src": c.src}); again <= next {
		t.Errorf("id after Delete and restart %s <= %s", again, next)
	}
}

// pumpResult is what one client of pump saw.
type pumpResult struct {
	c     *client
	sent  int
	acked map[int]string // frame id (= the n in msg) -> entry id
	codes map[int]int    // frame id -> error code
}

// pump makes n clients publish Log.Log calls as fast as their QoS 1 flow
// allows until stop is closed; each msg is {"n": frame id}. It returns once
// every client has stopped publishing.
func pump(t *testing.T, s *server, n int, stop <-chan struct{}) (results []*pumpResult, wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		c := s.dial(t)
		res := &pumpResult{c: c, acked: map[int]string{}, codes: map[int]int{}}
		results = append(results, res)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				frame := fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":{"n":%d},"stream":"s%d"}}`, i, c.src, i, i%3)
				tok := c.pc.Publish("logbroker/rpc", 1, false, frame)
				if !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
					return // the broker is gone
				}
				res.sent = i
			}
		}()
	}
	return results, wg.Wait
}

// collect decodes the responses each pump client received.
func (r *pumpResult) collect(t *testing.T) {
	t.Helper()
	for _, m := range r.c.messages(0) {
		if m.Topic != r.c.src+"/rpc" {
			continue
		}
		resp, ok := decodeResponse(m)
		if !ok {
			t.Errorf("undecodable response: %s", m.Payload)
			continue
		}
		var n int
		if err := json.Unmarshal(resp.ID, &n); err != nil {
			t.Errorf("response id %s is not the sent number", resp.ID)
			continue
		}
		if _, dup := r.acked[n]; dup {
			t.Errorf("%s: two responses to call %d", r.c.id, n)
		}
		if resp.Error != nil {
			r.codes[n] = resp.Error.Code
			continue
		}
		r.acked[n] = resp.logID(t)
	}
}

// pumpResponses is the number of responses the pump clients received.
// waitPumped waits until the pump clients have received at least n
// responses in all, failing the test after 4 × callTimeout.
func waitPumped(t *testing.T, results []*pumpResult, n int) {
	t.Helper()
	deadline := time.Now().Add(4 * callTimeout)
	for pumpResponses(results) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d responses within %v", pumpResponses(results), 4*callTimeout)
		}
		results[0].c.waitMsg(results[0].c.mark(), callTimeout, "a response", func(message) bool { return true })
	}
}

func pumpResponses(results []*pumpResult) int {
	total := 0
	for _, r := range results {
		total += r.c.count(0, r.c.src+"/rpc")
	}
	return total
}

// checkSurvivors lists every pump client's entries on s and checks that
// each acknowledged entry is there exactly once, with its id, that ids
// strictly increase, and that entries are in the order their client
// published them.
func checkSurvivors(t *testing.T, s *server, results []*pumpResult) {
	t.Helper()
	d := s.dial(t)
	for _, r := range results {
		es := d.listAll(r.c.src)
		seen := map[int]string{}
		lastN := 0
		for i, e := range es {
			var msg struct{ N int }
			if err := json.Unmarshal(e.Msg, &msg); err != nil || msg.N == 0 {
				t.Errorf("%s: entry msg %s is not {\"n\": N}", r.c.src, e.Msg)
				continue
			}
			if _, dup := seen[msg.N]; dup {
				t.Errorf("%s: call %d stored twice", r.c.src, msg.N)
			}
			seen[msg.N] = e.ID
			if i > 0 && e.ID <= es[i-1].ID {
				t.Errorf("%s: ids not strictly increasing: %s after %s", r.c.src, e.ID, es[i-1].ID)
			}
			if msg.N <= lastN {
				t.Errorf("%s: call %d stored after call %d: not in publish order", r.c.src, msg.N, lastN)
			}
			lastN = msg.N
			if want := fmt.Sprintf("s%d", msg.N%3); e.Stream != want {
				t.Errorf("%s: call %d in stream %s, want %s", r.c.src, msg.N, e.Stream, want)
			}
		}
		lost := 0
		for n, id := range r.acked {
			got, ok := seen[n]
			switch {
			case !ok:
				lost++
				if lost <= 5 {
					t.Errorf("%s: acknowledged call %d (entry %s) lost", r.c.src, n, id)
				}
			case got != id:
				t.Errorf("%s: call %d acknowledged as %s, stored as %s", r.c.src, n, id, got)
			}
		}
		if lost > 0 {
			t.Errorf("%s: %d of %d acknowledged entries lost", r.c.src, lost, len(r.acked))
		}
		t.Logf("%s: published %d, acknowledged %d, stored %d", r.c.src, r.sent, len(r.acked), len(es))
	}
}

// TestKill9 kills the broker with SIGKILL in the middle of a stream of
// Log.Log calls from several clients: every entry whose response arrived
// is there after a restart, once, in order.
func TestKill9(t *testing.T) {
	t.Parallel()
	s := start(t)
	stop := make(chan struct{})
	results, wait := pump(t, s, 4, stop)
	// Kill once enough calls were answered, while they keep coming.
	waitPumped(t, results, 400)
	s.kill9()
	close(stop)
	wait()
	acked := 0
	for _, r := range results {
		r.collect(t)
		acked += len(r.acked)
		for n, code := range r.codes {
			t.Errorf("%s: call %d failed with %d", r.c.src, n, code)
		}
	}
	if acked < 400 {
		t.Fatalf("%d acknowledged entries, want at least 400", acked)
	}
	s2 := s.restart()
	checkSurvivors(t, s2, results)
}

// TestShutdownUnderLoad sends SIGTERM in the middle of a stream of Log.Log
// calls: the broker exits 0, every answer is a success or 503, and every
// acknowledged entry is there after a restart.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	s := start(t)
	stop := make(chan struct{})
	results, wait := pump(t, s, 3, stop)
	waitPumped(t, results, 200)
	s.terminate()
	if code := s.wait(stopTimeout); code != 0 {
		t.Errorf("exit code %d after SIGTERM under load, want 0", code)
	}
	close(stop)
	wait()
	refused := 0
	for _, r := range results {
		r.collect(t)
		refused += len(r.codes)
		for n, code := range r.codes {
			if code != 503 {
				t.Errorf("%s: call %d answered %d during shutdown, want success or 503", r.c.src, n, code)
			}
		}
	}
	t.Logf("%d calls answered 503", refused)
	if bad := problems(s.logs()); len(bad) > 0 {
		t.Errorf("errors or warnings logged:\n%s", strings.Join(bad, "\n"))
	}
	checkSurvivors(t, s.restart(), results)
}

// TestShutdown503 provokes 503: a call that arrives once shutdown has begun.
// A waiting follow answered [] proves the service is shutting down; a
// client that holds a QoS 1 message unacknowledged keeps the broker
// draining (up to 2 s) before it closes connections, and in that window a
// new call is answered 503.
func TestShutdown503(t *testing.T) {
	t.Parallel()
	s := start(t)
	hold := newClientOpts(t, "tcp://"+s.MQTT, func(o *mqtt.ClientOptions) { o.SetAutoAckDisabled(true) })
	hold.subscribe("hold/topic", 1)
	p := s.dial(t)
	p.publish("hold/topic", 1, false, []byte("not acknowledged"))
	hold.waitMsg(0, callTimeout, "the held message", func(m message) bool { return m.Topic == "hold/topic" })

	c := s.dial(t)
	wait := c.startFollow(nil, map[string]any{"timeout": 60})
	s.terminate()
	if r := mustAnswer(t, wait, stopTimeout, "the waiting follow at SIGTERM"); string(r.ok(t).Result) != "[]" {
		t.Errorf("waiting follow at shutdown = %s, want []", r.Raw)
	}
	for _, f := range []map[string]any{
		{"method": "Log.Log", "args": map[string]any{"msg": "too late"}, "tag": "late"},
		{"method": "RPC.Ping"},
	} {
		r := c.call(f, "")
		checkShape(t, r, "logbroker", c.src, r.ID, r.Tag)
		if e := r.fails(t, 503); !strings.Contains(e.Message, "shutting down") {
			t.Errorf("503 message %q does not say the broker is shutting down", e.Message)
		}
	}
	if code := s.wait(stopTimeout); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if es := s.restart().dial(t).list(map[string]any{"src": c.src}); len(es) != 0 {
		t.Errorf("a call answered 503 stored entries: %+v", es)
	}
}
