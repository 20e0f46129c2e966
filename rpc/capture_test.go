package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/logbroker/logbroker/integration/await"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConsole(t *testing.T) {
	ok := []struct {
		in   string
		seq  uint64
		secs float64
		n    int
		text string
	}{
		{"esp32_ABC 0 1764080000.123 1|boot ok\n", 0, 1764080000.123, 1, "boot ok\n"},
		{"d 4294967295 12.000 2|err", 4294967295, 12, 2, "err"},
		{"d 7 3 -1|", 7, 3, -1, ""},
		{"d 1 0.5 4|a|b c\n", 1, 0.5, 4, "a|b c\n"},
		{"d 1 1.0 1|\x00\xff", 1, 1, 1, "\x00\xff"},
	}
	for _, c := range ok {
		m, good := parseConsole([]byte(c.in))
		if !good || m.seq != c.seq || m.secs != c.secs || m.n != c.n || string(m.text) != c.text {
			t.Errorf("parseConsole(%q) = %+v %v, want seq %d time %v n %d text %q", c.in, m, good, c.seq, c.secs, c.n, c.text)
		}
	}
	bad := []string{
		"", "boot ok", "d 1 1.0 1", "d 1 1.0 |x", " 1 1.0 1|x", "d  1 1.0 1|x", "d x 1.0 1|x",
		"d -1 1.0 1|x", "d 1 1.0.0 1|x", "d 1 .5 1|x", "d 1 1. 1|x", "d 1 1e9 1|x", "d 1 1.0 a|x",
		"d 1 1.0 --1|x", "d 1 1.0 1 |x", "d 1 1.0 1234567890|x", "d 99999999999999999999 1.0 1|x",
		`{"msg":"json"}`,
	}
	for _, in := range bad {
		if m, good := parseConsole([]byte(in)); good {
			t.Errorf("parseConsole(%q) = %+v, want no parse", in, m)
		}
	}
}

// captured is what a test reads back: stream:msg of each entry, in order,
// stream[level]:msg for an entry with a level.
func (e *env) captured(src string) []string {
	e.t.Helper()
	es, err := e.store.List(context.Background(), storageQuery(src))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, x := range es {
		var msg string
		if err := json.Unmarshal(x.Msg, &msg); err != nil {
			e.t.Fatalf("msg %s is not a string", x.Msg)
		}
		if n, ok := x.Level.Number(); ok {
			out = append(out, fmt.Sprintf("%s[%d]:%s", x.Stream, n, msg))
			continue
		}
		out = append(out, x.Stream+":"+msg)
	}
	return out
}

// TestCapture_Join runs console writes of stock Mongoose OS devices
// through a Capture and checks the entries stored, once every partial line
// was stored at shutdown, and the counts.
func TestCapture_Join(t *testing.T) {
	const ts = "1764080000.100"
	w := func(seq int, n int, text string) string { return fmt.Sprintf("dev1 %d %s %d|%s", seq, ts, n, text) }
	cases := []struct {
		name           string
		cfg            CaptureConfig
		writes         []string
		want           []string
		lost, restarts int64
	}{
		{"OneLine", CaptureConfig{}, []string{w(0, 1, "boot ok\n")}, []string{"console:boot ok"}, 0, 0},
		{"CRLF", CaptureConfig{}, []string{w(0, 1, "a\r\nb\r\r\n")}, []string{"console:a", "console:b\r"}, 0, 0},
		{"SplitLine", CaptureConfig{}, []string{w(0, 1, "hel"), w(1, 1, "lo"), w(2, 1, " world\nnext\n")},
			[]string{"console:hello world", "console:next"}, 0, 0},
		{"SeveralLines", CaptureConfig{}, []string{w(0, 1, "a\nb\n\nc")}, []string{"console:a", "console:b", "console:", "console:c"}, 0, 0},
		{"StreamsApart", CaptureConfig{}, []string{w(0, 1, "out "), w(1, 2, "err "), w(2, 1, "line\n"), w(3, 2, "line\n")},
			[]string{"console:out line", "stderr:err line"}, 0, 0},
		{"EmptyWrite", CaptureConfig{}, []string{w(0, 1, ""), w(1, 1, "x\n")}, []string{"console:x"}, 0, 0},
		{"SkippedSeq", CaptureConfig{}, []string{w(0, 1, "a\n"), w(1, 1, "b\n"), w(4, 1, "e\n")}, []string{"console:a", "console:b", "console:e"}, 2, 0},
		{"Restart", CaptureConfig{}, []string{w(7, 1, "before"), w(8, 1, " crash"), w(0, 1, "boot\n"), w(1, 1, "up\n")},
			[]string{"console:before crash", "console:boot", "console:up"}, 0, 1},
		{"RestartLostFirst", CaptureConfig{}, []string{w(7, 1, "a\n"), w(3, 1, "b\n")}, []string{"console:a", "console:b"}, 3, 1},
		{"Unparsed", CaptureConfig{}, []string{w(0, 1, "a\n"), "not a console line\n", w(1, 1, "b\n")},
			[]string{"console:a", "console:not a console line\n", "console:b"}, 0, 0},
		{"UnparsedKeepsPartial", CaptureConfig{}, []string{w(0, 1, "par"), "junk", w(1, 1, "tial\n")},
			[]string{"console:junk", "console:partial"}, 0, 0},
		{"Levels", CaptureConfig{Levels: true}, []string{w(0, 2, "info "), w(1, 0, "line\n"), w(2, -1, "x\n")},
			[]string{"console[2]:info line", "console:x"}, 0, 0},
		{"MaxLine", CaptureConfig{MaxLine: 8}, []string{w(0, 1, "0123"), w(1, 1, "4567"), w(2, 1, "89\n"), w(3, 1, "0123456789")},
			[]string{"console:01234567", "console:89", "console:0123456789"}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			c.cfg.FlushAfter = time.Hour // only shutdown stores partial lines here
			cp := e.svc.Capture(c.cfg)
			for _, p := range c.writes {
				cp.Write("dev1", []byte(p))
			}
			if err := cp.close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := e.captured("dev1"); !slices.Equal(got, c.want) {
				t.Errorf("entries\n%q\nwant\n%q", got, c.want)
			}
			lost, restarts, ok := cp.counts("dev1")
			if !ok || lost != c.lost || restarts != c.restarts {
				t.Errorf("counts: lost %d restarts %d (%v), want %d %d", lost, restarts, ok, c.lost, c.restarts)
			}
			st := cp.Stats()
			if st.Lost != c.lost || st.Restarts != c.restarts || st.Lines != int64(len(c.want)) {
				t.Errorf("stats %+v, want lost %d restarts %d lines %d", st, c.lost, c.restarts, len(c.want))
			}
		})
	}
}

// TestCapture_Timestamps: the device's time of a line's first write when it
// is Unix time, else the broker's clock.
func TestCapture_Timestamps(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{FlushAfter: time.Hour})
	before := time.Now().UnixMilli()
	for _, p := range []string{"d 0 1764080000.123 1|unix ", "d 1 1764080009.000 1|later\n", "d 2 42.500 1|since boot\n", "junk\n"} {
		cp.Write("d", []byte(p))
	}
	if err := cp.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	es, err := e.store.List(context.Background(), storageQuery("d"))
	if err != nil || len(es) != 3 {
		t.Fatalf("entries %+v, %v", es, err)
	}
	if es[0].Timestamp != 1764080000123 {
		t.Errorf("unix time: timestamp %d, want 1764080000123", es[0].Timestamp)
	}
	for _, x := range es[1:] {
		if x.Timestamp < before || x.Timestamp > after {
			t.Errorf("%s: timestamp %d, want the broker's clock in [%d, %d]", x.Msg, x.Timestamp, before, after)
		}
	}
}

// TestCapture_FlushAfter: a partial line without continuation is stored on
// its own once FlushAfter has passed, and published live.
func TestCapture_FlushAfter(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{FlushAfter: 20 * time.Millisecond})
	cp.Write("dev1", []byte("dev1 0 1764080000.000 1|prompt> "))
	await.Until(t, waitFor, "the partial line stored", func() bool { return len(e.captured("dev1")) == 1 })
	if got := e.captured("dev1"); got[0] != "console:prompt> " {
		t.Fatalf("entries %q", got)
	}
	e.pub.wait(t, "the live entry", func(m Message) bool {
		return m.Topic == "dev1/log/console" && strings.Contains(string(m.Payload), `"msg":"prompt> "`)
	})
	// The next write starts a new line.
	cp.Write("dev1", []byte("dev1 1 1764080000.000 1|ls\n"))
	await.Until(t, waitFor, "the next line stored", func() bool { return len(e.captured("dev1")) == 2 })
	if got := e.captured("dev1"); got[1] != "console:ls" {
		t.Fatalf("entries %q", got)
	}
}

// TestCapture_Bounds: past MaxSources a source is neither counted nor
// joined; past MaxPartials a partial line is stored at once. Either way
// nothing is lost.
func TestCapture_Bounds(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{FlushAfter: time.Hour, MaxSources: 2, MaxPartials: 1})
	cp.Write("a", []byte("a 0 1.0 1|held"))  // the one partial line
	cp.Write("b", []byte("b 0 1.0 1|b1"))    // over MaxPartials: stored at once
	cp.Write("b", []byte("b 5 1.0 1|b2\n"))  // counted: b is tracked
	cp.Write("c", []byte("c 0 1.0 1|c1"))    // over MaxSources
	cp.Write("c", []byte("c 9 1.0 1|c2\n"))  // not counted
	cp.Write("a", []byte("a 1 1.0 1| on\n")) // a's line completes
	if err := cp.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string][]string{
		"a": {"console:held on"}, "b": {"console:b1", "console:b2"}, "c": {"console:c1", "console:c2"},
	} {
		if got := e.captured(src); !slices.Equal(got, want) {
			t.Errorf("%s: entries %q, want %q", src, got, want)
		}
	}
	if lost, _, ok := cp.counts("b"); !ok || lost != 4 {
		t.Errorf("b: lost %d (%v), want 4", lost, ok)
	}
	if _, _, ok := cp.counts("c"); ok {
		t.Error("c is counted past MaxSources")
	}
	if st := cp.Stats(); st.Untracked != 2 {
		t.Errorf("untracked %d, want 2", st.Untracked)
	}
}

// TestCapture_Sources: Log.Sources reports the counts of a source with
// captured lines, and not for one without.
func TestCapture_Sources(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{})
	c := e.svc.Open("t")
	defer c.Close()
	e.log(c, "plain", "console", `"x"`)
	for _, p := range []string{"dev1 3 1.0 1|a\n", "dev1 6 1.0 1|b\n", "dev1 0 1.0 1|c\n"} {
		cp.Write("dev1", []byte(p))
	}
	cp.appends.Wait()
	r := e.mustCall(c, "t", "Log.Sources", "{}")
	var got []map[string]any
	if err := json.Unmarshal(r.Result, &got); err != nil || len(got) != 2 {
		t.Fatalf("Log.Sources %s", r.Result)
	}
	if got[0]["src"] != "dev1" || got[0]["captured_lost"] != 2.0 || got[0]["restarts"] != 1.0 {
		t.Errorf("dev1: %v, want captured_lost 2, restarts 1", got[0])
	}
	if _, ok := got[1]["captured_lost"]; ok || got[1]["src"] != "plain" {
		t.Errorf("plain: %v, want no capture counts", got[1])
	}
}

// TestCapture_RateLimit: a source's messages over its rate are dropped and
// counted; another source has its own bucket.
func TestCapture_RateLimit(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{FlushAfter: time.Hour, Rate: 0.001, RateBurst: 2})
	for i := range 4 {
		cp.Write("flood", fmt.Appendf(nil, "flood %d 1.0 1|line %d\n", i, i))
	}
	cp.Write("calm", []byte("calm 0 1.0 1|ok\n"))
	if err := cp.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.captured("flood"); !slices.Equal(got, []string{"console:line 0", "console:line 1"}) {
		t.Errorf("flood: %q, want the first two lines", got)
	}
	if got := e.captured("calm"); !slices.Equal(got, []string{"console:ok"}) {
		t.Errorf("calm: %q", got)
	}
	if st := cp.Stats(); st.Limited != 2 {
		t.Errorf("limited %d, want 2", st.Limited)
	}
}

// FuzzParseConsole: any payload parses or not without panicking; a parsed
// one's text is the payload's tail after the first '|' following the
// numbers, and n is within the 9 digits allowed.
func FuzzParseConsole(f *testing.F) {
	for _, s := range []string{"esp32_ABC 0 1764080000.123 1|boot ok\n", "d 7 3 -1|", "d 1 0.5 4|a|b c\n", "junk", "d 1 1.0 --1|x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		m, ok := parseConsole(p)
		if !ok {
			return
		}
		if !strings.HasSuffix(string(p), string(m.text)) {
			t.Fatalf("text %q is not a tail of %q", m.text, p)
		}
		if m.n < -999999999 || m.n > 999999999 || m.secs < 0 {
			t.Fatalf("parsed %+v from %q", m, p)
		}
	})
}
