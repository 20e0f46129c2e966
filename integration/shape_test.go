package integration

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkShape checks a response frame against PROTOCOL §3: v 2, the id as
// sent (same JSON value), src the service name used, dst the request's src,
// the tag echoed when sent, never the key, and either result or error.
func checkShape(t testing.TB, r response, service, dst string, id json.RawMessage, tag *string) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Raw), &fields); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Raw)
	}
	allowed := map[string]bool{"v": true, "id": true, "src": true, "dst": true, "tag": true, "result": true, "error": true}
	for k := range fields {
		if !allowed[k] {
			t.Errorf("response has field %q: %s", k, r.Raw)
		}
	}
	if string(fields["v"]) != "2" {
		t.Errorf("v = %s, want 2: %s", fields["v"], r.Raw)
	}
	if !bytes.Equal(compact(fields["id"]), compact(id)) {
		t.Errorf("id = %s, want %s (the same JSON value): %s", fields["id"], id, r.Raw)
	}
	if r.Src != service {
		t.Errorf("src = %q, want %q: %s", r.Src, service, r.Raw)
	}
	if r.Dst != dst {
		t.Errorf("dst = %q, want %q: %s", r.Dst, dst, r.Raw)
	}
	switch {
	case tag == nil && r.Tag != nil:
		t.Errorf("tag %q echoed, none sent: %s", *r.Tag, r.Raw)
	case tag != nil && (r.Tag == nil || *r.Tag != *tag):
		t.Errorf("tag not echoed as %q: %s", *tag, r.Raw)
	}
	if r.Key != nil {
		t.Errorf("key echoed: %s", r.Raw)
	}
	if _, hasErr := fields["error"]; hasErr {
		if _, hasRes := fields["result"]; hasRes {
			t.Errorf("both result and error: %s", r.Raw)
		}
		var e map[string]json.RawMessage
		if err := json.Unmarshal(fields["error"], &e); err != nil || len(e) != 2 || e["code"] == nil || e["message"] == nil {
			t.Errorf(`error is not {"code", "message"}: %s`, r.Raw)
		}
		if r.Error == nil || r.Error.Code == 0 || r.Error.Message == "" {
			t.Errorf("error without a non-zero code and a message: %s", r.Raw)
		}
	}
}

// strp returns a pointer to s.
func strp(s string) *string { return &s }

// noMessage fails the test if c recorded a message on topic from index from
// on that satisfies match (nil: any). It does not wait: use it after an
// ordering barrier (a later call's response) proves that any such message
// would already have arrived.
func (c *client) noMessage(from int, topic string, match func(message) bool) {
	c.t.Helper()
	for _, m := range c.messages(from) {
		if m.Topic == topic && (match == nil || match(m)) {
			c.t.Errorf("%s: unexpected message on %s: %s", c.id, m.Topic, abbrev(m.Payload, 300))
		}
	}
}

// count is the number of messages on topic recorded from index from on.
func (c *client) count(from int, topic string) int {
	n := 0
	for _, m := range c.messages(from) {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

// answers checks that s is up and serves a fresh client's Log and List.
func (s *server) answers(t testing.TB) {
	t.Helper()
	if !s.alive() {
		t.Fatalf("logbroker exited; stderr:\n%s", tail(s.logs(), 8000))
	}
	c := s.dial(t)
	c.callWithin(map[string]any{"method": "RPC.Ping"}, "", callTimeout).ok(t)
	id := c.log(map[string]any{"msg": "still here"})
	es := c.list(nil)
	if len(es) != 1 || es[0].ID != id {
		t.Fatalf("a fresh client's Log then List: got %v, want its one entry %s", es, id)
	}
}
