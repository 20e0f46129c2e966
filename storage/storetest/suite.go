package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// Harness gives the suite stores of the backend under test.
type Harness struct {
	// Fresh prepares an empty data location that lasts as long as t and
	// returns a func that opens a store on it. The suite calls open once to
	// get a fresh store, and again after closing that store to reopen the
	// same data (checking ids and entries across a restart). It calls open
	// only while no other store of that location is open.
	Fresh func(t testing.TB) (open func() (Store, error))
	// Dedup is Fresh for a store whose de-duplication window
	// (storage.Options.DedupWindow or the backend's twin) is window; 0
	// turns de-duplication off. The window runs on the real clock.
	Dedup func(t testing.TB, window time.Duration) (open func() (Store, error))
}

// Run runs the conformance suite. Beyond the Store interface, it expects:
// errors of calls made after Close (and of queued calls Close cuts short)
// to wrap storage.ErrClosed; Subscribe callbacks to be allowed to call List
// and Head; entry ids to be non-zero.
//
// After each test a cleanup checks, for every source the test wrote to:
// ids strictly increasing, no entry above Head, the per-stream lists merge
// into exactly the all-streams list, and every acknowledged entry not since
// deleted is listed byte for byte and nothing else is; then it closes the
// store, reopens it and checks all that again.
func Run(t *testing.T, h Harness) {
	t.Run("List", func(t *testing.T) { testList(t, h) })
	t.Run("Sequence", func(t *testing.T) { testSequence(t, h) })
	t.Run("Head", func(t *testing.T) { testHead(t, h) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, h) })
	t.Run("AppendAsync", func(t *testing.T) { testAppendAsync(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, h) })
	t.Run("Close", func(t *testing.T) { testClose(t, h) })
	t.Run("Msg", func(t *testing.T) { testMsg(t, h) })
	t.Run("Level", func(t *testing.T) { testLevel(t, h) })
	t.Run("Filter", func(t *testing.T) { testFilter(t, h) })
	t.Run("Names", func(t *testing.T) { testNames(t, h) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, h) })
}

// listFixture is the log testList queries: source "dev" gets these
// entries in this order, each followed by one of source "dev2" in the same
// stream; then stream "gone" of "dev" is deleted.
var listFixture = []struct{ label, stream string }{
	{"a1", "a"}, {"b1", "b"}, {"g1", "gone"}, {"a2", "a"}, {"c1", "c"}, {"g2", "gone"},
	{"b2", "b"}, {"a3", "a"}, {"c2", "c"}, {"a4", "a"}, {"g3", "gone"},
}

func testList(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	seq := map[string]uint64{}
	var kept []storage.Entry // of "dev", after the delete
	for _, f := range listFixture {
		e := mustAppend(t, s, "dev", f.stream, `"`+f.label+`"`)
		seq[f.label] = e.Seq
		if f.stream != "gone" {
			kept = append(kept, e)
		}
		mustAppend(t, s, "dev2", f.stream, `"other `+f.label+`"`)
	}
	mustDelete(t, s, "dev", "gone")
	head := seq["g3"]
	if got := mustHead(t, s, "dev"); got != head {
		t.Fatalf("head of dev after deleting its newest entry: %d, want %d", got, head)
	}

	type tc struct {
		name   string
		stream string
		after  uint64
		last   int
		limit  int
		want   string // labels, space-separated, ascending
	}
	cases := []tc{
		{"All", "", 0, -1, 0, "a1 b1 a2 c1 b2 a3 c2 a4"},
		{"AllLimit3", "", 0, -1, 3, "a1 b1 a2"},
		{"AllLimit1", "", 0, -1, 1, "a1"},
		{"AllLimitNegativeMeansNone", "", 0, -1, -1, "a1 b1 a2 c1 b2 a3 c2 a4"},
		{"AllLimitAboveCount", "", 0, -1, 1000, "a1 b1 a2 c1 b2 a3 c2 a4"},
		{"AllAfterA2", "", seq["a2"], -1, 0, "c1 b2 a3 c2 a4"},
		{"AllAfterA2Limit2", "", seq["a2"], -1, 2, "c1 b2"},
		{"AllAfterDeletedG1", "", seq["g1"], -1, 0, "a2 c1 b2 a3 c2 a4"},
		{"AllAfterDeletedG2", "", seq["g2"], -1, 0, "b2 a3 c2 a4"},
		{"AllAfterLastKept", "", seq["a4"], -1, 0, ""},
		{"AllAfterDeletedHead", "", seq["g3"], -1, 0, ""},
		{"AllAfterBeyondHead", "", head + 1000, -1, 0, ""},
		{"AllAfterMax", "", math.MaxUint64, -1, 0, ""},
		{"AllLast3", "", 0, 3, 0, "a3 c2 a4"},
		{"AllLast1", "", 0, 1, 0, "a4"},
		{"AllLast0", "", 0, 0, 0, ""},
		{"AllLast0Limit5", "", 0, 0, 5, ""},
		{"AllLastAboveCount", "", 0, 100, 0, "a1 b1 a2 c1 b2 a3 c2 a4"},
		{"AllLast5Limit2", "", 0, 5, 2, "c1 b2"},
		{"AllLast5Limit5", "", 0, 5, 5, "c1 b2 a3 c2 a4"},
		{"AllAfterB1Last3", "", seq["b1"], 3, 0, "a3 c2 a4"},
		{"AllAfterC2Last3", "", seq["c2"], 3, 0, "a4"},
		{"AllAfterA2Last10Limit2", "", seq["a2"], 10, 2, "c1 b2"},
		{"AllAfterDeletedG2Last2", "", seq["g2"], 2, 0, "c2 a4"},
		{"AllAfterBeyondHeadLast3", "", head + 1, 3, 0, ""},
		{"StreamA", "a", 0, -1, 0, "a1 a2 a3 a4"},
		{"StreamALimit2", "a", 0, -1, 2, "a1 a2"},
		{"StreamAAfterOtherStreamB1", "a", seq["b1"], -1, 0, "a2 a3 a4"},
		{"StreamAAfterDeletedG2", "a", seq["g2"], -1, 0, "a3 a4"},
		{"StreamAAfterA4", "a", seq["a4"], -1, 0, ""},
		{"StreamAAfterBeyondHead", "a", head + 1000, -1, 0, ""},
		{"StreamALast2", "a", 0, 2, 0, "a3 a4"},
		{"StreamALast2Limit1", "a", 0, 2, 1, "a3"},
		{"StreamALast0", "a", 0, 0, 0, ""},
		{"StreamAAfterA3Last5", "a", seq["a3"], 5, 0, "a4"},
		{"StreamAAfterA1Last2Limit1", "a", seq["a1"], 2, 1, "a3"},
		{"StreamB", "b", 0, -1, 0, "b1 b2"},
		{"StreamCLast1", "c", 0, 1, 0, "c2"},
		{"DeletedStream", "gone", 0, -1, 0, ""},
		{"DeletedStreamLast1", "gone", 0, 1, 0, ""},
		{"UnknownStream", "nosuch", 0, -1, 0, ""},
	}
	byLabel := map[string]storage.Entry{}
	for _, e := range kept {
		byLabel[strings.Trim(string(e.Msg), `"`)] = e
	}
	t.Run("Table", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				q := storage.Query{Src: "dev", Stream: c.stream, After: c.after, Last: c.last, Limit: c.limit}
				var want []storage.Entry
				for _, l := range strings.Fields(c.want) {
					want = append(want, byLabel[l])
				}
				if d := diffEntries(mustList(t, s, q), want); d != "" {
					t.Errorf("list %+v: %s", q, d)
				}
			})
		}
	})
	t.Run("UnknownSource", func(t *testing.T) {
		if es := mustList(t, s, storage.Query{Src: "nobody", Last: -1}); len(es) != 0 {
			t.Errorf("list of a source never written: %d entries", len(es))
		}
		if es := mustList(t, s, storage.Query{Src: "nobody", Stream: "a", Last: 3}); len(es) != 0 {
			t.Errorf("list of a source never written, one stream: %d entries", len(es))
		}
	})
	t.Run("OtherSourceUntouched", func(t *testing.T) {
		es := mustList(t, s, storage.Query{Src: "dev2", Last: -1})
		if len(es) != len(listFixture) {
			t.Fatalf("dev2 has %d entries, want %d", len(es), len(listFixture))
		}
		for i, e := range es {
			if want := `"other ` + listFixture[i].label + `"`; string(e.Msg) != want || e.Stream != listFixture[i].stream {
				t.Errorf("dev2 entry %d: %s, want msg %s in %q", i, fmtEntry(e), want, listFixture[i].stream)
			}
		}
	})
	// Every combination of after x last x limit x stream, against the rules
	// of PROTOCOL §5 applied to the kept entries.
	t.Run("Exhaustive", func(t *testing.T) {
		afters := []uint64{0, head + 1, head + 1000, math.MaxUint64}
		for _, v := range seq {
			afters = append(afters, v)
		}
		slices.Sort(afters)
		afters = slices.Compact(afters)
		n := 0
		for _, stream := range []string{"", "a", "b", "c", "gone", "nosuch"} {
			for _, after := range afters {
				for _, last := range []int{-1, 0, 1, 2, 5, 100} {
					for _, limit := range []int{-1, 0, 1, 3, 100} {
						q := storage.Query{Src: "dev", Stream: stream, After: after, Last: last, Limit: limit}
						got := mustList(t, s, q)
						if d := diffEntries(got, selectRef(kept, q)); d != "" {
							t.Errorf("list %+v: %s", q, d)
							if n++; n > 10 {
								t.Fatal("too many failures")
							}
						}
					}
				}
			}
		}
	})
}

// selectRef applies the selection rules of PROTOCOL §5 to es (ascending).
func selectRef(es []storage.Entry, q storage.Query) []storage.Entry {
	var out []storage.Entry
	for _, e := range es {
		if e.Seq > q.After && (q.Stream == "" || e.Stream == q.Stream) && (q.Filter == nil || modelKeep(q.Filter, &e)) {
			out = append(out, e)
		}
	}
	if q.Last >= 0 && len(out) > q.Last {
		out = out[len(out)-q.Last:]
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

func testSequence(t *testing.T, h Harness) {
	t.Run("IncreasingAcrossStreams", func(t *testing.T) {
		_, s := newEnv(t, h)
		streams := []string{"console", "a", "b", "console", "z", "a"}
		var want []storage.Entry
		for i := 0; i < 30; i++ {
			e := mustAppend(t, s, "dev", streams[i%len(streams)], fmt.Sprint(i))
			if i > 0 && e.Seq <= want[i-1].Seq {
				t.Fatalf("append %d got id %d, not above the previous %d", i, e.Seq, want[i-1].Seq)
			}
			want = append(want, e)
		}
		if d := diffEntries(mustList(t, s, storage.Query{Src: "dev", Last: -1}), want); d != "" {
			t.Errorf("all streams merged: %s", d)
		}
	})
	t.Run("PerSource", func(t *testing.T) {
		_, s := newEnv(t, h)
		last := map[string]uint64{}
		for i := 0; i < 30; i++ {
			src := []string{"d1", "d2", "d3"}[i%3]
			e := mustAppend(t, s, src, "console", fmt.Sprint(i))
			if e.Seq <= last[src] {
				t.Fatalf("append %d to %q got id %d, not above its previous %d", i, src, e.Seq, last[src])
			}
			last[src] = e.Seq
		}
		for src, l := range last {
			if h := mustHead(t, s, src); h != l {
				t.Errorf("head of %q: %d, want %d", src, h, l)
			}
		}
	})
	t.Run("AcrossReopen", func(t *testing.T) {
		e, s := newEnv(t, h)
		var want []storage.Entry
		for i := 0; i < 5; i++ {
			want = append(want, mustAppend(t, s, "dev", []string{"a", "b"}[i%2], fmt.Sprint(i)))
		}
		for round := 0; round < 2; round++ {
			s = e.reopen()
			if got := mustHead(t, s, "dev"); got != want[len(want)-1].Seq {
				t.Fatalf("head after reopen %d: %d, want %d", round, got, want[len(want)-1].Seq)
			}
			n := mustAppend(t, s, "dev", "a", fmt.Sprint("after reopen ", round))
			if n.Seq <= want[len(want)-1].Seq {
				t.Fatalf("id after reopen %d: %d, not above %d", round, n.Seq, want[len(want)-1].Seq)
			}
			want = append(want, n)
		}
		if d := diffEntries(mustList(t, s, storage.Query{Src: "dev", Last: -1}), want); d != "" {
			t.Errorf("after reopens: %s", d)
		}
	})
	t.Run("NotReusedAfterDelete", func(t *testing.T) {
		e, s := newEnv(t, h)
		mustAppend(t, s, "dev", "x", "1")
		mustAppend(t, s, "dev", "y", "2")
		top := mustAppend(t, s, "dev", "x", "3")
		mustDelete(t, s, "dev", "x")
		if got := mustHead(t, s, "dev"); got != top.Seq {
			t.Fatalf("head after delete: %d, want %d", got, top.Seq)
		}
		n := mustAppend(t, s, "dev", "x", "4")
		if n.Seq <= top.Seq {
			t.Fatalf("id after delete: %d, not above the deleted %d", n.Seq, top.Seq)
		}
		// The newest entry deleted, then a restart: still not reused.
		mustDelete(t, s, "dev", "x")
		mustDelete(t, s, "dev", "y")
		s = e.reopen()
		if got := mustHead(t, s, "dev"); got != n.Seq {
			t.Fatalf("head after deleting everything and reopening: %d, want %d", got, n.Seq)
		}
		m := mustAppend(t, s, "dev", "y", "5")
		if m.Seq <= n.Seq {
			t.Fatalf("id after delete and reopen: %d, not above the deleted %d", m.Seq, n.Seq)
		}
	})
}

func testHead(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	if got := mustHead(t, s, "dev"); got != 0 {
		t.Fatalf("head of an empty store: %d, want 0", got)
	}
	var last storage.Entry
	for i := 0; i < 4; i++ {
		last = mustAppend(t, s, "dev", []string{"a", "b"}[i%2], fmt.Sprint(i))
		if got := mustHead(t, s, "dev"); got != last.Seq {
			t.Fatalf("head after append %d: %d, want %d", i, got, last.Seq)
		}
	}
	mustAppend(t, s, "dev/sub", "a", "other source")
	if got := mustHead(t, s, "dev"); got != last.Seq {
		t.Fatalf("head after an append to another source: %d, want %d", got, last.Seq)
	}
	if got := mustHead(t, s, "de"); got != 0 {
		t.Fatalf("head of a prefix of a source: %d, want 0", got)
	}
	es := mustList(t, s, storage.Query{Src: "dev", Last: 1})
	if len(es) != 1 || es[0].Seq != last.Seq {
		t.Fatalf("last 1 = %v, want the head %d", seqsOf(es), last.Seq)
	}
}

func testDelete(t *testing.T, h Harness) {
	t.Run("OtherStreamsWhole", func(t *testing.T) {
		_, s := newEnv(t, h)
		srcs := []string{"dev", "dev/1", "de", "dev0"}
		streams := []string{"a", "ab", "a b", "b", "a.b", "aa"}
		for i := 0; i < 3; i++ {
			for _, src := range srcs {
				for _, st := range streams {
					mustAppend(t, s, src, st, fmt.Sprintf(`"%s %s %d"`, src, st, i))
				}
			}
		}
		mustDelete(t, s, "dev", "a")
		for _, src := range srcs {
			for _, st := range streams {
				got := mustList(t, s, storage.Query{Src: src, Stream: st, Last: -1})
				want := 3
				if src == "dev" && st == "a" {
					want = 0
				}
				if len(got) != want {
					t.Errorf("%q/%q after deleting dev/a: %d entries, want %d", src, st, len(got), want)
				}
			}
		}
		if got := mustList(t, s, storage.Query{Src: "dev", Last: -1}); len(got) != 3*(len(streams)-1) {
			t.Errorf("all streams of dev after deleting a: %d entries, want %d", len(got), 3*(len(streams)-1))
		}
	})
	t.Run("UnknownAndTwice", func(t *testing.T) {
		_, s := newEnv(t, h)
		mustDelete(t, s, "nobody", "console")
		mustAppend(t, s, "dev", "console", "1")
		mustDelete(t, s, "dev", "console")
		mustDelete(t, s, "dev", "console")
		if got := mustList(t, s, storage.Query{Src: "dev", Last: -1}); len(got) != 0 {
			t.Errorf("after deleting the only stream: %d entries", len(got))
		}
	})
	t.Run("AfterAppendAsync", func(t *testing.T) {
		_, s := newEnv(t, h)
		const n = 50
		var wg sync.WaitGroup
		var failed atomic.Int32
		wg.Add(n)
		for i := 0; i < n; i++ {
			s.AppendAsync(storage.Record{Src: "dev", Stream: "x", Msg: []byte(fmt.Sprint(i))}, func(_ storage.Entry, err error) {
				if err != nil {
					failed.Add(1)
				}
				wg.Done()
			})
		}
		s.AppendAsync(storage.Record{Src: "dev", Stream: "keep", Msg: []byte(`"kept"`)}, nil)
		mustDelete(t, s, "dev", "x")
		if got := mustList(t, s, storage.Query{Src: "dev", Stream: "x", Last: -1}); len(got) != 0 {
			t.Errorf("after Delete following %d AppendAsync: %d entries of them remain: %v", n, len(got), seqsOf(got))
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		waitChan(t, "done callbacks of the appends before the delete", done)
		if f := failed.Load(); f != 0 {
			t.Errorf("%d appends before the delete failed", f)
		}
		if got := mustList(t, s, storage.Query{Src: "dev", Stream: "keep", Last: -1}); len(got) != 1 {
			t.Errorf("the AppendAsync to another stream before the delete: %d entries, want 1", len(got))
		}
		after := mustAppend(t, s, "dev", "x", "after")
		got := mustList(t, s, storage.Query{Src: "dev", Stream: "x", Last: -1})
		if len(got) != 1 || got[0].Seq != after.Seq {
			t.Errorf("append after the delete: stream holds %v, want [%d]", seqsOf(got), after.Seq)
		}
	})
}

func testAppendAsync(t *testing.T, h Harness) {
	t.Run("OrderPerGoroutine", func(t *testing.T) {
		_, s := newEnv(t, h)
		const goroutines, each = 8, 60
		type res struct {
			g, i int
			seq  uint64
			err  error
		}
		results := make(chan res, goroutines*each)
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					rec := storage.Record{Src: "dev", Stream: []string{"a", "b", "c"}[(g+i)%3], Msg: []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))}
					s.AppendAsync(rec, func(e storage.Entry, err error) { results <- res{g, i, e.Seq, err} })
				}
			}()
		}
		wg.Wait()
		seqs := make([][]uint64, goroutines)
		for g := range seqs {
			seqs[g] = make([]uint64, each)
		}
		seen := map[uint64]bool{}
		for k := 0; k < goroutines*each; k++ {
			r := waitChan(t, "done callbacks", (<-chan res)(results))
			if r.err != nil {
				t.Fatalf("append g%d i%d: %v", r.g, r.i, r.err)
			}
			if seqs[r.g][r.i] != 0 {
				t.Fatalf("done of g%d i%d called twice", r.g, r.i)
			}
			if seen[r.seq] {
				t.Fatalf("id %d given twice", r.seq)
			}
			seen[r.seq] = true
			seqs[r.g][r.i] = r.seq
		}
		for g := range seqs {
			for i := 1; i < each; i++ {
				if seqs[g][i] <= seqs[g][i-1] {
					t.Errorf("goroutine %d: record %d got id %d, not above record %d's %d", g, i, seqs[g][i], i-1, seqs[g][i-1])
				}
			}
		}
		if got := mustList(t, s, storage.Query{Src: "dev", Last: -1}); len(got) != goroutines*each {
			t.Errorf("listed %d entries, want %d", len(got), goroutines*each)
		}
	})
	t.Run("NilDone", func(t *testing.T) {
		_, s := newEnv(t, h)
		s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte("1")}, nil)
		e := mustAppend(t, s, "dev", "a", "2")
		// Same goroutine: the first took effect before the second.
		got := mustList(t, s, storage.Query{Src: "dev", Last: -1})
		if len(got) != 2 || string(got[0].Msg) != "1" || got[1].Seq != e.Seq {
			t.Errorf("list after AppendAsync(nil done) then Append: %v", got)
		}
	})
}

func testConcurrent(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	ctx := testCtx(t)
	const goroutines, each = 32, 25
	srcs := []string{"d1", "d2"}
	streams := []string{"a", "b", "c"}
	type key struct{ src, msg string }
	var mu sync.Mutex
	acked := map[key]storage.Entry{}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec := storage.Record{Src: srcs[(g+i)%2], Stream: streams[(g*7+i)%3], Timestamp: int64(g*1000 + i), Msg: []byte(fmt.Sprintf(`"%d-%d"`, g, i))}
				e, err := s.Append(ctx, rec)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked[key{rec.Src, string(rec.Msg)}] = e
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	for _, src := range srcs {
		got := mustList(t, s, storage.Query{Src: src, Last: -1})
		n := 0
		for _, e := range got {
			want, ok := acked[key{src, string(e.Msg)}]
			if !ok {
				t.Errorf("%q: listed an entry never acknowledged: %s", src, fmtEntry(e))
				continue
			}
			if !sameEntry(e, want) {
				t.Errorf("%q: listed %s, acknowledged %s", src, fmtEntry(e), fmtEntry(want))
			}
			n++
		}
		if n != goroutines*each/2 {
			t.Errorf("%q: %d entries listed, want %d (lost or duplicated)", src, n, goroutines*each/2)
		}
	}
}

func testSubscribe(t *testing.T, h Harness) {
	t.Run("DurableListableInOrder", func(t *testing.T) {
		_, s := newEnv(t, h)
		ctx := testCtx(t)
		var (
			mu        sync.Mutex
			delivered = map[uint64]storage.Entry{} // by seq, src "dev"
			lastSeq   = map[string]uint64{}
			problems  []string
			calls     int
		)
		cancel := s.Subscribe(func(group []storage.Entry) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			for _, e := range group {
				if e.Seq <= lastSeq[e.Src] {
					problems = append(problems, fmt.Sprintf("entry %d of %q delivered after %d", e.Seq, e.Src, lastSeq[e.Src]))
				}
				lastSeq[e.Src] = e.Seq
				if hd, err := s.Head(ctx, e.Src); err != nil || hd < e.Seq {
					problems = append(problems, fmt.Sprintf("entry %d of %q delivered while head is %d (err %v)", e.Seq, e.Src, hd, err))
				}
				got, err := s.List(ctx, storage.Query{Src: e.Src, Stream: e.Stream, After: e.Seq - 1, Last: -1, Limit: 1})
				if err != nil || len(got) != 1 || !sameEntry(got[0], e) {
					problems = append(problems, fmt.Sprintf("entry %s delivered but not listable (list: %v, err %v)", fmtEntry(e), got, err))
				}
				if e.Src == "dev" {
					if _, dup := delivered[e.Seq]; dup {
						problems = append(problems, fmt.Sprintf("entry %d delivered twice", e.Seq))
					}
					delivered[e.Seq] = e
				}
			}
		})
		defer cancel()
		const goroutines, each = 4, 40
		var wg sync.WaitGroup
		var acked sync.Map
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					rec := storage.Record{Src: []string{"dev", "dev", "other"}[i%3], Stream: []string{"a", "b"}[g%2], Msg: []byte(fmt.Sprintf(`[%d,%d]`, g, i))}
					if g%2 == 0 {
						e, err := s.Append(ctx, rec)
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
						acked.Store(e.Src+"\x00"+e.ID(), e)
					} else {
						s.AppendAsync(rec, func(e storage.Entry, err error) {
							if err != nil {
								t.Errorf("append async: %v", err)
								return
							}
							acked.Store(e.Src+"\x00"+e.ID(), e)
						})
					}
				}
			}()
		}
		wg.Wait()
		var want []storage.Entry
		await.Until(t, waitTimeout, "every append acknowledged", func() bool {
			want = want[:0]
			n := 0
			acked.Range(func(_, v any) bool {
				n++
				if e := v.(storage.Entry); e.Src == "dev" {
					want = append(want, e)
				}
				return true
			})
			return n == goroutines*each
		})
		await.Until(t, waitTimeout, "every entry of dev delivered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(delivered) >= len(want)
		})
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Error(p)
		}
		for _, e := range want {
			if d, ok := delivered[e.Seq]; !ok || !sameEntry(d, e) {
				t.Errorf("acknowledged %s, delivered %s (found %v)", fmtEntry(e), fmtEntry(d), ok)
			}
		}
		if len(delivered) != len(want) {
			t.Errorf("delivered %d entries of dev, acknowledged %d", len(delivered), len(want))
		}
		if calls == 0 {
			t.Error("subscriber never called")
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		_, s := newEnv(t, h)
		var first, second atomic.Int64
		seen := make(chan uint64, 100)
		cancel1 := s.Subscribe(func(g []storage.Entry) { first.Add(int64(len(g))) })
		cancel2 := s.Subscribe(func(g []storage.Entry) {
			second.Add(int64(len(g)))
			for _, e := range g {
				seen <- e.Seq
			}
		})
		defer cancel2()
		e1 := mustAppend(t, s, "dev", "a", "1")
		if got := waitChan(t, "delivery of the first entry", (<-chan uint64)(seen)); got != e1.Seq {
			t.Fatalf("second subscriber got %d, want %d", got, e1.Seq)
		}
		await.Until(t, waitTimeout, "first subscriber to get the first entry", func() bool { return first.Load() == 1 })
		cancel1()
		cancel1() // idempotent
		e2 := mustAppend(t, s, "dev", "a", "2")
		if got := waitChan(t, "delivery of the second entry", (<-chan uint64)(seen)); got != e2.Seq {
			t.Fatalf("second subscriber got %d, want %d", got, e2.Seq)
		}
		if n := first.Load(); n != 1 {
			t.Errorf("cancelled subscriber got %d entries, want 1 (none after cancel)", n)
		}
	})
}

func testClose(t *testing.T, h Harness) {
	t.Run("QueuedCallsAndNewCalls", func(t *testing.T) {
		_, s := newEnv(t, h)
		const goroutines, each = 4, 50
		var calls atomic.Int64
		var bad atomic.Value
		var ok, closed atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(g*each + i))}, func(_ storage.Entry, err error) {
						calls.Add(1)
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, storage.ErrClosed):
							closed.Add(1)
						default:
							bad.Store(err)
						}
					})
				}
			}()
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		await.Until(t, waitTimeout, "every done callback queued before Close", func() bool { return calls.Load() >= goroutines*each })
		if err, _ := bad.Load().(error); err != nil {
			t.Errorf("a call queued before Close failed with %v, want success or ErrClosed", err)
		}
		t.Logf("queued before Close: %d stored, %d failed with ErrClosed", ok.Load(), closed.Load())

		ctx := testCtx(t)
		if _, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte("1")}); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("append after close: %v, want ErrClosed", err)
		}
		if err := s.Delete(ctx, "dev", "a"); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("delete after close: %v, want ErrClosed", err)
		}
		if _, err := s.List(ctx, storage.Query{Src: "dev", Last: -1}); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("list after close: %v, want ErrClosed", err)
		}
		if _, err := s.Head(ctx, "dev"); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("head after close: %v, want ErrClosed", err)
		}
		// done runs exactly once, and not on the caller's goroutine: here
		// it waits for AppendAsync to have returned.
		returned := make(chan struct{})
		result := make(chan error, 2)
		s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte("1")}, func(_ storage.Entry, err error) {
			select {
			case <-returned:
				result <- err
			case <-ctx.Done():
				result <- errors.New("done ran before AppendAsync returned (on the caller's goroutine?)")
			}
		})
		close(returned)
		if err := waitChan(t, "done of AppendAsync after close", (<-chan error)(result)); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("append async after close: %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		select {
		case err := <-result:
			t.Errorf("done of AppendAsync after close ran twice (second: %v)", err)
		default:
		}
		if n := calls.Load(); n != goroutines*each {
			t.Errorf("%d done callbacks for %d calls queued before Close", n, goroutines*each)
		}
	})
	t.Run("RacingAppends", func(t *testing.T) {
		_, s := newEnv(t, h)
		ctx := testCtx(t)
		var wg sync.WaitGroup
		var stored atomic.Int64
		started := make(chan struct{}, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					_, err := s.Append(ctx, storage.Record{Src: "dev", Stream: fmt.Sprint("s", g%3), Msg: []byte(fmt.Sprint(i))})
					if err != nil {
						if !errors.Is(err, storage.ErrClosed) {
							t.Errorf("append racing close: %v, want ErrClosed", err)
						}
						return
					}
					stored.Add(1)
					if i == 2 {
						started <- struct{}{}
					}
				}
			}()
		}
		for g := 0; g < 8; g++ {
			waitChan(t, "appenders under way", (<-chan struct{})(started))
		}
		if err := s.Close(); err != nil {
			t.Errorf("close with appends under way: %v", err)
		}
		wg.Wait()
		t.Logf("%d appends acknowledged before close", stored.Load())
	})
}

func testMsg(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	msgs := []struct{ name, msg string }{
		{"String", `"boot ok"`},
		{"EmptyString", `""`},
		{"Integer", `42`},
		{"Float", `-1.5e300`},
		{"True", `true`},
		{"Null", `null`},
		{"Object", `{"a":[1,2,{"b":"\u00e9"}],"c":null}`},
		{"ObjectWithSpaces", "{ \"a\" :\t1 ,\n\"b\" : [ ] }"},
		{"Array", `[1,"two",3.0,false]`},
		{"Escapes", `"line\nbreak \"quoted\" \\ \u0000 \ud83d\ude00"`},
		{"UTF8", `"grüße 日本語 😀"`},
		{"Big", big},
	}
	stamps := []int64{0, 1, 1764080000123, 253402300799999}
	var want []storage.Entry
	for i, m := range msgs {
		buf := []byte(m.msg)
		e := mustAppendRec(t, s, storage.Record{Src: "dev", Stream: "console", Timestamp: stamps[i%len(stamps)], Msg: buf})
		// The caller may reuse its buffer once Append returned.
		for j := range buf {
			buf[j] = '#'
		}
		e.Msg = []byte(m.msg)
		want = append(want, e)
	}
	got := mustList(t, s, storage.Query{Src: "dev", Stream: "console", Last: -1})
	for i, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			if i >= len(got) {
				t.Fatalf("entry missing: got %d entries", len(got))
			}
			if !sameEntry(got[i], want[i]) {
				t.Errorf("listed %s, want %s", fmtEntry(got[i]), fmtEntry(want[i]))
			}
		})
	}
	// A caller may append to a listed Msg without clobbering the next one,
	// and modify what List returned without changing the store.
	if len(got) == len(want) {
		for i := 0; i+1 < len(got); i++ {
			_ = append(got[i].Msg, "garbage"...)
		}
		if d := diffEntries(got, want); d != "" {
			t.Errorf("appending to a listed Msg changed the result: %s", d)
		}
	}
	for _, e := range got {
		for j := range e.Msg {
			e.Msg[j] = '#'
		}
	}
	if d := diffEntries(mustList(t, s, storage.Query{Src: "dev", Last: -1}), want); d != "" {
		t.Errorf("after modifying a List result: %s", d)
	}
}

// testLevel stores entries with every level and none, with msgs that
// start like a level byte would, and lists them back (the cleanup checks
// them again after a reopen).
func testLevel(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	levels := []storage.Level{storage.NoLevel, storage.LevelError, storage.LevelWarn, storage.LevelInfo, storage.LevelDebug, storage.LevelVerbose}
	msgs := []string{`"boot ok"`, "\x00", "\x01x", "\x05", "\x07\x07", "\x08", ``, `{"a":1}`}
	var want []storage.Entry
	for i, m := range msgs {
		for j, l := range levels {
			rec := storage.Record{Src: "dev", Stream: "console", Timestamp: int64(1764080000000 + i*10 + j), Msg: []byte(m), Level: l}
			want = append(want, mustAppendRec(t, s, rec))
		}
	}
	for _, q := range []storage.Query{
		{Src: "dev", Stream: "console", Last: -1},
		{Src: "dev", Last: -1},
		{Src: "dev", Stream: "console", Last: len(want)},
	} {
		if d := diffEntries(mustList(t, s, q), want); d != "" {
			t.Errorf("List %+v: %s", q, d)
		}
	}
	for _, tc := range []struct {
		n    int
		want storage.Level
	}{{-1, storage.NoLevel}, {0, storage.LevelError}, {4, storage.LevelVerbose}, {5, storage.NoLevel}} {
		if got := storage.LevelOf(tc.n); got != tc.want {
			t.Errorf("LevelOf(%d) = %d, want %d", tc.n, got, tc.want)
		}
		if n, ok := tc.want.Number(); ok != (tc.want != storage.NoLevel) || (ok && n != tc.n) {
			t.Errorf("Level(%d).Number() = %d, %v", tc.want, n, ok)
		}
	}
}

func testNames(t *testing.T, h Harness) {
	_, s := newEnv(t, h)
	srcs := []string{
		"dev", "dev/rpc-resp/mos-123", "dev/", "/dev", "de", "dev0", "dev.1", "dev*", "dev>",
		"устройство-ü-日本語", "a b", "x\x01y", "x", "\u2028", strings.Repeat("s", 200),
	}
	streams := []string{"console", "a.b", "a", "ab", "a b", "日本語", "*", ">", "x$y", strings.Repeat("t", 128)}
	type key struct{ src, stream string }
	want := map[key]storage.Entry{}
	for _, src := range srcs {
		for _, st := range streams {
			want[key{src, st}] = mustAppend(t, s, src, st, fmt.Sprintf("%q", src+" | "+st))
		}
	}
	check := func(t *testing.T, deleted key) {
		for _, src := range srcs {
			n := 0
			for _, st := range streams {
				got := mustList(t, s, storage.Query{Src: src, Stream: st, Last: -1})
				if (key{src, st}) == deleted {
					if len(got) != 0 {
						t.Errorf("%q/%q deleted, still lists %d", src, st, len(got))
					}
					continue
				}
				n++
				if len(got) != 1 || !sameEntry(got[0], want[key{src, st}]) {
					t.Errorf("%q/%q lists %v, want %s", src, st, got, fmtEntry(want[key{src, st}]))
				}
			}
			if all := mustList(t, s, storage.Query{Src: src, Last: -1}); len(all) != n {
				t.Errorf("%q all streams: %d entries, want %d", src, len(all), n)
			}
		}
	}
	t.Run("List", func(t *testing.T) { check(t, key{}) })
	t.Run("Delete", func(t *testing.T) {
		mustDelete(t, s, "dev/rpc-resp/mos-123", "a")
		check(t, key{"dev/rpc-resp/mos-123", "a"})
	})
}
