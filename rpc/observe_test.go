package rpc

import (
	"sync"
	"testing"
	"time"

	"github.com/logbroker/logbroker/integration/await"
)

// observations collects what Config.Observe is told.
type observations struct {
	mu  sync.Mutex
	got []observation
}

type observation struct {
	method string
	code   int
	d      time.Duration
}

func (o *observations) observe(method string, code int, d time.Duration) {
	o.mu.Lock()
	o.got = append(o.got, observation{method, code, d})
	o.mu.Unlock()
}

func (o *observations) all() []observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observation(nil), o.got...)
}

func TestService_Observe(t *testing.T) {
	cases := []struct {
		name   string
		frame  func(e *env, c *Conn) // makes exactly one call
		method string
		code   int
	}{
		{"Log", func(e *env, c *Conn) { e.log(c, "dev1", "console", `"boot ok"`) }, "Log.Log", 0},
		{"List", func(e *env, c *Conn) { e.mustCall(c, "dev1", "Log.List", `{}`) }, "Log.List", 0},
		{"BadArgs", func(e *env, c *Conn) { e.call(c, "dev1", "Log.Log", `{}`) }, "Log.Log", CodeBadRequest},
		// A made-up method name must not become a label value.
		{"UnknownMethod", func(e *env, c *Conn) { e.call(c, "dev1", "No.Such", `{}`) }, "", CodeNotFound},
		{"Notification", func(e *env, c *Conn) {
			submit(c, `{"src":"dev1","method":"Log.Log","args":{"msg":1}}`)
			e.mustCall(c, "dev1", "RPC.Ping", ``) // after the notification, in order
		}, "", -1},
	}
	t.Run("RefusedBeforeRouting", func(t *testing.T) {
		var obs observations
		e := newEnv(t, Config{Observe: obs.observe, Rate: 0.001, RateBurst: 1})
		c := e.svc.Open("c1")
		defer c.Close()
		e.mustCall(c, "dev1", "Log.List", `{}`)
		if r := e.call(c, "dev1", "/v1/Log.List", `{}`); r.code() != CodeTooMany {
			t.Fatalf("second call: code %d, want %d", r.code(), CodeTooMany)
		}
		got := obs.all()
		if len(got) != 2 || got[1].method != "Log.List" || got[1].code != CodeTooMany {
			t.Errorf("observations %+v, want the 429 named Log.List", got)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var obs observations
			e := newEnv(t, Config{Observe: obs.observe})
			c := e.svc.Open("c1")
			defer c.Close()
			tc.frame(e, c)
			got := obs.all()
			if tc.code == -1 { // the notification case: two calls, both succeed
				await.Until(t, waitFor, "two observations", func() bool { return len(obs.all()) == 2 })
				got = obs.all()
				if got[0].code != 0 || got[1].code != 0 {
					t.Fatalf("observations %+v, want two successes", got)
				}
				methods := map[string]bool{got[0].method: true, got[1].method: true}
				if !methods["Log.Log"] || !methods["RPC.Ping"] {
					t.Fatalf("observations %+v, want Log.Log and RPC.Ping", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("observations %+v, want exactly one", got)
			}
			if got[0].method != tc.method || got[0].code != tc.code {
				t.Errorf("observed (%q, %d), want (%q, %d)", got[0].method, got[0].code, tc.method, tc.code)
			}
			if got[0].d < 0 || got[0].d > waitFor {
				t.Errorf("observed duration %v, want in [0, %v]", got[0].d, waitFor)
			}
		})
	}
}
