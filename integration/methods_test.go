package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMethods calls every method of open mode through paho and checks the
// response frames of PROTOCOL §3 and the results of §5.
func TestMethods(t *testing.T) {
	t.Parallel()
	s := start(t)

	t.Run("LogLog", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		before := time.Now().UnixMilli()
		r := c.call(map[string]any{"id": 7, "method": "Log.Log", "args": map[string]any{"msg": "boot ok"}}, "")
		checkShape(t, r, "logbroker", c.src, json.RawMessage(`7`), nil)
		id := r.logID(t)
		es := c.list(nil)
		if len(es) != 1 {
			t.Fatalf("List after one Log: %d entries, want 1: %+v", len(es), es)
		}
		e := es[0]
		if e.ID != id || e.Src != c.src || e.Stream != "console" || string(e.Msg) != `"boot ok"` {
			t.Errorf("entry = %+v, want id %s, src %s, stream console, msg \"boot ok\"", e, id, c.src)
		}
		if after := time.Now().UnixMilli(); e.Timestamp < before-1000 || e.Timestamp > after+1000 {
			t.Errorf("server timestamp %d not within [%d, %d]", e.Timestamp, before, after)
		}
	})

	t.Run("LogLogMsgKinds", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		msgs := []string{`"text"`, `42`, `-1.5e3`, `true`, `false`, `{"a":[1,{"b":null}],"c":"\u00e9"}`, `[1,"two",3]`, `""`}
		var ids []string
		for _, m := range msgs {
			ids = append(ids, c.log(map[string]any{"msg": json.RawMessage(m), "stream": "kinds", "timestamp": 1764080000123}))
		}
		es := c.list(map[string]any{"stream": "kinds"})
		if len(es) != len(msgs) {
			t.Fatalf("%d entries, want %d: %+v", len(es), len(msgs), es)
		}
		for i, e := range es {
			if e.ID != ids[i] || string(compact(e.Msg)) != string(compact(json.RawMessage(msgs[i]))) || e.Timestamp != 1764080000123 || e.Stream != "kinds" {
				t.Errorf("entry %d = %+v (msg %s), want id %s, msg %s, timestamp 1764080000123", i, e, e.Msg, ids[i], msgs[i])
			}
		}
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("ids not strictly increasing: %v", ids)
		}
	})

	t.Run("LogList", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		var ids []string
		for i := range 6 {
			stream := []string{"a", "b"}[i%2]
			ids = append(ids, c.log(map[string]any{"msg": i, "stream": stream}))
		}
		get := func(args map[string]any) []string {
			var out []string
			for _, e := range c.list(args) {
				out = append(out, e.ID)
			}
			return out
		}
		cases := []struct {
			name string
			args map[string]any
			want []string
		}{
			{"AllStreamsMerged", nil, ids},
			{"Stream", map[string]any{"stream": "b"}, []string{ids[1], ids[3], ids[5]}},
			{"After", map[string]any{"after": ids[3]}, ids[4:]},
			{"Last", map[string]any{"last": 2}, ids[4:]},
			{"LastZero", map[string]any{"last": 0}, nil},
			{"Limit", map[string]any{"limit": 2}, ids[:2]},
			{"LimitClamped", map[string]any{"limit": 1000000}, ids},
			{"AfterLastLimit", map[string]any{"after": ids[0], "last": 3, "limit": 2}, ids[3:5]},
			{"StreamAfter", map[string]any{"stream": "a", "after": ids[2]}, []string{ids[4]}},
			{"OtherSrc", map[string]any{"src": c.src + "-nobody"}, nil},
			{"Null", nil, ids},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if got := get(tc.args); !slices.Equal(got, tc.want) {
					t.Errorf("List %v = %v, want %v", tc.args, got, tc.want)
				}
			})
		}
		t.Run("EmptyIsArray", func(t *testing.T) {
			r := c.call(map[string]any{"method": "Log.List", "args": map[string]any{"src": "no-such-src"}}, "")
			if string(r.Result) != "[]" {
				t.Errorf("empty List result = %s, want []", r.Result)
			}
		})
	})

	t.Run("LogDelete", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		c.log(map[string]any{"msg": "c1"})
		keep := c.log(map[string]any{"msg": "k1", "stream": "keep"})
		last := c.log(map[string]any{"msg": "c2"})
		r := c.call(map[string]any{"method": "Log.Delete", "args": map[string]any{}, "tag": "del"}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, strp("del"))
		r.ok(t)
		if r.Result != nil {
			t.Errorf("Delete has a result: %s", r.Raw)
		}
		es := c.list(nil)
		if len(es) != 1 || es[0].ID != keep {
			t.Fatalf("after Delete of console: %+v, want only %s of stream keep", es, keep)
		}
		next := c.log(map[string]any{"msg": "c3"})
		if next <= last {
			t.Errorf("id after Delete %s <= %s: ids reused", next, last)
		}
		c.call(map[string]any{"method": "Log.Delete", "args": map[string]any{"stream": "keep"}}, "").ok(t)
		if es := c.list(map[string]any{"stream": "keep"}); len(es) != 0 {
			t.Errorf("stream keep after its Delete: %+v", es)
		}
		if es := c.list(nil); len(es) != 1 || es[0].ID != next {
			t.Errorf("console after Delete of keep: %+v, want %s", es, next)
		}
	})

	t.Run("RPCList", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		r := c.call(map[string]any{"method": "RPC.List"}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		var names []string
		if err := json.Unmarshal(r.ok(t).Result, &names); err != nil {
			t.Fatalf("RPC.List result is not an array of strings: %s", r.Raw)
		}
		for _, m := range []string{"Log.Log", "Log.List", "Log.Delete", "RPC.List", "RPC.Ping"} {
			if !slices.Contains(names, m) {
				t.Errorf("RPC.List = %v, lacks %s", names, m)
			}
		}
	})

	t.Run("RPCPing", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		r := c.call(map[string]any{"method": "RPC.Ping", "id": "ping-1", "key": "secret"}, "")
		checkShape(t, r, "logbroker", c.src, json.RawMessage(`"ping-1"`), nil)
		r.ok(t)
	})

	t.Run("IDs", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		for _, id := range []string{`1`, `9007199254740991`, `"abc"`, `""`, `"a\"b\u00e9/+#"`, `"42"`} {
			t.Run(id, func(t *testing.T) {
				frame := fmt.Sprintf(`{"id":%s,"src":%q,"method":"RPC.Ping"}`, id, c.src)
				r := c.call(frame, "")
				checkShape(t, r, "logbroker", c.src, json.RawMessage(id), nil)
				r.ok(t)
			})
		}
	})

	t.Run("Params", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		r := c.call(map[string]any{"method": "Log.Log", "params": map[string]any{"msg": "via params", "stream": "p"}}, "")
		id := r.logID(t)
		es := c.list(map[string]any{"stream": "p"})
		if len(es) != 1 || es[0].ID != id || string(es[0].Msg) != `"via params"` {
			t.Errorf("List after Log with params: %+v", es)
		}
		r = c.call(map[string]any{"method": "Log.List", "params": map[string]any{"stream": "p"}}, "")
		if got := r.entries(t); len(got) != 1 {
			t.Errorf("List with params: %+v", got)
		}
		r = c.call(map[string]any{"method": "Log.List", "args": nil}, "")
		r.ok(t)
	})

	t.Run("MethodFromTopic", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		id := c.log(map[string]any{"msg": "x"})
		// The topic's method overrides the frame's.
		r := c.call(map[string]any{"method": "Log.Delete"}, "logbroker/rpc/Log.List")
		if es := r.entries(t); len(es) != 1 || es[0].ID != id {
			t.Errorf("logbroker/rpc/Log.List with method Log.Delete: %s", r.Raw)
		}
		r = c.call(map[string]any{}, "logbroker/rpc/RPC.Ping")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		r.ok(t)
		r = c.call(map[string]any{"method": "RPC.Ping"}, "logbroker/rpc/Log.Nope")
		r.fails(t, 404)
	})

	t.Run("V1Prefix", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		for _, m := range []string{"/v1/Log.Log", "v1/Log.Log"} {
			c.call(map[string]any{"method": m, "args": map[string]any{"msg": m}}, "").logID(t)
		}
		c.call(map[string]any{"args": map[string]any{"msg": "topic v1"}}, "logbroker/rpc/v1/Log.Log").logID(t)
		if es := c.list(nil); len(es) != 3 {
			t.Errorf("after three /v1/ Logs: %d entries: %+v", len(es), es)
		}
		r := c.call(map[string]any{"method": "/v1/Log.List"}, "")
		if es := r.entries(t); len(es) != 3 {
			t.Errorf("/v1/Log.List: %s", r.Raw)
		}
		c.call(map[string]any{"method": "/v1/Log.Delete"}, "").ok(t)
		if es := c.list(nil); len(es) != 0 {
			t.Errorf("after /v1/Log.Delete: %+v", es)
		}
	})

	t.Run("SrcWithSlashes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		src := c.src + "/rpc-resp/mos-1"
		r := c.call(map[string]any{"method": "Log.Log", "src": src, "args": map[string]any{"msg": "from mos"}}, "")
		if r.Topic != src+"/rpc" {
			t.Errorf("reply on %s, want %s/rpc", r.Topic, src)
		}
		checkShape(t, r, "logbroker", src, r.ID, nil)
		id := r.logID(t)
		es := c.list(map[string]any{"src": src})
		if len(es) != 1 || es[0].ID != id || es[0].Src != src {
			t.Errorf("List of src %s: %+v", src, es)
		}
		if es := c.list(nil); len(es) != 0 {
			t.Errorf("entries under the plain src %s: %+v", c.src, es)
		}
	})

	t.Run("LogOnBehalf", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		other := c.src + "-other"
		r := c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "src": other}}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		id := r.logID(t)
		if es := c.list(map[string]any{"src": other}); len(es) != 1 || es[0].ID != id || es[0].Src != other {
			t.Errorf("List of %s: %+v", other, es)
		}
	})

	t.Run("TagAndKey", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		r := c.call(map[string]any{"method": "RPC.Ping", "tag": "t1", "key": map[string]any{"k": "v"}, "v": 2, "unknown": []int{1}}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, strp("t1"))
		r = c.call(map[string]any{"method": "Log.Nope", "tag": "t2", "key": "k"}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, strp("t2"))
		r.fails(t, 404)
	})

	t.Run("Dst", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		r := c.call(map[string]any{"method": "RPC.Ping", "dst": "logbroker"}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		r.ok(t)
		r = c.call(map[string]any{"method": "RPC.Ping", "dst": "someone-else"}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		if e := r.fails(t, 400); !strings.Contains(e.Message, "dst") {
			t.Errorf("wrong dst: message %q does not name dst", e.Message)
		}
	})
}

// TestAlias checks --id and --alias: each name answers with itself as src.
func TestAlias(t *testing.T) {
	t.Parallel()
	s := start(t, "--id", "svc", "--alias", "logs, other")
	c := s.dial(t)
	for _, name := range []string{"svc", "logs", "other"} {
		t.Run(name, func(t *testing.T) {
			r := c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": name}}, name+"/rpc")
			checkShape(t, r, name, c.src, r.ID, nil)
			r.logID(t)
			r = c.call(map[string]any{"method": "RPC.Ping", "dst": name}, name+"/rpc/RPC.Ping")
			checkShape(t, r, name, c.src, r.ID, nil)
			r.ok(t)
			// Another name of the same service is a valid dst.
			r = c.call(map[string]any{"method": "RPC.Ping", "dst": "svc"}, name+"/rpc")
			checkShape(t, r, name, c.src, r.ID, nil)
			r.ok(t)
		})
	}
	t.Run("DefaultIDNotServed", func(t *testing.T) {
		// logbroker/rpc is an ordinary topic now: it reaches subscribers.
		w := s.dial(t)
		w.subscribe("logbroker/rpc", 1)
		from := w.mark()
		payload := fmt.Sprintf(`{"id":1,"src":%q,"method":"RPC.Ping"}`, c.src)
		c.publish("logbroker/rpc", 1, false, []byte(payload))
		w.waitMsg(from, callTimeout, "the frame on logbroker/rpc", func(m message) bool {
			return m.Topic == "logbroker/rpc" && string(m.Payload) == payload
		})
	})
	if all := c.listAllVia("svc"); len(all) != 3 {
		t.Errorf("entries logged through the three names: %+v", all)
	}
}

// listAllVia lists the client's own entries through service name svc.
func (c *client) listAllVia(svc string) []entry {
	c.t.Helper()
	return c.call(map[string]any{"method": "Log.List", "args": map[string]any{"limit": 1000}}, svc+"/rpc").entries(c.t)
}
