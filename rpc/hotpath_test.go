package rpc

import (
	"bytes"
	"strings"
	"testing"
)

// TestConn_SrcChanges checks that the src and reply topic a connection
// remembers from its previous call (to spare an allocation per call) never
// answer a call that names another src, even one whose JSON text differs
// from the remembered src only by an escape.
func TestConn_SrcChanges(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("cl")
	defer c.Close()
	steps := []struct {
		name, rawSrc, src string
	}{
		{"First", `"a"`, "a"},
		{"Same", `"a"`, "a"},
		{"Other", `"b"`, "b"},
		{"Back", `"a"`, "a"},
		{"Escaped", `"\u0061"`, "a"},
		{"Backslash", `"a\\\"b"`, `a\"b`},
		// The raw text between the quotes equals the remembered src, but
		// it decodes to a"b.
		{"RawEqualsRemembered", `"a\"b"`, `a"b`},
		{"Longer", `"a\"b/c"`, `a"b/c`},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			id := quote(st.name)
			submit(c, `{"id":`+id+`,"src":`+st.rawSrc+`,"method":"RPC.Ping"}`)
			m := e.pub.wait(t, "reply "+st.name, func(m Message) bool {
				return bytes.Contains(m.Payload, []byte(`"id":`+id+`,`))
			})
			r := decodeReply(t, m)
			if r.topic != st.src+"/rpc" || r.Dst != st.src || r.code() != 0 {
				t.Errorf("step %d: reply on %q with dst %q code %d, want on %q with dst %q", i, r.topic, r.Dst, r.code(), st.src+"/rpc", st.src)
			}
		})
	}
}

// TestService_LiveTopics checks that the live topic of each entry names its
// own source and stream while deliver remembers topics, across sources and
// streams sharing prefixes.
func TestService_LiveTopics(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("cl")
	defer c.Close()
	logs := []struct{ src, stream string }{
		{"a", "s"}, {"a", "t"}, {"ab", "s"}, {"a", "s"}, {"a/b", "s"}, {"a", "bs"},
	}
	for i, l := range logs {
		msg := quote(l.src + "|" + l.stream + "|" + string(rune('0'+i)))
		e.log(c, l.src, l.stream, msg)
		topic := l.src + "/log/" + l.stream
		e.pub.wait(t, "live "+topic, func(m Message) bool {
			return m.Topic == topic && bytes.Contains(m.Payload, []byte(`"msg":`+msg))
		})
	}
	for _, m := range e.pub.all() {
		if strings.Contains(m.Topic, "/log/") {
			var src, stream string
			if n := bytes.Index(m.Payload, []byte(`"msg":"`)); n >= 0 {
				parts := bytes.SplitN(m.Payload[n+len(`"msg":"`):], []byte("|"), 3)
				src, stream = string(parts[0]), string(parts[1])
			}
			if m.Topic != src+"/log/"+stream {
				t.Errorf("entry of %s/%s published on %s", src, stream, m.Topic)
			}
		}
	}
}
