package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// tailStore is a store on its own in-memory file system, reopenable.
type tailStore struct {
	name string
	fs   vfs.FS
	opts storage.Options
	s    *storage.Store
}

func (ts *tailStore) open(t *testing.T) {
	t.Helper()
	ts.s = openMem(t, ts.fs, ts.opts)
}

func (ts *tailStore) reopen(t *testing.T) {
	t.Helper()
	if err := ts.s.Close(); err != nil {
		t.Fatalf("%s: close: %v", ts.name, err)
	}
	ts.open(t)
}

// appendAll appends recs, in order, to s through AppendAsync from this
// goroutine (so in large batches), and waits for all.
func appendAll(t *testing.T, s *storage.Store, recs []storage.Record) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Value
	wg.Add(len(recs))
	for _, r := range recs {
		s.AppendAsync(r, func(_ storage.Entry, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("append: %v", err)
	}
}

// diffLists describes how got differs from want ("" if not at all).
func diffLists(got, want []storage.Entry) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d entries %v, want %d %v", len(got), seqList(got), len(want), seqList(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Src != w.Src || g.Stream != w.Stream || g.Timestamp != w.Timestamp || !bytes.Equal(g.Msg, w.Msg) {
			return fmt.Sprintf("entry %d is {%d %s/%s %d %.40q}, want {%d %s/%s %d %.40q}",
				i, g.Seq, g.Src, g.Stream, g.Timestamp, g.Msg, w.Seq, w.Src, w.Stream, w.Timestamp, w.Msg)
		}
	}
	return ""
}

func seqList(es []storage.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// TestTailCache_SameAsPebble runs one random workload (appends to many
// streams of two sources, deletes, retention trims, reopens) on stores
// with the tail cache at its default size, with a tiny one (evicting all
// the time) and without, and after every step checks that random queries
// (after, last, limit, one stream or all) return exactly the same on all.
func TestTailCache_SameAsPebble(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			testTailSameAsPebble(t, seed)
		})
	}
}

func testTailSameAsPebble(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	ret := storage.Retention{MaxEntriesPerStream: 1200, Interval: time.Hour}
	stores := []*tailStore{
		{name: "off", opts: storage.Options{TailCacheBytes: -1, Retention: ret}},
		{name: "default", opts: storage.Options{Retention: ret}},
		{name: "tiny", opts: storage.Options{TailCacheBytes: 16 << 10, Retention: ret}},
	}
	for _, ts := range stores {
		ts.fs = vfs.NewMem()
		ts.open(t)
	}
	t.Cleanup(func() {
		for _, ts := range stores {
			ts.s.Close()
		}
	})
	ctx := context.Background()
	srcs := []string{"dev", "old", "idle"}
	streams := []string{"console", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}
	msg := func() []byte {
		n := rng.IntN(200)
		if rng.IntN(400) == 0 {
			n = 20 << 10
		}
		b := bytes.Repeat([]byte{'a' + byte(rng.IntN(26))}, n+2)
		for i := 0; i < min(n, 8); i++ {
			b[1+rng.IntN(n)] = 'a' + byte(rng.IntN(26))
		}
		b[0], b[len(b)-1] = '"', '"'
		return b
	}
	// "old" has entries before the first reopen: not fresh afterwards.
	var recs []storage.Record
	for i := 0; i < 500; i++ {
		recs = append(recs, storage.Record{Src: "old", Stream: streams[rng.IntN(3)], Timestamp: int64(i), Msg: msg()})
	}
	for _, ts := range stores {
		appendAll(t, ts.s, recs)
	}
	query := func(src string) storage.Query {
		q := storage.Query{Src: src, Last: -1}
		if rng.IntN(8) > 0 {
			q.Stream = streams[rng.IntN(len(streams))]
		}
		head, err := stores[0].s.Head(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		switch rng.IntN(6) {
		case 0, 1:
		case 2:
			q.After = head - min(head, rng.Uint64N(60))
		case 3:
			q.After = rng.Uint64N(head + 2)
		case 4:
			q.After = head + rng.Uint64N(2)
		default:
			q.After = math.MaxUint64
		}
		switch rng.IntN(8) {
		case 0, 1:
		case 2:
			q.Last = 0
		case 3:
			q.Last = 1
		case 4:
			q.Last = 100
		case 5:
			q.Last = 1 + rng.IntN(1500)
		default:
			q.Last = 1 + rng.IntN(20)
		}
		switch rng.IntN(6) {
		case 0, 1, 2:
		case 3:
			q.Limit = 1 + rng.IntN(5)
		case 4:
			q.Limit = 100
		default:
			q.Limit = 1 + rng.IntN(400)
		}
		return q
	}
	check := func(step string) {
		t.Helper()
		for _, ts := range stores {
			if err := storage.CheckTailCache(ts.s); err != nil {
				t.Fatalf("%s: %s cache: %v", step, ts.name, err)
			}
		}
		for i := 0; i < 30; i++ {
			q := query(srcs[rng.IntN(len(srcs))])
			want, err := stores[0].s.List(ctx, q)
			if err != nil {
				t.Fatalf("%s: list %+v without cache: %v", step, q, err)
			}
			for _, ts := range stores[1:] {
				// Twice: a miss may seed the cache, the second call may hit.
				// Then ListShared, which may hit too.
				for try := 0; try < 3; try++ {
					list := ts.s.List
					if try == 2 {
						list = ts.s.ListShared
					}
					got, err := list(ctx, q)
					if err != nil {
						t.Fatalf("%s: %s cache: list %+v: %v", step, ts.name, q, err)
					}
					if d := diffLists(got, want); d != "" {
						t.Fatalf("%s: %s cache: list %+v (call %d): %s", step, ts.name, q, try+1, d)
					}
				}
			}
		}
	}
	check("start")
	for round := 0; round < 24; round++ {
		var step string
		r := rng.IntN(100)
		if round == 5 {
			r = 99 // appends, with a big msg
		}
		switch {
		case round == 10 || round == 20 || r < 4:
			step = "reopen"
			for _, ts := range stores {
				ts.reopen(t)
			}
		case r < 12:
			src, stream := srcs[rng.IntN(2)], streams[rng.IntN(len(streams))]
			step = fmt.Sprintf("delete %s/%s", src, stream)
			for _, ts := range stores {
				if err := ts.s.Delete(ctx, src, stream); err != nil {
					t.Fatal(err)
				}
			}
		case r < 20:
			step = "retention"
			var removed []int64
			for _, ts := range stores {
				n, err := storage.Retain(ts.s)
				if err != nil {
					t.Fatal(err)
				}
				removed = append(removed, n)
			}
			if removed[1] != removed[0] || removed[2] != removed[0] {
				t.Fatalf("retention removed %v entries: the stores differ", removed)
			}
		default:
			n := 1 + rng.IntN(300)
			step = fmt.Sprintf("append %d", n)
			recs = recs[:0]
			hot := streams[rng.IntN(len(streams))]
			for i := 0; i < n; i++ {
				stream := hot
				if rng.IntN(2) == 0 {
					stream = streams[rng.IntN(len(streams))]
				}
				recs = append(recs, storage.Record{Src: srcs[rng.IntN(2)], Stream: stream, Timestamp: rng.Int64N(1 << 40), Msg: msg()})
			}
			if round == 5 {
				// Over a stream's byte bound alone.
				big := append(append([]byte(`"`), bytes.Repeat([]byte("b"), 1<<20)...), '"')
				recs = append(recs, storage.Record{Src: "dev", Stream: hot, Msg: big})
			}
			for _, ts := range stores {
				appendAll(t, ts.s, recs)
			}
		}
		check(fmt.Sprintf("round %d (%s)", round, step))
	}
	for _, ts := range stores {
		st := ts.s.Stats()
		switch ts.name {
		case "off":
			if st.TailHits != 0 || st.TailBytes != 0 {
				t.Errorf("cache off: %d hits, %d bytes", st.TailHits, st.TailBytes)
			}
		default:
			if st.TailHits == 0 {
				t.Errorf("%s cache: no List served from it (%d misses)", ts.name, st.TailMisses)
			}
			if st.TailBytes > uint64(max(ts.opts.TailCacheBytes, storage.DefaultTailCacheBytes)) {
				t.Errorf("%s cache: %d bytes, over its budget", ts.name, st.TailBytes)
			}
			t.Logf("%s cache: %d hits, %d misses, %d bytes", ts.name, st.TailHits, st.TailMisses, st.TailBytes)
		}
	}
}

// TestTailCache_DurableOnly holds the WAL sync of a batch appending to a
// stream the cache knows (listed before its first entry, then filled by
// the appends; or seeded by a List after a reopen): List must not show the
// entry until it is
// durable; and when the sync fails, the entry (which reached the
// in-memory disk) is listable after the recovery, as Pebble has it, not
// hidden by what the cache held before.
func TestTailCache_DurableOnly(t *testing.T) {
	for _, c := range []struct {
		name     string
		reopen   bool
		failSync bool
	}{
		{"Filled", false, false},
		{"Seeded", true, false},
		{"FilledSyncFails", false, true},
		{"SeededSyncFails", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newSyncHold()
			ts := &tailStore{name: c.name, fs: h.fs, opts: storage.Options{RecoverInterval: 5 * time.Millisecond}}
			ts.open(t)
			t.Cleanup(func() { ts.s.Close() })
			t.Cleanup(h.unhold)
			q := storage.Query{Src: "dev", Stream: "a", Last: 10}
			if !c.reopen {
				if es := mustList(t, ts.s, q); len(es) != 0 {
					t.Fatalf("before the appends: %d entries", len(es))
				}
			}
			add(t, ts.s, "dev", "a", 3, 10, 0)
			add(t, ts.s, "dev", "b", 2, 10, 0)
			if c.reopen {
				ts.reopen(t)
			}
			for i := 0; i < 2; i++ { // seed (after a reopen), then hit
				if got := seqList(mustList(t, ts.s, q)); !slices.Equal(got, []uint64{1, 2, 3}) {
					t.Fatalf("before: list a: %v", got)
				}
			}
			hits := ts.s.Stats().TailHits
			if hits == 0 {
				t.Fatalf("the cache served no List")
			}
			h.fail.Store(c.failSync)
			h.hold.Store(true)
			done := make(chan error, 1)
			ts.s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte(`"held"`)}, func(_ storage.Entry, err error) { done <- err })
			select {
			case <-h.held:
			case <-time.After(faultTimeout):
				t.Fatal("no WAL sync")
			}
			await.Until(t, faultTimeout, "the entry visible in Pebble", func() bool {
				n, err := storage.VisibleEntries(ts.s, "dev", "a")
				if err != nil {
					t.Fatal(err)
				}
				return n == 4
			})
			for _, q := range []storage.Query{q, {Src: "dev", Stream: "a", Last: -1}, {Src: "dev", Stream: "a", After: 3, Last: -1}} {
				if got := seqList(mustList(t, ts.s, q)); len(got) != 0 && got[len(got)-1] > 3 {
					t.Errorf("while syncing: list %+v: %v shows the entry not yet durable", q, got)
				}
			}
			if ts.s.Stats().TailHits == hits {
				t.Errorf("while syncing: the cache served no List")
			}
			h.unhold()
			select {
			case err := <-done:
				if c.failSync != errors.Is(err, storage.ErrFailed) {
					t.Fatalf("append: %v (want ErrFailed: %v)", err, c.failSync)
				}
			case <-time.After(faultTimeout):
				t.Fatal("append not done")
			}
			if c.failSync {
				await.Until(t, faultTimeout, "recovery", func() bool { return ts.s.Err() == nil })
			}
			n, err := storage.VisibleEntries(ts.s, "dev", "a")
			if err != nil {
				t.Fatal(err)
			}
			want := []uint64{1, 2, 3, 6}[:n]
			for i := 0; i < 2; i++ {
				if got := seqList(mustList(t, ts.s, q)); !slices.Equal(got, want) {
					t.Errorf("after (call %d): list a: %v, want %v (Pebble has %d entries)", i+1, got, want, n)
				}
			}
		})
	}
}

func mustList(t *testing.T, s *storage.Store, q storage.Query) []storage.Entry {
	t.Helper()
	es, err := s.List(context.Background(), q)
	if err != nil {
		t.Fatalf("list %+v: %v", q, err)
	}
	return es
}

// TestTailCache_RacingAppends lists the final entries of streams while
// other goroutines append to them: each result must be a run of the
// stream's entries with no gap, end at or after every entry acknowledged
// before the List began, hold nothing above the durable head, and hold
// all the stream has (up to the head) when shorter than asked. The cache
// is filled by the appends (the streams were listed before their first
// entry), or seeded by the Lists after a reopen, or too small to keep
// anything for long.
func TestTailCache_RacingAppends(t *testing.T) {
	for _, c := range []struct {
		name   string
		reopen bool
		budget int64
	}{
		{"Filled", false, 0},
		{"Seeded", true, 0},
		{"Evicting", true, 8 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := &tailStore{name: c.name, fs: vfs.NewMem(), opts: storage.Options{TailCacheBytes: c.budget}}
			ts.open(t)
			t.Cleanup(func() { ts.s.Close() })
			ctx := context.Background()
			streams := []string{"s0", "s1", "s2", "s3"}
			for _, st := range streams {
				if !c.reopen {
					mustList(t, ts.s, storage.Query{Src: "dev", Stream: st, Last: 1})
				}
				add(t, ts.s, "dev", st, 20, 30, 0)
			}
			if c.reopen {
				ts.reopen(t)
			}
			s := ts.s
			var acked [4]atomic.Uint64 // the highest acknowledged seq of each stream
			type result struct {
				stream int
				last   int
				seqs   []uint64
			}
			var (
				mu      sync.Mutex
				results []result
				errs    = make(chan error, 16)
				stop    atomic.Bool
				writers sync.WaitGroup
				readers sync.WaitGroup
			)
			for g := 0; g < 4; g++ {
				writers.Add(1)
				go func() {
					defer writers.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					for i := 0; i < 250; i++ {
						k := rng.IntN(len(streams))
						e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: streams[k], Msg: fmt.Appendf(nil, `"%d-%d"`, g, i)})
						if err != nil {
							errs <- err
							return
						}
						for {
							old := acked[k].Load()
							if old >= e.Seq || acked[k].CompareAndSwap(old, e.Seq) {
								break
							}
						}
					}
				}()
			}
			for g := 0; g < 3; g++ {
				readers.Add(1)
				go func() {
					defer readers.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 2))
					for n := 0; n < 20000 && (n < 300 || !stop.Load()); n++ {
						k := rng.IntN(len(streams))
						last := []int{1, 10, 100}[rng.IntN(3)]
						before := acked[k].Load()
						es, err := s.List(ctx, storage.Query{Src: "dev", Stream: streams[k], Last: last})
						if err != nil {
							errs <- err
							return
						}
						head, err := s.Head(ctx, "dev")
						if err != nil {
							errs <- err
							return
						}
						seqs := seqList(es)
						switch {
						case len(es) == 0 || len(es) > last:
							err = fmt.Errorf("list %s last %d: %d entries", streams[k], last, len(es))
						case seqs[len(seqs)-1] < before:
							err = fmt.Errorf("list %s last %d: ends at %d, but %d was acknowledged before", streams[k], last, seqs[len(seqs)-1], before)
						case seqs[len(seqs)-1] > head:
							err = fmt.Errorf("list %s last %d: ends at %d, above the durable head %d read after it", streams[k], last, seqs[len(seqs)-1], head)
						case !slices.IsSorted(seqs):
							err = fmt.Errorf("list %s last %d: not in order: %v", streams[k], last, seqs)
						}
						for _, e := range es {
							if err == nil && e.Stream != streams[k] {
								err = fmt.Errorf("list %s: entry %d of stream %s", streams[k], e.Seq, e.Stream)
							}
						}
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						results = append(results, result{k, last, seqs})
						mu.Unlock()
					}
				}()
			}
			writers.Wait()
			stop.Store(true)
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for k, st := range streams {
				all := seqList(mustList(t, s, storage.Query{Src: "dev", Stream: st, Last: -1}))
				pos := make(map[uint64]int, len(all))
				for i, seq := range all {
					pos[seq] = i
				}
				for _, r := range results {
					if r.stream != k {
						continue
					}
					p, ok := pos[r.seqs[0]]
					if !ok || p+len(r.seqs) > len(all) || !slices.Equal(all[p:p+len(r.seqs)], r.seqs) {
						t.Fatalf("list %s last %d: %v is not a run of the stream's entries", st, r.last, r.seqs)
					}
					if len(r.seqs) < r.last && p != 0 {
						t.Fatalf("list %s last %d: %v, but the stream has earlier entries", st, r.last, r.seqs)
					}
				}
			}
			if err := storage.CheckTailCache(s); err != nil {
				t.Fatal(err)
			}
			stats := s.Stats()
			if stats.TailHits == 0 {
				t.Errorf("no List served from the cache (%d misses)", stats.TailMisses)
			}
			t.Logf("%d lists checked; cache: %d hits, %d misses, %d bytes", len(results), stats.TailHits, stats.TailMisses, stats.TailBytes)
		})
	}
}

// TestTailCache_Budget appends to many streams and lists them: the cache
// stays within its budget, evicts the least recently listed streams first
// (a stream listed after every round stays cached), and still answers
// right.
func TestTailCache_Budget(t *testing.T) {
	const budget = 64 << 10
	for _, c := range []struct {
		name   string
		reopen bool
	}{{"Filled", false}, {"Seeded", true}} {
		t.Run(c.name, func(t *testing.T) {
			ts := &tailStore{name: c.name, fs: vfs.NewMem(), opts: storage.Options{TailCacheBytes: budget}}
			ts.open(t)
			t.Cleanup(func() { ts.s.Close() })
			pad := strings.Repeat("x", 200)
			msgOf := func(stream string, i int) []byte { return fmt.Appendf(nil, `"%s %d %s"`, stream, i, pad) }
			if c.reopen {
				add(t, ts.s, "dev", "hot", 1, 10, 0)
				ts.reopen(t)
			}
			s := ts.s
			counts := map[string]int{}
			hot := storage.Query{Src: "dev", Stream: "hot", Last: 5}
			for round := 0; round < 10; round++ {
				if !c.reopen {
					// Known before their first entries: the appends fill them.
					for i := 0; i < 30; i += 3 {
						mustList(t, s, storage.Query{Src: "dev", Stream: fmt.Sprint("s", round*30+i), Last: 3})
					}
				}
				// The hot stream is used after those: the streams of the
				// earlier rounds and these are older (in Filled, these
				// alone are over the budget once the appends fill them).
				mustList(t, s, hot)
				var recs []storage.Record
				for i := 0; i < 30; i++ {
					stream := fmt.Sprint("s", round*30+i)
					for j := 0; j < 20; j++ {
						recs = append(recs, storage.Record{Src: "dev", Stream: stream, Msg: msgOf(stream, j)})
					}
					counts[stream] = 20
				}
				recs = append(recs, storage.Record{Src: "dev", Stream: "hot", Msg: msgOf("hot", round)})
				appendAll(t, s, recs)
				if b := s.Stats().TailBytes; b > budget {
					t.Fatalf("round %d, after the appends: the cache holds %d bytes, budget %d", round, b, budget)
				}
				// List some streams, so the cache seeds them.
				for i := 0; i < 30; i += 3 {
					stream := fmt.Sprint("s", round*30+i)
					es := mustList(t, s, storage.Query{Src: "dev", Stream: stream, Last: 3})
					if len(es) != 3 || !bytes.Equal(es[2].Msg, msgOf(stream, 19)) || !bytes.Equal(es[0].Msg, msgOf(stream, 17)) {
						t.Fatalf("round %d: list %s: %d entries, last %s", round, stream, len(es), es[len(es)-1].Msg)
					}
					if b := s.Stats().TailBytes; b > budget {
						t.Fatalf("round %d, after a List: the cache holds %d bytes, budget %d", round, b, budget)
					}
				}
				before := s.Stats().TailHits
				es := mustList(t, s, hot)
				if round > 0 && s.Stats().TailHits == before {
					t.Errorf("round %d: the hot stream, listed every round, was evicted", round)
				}
				if got := es[len(es)-1].Msg; !bytes.Equal(got, msgOf("hot", round)) {
					t.Fatalf("round %d: hot ends with %s", round, got)
				}
			}
			// Every stream still lists right, cached or not.
			for stream, n := range counts {
				es := mustList(t, s, storage.Query{Src: "dev", Stream: stream, Last: -1})
				if len(es) != n || !bytes.Equal(es[n-1].Msg, msgOf(stream, n-1)) {
					t.Fatalf("list %s: %d entries, want %d", stream, len(es), n)
				}
			}
			if b := s.Stats().TailBytes; b > budget {
				t.Errorf("at the end: the cache holds %d bytes, budget %d", b, budget)
			}
			if err := storage.CheckTailCache(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTailCache_StreamBound appends more to one stream than the cache keeps
// of it (by count, then by bytes) and checks queries around the bound
// against a store without the cache: the newest entries come from the
// cache, older ones from Pebble, and nothing is lost between them.
func TestTailCache_StreamBound(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
		pad  int
	}{
		{"Count", 3000, 20},
		{"Bytes", 1500, 2000}, // 1 MiB of msgs is about 520 of them
	} {
		t.Run(c.name, func(t *testing.T) {
			on := &tailStore{name: "on", fs: vfs.NewMem()}
			off := &tailStore{name: "off", fs: vfs.NewMem(), opts: storage.Options{TailCacheBytes: -1}}
			for _, ts := range []*tailStore{on, off} {
				ts.open(t)
				t.Cleanup(func() { ts.s.Close() })
			}
			var recs []storage.Record
			for i := 0; i < c.n; i++ {
				stream := "a"
				if i%3 == 0 {
					stream = "b"
				}
				recs = append(recs, storage.Record{Src: "dev", Stream: stream, Timestamp: int64(i), Msg: fmt.Appendf(nil, `"%d %s"`, i, strings.Repeat("x", c.pad))})
			}
			// Known (empty) before the appends, which fill it past its bound.
			mustList(t, on.s, storage.Query{Src: "dev", Stream: "a", Last: 1})
			for _, ts := range []*tailStore{on, off} {
				appendAll(t, ts.s, recs)
			}
			head := uint64(c.n)
			var hit, miss int
			for _, last := range []int{-1, 1, 100, 500, 600, 1023, 1024, 1025, 2000} {
				for _, after := range []uint64{0, head - 1500, head - 1400, head - 700, head - 10, head} {
					for _, limit := range []int{0, 7} {
						q := storage.Query{Src: "dev", Stream: "a", After: after, Last: last, Limit: limit}
						want := mustList(t, off.s, q)
						before := on.s.Stats().TailHits
						if d := diffLists(mustList(t, on.s, q), want); d != "" {
							t.Fatalf("list %+v: %s", q, d)
						}
						if on.s.Stats().TailHits > before {
							hit++
						} else {
							miss++
						}
					}
				}
			}
			if err := storage.CheckTailCache(on.s); err != nil {
				t.Fatal(err)
			}
			if hit == 0 || miss == 0 {
				t.Errorf("%d queries served by the cache, %d not: want both", hit, miss)
			}
			if b := on.s.Stats().TailBytes; b > 2*tailMaxBytesForTest {
				t.Errorf("the cache holds %d bytes for two streams", b)
			}
		})
	}
}

// tailMaxBytesForTest is the bound of one stream's msgs in the cache
// (tailMaxBytes), plus its entries' overhead.
const tailMaxBytesForTest = 1<<20 + 1280*40 + 64<<10

// TestTailCache_SharedStaysPut keeps what ListShared returned (the cache's
// own memory) while the stream goes on: appends into the same chunks, past
// the stream's bounds, retention, a Delete, evictions. What it returned must
// never change (read concurrently, so that -race sees any write to it).
func TestTailCache_SharedStaysPut(t *testing.T) {
	for _, c := range []struct {
		name   string
		budget int64
	}{{"Default", 0}, {"Tiny", 8 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			ret := storage.Retention{MaxEntriesPerStream: 700, Interval: time.Hour}
			ts := &tailStore{name: c.name, fs: vfs.NewMem(), opts: storage.Options{TailCacheBytes: c.budget, Retention: ret}}
			ts.open(t)
			t.Cleanup(func() { ts.s.Close() })
			s := ts.s
			ctx := context.Background()
			q := storage.Query{Src: "dev", Stream: "a", Last: 50}
			mustList(t, s, q) // known before its first entry: filled by the appends
			type kept struct{ shared, copied []storage.Entry }
			var (
				mu   sync.Mutex
				held []kept
				stop = make(chan struct{})
				done = make(chan error, 1)
			)
			go func() { // reads every kept result over and over
				var sum byte
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					mu.Lock()
					hs := held
					mu.Unlock()
					for _, h := range hs {
						for _, e := range h.shared {
							for _, b := range e.Msg {
								sum ^= b
							}
						}
					}
				}
			}()
			hits := s.Stats().TailHits
			for round := 0; round < 30; round++ {
				var recs []storage.Record
				for i := 0; i < 100; i++ {
					recs = append(recs, storage.Record{Src: "dev", Stream: "a", Msg: fmt.Appendf(nil, `"%d.%d %s"`, round, i, strings.Repeat("y", round*7))})
				}
				appendAll(t, s, recs)
				es, err := s.ListShared(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				cp := make([]storage.Entry, len(es))
				for i, e := range es {
					cp[i] = e
					cp[i].Msg = bytes.Clone(e.Msg)
				}
				mu.Lock()
				held = append(held, kept{es, cp})
				mu.Unlock()
				switch round {
				case 10, 20:
					if _, err := storage.Retain(s); err != nil {
						t.Fatal(err)
					}
				case 15:
					if err := s.Delete(ctx, "dev", "a"); err != nil {
						t.Fatal(err)
					}
				}
			}
			close(stop)
			<-done
			for i, h := range held {
				if d := diffLists(h.shared, h.copied); d != "" {
					t.Fatalf("result %d changed after it was returned: %s", i, d)
				}
			}
			if c.budget == 0 && s.Stats().TailHits == hits {
				t.Errorf("no ListShared served from the cache")
			}
			if err := storage.CheckTailCache(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}
