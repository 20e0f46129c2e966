package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestRequestsConsumed checks PROTOCOL §1: request frames addressed to the
// service complete their QoS flow, are never delivered to any subscriber
// and never retained.
func TestRequestsConsumed(t *testing.T) {
	t.Parallel()
	s := start(t)
	// Watchers subscribed to everything, and to the request topics.
	all := s.dial(t)
	all.subscribe("#", 2)
	reqs := s.dial(t)
	reqs.subscribe("logbroker/rpc/#", 2)
	reqs.subscribe("logbroker/rpc", 2)
	reqs.subscribe("+/rpc/+", 2)
	mosq := s.mosquittoSub(t, "-t", "#", "-t", "logbroker/rpc/#", "-q", "2")

	c := s.dial(t)
	for _, qos := range []byte{0, 1, 2} {
		for _, retained := range []bool{false, true} {
			for _, topic := range []string{"logbroker/rpc", "logbroker/rpc/Log.Log", "logbroker/rpc/v1/Log.Log"} {
				name := fmt.Sprintf("QoS%d/Retained=%v/%s", qos, retained, topic)
				t.Run(name, func(t *testing.T) {
					msg := "consumed " + name
					payload, _, id := c.frameOf(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": msg}}, true)
					reply := c.src + "/rpc"
					from := c.mark()
					// publish waits for the whole QoS flow (PUBACK, or
					// PUBREC/PUBREL/PUBCOMP).
					c.publish(topic, qos, retained, payload)
					m, _ := c.waitMsg(from, callTimeout, "the response", func(m message) bool {
						r, ok := decodeResponse(m)
						return ok && m.Topic == reply && string(compact(r.ID)) == string(id)
					})
					r, _ := decodeResponse(m)
					r.logID(t)
					if m.QoS != 1 {
						t.Errorf("response delivered at QoS %d to a QoS 1 subscription, want 1", m.QoS)
					}
					if m.Retained {
						t.Errorf("response retained")
					}
				})
			}
		}
	}
	// A barrier: once the watchers see a later ordinary message (from
	// the same client, so in order), they would have seen any request
	// frame before it. barrier/rpc/x is another device's topic: it
	// passes through to # and to +/rpc/+.
	const barrier = "barrier/rpc/x"
	c.publish(barrier, 1, false, []byte(`{"barrier":true}`))
	for _, w := range []*client{all, reqs} {
		w.waitMsg(0, callTimeout, "the barrier", func(m message) bool { return m.Topic == barrier })
		for _, m := range w.messages(0) {
			if strings.HasPrefix(m.Topic, "logbroker/rpc") {
				t.Errorf("%s received a request frame on %s: %s", w.id, m.Topic, abbrev(m.Payload, 200))
			}
		}
	}
	mosq.wait(callTimeout, 1, "barrier", func(m mosqMsg) bool { return m.Topic == barrier })
	got, _ := mosq.messages()
	for _, m := range got {
		if strings.HasPrefix(m.Topic, "logbroker/rpc") {
			t.Errorf("mosquitto_sub received a request frame on %s: %s", m.Topic, m.Payload)
		}
	}

	// Nothing retained: a new subscriber to everything gets only the
	// retained marker.
	c.publish("marker/retained", 1, true, []byte("marker"))
	for _, m := range s.retained(t, "#") {
		if m.Topic != "marker/retained" {
			t.Errorf("retained message on %s: %s", m.Topic, abbrev(m.Payload, 200))
		}
	}

	// Every request was served exactly once.
	es := c.listAll(c.src)
	if len(es) != 18 {
		t.Errorf("%d entries, want 18 (one per request)", len(es))
	}
}

// TestPassThrough checks that frames to <other>/rpc, and the service's
// responses, are ordinary messages for their subscribers.
func TestPassThrough(t *testing.T) {
	t.Parallel()
	s := start(t)
	dev := s.dial(t) // subscribed to <dev.src>/rpc
	dev.subscribe(dev.src+"/rpc/#", 1)
	peer := s.dial(t)
	for _, topic := range []string{dev.src + "/rpc", dev.src + "/rpc/Sys.Reboot", "logbroker-other/rpc", "logbroker/rpcx", "x/logbroker/rpc"} {
		t.Run(topic, func(t *testing.T) {
			w := dev
			if !strings.HasPrefix(topic, dev.src) {
				w = s.dial(t)
				w.subscribe(topic, 1)
			}
			frame := fmt.Sprintf(`{"id":5,"src":%q,"dst":%q,"method":"Sys.Reboot","args":{"delay_ms":1}}`, peer.src, strings.TrimSuffix(topic, "/rpc"))
			from, peerFrom := w.mark(), peer.mark()
			peer.publish(topic, 1, false, []byte(frame))
			m, _ := w.waitMsg(from, callTimeout, "the frame", func(m message) bool { return m.Topic == topic })
			if string(m.Payload) != frame {
				t.Errorf("payload changed: got %s, want %s", m.Payload, frame)
			}
			// Not handled by the service: peer gets no answer.
			peer.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
			if n := peer.count(peerFrom, peer.src+"/rpc"); n != 1 {
				t.Errorf("%d replies to peer, want only its Ping's: %s", n, peer.describe(peerFrom))
			}
		})
	}
	t.Run("RetainedOtherRPC", func(t *testing.T) {
		topic := "retained-dev/rpc"
		peer.publish(topic, 1, true, []byte(`{"id":1,"src":"x","method":"A.B"}`))
		w := s.dial(t)
		w.subscribe(topic, 1)
		m, _ := w.waitMsg(0, callTimeout, "the retained frame", func(m message) bool { return m.Topic == topic })
		if !m.Retained {
			t.Errorf("frame to another device's rpc topic not retained")
		}
	})
}

// TestLiveTopic checks that each entry, once durable, is published on
// <src>/log/<stream> as the entry object, at QoS 0, not retained.
func TestLiveTopic(t *testing.T) {
	t.Parallel()
	s := start(t)
	mosq := s.mosquittoSub(t, "-t", "+/log/#", "-q", "1")
	c := s.dial(t)
	c.subscribe(c.src+"/log/#", 1)
	from := c.mark()
	id1 := c.log(map[string]any{"msg": "boot ok", "timestamp": 1764080000123})
	id2 := c.log(map[string]any{"msg": map[string]any{"temp": 21.5}, "stream": "sensors"})
	want := map[string]string{c.src + "/log/console": id1, c.src + "/log/sensors": id2}
	for topic, id := range want {
		m, _ := c.waitMsg(from, callTimeout, "the live entry on "+topic, func(m message) bool { return m.Topic == topic })
		var e entry
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			t.Fatalf("live payload is not an entry: %s", m.Payload)
		}
		if e.ID != id || e.Src != c.src || "/log/"+e.Stream != strings.TrimPrefix(topic, c.src) {
			t.Errorf("live entry on %s = %s, want id %s", topic, m.Payload, id)
		}
		if m.QoS != 0 || m.Retained {
			t.Errorf("live entry delivered at QoS %d retained %v to a QoS 1 subscription; want QoS 0, not retained", m.QoS, m.Retained)
		}
		// The same object List returns.
		es := c.list(map[string]any{"stream": e.Stream})
		listed, _ := json.Marshal(es[0])
		live, _ := json.Marshal(e)
		if string(listed) != string(live) {
			t.Errorf("live entry %s differs from listed %s", live, listed)
		}
	}
	got := mosq.wait(callTimeout, 2, "live entries", func(m mosqMsg) bool { return strings.HasPrefix(m.Topic, c.src+"/log/") })
	for _, m := range got {
		if m.QoS != 0 || m.Retained {
			t.Errorf("mosquitto_sub got %s at QoS %d retained %v", m.Topic, m.QoS, m.Retained)
		}
	}
	if got[0].Payload != fmt.Sprintf(`{"id":%q,"src":%q,"stream":"console","timestamp":1764080000123,"msg":"boot ok"}`, id1, c.src) {
		t.Errorf("mosquitto_sub live entry = %s", got[0].Payload)
	}
	// A late subscriber gets nothing retained.
	for _, m := range s.retained(t, "+/log/#") {
		t.Errorf("retained live entry on %s: %s", m.Topic, m.Payload)
	}
	// Failed calls publish nothing live.
	mark := c.mark()
	c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": 1, "stream": "a/b"}}, "").fails(t, 400)
	c.log(map[string]any{"msg": "after", "stream": "barrier"})
	c.waitMsg(mark, callTimeout, "the barrier entry", func(m message) bool { return m.Topic == c.src+"/log/barrier" })
	for _, m := range c.messages(mark) {
		if strings.Contains(m.Topic, "/log/") && m.Topic != c.src+"/log/barrier" {
			t.Errorf("live message after a failed Log: %s %s", m.Topic, m.Payload)
		}
	}
}

// retained returns the retained messages a new subscriber to filter gets.
// It subscribes, then makes a call: mochi sends a subscription's retained
// messages before it reads the client's next packet, so they all precede
// the call's response.
func (s *server) retained(t testing.TB, filter string) []message {
	t.Helper()
	c := s.dial(t)
	from := c.mark()
	c.subscribe(filter, 1)
	c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
	var out []message
	for _, m := range c.messages(from) {
		if m.Retained {
			out = append(out, m)
		}
	}
	return out
}

// TestWillToService checks a Last Will addressed to the service: it is a
// request like any other publish to <service>/rpc (a device can log its
// own death), so it runs, is answered on <src>/rpc, and is never delivered
// to subscribers nor retained.
func TestWillToService(t *testing.T) {
	t.Parallel()
	s := start(t)
	for _, version := range []string{"mqttv311", "mqttv5"} {
		t.Run(version, func(t *testing.T) {
			watch := s.dial(t)
			watch.subscribe("#", 1)
			watch.subscribe("logbroker/rpc", 1)
			watch.subscribe("$logbroker/#", 1)
			src := "will-" + version
			watch.subscribe(src+"/rpc", 1)
			frame := fmt.Sprintf(`{"id":1,"src":%q,"method":"Log.Log","args":{"msg":"gone","stream":"will"}}`, src)
			dev := s.mosquittoSub(t, "-V", version, "-t", src+"/in", "--will-topic", "logbroker/rpc",
				"--will-payload", frame, "--will-qos", "1", "--will-retain")
			from := watch.mark()
			// An ungraceful end: the broker publishes the will.
			if err := dev.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			m, _ := watch.waitMsg(from, callTimeout, "the will's response", func(m message) bool { return m.Topic == src+"/rpc" })
			r, _ := decodeResponse(m)
			checkShape(t, r, "logbroker", src, json.RawMessage(`1`), nil)
			id := r.logID(t)
			es := watch.list(map[string]any{"src": src, "stream": "will"})
			if len(es) != 1 || es[0].ID != id || string(es[0].Msg) != `"gone"` {
				t.Errorf("the will's entry: %+v, want %s", es, id)
			}
			// The List's response came after the will was handled.
			for _, m := range watch.messages(from) {
				if strings.HasPrefix(m.Topic, "logbroker/") || len(m.Payload) == 0 || strings.Contains(string(m.Payload), `"method"`) {
					t.Errorf("the will reached a subscriber on %q: %q", m.Topic, m.Payload)
				}
			}
		})
	}
	for _, m := range s.retained(t, "#") {
		t.Errorf("retained after a will to the service: %s %s", m.Topic, m.Payload)
	}
}

// TestReplyOnRequestTopic checks frames whose src makes <src>/rpc a request
// topic of the service: the broker neither loops on its own response nor
// delivers it there.
func TestReplyOnRequestTopic(t *testing.T) {
	t.Parallel()
	s := start(t)
	watch := s.dial(t)
	watch.subscribe("#", 1)
	watch.subscribe("logbroker/rpc/#", 1)
	c := s.dial(t)
	for i, src := range []string{"logbroker", "logbroker/rpc/Log.Log"} {
		c.publish("logbroker/rpc", 1, false, []byte(fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, i+1, src, i)))
	}
	// Barrier: the same client's later call is answered after those.
	from := watch.mark()
	id := c.log(map[string]any{"msg": "barrier"})
	watch.waitMsg(from, callTimeout, "the barrier's live entry", func(m message) bool {
		var e entry
		return m.Topic == c.src+"/log/console" && json.Unmarshal(m.Payload, &e) == nil && e.ID == id
	})
	for _, m := range watch.messages(0) {
		if strings.HasPrefix(m.Topic, "logbroker/rpc") {
			t.Errorf("message on request topic %s: %s", m.Topic, m.Payload)
		}
	}
	// The calls ran (only their answers had nowhere to go), once each.
	if es := c.list(map[string]any{"src": "logbroker"}); len(es) != 1 {
		t.Errorf("entries of src logbroker: %+v", es)
	}
	s.answers(t)
}
