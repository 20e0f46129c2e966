package storetest

import (
	"encoding/json"
	"regexp"
	"testing"
	"unicode"

	"github.com/logbroker/logbroker/storage"
)

// filterMsgs are the msgs testFilter cycles through: strings with and
// without escapes, case and Unicode folding cases, non-string values.
var filterMsgs = []string{
	`"boot ok"`,
	`"connect TIMEOUT after 3s"`,
	`"line\nwith \"quotes\" and Time\u004fut"`,
	`"KELVIN 5\u212a and ſtatus"`,
	`"grüße ÄRGER 日本語"`,
	`{"event":"timeout","disk":42}`,
	`12345`,
	`["a","Disk full"]`,
	`"\ud83d\ude00 emoji, then k"`,
	`"plain text with timeout.retry=5"`,
	`true`,
	`"ÖSTERREICH"`,
}

// filterCases are the filters testFilter checks, each against the model.
func filterCases(base int64) []storage.Filter {
	return []storage.Filter{
		{},
		{Level: storage.LevelError},
		{Level: storage.LevelWarn},
		{Level: storage.LevelVerbose},
		{Match: "timeout"},
		{Match: "TIMEOUT"},
		{Match: "k"},      // folds with U+212A
		{Match: "Status"}, // ſ folds with s
		{Match: "ärger"},  // non-ASCII needle
		{Match: "österreich"},
		{Match: `"disk"`}, // in the raw JSON of an object
		{Match: "\n"},     // a decoded escape
		{Match: "😀 emoji"},
		{Match: "no such text"},
		{Regex: regexp.MustCompile(`^connect`)},
		{Regex: regexp.MustCompile(`(?i)time\s*out`)},
		{Regex: regexp.MustCompile(`Time`)},
		{Since: base + 100, Until: base + 200, HasUntil: true},
		{Since: base + 250},
		{Until: base + 10, HasUntil: true},
		{Since: base + 600, Until: base + 601, HasUntil: true},
		{Level: storage.LevelInfo, Match: "timeout", Since: base + 50, Until: base + 500, HasUntil: true},
		{Level: storage.LevelDebug, Regex: regexp.MustCompile(`[0-9]`), Since: base + 300},
	}
}

// testFilter appends a log of several hundred entries (over blocks of
// sequences, with some timestamps out of order) and checks List with each
// filter, alone and with after, last, limit and stream, against a model
// written independently of the store's matcher.
func testFilter(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	const n = 700
	base := int64(1764080000000)
	all := make([]storage.Entry, n)
	errs := make(chan error, n)
	streams := []string{"console", "app", "console", "sys"}
	for i := range n {
		ts := base + int64(i)
		switch i {
		case 13, 520:
			ts = base - 5000 + int64(i) // a device clock behind
		case 300:
			ts = base + 100000 // one ahead
		}
		rec := storage.Record{
			Src: "flt", Stream: streams[i%len(streams)], Timestamp: ts,
			Msg: []byte(filterMsgs[i%len(filterMsgs)]), Level: storage.Level(i % 7 % 6),
		}
		// Queued from one goroutine: stored in this order.
		s.AppendAsync(rec, func(e storage.Entry, err error) {
			all[i] = e
			errs <- err
		})
		if i%50 == 0 {
			s.AppendAsync(storage.Record{Src: "flt2", Stream: "console", Msg: []byte(`"timeout elsewhere"`)}, nil)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	for i := 1; i < n; i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("entries %d and %d: seqs %d, %d out of order", i-1, i, all[i-1].Seq, all[i].Seq)
		}
	}
	failures := 0
	for fi, fc := range filterCases(base) {
		f := storage.NewFilter(fc)
		var kept []storage.Entry
		for i := range all {
			want := modelKeep(&fc, &all[i])
			if got := f.Keep(&all[i]); got != want {
				t.Errorf("filter %d %+v: Keep(%s) = %v, model says %v", fi, fc, fmtEntry(all[i]), got, want)
			}
			if want {
				kept = append(kept, all[i])
			}
		}
		if fi > 0 && (len(kept) == 0 || len(kept) == len(all)) && fc.Match != "no such text" {
			t.Errorf("filter %d %+v keeps %d of %d entries: a weak case", fi, fc, len(kept), len(all))
		}
		// Each of after, last, limit and stream, alone and together.
		mid, end := all[n/3].Seq, all[n-5].Seq
		qs := []storage.Query{
			{Last: -1, Limit: 1000},
			{Last: 1000, Limit: 1000},
			{After: end, Last: -1, Limit: 1000},
			{Stream: "console", Last: -1, Limit: 1000},
			{Last: 3, Limit: 1000},
			{After: mid, Last: -1, Limit: 2},
			{Stream: "console", After: mid, Last: 3, Limit: 2},
			{Stream: "console", Last: 5, Limit: 1000},
			{After: mid, Last: 3, Limit: 1000},
		}
		for _, q := range qs {
			q.Src, q.Filter = "flt", f
			got := mustList(t, s, q)
			if d := diffEntries(got, selectRef(kept, q)); d != "" {
				t.Errorf("filter %d %+v, list %+v: %s", fi, fc, q, d)
				if failures++; failures > 10 {
					t.Fatal("too many failures")
				}
			}
		}
	}
	// A filter that is not prepared (not from NewFilter) works the same.
	raw := &storage.Filter{Match: "TimeOut"}
	got := mustList(t, s, storage.Query{Src: "flt", Last: -1, Filter: raw})
	var want []storage.Entry
	for i := range all {
		if modelKeep(raw, &all[i]) {
			want = append(want, all[i])
		}
	}
	if d := diffEntries(got, want); d != "" {
		t.Errorf("unprepared filter: %s", d)
	}
}

// modelKeep is the model of PROTOCOL §5's filters, written apart from the
// store's matcher: it decodes string msgs with encoding/json and folds
// rune by rune along unicode.SimpleFold orbits.
func modelKeep(f *storage.Filter, e *storage.Entry) bool {
	if e.Timestamp < f.Since || (f.HasUntil && e.Timestamp >= f.Until) {
		return false
	}
	if f.Level != storage.NoLevel && (e.Level == storage.NoLevel || e.Level > f.Level) {
		return false
	}
	text := string(e.Msg)
	var str string
	if json.Unmarshal(e.Msg, &str) == nil {
		text = str
	}
	if f.Match != "" && !modelContainsFold(text, f.Match) {
		return false
	}
	return f.Regex == nil || f.Regex.MatchString(text)
}

func modelContainsFold(text, needle string) bool {
	nr := []rune(needle)
	tr := []rune(text)
	for i := 0; i+len(nr) <= len(tr); i++ {
		ok := true
		for j, r := range nr {
			if !sameFold(tr[i+j], r) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// sameFold reports whether b is in a's simple folding orbit.
func sameFold(a, b rune) bool {
	if a == b {
		return true
	}
	for o := unicode.SimpleFold(a); o != a; o = unicode.SimpleFold(o) {
		if o == b {
			return true
		}
	}
	return false
}
