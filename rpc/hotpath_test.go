package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/logbroker/logbroker/storage"
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

// TestFollowerMatch checks which entries of a commit group a follower
// takes, whether match returns a part of the group or a copy.
func TestFollowerMatch(t *testing.T) {
	streams := []string{"a", "a", "b", "a", "b", "b"}
	group := make([]storage.Entry, len(streams))
	for i, s := range streams {
		group[i] = storage.Entry{Seq: uint64(i + 1), Src: "dev", Stream: s}
	}
	orig := append([]storage.Entry(nil), group...)
	tests := []struct {
		name   string
		stream string
		after  uint64
		limit  int
		want   []uint64
	}{
		{"AllStreams", "", 0, 100, []uint64{1, 2, 3, 4, 5, 6}},
		{"AllStreamsAfter", "", 4, 100, []uint64{5, 6}},
		{"AllStreamsLimit", "", 1, 2, []uint64{2, 3}},
		{"StreamWithGaps", "a", 0, 100, []uint64{1, 2, 4}},
		{"StreamWithGapsLimit", "a", 0, 2, []uint64{1, 2}},
		{"StreamGapLimitAfterGap", "a", 1, 2, []uint64{2, 4}},
		{"StreamAdjacentAtEnd", "b", 3, 100, []uint64{5, 6}},
		{"StreamFirstOnly", "b", 0, 1, []uint64{3}},
		{"OtherStream", "c", 0, 100, nil},
		{"AfterAll", "", 6, 100, nil},
		{"AfterAllStream", "a", 4, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &follower{q: storage.Query{Src: "dev", Stream: tt.stream, After: tt.after, Limit: tt.limit}}
			got := f.match(group)
			var seqs []uint64
			for _, e := range got {
				seqs = append(seqs, e.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tt.want) {
				t.Errorf("match = %v, want %v", seqs, tt.want)
			}
			if fmt.Sprint(group) != fmt.Sprint(orig) {
				t.Errorf("match changed the group: %v, was %v", group, orig)
			}
		})
	}
}

// TestFollow_ManyFollowersOneEntry: followers at the same and at other
// positions, on other streams, with other ids and tags, woken by one entry
// (their responses are built in one reused buffer): each gets its own id,
// tag and entries.
func TestFollow_ManyFollowersOneEntry(t *testing.T) {
	e := newEnv(t, Config{})
	logger := e.svc.Open("logger")
	defer logger.Close()
	first := e.log(logger, "dev", "s", `"first"`)
	type fl struct {
		id, tag, args string
	}
	var fls []fl
	for i := range 12 {
		f := fl{id: fmt.Sprintf(`"f%d"`, i), tag: fmt.Sprintf("tag%d", i)}
		switch i % 4 {
		case 0:
			f.args = `{"follow":true,"last":0}`
		case 1:
			f.args = `{"follow":true,"last":0,"stream":"s"}`
		case 2:
			f.args = `{"follow":true,"after":"` + first + `"}`
		case 3:
			f.args = `{"follow":true,"last":0,"stream":"other"}` // not woken
		}
		fls = append(fls, f)
	}
	for i, f := range fls {
		c := e.svc.Open(fmt.Sprint("c", i))
		defer c.Close()
		submit(c, `{"id":`+f.id+`,"src":"dev","tag":"`+f.tag+`","method":"Log.List","args":`+f.args+`,"timeout":60}`)
	}
	e.waiting(t, int64(len(fls)))
	next := e.log(logger, "dev", "s", `"next"`)
	e.waiting(t, int64(len(fls)/4)) // the "other" stream's
	for i, f := range fls {
		if i%4 == 3 {
			if e.answered("dev", f.id) {
				t.Errorf("follower %s of another stream answered", f.id)
			}
			continue
		}
		r := e.waitReply(t, "dev", f.id)
		if r.Tag == nil || *r.Tag != f.tag {
			t.Errorf("follower %s: tag %v, want %s", f.id, r.Tag, f.tag)
		}
		if es := r.entries(t); len(es) != 1 || es[0].ID != next || string(es[0].Msg) != `"next"` {
			t.Errorf("follower %s answered %s, want only %s", f.id, r.Result, next)
		}
	}
}

// TestConn_ArgsSrcChanges: the args.src a connection remembers from its
// previous call never stands for another src, even one written the same
// between the quotes.
func TestConn_ArgsSrcChanges(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("cl")
	defer c.Close()
	for _, src := range []string{"a", "b", `a"b`, `a\"b`} {
		e.log(c, src, "console", quote("in "+src))
	}
	steps := []struct{ name, rawSrc, src string }{
		{"First", `"a"`, "a"},
		{"Same", `"a"`, "a"},
		{"Other", `"b"`, "b"},
		{"Escaped", `"\u0061"`, "a"},
		{"Backslash", `"a\\\"b"`, `a\"b`},
		{"RawEqualsRemembered", `"a\"b"`, `a"b`},
		{"Back", `"a"`, "a"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := e.mustCall(c, "me", "Log.List", `{"src":`+st.rawSrc+`}`)
			es := r.entries(t)
			if len(es) != 1 || es[0].Src != st.src || string(es[0].Msg) != quote("in "+st.src) {
				t.Errorf("Log.List of src %s answered %s, want the one entry of %q", st.rawSrc, r.Result, st.src)
			}
		})
	}
}

// TestConn_LargeResponsesReuseBuffers: Log.List answers large enough to
// come from bigResults, one after the other, each hold exactly their own
// entries (a reused buffer starts empty, and its next answer, shorter or
// longer, leaves nothing of the previous one).
func TestConn_LargeResponsesReuseBuffers(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("cl")
	defer c.Close()
	for _, src := range []string{"a", "b"} {
		for i := range 60 {
			e.log(c, src, "console", fmt.Sprintf(`"%s line %03d %s"`, src, i, strings.Repeat("x", 80)))
		}
	}
	for _, step := range []struct {
		src  string
		last int
	}{{"a", 60}, {"b", 50}, {"a", 55}, {"b", 60}} {
		r := e.mustCall(c, "cl", "Log.List", fmt.Sprintf(`{"src":%q,"last":%d}`, step.src, step.last))
		if len(r.Result) < pooledResult {
			t.Fatalf("result of %d bytes: too small to use the pool", len(r.Result))
		}
		var got []struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(r.Result, &got); err != nil {
			t.Fatalf("%s last %d: %v in %s", step.src, step.last, err, r.Result)
		}
		if len(got) != step.last {
			t.Fatalf("%s last %d: %d entries", step.src, step.last, len(got))
		}
		for i, g := range got {
			want := fmt.Sprintf("%s line %03d %s", step.src, 60-step.last+i, strings.Repeat("x", 80))
			if g.Msg != want {
				t.Fatalf("%s last %d: entry %d is %q, want %q", step.src, step.last, i, g.Msg, want)
			}
		}
	}
}
