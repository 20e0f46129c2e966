package integration

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// followFrame is a Log.List frame with follow: true and args.
func followFrame(args map[string]any, extra map[string]any) map[string]any {
	a := map[string]any{"follow": true}
	for k, v := range args {
		a[k] = v
	}
	f := map[string]any{"method": "Log.List", "args": a}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

// startFollow sends a follow from c and returns once it is waiting: a
// later call of the same connection has been answered (calls of one
// connection run in order, and a waiting follow does not hold them up).
func (c *client) startFollow(args, extra map[string]any) func(time.Duration) (response, bool) {
	c.t.Helper()
	wait := c.send(followFrame(args, extra), "")
	c.call(map[string]any{"method": "RPC.Ping"}, "").ok(c.t)
	return wait
}

// mustAnswer waits for a follow's response.
func mustAnswer(t testing.TB, wait func(time.Duration) (response, bool), d time.Duration, what string) response {
	t.Helper()
	r, ok := wait(d)
	if !ok {
		t.Fatalf("%s: no response within %v", what, d)
	}
	return r
}

func TestFollow(t *testing.T) {
	t.Parallel()
	s := start(t)

	t.Run("WokenByAnotherClient", func(t *testing.T) {
		t.Parallel()
		c, d := s.dial(t), s.dial(t)
		wait := c.startFollow(nil, map[string]any{"timeout": 20, "tag": "f"})
		if _, ok := wait(0); ok {
			t.Fatalf("follow answered with nothing logged")
		}
		id := d.log(map[string]any{"msg": "wake up", "src": c.src})
		r := mustAnswer(t, wait, callTimeout, "follow after another client's Log")
		checkShape(t, r, "logbroker", c.src, r.ID, strp("f"))
		es := r.entries(t)
		if len(es) != 1 || es[0].ID != id || string(es[0].Msg) != `"wake up"` {
			t.Errorf("follow woken with %s, want entry %s", r.Raw, id)
		}
	})

	t.Run("NotWokenByOtherStream", func(t *testing.T) {
		t.Parallel()
		c, d := s.dial(t), s.dial(t)
		wait := c.startFollow(map[string]any{"stream": "wanted"}, map[string]any{"timeout": 20})
		d.log(map[string]any{"msg": "other stream", "src": c.src, "stream": "other"})
		d.log(map[string]any{"msg": "other source", "src": d.src, "stream": "wanted"})
		id := d.log(map[string]any{"msg": "wanted", "src": c.src, "stream": "wanted"})
		es := mustAnswer(t, wait, callTimeout, "follow of stream wanted").entries(t)
		if len(es) != 1 || es[0].ID != id {
			t.Errorf("follow of stream wanted got %+v, want only entry %s", es, id)
		}
	})

	t.Run("AnswersAtOnceWhenEntriesExist", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		id := c.log(map[string]any{"msg": 1})
		r := c.call(followFrame(nil, map[string]any{"timeout": 20}), "")
		if es := r.entries(t); len(es) != 1 || es[0].ID != id {
			t.Errorf("follow with an entry there: %s", r.Raw)
		}
	})

	t.Run("AfterPosition", func(t *testing.T) {
		t.Parallel()
		c, d := s.dial(t), s.dial(t)
		first := c.log(map[string]any{"msg": 1})
		wait := c.startFollow(map[string]any{"after": first}, map[string]any{"timeout": 20})
		second := d.log(map[string]any{"msg": 2, "src": c.src})
		es := mustAnswer(t, wait, callTimeout, "follow after first").entries(t)
		if len(es) != 1 || es[0].ID != second {
			t.Errorf("follow after %s got %+v, want only %s", first, es, second)
		}
	})

	t.Run("LastZeroTailsFromNow", func(t *testing.T) {
		t.Parallel()
		c, d := s.dial(t), s.dial(t)
		c.log(map[string]any{"msg": "old 1"})
		c.log(map[string]any{"msg": "old 2"})
		wait := c.startFollow(map[string]any{"last": 0}, map[string]any{"timeout": 20})
		if r, ok := wait(0); ok {
			t.Fatalf("last:0 answered at once: %s", r.Raw)
		}
		id := d.log(map[string]any{"msg": "new", "src": c.src})
		es := mustAnswer(t, wait, callTimeout, "last:0 follow").entries(t)
		if len(es) != 1 || es[0].ID != id {
			t.Errorf("last:0 follow got %+v, want only the new entry %s", es, id)
		}
	})

	t.Run("LimitOnWake", func(t *testing.T) {
		t.Parallel()
		c, d := s.dial(t), s.dial(t)
		wait := c.startFollow(map[string]any{"limit": 1}, map[string]any{"timeout": 20})
		id := d.log(map[string]any{"msg": 1, "src": c.src})
		if es := mustAnswer(t, wait, callTimeout, "follow").entries(t); len(es) != 1 || es[0].ID != id {
			t.Errorf("follow got %+v, want %s", es, id)
		}
	})

	t.Run("FrameTimeout", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		began := time.Now()
		r := c.callWithin(followFrame(nil, map[string]any{"timeout": 0.5, "tag": "to"}), "", callTimeout)
		checkShape(t, r, "logbroker", c.src, r.ID, strp("to"))
		if string(r.ok(t).Result) != "[]" {
			t.Errorf("timed-out follow = %s, want result []", r.Raw)
		}
		if waited := time.Since(began); waited < 400*time.Millisecond {
			t.Errorf("follow with timeout 0.5 answered after %v", waited)
		}
	})

	t.Run("Deadline", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		deadline := float64(time.Now().Add(500*time.Millisecond).UnixMilli()) / 1000
		began := time.Now()
		r := c.callWithin(followFrame(nil, map[string]any{"deadline": deadline, "timeout": 20}), "", callTimeout)
		if string(r.ok(t).Result) != "[]" {
			t.Errorf("follow past its deadline = %s, want []", r.Raw)
		}
		if waited := time.Since(began); waited < 300*time.Millisecond {
			t.Errorf("follow with a deadline 0.5 s ahead answered after %v", waited)
		}
		// A deadline in the past answers at once.
		r = c.call(followFrame(nil, map[string]any{"deadline": 1}), "")
		if string(r.ok(t).Result) != "[]" {
			t.Errorf("follow with a past deadline = %s, want []", r.Raw)
		}
	})

	t.Run("DoesNotHoldUpLaterCalls", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		wait := c.startFollow(nil, map[string]any{"timeout": 20})
		id := c.log(map[string]any{"msg": "mine"})
		// The follow is woken by the same connection's Log.
		if es := mustAnswer(t, wait, callTimeout, "follow").entries(t); len(es) != 1 || es[0].ID != id {
			t.Errorf("follow got %+v, want %s", es, id)
		}
	})

}

// TestFollowDisconnect checks that a waiting follow is released when its
// client disconnects: nothing is answered on its reply topic afterwards, no
// error is logged, and a later follow of the same source works.
func TestFollowDisconnect(t *testing.T) {
	t.Parallel()
	s := start(t) // alone on this server: the test counts clients
	watch := s.dial(t)
	watch.subscribe("$SYS/broker/clients/connected", 0)
	c, d := s.dial(t), s.dial(t)
	watch.subscribe(c.src+"/rpc", 1)
	watch.subscribe(c.src+"/log/#", 1)
	c.startFollow(nil, map[string]any{"timeout": 20})

	// mochi counts a client as gone only after the disconnect hooks ran.
	_, three := watch.waitMsg(0, 3*callTimeout, "3 clients connected", func(m message) bool {
		return m.Topic == "$SYS/broker/clients/connected" && string(m.Payload) == "3"
	})
	c.pc.Disconnect(250)
	watch.waitMsg(three+1, 3*callTimeout, "2 clients connected", func(m message) bool {
		return m.Topic == "$SYS/broker/clients/connected" && string(m.Payload) == "2"
	})

	e := s.dial(t)
	waitE := e.startFollow(map[string]any{"src": c.src}, map[string]any{"timeout": 20})
	from := watch.mark()
	id1 := d.log(map[string]any{"msg": 1, "src": c.src})
	id2 := d.log(map[string]any{"msg": 2, "src": c.src})
	// Commit groups are delivered in order, and each wakes its followers
	// before the next group's live entries go out: once the second live
	// entry is seen, a follower of c not released would have been
	// answered on c's reply topic.
	watch.waitMsg(from, callTimeout, "the second live entry", func(m message) bool {
		var en entry
		return strings.HasPrefix(m.Topic, c.src+"/log/") && json.Unmarshal(m.Payload, &en) == nil && en.ID == id2
	})
	watch.noMessage(from, c.src+"/rpc", nil)
	es := mustAnswer(t, waitE, callTimeout, "follow from a new connection").entries(t)
	if len(es) == 0 || es[0].ID != id1 {
		t.Errorf("later follow got %+v, want %s first", es, id1)
	}
	s.stop()
	watch.noMessage(from, c.src+"/rpc", nil)
	if bad := problems(s.logs()); len(bad) > 0 {
		t.Errorf("errors or warnings logged:\n%s", strings.Join(bad, "\n"))
	}
}

// connNoise matches mochi's warnings about a connection that closed under
// it (a client gone, or the broker closing connections at shutdown).
var connNoise = regexp.MustCompile(`use of closed network connection|connection not open|error=EOF|connection reset by peer|broken pipe`)

// problems returns the log lines at level WARN or ERROR, except mochi's
// notes about closed connections.
func problems(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "level=WARN") && !strings.Contains(l, "level=ERROR") {
			continue
		}
		if strings.Contains(l, "component=mqtt") && connNoise.MatchString(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestFollowBounds checks --follow-timeout (the wait of a follow whose
// frame sets none) and --follow-max (the longest any follow waits).
func TestFollowBounds(t *testing.T) {
	t.Parallel()
	s := start(t, "--follow-timeout", "700ms", "--follow-max", "1500ms")
	c := s.dial(t)
	cases := []struct {
		name    string
		extra   map[string]any
		atLeast time.Duration
	}{
		{"DefaultTimeout", nil, 600 * time.Millisecond},
		{"FrameTimeoutOverMax", map[string]any{"timeout": 3600}, 1400 * time.Millisecond},
		{"FarDeadlineOverMax", map[string]any{"deadline": 1e12}, 1400 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			r := c.callWithin(followFrame(nil, tc.extra), "", 4*callTimeout)
			if string(r.ok(t).Result) != "[]" {
				t.Errorf("follow = %s, want []", r.Raw)
			}
			if waited := time.Since(began); waited < tc.atLeast {
				t.Errorf("answered after %v, want at least %v", waited, tc.atLeast)
			}
		})
	}
}
