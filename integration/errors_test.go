package integration

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestErrors checks every error code open mode can produce, each with the
// response shape of PROTOCOL §3 (the id echoed as sent, even a bad one).
func TestErrors(t *testing.T) {
	t.Parallel()
	s := start(t)
	long := strings.Repeat("x", 129)
	cases := []struct {
		name  string
		frame map[string]any // src and id are added unless present
		topic string
		code  int
		words string // a word the message must contain
	}{
		{"MsgMissing", map[string]any{"method": "Log.Log", "args": map[string]any{}}, "", 400, "msg"},
		{"MsgNull", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": nil}}, "", 400, "msg"},
		{"NoArgs", map[string]any{"method": "Log.Log"}, "", 400, "msg"},
		{"StreamSlash", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "a/b"}}, "", 400, "stream"},
		{"StreamHash", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "#"}}, "", 400, "stream"},
		{"StreamPlus", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "a+"}}, "", 400, "stream"},
		{"StreamEmpty", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": ""}}, "", 400, "stream"},
		{"StreamLong", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": long}}, "", 400, "stream"},
		{"StreamControl", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "a\nb"}}, "", 400, "stream"},
		{"StreamNumber", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": 5}}, "", 400, "stream"},
		{"ListStreamHash", map[string]any{"method": "Log.List", "args": map[string]any{"stream": "#"}}, "", 400, "stream"},
		{"DeleteStreamSlash", map[string]any{"method": "Log.Delete", "args": map[string]any{"stream": "a/b"}}, "", 400, "stream"},
		{"TimestampNegative", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "timestamp": -1}}, "", 400, "timestamp"},
		{"TimestampFraction", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "timestamp": 1.5}}, "", 400, "timestamp"},
		{"TimestampString", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "timestamp": "1764080000123"}}, "", 400, "timestamp"},
		{"TimestampYear10000", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "timestamp": int64(253402300800000)}}, "", 400, "timestamp"},
		{"ArgsSrcNumber", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "src": 5}}, "", 400, "src"},
		{"ArgsSrcHash", map[string]any{"method": "Log.List", "args": map[string]any{"src": "a/#"}}, "", 400, "src"},
		{"AfterMalformed", map[string]any{"method": "Log.List", "args": map[string]any{"after": "not-an-id"}}, "", 400, "after"},
		{"AfterNumber", map[string]any{"method": "Log.List", "args": map[string]any{"after": 5}}, "", 400, "after"},
		{"LimitZero", map[string]any{"method": "Log.List", "args": map[string]any{"limit": 0}}, "", 400, "limit"},
		{"LimitNegative", map[string]any{"method": "Log.List", "args": map[string]any{"limit": -3}}, "", 400, "limit"},
		{"LimitFraction", map[string]any{"method": "Log.List", "args": map[string]any{"limit": 2.5}}, "", 400, "limit"},
		{"LastNegative", map[string]any{"method": "Log.List", "args": map[string]any{"last": -1}}, "", 400, "last"},
		{"FollowString", map[string]any{"method": "Log.List", "args": map[string]any{"follow": "yes"}}, "", 400, "follow"},
		{"ArgsAndParams", map[string]any{"method": "RPC.Ping", "args": map[string]any{}, "params": map[string]any{}}, "", 400, "params"},
		{"ArgsArray", map[string]any{"method": "Log.Log", "args": []int{1}}, "", 400, "args"},
		{"ArgsString", map[string]any{"method": "Log.Log", "args": "msg"}, "", 400, "args"},
		{"WrongDst", map[string]any{"method": "RPC.Ping", "dst": "elsewhere"}, "", 400, "dst"},
		{"DstNumber", map[string]any{"method": "RPC.Ping", "dst": 1}, "", 400, "dst"},
		{"MethodNumber", map[string]any{"method": 12}, "", 400, "method"},
		{"MethodMissing", map[string]any{"args": map[string]any{}}, "", 400, "method"},
		{"MethodEmpty", map[string]any{"method": ""}, "", 400, "method"},
		{"TopicMethodEmpty", map[string]any{"method": "RPC.Ping"}, "logbroker/rpc/", 400, "method"},
		{"TagNumber", map[string]any{"method": "RPC.Ping", "tag": 5}, "", 400, "tag"},
		{"NrString", map[string]any{"method": "RPC.Ping", "nr": "no"}, "", 400, "nr"},
		{"TimeoutNegative", map[string]any{"method": "Log.List", "timeout": -1}, "", 400, "timeout"},
		{"TimeoutString", map[string]any{"method": "Log.List", "timeout": "1s"}, "", 400, "timeout"},
		{"DeadlineString", map[string]any{"method": "Log.List", "deadline": "soon"}, "", 400, "deadline"},
		{"IDZero", map[string]any{"method": "RPC.Ping", "id": 0}, "", 400, "id"},
		{"IDNegative", map[string]any{"method": "RPC.Ping", "id": -4}, "", 400, "id"},
		{"IDFraction", map[string]any{"method": "RPC.Ping", "id": 1.5}, "", 400, "id"},
		{"IDTooLarge", map[string]any{"method": "RPC.Ping", "id": json.RawMessage(`9007199254740992`)}, "", 400, "id"},
		{"IDBool", map[string]any{"method": "RPC.Ping", "id": true}, "", 400, "id"},
		{"IDObject", map[string]any{"method": "RPC.Ping", "id": map[string]any{"n": 1}}, "", 400, "id"},
		{"IDArray", map[string]any{"method": "RPC.Ping", "id": []int{1}}, "", 400, "id"},
		{"UnknownMethod", map[string]any{"method": "Log.Nope"}, "", 404, "Log.Nope"},
		{"UnknownV2", map[string]any{"method": "/v2/Log.List"}, "", 404, "Log.List"},
		{"UnknownTopicMethod", map[string]any{}, "logbroker/rpc/Nope.Nope", 404, "Nope.Nope"},
		{"MsgOverMaxMsg", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 65536)}}, "", 413, "msg"},
		{"Msg1MiB", map[string]any{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 1<<20)}}, "", 413, "limit"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := s.dial(t)
			frame := map[string]any{"tag": tc.name, "id": 1000 + i}
			for k, v := range tc.frame {
				frame[k] = v
			}
			var tag *string
			if v, ok := frame["tag"].(string); ok {
				tag = &v
			}
			id, err := json.Marshal(frame["id"])
			if err != nil {
				t.Fatal(err)
			}
			r := c.call(frame, tc.topic)
			checkShape(t, r, "logbroker", c.src, id, tag)
			if e := r.fails(t, tc.code); !strings.Contains(strings.ToLower(e.Message), strings.ToLower(tc.words)) {
				t.Errorf("message %q does not mention %q", e.Message, tc.words)
			}
			// Nothing was stored by a failed call.
			if es := c.list(map[string]any{"limit": 1000}); len(es) != 0 {
				t.Errorf("a failed call stored entries: %+v", es)
			}
		})
	}
}

// TestLimits checks 413 over --max-frame and --max-msg, and 429 from
// --max-follows and from --rate.
func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("MaxFrameAndMsg", func(t *testing.T) {
		t.Parallel()
		s := start(t, "--max-frame", "2048", "--max-msg", "100")
		c := s.dial(t)
		r := c.call(map[string]any{"method": "RPC.Ping", "pad": strings.Repeat("p", 2048)}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		if e := r.fails(t, 413); !strings.Contains(e.Message, "2048") {
			t.Errorf("413 message %q does not state the limit", e.Message)
		}
		r = c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 99)}}, "")
		if e := r.fails(t, 413); !strings.Contains(e.Message, "100") {
			t.Errorf("413 message %q does not state the limit", e.Message)
		}
		// msg is counted as its JSON text: 98 letters and two quotes fit.
		c.log(map[string]any{"msg": strings.Repeat("m", 98)})
		// A frame just under the limit works.
		c.call(map[string]any{"method": "RPC.Ping", "pad": strings.Repeat("p", 1900)}, "").ok(t)
	})
	t.Run("MaxPacket", func(t *testing.T) {
		t.Parallel()
		// A packet over --max-packet ends that client's connection; the
		// broker and its other clients carry on.
		s := start(t, "--max-packet", "8192")
		big, other := s.dial(t), s.dial(t)
		payload, _, _ := big.frameOf(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 9000)}}, true)
		big.pc.Publish("logbroker/rpc", 0, false, payload)
		select {
		case <-big.lostCh:
		case <-time.After(callTimeout):
			t.Fatalf("a client that sent %d bytes over --max-packet 8192 is still connected", len(payload))
		}
		other.log(map[string]any{"msg": "fine"})
		if es := other.list(map[string]any{"src": big.src}); len(es) != 0 {
			t.Errorf("the oversized packet was stored: %+v", es)
		}
	})
	t.Run("MaxFollows", func(t *testing.T) {
		t.Parallel()
		s := start(t, "--max-follows", "1")
		c := s.dial(t)
		wait := c.send(map[string]any{"method": "Log.List", "args": map[string]any{"follow": true}, "timeout": 20}, "")
		// The first follow is waiting once this later call is answered
		// (calls of one connection run in order).
		c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
		r := c.call(map[string]any{"method": "Log.List", "args": map[string]any{"follow": true}, "timeout": 20}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		if e := r.fails(t, 429); !strings.Contains(e.Message, "follow") {
			t.Errorf("429 message %q does not mention follow", e.Message)
		}
		// Another connection has its own allowance.
		d := s.dial(t)
		other := d.send(map[string]any{"method": "Log.List", "args": map[string]any{"follow": true, "src": c.src}, "timeout": 20}, "")
		d.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
		id := c.log(map[string]any{"msg": "wake"})
		for name, wt := range map[string]func() (response, bool){
			"first": func() (response, bool) { return wait(callTimeout) },
			"other": func() (response, bool) { return other(callTimeout) },
		} {
			r, ok := wt()
			if !ok {
				t.Fatalf("%s follow not woken by Log.Log", name)
			}
			if es := r.entries(t); len(es) != 1 || es[0].ID != id {
				t.Errorf("%s follow woken with %s, want entry %s", name, r.Raw, id)
			}
		}
		// The slot is free again.
		r = c.call(map[string]any{"method": "Log.List", "args": map[string]any{"follow": true}, "timeout": 0.2}, "")
		if es := r.entries(t); len(es) != 1 {
			t.Errorf("follow with an entry there: %s", r.Raw)
		}
	})
	t.Run("Rate", func(t *testing.T) {
		t.Parallel()
		// One call per 1000 s, burst 2: the third call at once is refused.
		s := start(t, "--rate", "0.001", "--rate-burst", "2")
		c := s.dial(t)
		c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
		c.log(map[string]any{"msg": "counted"})
		r := c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "refused"}}, "")
		checkShape(t, r, "logbroker", c.src, r.ID, nil)
		if e := r.fails(t, 429); !strings.Contains(e.Message, "rate") {
			t.Errorf("429 message %q does not mention the rate", e.Message)
		}
		// Per connection: another client still has its burst.
		d := s.dial(t)
		if es := d.list(map[string]any{"src": c.src}); len(es) != 1 || string(es[0].Msg) != `"counted"` {
			t.Errorf("entries of the rate-limited client: %+v", es)
		}
	})
}

// TestNotifications checks that a frame without id, or with nr: true, runs
// and gets no response, not even an error.
func TestNotifications(t *testing.T) {
	t.Parallel()
	s := start(t)
	t.Run("LogThenList", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		reply := c.src + "/rpc"
		from := c.mark()
		c.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "fire and forget"}}, "")
		// Calls of one connection take effect in order: the List sees the
		// notification's entry, and its reply comes after any reply the
		// notification could have produced.
		es := c.list(nil)
		if len(es) != 1 || string(es[0].Msg) != `"fire and forget"` {
			t.Errorf("List after a notification Log: %+v", es)
		}
		if n := c.count(from, reply); n != 1 {
			t.Errorf("%d messages on %s, want only the List's reply; got %s", n, reply, c.describe(from))
		}
	})
	t.Run("Nr", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		reply := c.src + "/rpc"
		from := c.mark()
		payload, _, _ := c.frameOf(map[string]any{"id": 99, "nr": true, "method": "Log.Log", "args": map[string]any{"msg": "nr"}}, true)
		c.publish("logbroker/rpc", 1, false, payload)
		es := c.list(nil)
		if len(es) != 1 || string(es[0].Msg) != `"nr"` {
			t.Errorf("List after an nr Log: %+v", es)
		}
		if n := c.count(from, reply); n != 1 {
			t.Errorf("%d messages on %s, want only the List's reply; got %s", n, reply, c.describe(from))
		}
	})
	t.Run("ErrorsUnanswered", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t)
		reply := c.src + "/rpc"
		from := c.mark()
		for _, f := range []map[string]any{
			{"method": "Log.Nope"},
			{"method": "Log.Log", "args": map[string]any{}},
			{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "a/b"}},
			{"method": "RPC.Ping", "dst": "elsewhere"},
			{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 70000)}},
		} {
			c.notify(f, "")
		}
		for _, f := range []map[string]any{
			{"method": "Log.Nope", "nr": true},
			{"method": "RPC.Ping", "nr": true, "id": 0},
		} {
			payload, _, _ := c.frameOf(f, true)
			c.publish("logbroker/rpc", 1, false, payload)
		}
		c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
		if n := c.count(from, reply); n != 1 {
			t.Errorf("%d messages on %s, want only the Ping's reply; got %s", n, reply, c.describe(from))
		}
		if es := c.list(nil); len(es) != 0 {
			t.Errorf("failed notifications stored entries: %+v", es)
		}
	})
}

// TestBadInput sends what issue 2 lists as bad input, from several clients
// at once beside a well-behaved one: each bad frame gets its error where a
// reply is possible or is dropped and counted; the broker stays up, the
// well-behaved client is neither stalled nor loses an entry.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := start(t)
	good := s.dial(t)

	dropped := []string{
		`{"id":1,"src":"x","method":`,           // malformed JSON
		`not json at all`,                       // malformed JSON
		`[1,2,3]`,                               // not an object
		`"a string"`,                            // not an object
		`42`,                                    // not an object
		`null`,                                  // not an object
		``,                                      // empty payload
		`{"id":1,"method":"RPC.Ping"}`,          // no src
		`{"id":1,"src":5,"method":"RPC.Ping"}`,  // src not a string
		`{"id":1,"src":"","method":"RPC.Ping"}`, // empty src
		`{"id":1,"src":"a/#","method":"RPC.Ping"}`, // src not a topic
		`{"id":1,"src":"$SYS","method":"RPC.Ping"}`,
		"\xff\xfe{}",
	}
	var ids []string // what the good client logged, in order
	for i, p := range dropped {
		t.Run(fmt.Sprintf("Dropped%d", i), func(t *testing.T) {
			c := s.dial(t)
			from := c.mark()
			c.subscribe("#", 1)
			c.publish("logbroker/rpc", 1, false, []byte(p))
			// The good client is served right after, and nothing was
			// published in answer to the bad frame.
			ids = append(ids, good.log(map[string]any{"msg": i}))
			c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
			for _, m := range c.messages(from) {
				if m.Topic != c.src+"/rpc" && !strings.HasPrefix(m.Topic, good.src+"/") {
					t.Errorf("message on %s after a dropped frame: %s", m.Topic, abbrev(m.Payload, 200))
				}
			}
		})
	}

	answered := []struct {
		name    string
		payload string
		code    int
	}{
		{"WrongTypes", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"x","stream":1,"timestamp":"now"}}`, 400},
		{"UnknownMethod", `{"id":1,"src":"%s","method":"Nope"}`, 404},
		{"StreamAB", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"x","stream":"a/b"}}`, 400},
		{"StreamHash", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"x","stream":"#"}}`, 400},
		{"TimestampNegative", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"x","timestamp":-5}}`, 400},
		{"TimestampFraction", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"x","timestamp":0.5}}`, 400},
		{"Msg1MiB", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":"` + strings.Repeat("z", 1<<20) + `"}}`, 413},
		{"MsgNull", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":null}}`, 400},
		{"DeepNesting", `{"id":1,"src":"%s","method":"Log.Log","args":{"msg":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`, 0},
	}
	for _, tc := range answered {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t)
			r := c.call(fmt.Sprintf(tc.payload, c.src), "")
			checkShape(t, r, "logbroker", c.src, json.RawMessage(`1`), nil)
			if tc.code == 0 {
				if r.Error != nil && r.Error.Code != 400 && r.Error.Code != 413 {
					t.Errorf("deeply nested msg: %s", r.Raw)
				}
			} else {
				r.fails(t, tc.code)
			}
			ids = append(ids, good.log(map[string]any{"msg": tc.name}))
		})
	}

	t.Run("FloodOfJunk", func(t *testing.T) {
		// One client floods bad frames (QoS 0, as fast as it can write)
		// while the good client keeps logging: each of its calls is
		// still answered within the usual deadline.
		junk := s.dial(t)
		frames := [][]byte{
			[]byte(`{"id":1,"src":`),
			[]byte(`[1,2,3]`),
			[]byte(fmt.Sprintf(`{"id":1,"src":%q,"method":"Log.Log","args":{"msg":"x","stream":"a/b"}}`, junk.src)),
			[]byte(fmt.Sprintf(`{"id":1,"src":%q,"method":"Nope"}`, junk.src)),
			[]byte(fmt.Sprintf(`{"id":1,"src":%q,"method":"Log.Log","args":{"msg":"%s"}}`, junk.src, strings.Repeat("z", 70000))),
		}
		stop := make(chan struct{})
		flooded := make(chan int)
		go func() {
			n := 0
			defer func() { flooded <- n }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := junk.pc.Publish("logbroker/rpc", 0, false, frames[n%len(frames)])
				if !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
					return
				}
				n++
			}
		}()
		for i := range 20 {
			ids = append(ids, good.log(map[string]any{"msg": fmt.Sprint("during the flood ", i)}))
		}
		close(stop)
		t.Logf("%d junk frames published during 20 good calls", <-flooded)
	})

	// Nothing the good client logged was lost, in order, once each.
	es := good.listAll(good.src)
	if len(es) != len(ids) {
		t.Fatalf("good client: %d entries, logged %d", len(es), len(ids))
	}
	for i, e := range es {
		if e.ID != ids[i] {
			t.Errorf("good client entry %d = %s, want %s", i, e.ID, ids[i])
		}
	}
	s.answers(t)

	// Dropped frames are counted: the shutdown line reports them.
	s.stop()
	m := regexp.MustCompile(`msg=stopped .*dropped=(\d+)`).FindStringSubmatch(s.logs())
	if m == nil {
		t.Fatalf("no stopped line with dropped=N in the log:\n%s", tail(s.logs(), 4000))
	}
	if n, _ := strconv.Atoi(m[1]); n < len(dropped) {
		t.Errorf("dropped=%d, want at least %d", n, len(dropped))
	}
}
