package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// filterLog is the log the filter tests write to source "flt": levels,
// timestamps (one out of order) and msgs chosen so that each filter keeps
// a different part.
var filterLog = []map[string]any{
	{"msg": "boot ok", "level": 2, "timestamp": 1000},
	{"msg": "disk TIMEOUT", "level": "error", "timestamp": 2000},
	{"msg": map[string]any{"err": "timeout", "code": 7}, "level": 1, "timestamp": 3000, "stream": "app"},
	{"msg": "no level, timeout", "timestamp": 4000},
	{"msg": "Time\u004Fut again", "level": "verbose", "timestamp": 5000},
	{"msg": "clock behind: timeout", "level": "warn", "timestamp": 500},
	{"msg": "warned", "level": "WARN", "timestamp": 6000},
	{"msg": "ſtatus KELVIN \u212a", "level": 0, "timestamp": 7000, "stream": "app"},
	{"msg": 42, "level": 3, "timestamp": 8000},
}

// TestFilters runs each Log.List filter alone and combined, with paging
// (after) and follow, through real MQTT clients: one logs, another lists.
func TestFilters(t *testing.T) {
	t.Parallel()
	s := start(t)
	w, r := s.dial(t), s.dial(t)
	var ids []string
	for _, a := range filterLog {
		a = maps(a, map[string]any{"src": "flt"})
		ids = append(ids, w.log(a))
	}
	idsOf := func(es []entry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	pick := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	cases := []struct {
		name string
		args map[string]any
		want []string
	}{
		{"Level", map[string]any{"level": "warn"}, pick(1, 2, 5, 6, 7)},
		{"LevelNumber", map[string]any{"level": 0}, pick(1, 7)},
		{"Match", map[string]any{"match": "TimeOut"}, pick(1, 2, 3, 4, 5)},
		{"MatchFolding", map[string]any{"match": "status kelvin k"}, pick(7)},
		{"MatchNumber", map[string]any{"match": "42"}, pick(8)},
		{"Regex", map[string]any{"regex": `^(boot|disk) `}, pick(0, 1)},
		{"RegexCaseless", map[string]any{"regex": `(?i)timeout$`}, pick(1, 3, 5)},
		{"Since", map[string]any{"since": 5000}, pick(4, 6, 7, 8)},
		{"Until", map[string]any{"until": 2000}, pick(0, 5)},
		{"SinceUntil", map[string]any{"since": 1000, "until": 4001}, pick(0, 1, 2, 3)},
		{"Combined", map[string]any{"level": "warn", "match": "timeout", "since": 1500}, pick(1, 2)},
		{"CombinedStream", map[string]any{"stream": "app", "level": 1, "regex": "(?i)(k|code)"}, pick(2, 7)},
		{"CombinedLast", map[string]any{"match": "timeout", "last": 2}, pick(4, 5)},
		{"CombinedAfterLimit", map[string]any{"level": 4, "after": ids[1], "limit": 3}, pick(2, 4, 5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := maps(c.args, map[string]any{"src": "flt"})
			if got := idsOf(r.list(args)); !slices.Equal(got, c.want) {
				t.Errorf("List %v = %v, want %v", c.args, got, c.want)
			}
			if _, ok := c.args["limit"]; ok {
				return
			}
			// Paging with after, one entry a page, gives the same.
			var paged []string
			after := ""
			for range len(ids) + 1 {
				a := maps(args, map[string]any{"limit": 1})
				if after != "" {
					a["after"] = after
				}
				es := r.list(a)
				if len(es) == 0 {
					break
				}
				after = es[0].ID
				paged = append(paged, after)
			}
			if _, last := c.args["last"]; !last && !slices.Equal(paged, c.want) {
				t.Errorf("List %v paged with after = %v, want %v", c.args, paged, c.want)
			}
		})
	}

	t.Run("LevelsReturned", func(t *testing.T) {
		es := r.list(map[string]any{"src": "flt"})
		want := []int{2, 0, 1, -1, 4, 1, 1, 0, 3}
		for i, e := range es {
			if got := -1; e.Level != nil {
				got = *e.Level
				if got != want[i] {
					t.Errorf("entry %d level %d, want %d", i, got, want[i])
				}
			} else if want[i] != -1 {
				t.Errorf("entry %d has no level, want %d", i, want[i])
			}
		}
	})

	t.Run("Follow", func(t *testing.T) {
		// A follow with filters waits for the next matching entry; other
		// entries, logged first, do not answer it.
		wait := r.startFollow(map[string]any{"src": "flt", "last": 0, "level": "error", "match": "fan"}, nil)
		w.log(map[string]any{"src": "flt", "msg": "fan slow", "level": "warn"})
		w.log(map[string]any{"src": "flt", "msg": "power lost", "level": "error"})
		id := w.log(map[string]any{"src": "flt", "msg": "FAN stopped", "level": 0})
		got := mustAnswer(t, wait, callTimeout, "filtered follow").entries(t)
		if len(got) != 1 || got[0].ID != id {
			t.Errorf("follow answered %v, want only %s", idsOf(got), id)
		}
		// From a position, the follow answers at once with what matches.
		got = r.call(followFrame(map[string]any{"src": "flt", "after": ids[5], "regex": "^warned$"}, nil), "").entries(t)
		if !slices.Equal(idsOf(got), pick(6)) {
			t.Errorf("follow after %s = %v, want %v", ids[5], idsOf(got), pick(6))
		}
	})

	t.Run("BadValues", func(t *testing.T) {
		for _, c := range []struct {
			arg  string
			val  any
			text string
		}{
			{"level", 5, "level must be"},
			{"level", "fatal", "level must be"},
			{"level", 1.5, "level must be"},
			{"match", "", "match must be 1 to 256 bytes"},
			{"match", strings.Repeat("x", 257), "match must be 1 to 256 bytes"},
			{"match", 3, "match must be a string"},
			{"regex", "(", "regex is not valid"},
			{"regex", 1, "regex must be a string"},
			{"since", -1, "since must be an integer"},
			{"since", "1h", "since must be an integer"},
			{"until", 253402300800001, "until must be an integer"},
			{"until", 1.5, "until must be an integer"},
		} {
			resp := r.call(map[string]any{"method": "Log.List", "args": map[string]any{"src": "flt", c.arg: c.val}}, "")
			if e := resp.fails(t, 400); !strings.Contains(e.Message, c.text) {
				t.Errorf("%s=%v: message %q, want it to contain %q", c.arg, c.val, e.Message, c.text)
			}
		}
		resp := w.call(map[string]any{"method": "Log.Log", "args": map[string]any{"src": "flt", "msg": 1, "level": "loud"}}, "")
		if e := resp.fails(t, 400); !strings.Contains(e.Message, "level must be") {
			t.Errorf("Log.Log level loud: %q", e.Message)
		}
	})

	t.Run("ScanBound", func(t *testing.T) {
		// A scan with no time left is answered 504, not with a part.
		resp := r.call(map[string]any{"method": "Log.List", "timeout": 0, "args": map[string]any{"src": "flt", "match": "nothing like it"}}, "")
		if e := resp.fails(t, 504); !strings.Contains(e.Message, "scan did not finish") {
			t.Errorf("504 message %q", e.Message)
		}
	})
}

// maps returns a copy of a with b's members added.
func maps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestCLI_Filters runs tail and export with filters, and export --resume.
func TestCLI_Filters(t *testing.T) {
	t.Parallel()
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT
	c := s.dial(t)
	now := time.Now()
	var ids []string
	for i := range 30 {
		level := []any{"error", "warn", "info", nil}[i%4]
		ts := now.Add(time.Duration(i-30) * time.Minute).UnixMilli() // one a minute, up to now
		a := map[string]any{"src": "cli", "msg": fmt.Sprintf("line %d %s", i, []string{"ok", "Timeout"}[i%2]), "timestamp": ts}
		if level != nil {
			a["level"] = level
		}
		ids = append(ids, c.log(a))
	}

	t.Run("Tail", func(t *testing.T) {
		r := runCLI(t, "", "tail", broker, "cli", "--level", "error", "--match", "line 1", "--last", "100").ok(t)
		if got := r.lines(); len(got) != 2 || !strings.HasSuffix(got[0], "line 12 ok") || !strings.HasSuffix(got[1], "line 16 ok") {
			t.Errorf("tail --level error --match 'line 1' = %q, want lines 12 and 16", got)
		}
		r = runCLI(t, "", "tail", broker, "cli", "--regex", `^line 2\d Timeout$`, "--since", "10m", "--last", "100").ok(t)
		if got := r.lines(); len(got) != 5 || !strings.HasSuffix(got[0], "line 21 Timeout") {
			t.Errorf("tail --regex --since 10m = %q, want lines 21..29 odd", got)
		}
		until := now.Add(-28 * time.Minute).UTC().Format(time.RFC3339Nano)
		r = runCLI(t, "", "tail", broker, "cli", "--until", until, "--json").ok(t)
		if got := r.lines(); len(got) != 2 || !strings.Contains(got[1], ids[1]) {
			t.Errorf("tail --until %s = %q, want the first two entries", until, got)
		}
		if r := runCLI(t, "", "tail", broker, "cli", "--since", "soon"); r.code == 0 || !strings.Contains(r.stderr, "--since soon") {
			t.Errorf("tail --since soon: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := runCLI(t, "", "tail", broker, "cli", "--regex", "("); r.code == 0 || !strings.Contains(r.stderr, "regex") {
			t.Errorf("tail --regex (: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("TailFollow", func(t *testing.T) {
		c.log(map[string]any{"src": "cli", "msg": "ALARM first"})
		c.log(map[string]any{"src": "cli", "msg": "after the first"})
		p := startCLI(t, "tail", broker, "cli", "-f", "--last", "1", "--match", "alarm")
		// The last matching entry printed: the follow has its position.
		if lines := p.waitLines(1, cliTimeout); !strings.HasSuffix(lines[0], " cli console ALARM first") {
			t.Fatalf("first line %q, want the last alarm", lines[0])
		}
		c.log(map[string]any{"src": "cli", "msg": "not this one"})
		c.log(map[string]any{"src": "cli", "msg": "alarm second"})
		lines := p.waitLines(2, cliTimeout)
		if !strings.HasSuffix(lines[1], " cli console alarm second") {
			t.Errorf("followed line %q, want alarm second", lines[1])
		}
		if code := p.signal(syscall.SIGINT, cliTimeout); code != 0 {
			t.Errorf("tail -f exit code after SIGINT = %d", code)
		}
		if got := p.lines(); len(got) != 2 {
			t.Errorf("tail -f --match printed %q, want the two alarms", got)
		}
	})

	t.Run("Export", func(t *testing.T) {
		r := runCLI(t, "", "export", broker, "cli", "--level", "warn").ok(t)
		lines := r.lines()
		var got []string
		for _, l := range lines {
			var e entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if e.Level == nil || *e.Level > 1 {
				t.Errorf("exported %s, want level warn or error", l)
			}
			got = append(got, e.ID)
		}
		var want []string
		for i, id := range ids {
			if i%4 < 2 {
				want = append(want, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("export --level warn = %v, want %v", got, want)
		}
		if r.stderr != "" {
			t.Errorf("export wrote %q on stderr (not a terminal)", r.stderr)
		}
	})

	t.Run("Resume", func(t *testing.T) {
		full := runCLI(t, "", "export", broker, "cli").ok(t).stdout
		lines := strings.SplitAfter(full, "\n")
		if len(lines) < 31 || lines[len(lines)-1] != "" {
			t.Fatalf("export printed %d lines", len(lines)-1)
		}
		// An export cut off in the middle of line 12: resume completes it,
		// with no entry twice and none missing.
		file := filepath.Join(t.TempDir(), "out.ndjson")
		partial := strings.Join(lines[:11], "") + lines[11][:20]
		if err := os.WriteFile(file, []byte(partial), 0o644); err != nil {
			t.Fatal(err)
		}
		runCLI(t, "", "export", broker, "cli", "--resume", file).ok(t)
		got, _ := os.ReadFile(file)
		if string(got) != full {
			t.Errorf("after --resume the file holds\n%s\nwant\n%s", got, full)
		}
		// Resuming a complete export adds only what is new.
		id := c.log(map[string]any{"src": "cli", "msg": "later"})
		r := runCLI(t, "", "export", broker, "cli", "--resume", file).ok(t)
		got, _ = os.ReadFile(file)
		rest := strings.TrimPrefix(string(got), full)
		if r.stdout != "" || strings.Count(rest, "\n") != 1 || !strings.Contains(rest, id) {
			t.Errorf("second resume appended %q (stdout %q), want only %s", rest, r.stdout, id)
		}
	})
}
