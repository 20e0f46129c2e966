package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// catalogStore opens a store on fs; cleanup closes it (if the test did not)
// and checks the raw keys it left.
func catalogStore(t *testing.T, fs vfs.FS) *storage.Store {
	t.Helper()
	s := openMem(t, fs, storage.Options{})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		checkRaw(t, fs, "db")
	})
	return s
}

// app appends one record, failing the test on an error.
func app(t *testing.T, s *storage.Store, src, stream string, ts int64) storage.Entry {
	t.Helper()
	e, err := s.Append(context.Background(), storage.Record{Src: src, Stream: stream, Timestamp: ts, Msg: []byte(fmt.Sprint(ts))})
	if err != nil {
		t.Fatalf("append %s/%s: %v", src, stream, err)
	}
	return e
}

func del(t *testing.T, s *storage.Store, src, stream string) {
	t.Helper()
	if err := s.Delete(context.Background(), src, stream); err != nil {
		t.Fatalf("delete %s/%s: %v", src, stream, err)
	}
}

func sources(t *testing.T, s *storage.Store, q storage.SourceQuery) []storage.SourceInfo {
	t.Helper()
	got, err := s.Sources(context.Background(), q)
	if err != nil {
		t.Fatalf("sources %+v: %v", q, err)
	}
	return got
}

func streams(t *testing.T, s *storage.Store, src string) []storage.StreamInfo {
	t.Helper()
	got, err := s.Streams(context.Background(), src)
	if err != nil {
		t.Fatalf("streams of %q: %v", src, err)
	}
	return got
}

func TestStore_Sources(t *testing.T) {
	fs := vfs.NewMem()
	s := catalogStore(t, fs)
	if got := sources(t, s, storage.SourceQuery{}); len(got) != 0 {
		t.Fatalf("a new store lists sources %+v", got)
	}
	app(t, s, "a", "console", 1000)
	app(t, s, "a", "errors", 2000)
	app(t, s, "a", "console", 1500) // the latest by id, not by time
	app(t, s, "b", "console", 10)
	app(t, s, "b-y", "console", 20)
	app(t, s, "b/x", "sensor", 30)
	app(t, s, "d", "console", 40)
	app(t, s, "d", "other", 41)
	del(t, s, "d", "console")
	del(t, s, "d", "other")
	app(t, s, "e", "s1", 50)
	app(t, s, "e", "s2", 60)
	del(t, s, "e", "s2")

	all := []storage.SourceInfo{
		{Src: "a", LastSeq: 3, LastTimestamp: 1500},
		{Src: "b", LastSeq: 1, LastTimestamp: 10},
		{Src: "b-y", LastSeq: 1, LastTimestamp: 20}, // '-' sorts before '/'
		{Src: "b/x", LastSeq: 1, LastTimestamp: 30},
		{Src: "d", LastSeq: 2, Empty: true}, // every entry deleted: its sequence
		{Src: "e", LastSeq: 1, LastTimestamp: 50},
	}
	pick := func(names ...string) []storage.SourceInfo {
		var out []storage.SourceInfo
		for _, n := range names {
			for _, si := range all {
				if si.Src == n {
					out = append(out, si)
				}
			}
		}
		return out
	}
	cases := []struct {
		name string
		q    storage.SourceQuery
		want []storage.SourceInfo
	}{
		{"All", storage.SourceQuery{}, all},
		{"Limit", storage.SourceQuery{Limit: 2}, pick("a", "b")},
		{"LimitOverAll", storage.SourceQuery{Limit: 100}, all},
		{"AfterSource", storage.SourceQuery{After: "b"}, pick("b-y", "b/x", "d", "e")},
		{"AfterNoSource", storage.SourceQuery{After: "c"}, pick("d", "e")},
		{"AfterLimit", storage.SourceQuery{After: "a", Limit: 1}, pick("b")},
		{"AfterLast", storage.SourceQuery{After: "e"}, nil},
		{"AfterAll", storage.SourceQuery{After: "\xff"}, nil},
		{"Prefix", storage.SourceQuery{Prefix: "b"}, pick("b", "b-y", "b/x")},
		{"PrefixSlash", storage.SourceQuery{Prefix: "b/"}, pick("b/x")},
		{"PrefixExact", storage.SourceQuery{Prefix: "a"}, pick("a")},
		{"PrefixNone", storage.SourceQuery{Prefix: "c"}, nil},
		{"PrefixAfterInside", storage.SourceQuery{Prefix: "b", After: "b-y"}, pick("b/x")},
		{"PrefixAfterBelow", storage.SourceQuery{Prefix: "b", After: "a"}, pick("b", "b-y", "b/x")},
		{"PrefixAfterAbove", storage.SourceQuery{Prefix: "b", After: "c"}, nil},
		{"PrefixLimit", storage.SourceQuery{Prefix: "b", Limit: 2}, pick("b", "b-y")},
	}
	check := func(t *testing.T, s *storage.Store) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if got := sources(t, s, c.q); !reflect.DeepEqual(got, c.want) {
					t.Errorf("Sources(%+v)\n got %+v\nwant %+v", c.q, got, c.want)
				}
			})
		}
		t.Run("Paging", func(t *testing.T) {
			var got []storage.SourceInfo
			q := storage.SourceQuery{Limit: 2}
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("paging does not end: %+v", got)
				}
				page := sources(t, s, q)
				if len(page) == 0 {
					break
				}
				got = append(got, page...)
				q.After = page[len(page)-1].Src
			}
			if !reflect.DeepEqual(got, all) {
				t.Errorf("pages of 2\n got %+v\nwant %+v", got, all)
			}
		})
	}
	t.Run("Open", func(t *testing.T) { check(t, s) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the sources are read from disk, none is in memory.
	s = catalogStore(t, fs)
	t.Run("Reopened", func(t *testing.T) { check(t, s) })

	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Sources(ctx, storage.SourceQuery{}); !errors.Is(err, context.Canceled) {
			t.Errorf("Sources with a canceled context: %v", err)
		}
	})
}

func TestStore_Streams(t *testing.T) {
	fs := vfs.NewMem()
	s := catalogStore(t, fs)
	app(t, s, "a", "console", 1000)
	app(t, s, "a", "errors", 2000)
	app(t, s, "a", "console", 1500)
	app(t, s, "a/sub", "other", 1) // another source, whose keys follow a's

	expect := func(t *testing.T, src string, want []storage.StreamInfo) {
		t.Helper()
		if got := streams(t, s, src); !reflect.DeepEqual(got, want) {
			t.Errorf("Streams(%q)\n got %+v\nwant %+v", src, got, want)
		}
	}
	t.Run("Unknown", func(t *testing.T) { expect(t, "nobody", nil) })
	t.Run("Invalid", func(t *testing.T) {
		for _, src := range []string{"", "a\x00"} {
			if _, err := s.Streams(context.Background(), src); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("Streams(%q): %v, want ErrInvalid", src, err)
			}
		}
	})
	t.Run("CountsAndLast", func(t *testing.T) {
		expect(t, "a", []storage.StreamInfo{
			{Stream: "console", Count: 2, LastSeq: 3, LastTimestamp: 1500},
			{Stream: "errors", Count: 1, LastSeq: 2, LastTimestamp: 2000},
		})
		expect(t, "a/sub", []storage.StreamInfo{{Stream: "other", Count: 1, LastSeq: 1, LastTimestamp: 1}})
	})
	t.Run("Grows", func(t *testing.T) {
		// The counts above are remembered; these add to them.
		for ts := int64(1); ts <= 3; ts++ {
			app(t, s, "a", "console", ts)
		}
		expect(t, "a", []storage.StreamInfo{
			{Stream: "console", Count: 5, LastSeq: 6, LastTimestamp: 3},
			{Stream: "errors", Count: 1, LastSeq: 2, LastTimestamp: 2000},
		})
	})
	t.Run("Deleted", func(t *testing.T) {
		del(t, s, "a", "console")
		expect(t, "a", []storage.StreamInfo{{Stream: "errors", Count: 1, LastSeq: 2, LastTimestamp: 2000}})
	})
	t.Run("DeletedThenAppended", func(t *testing.T) {
		app(t, s, "a", "console", 7)
		expect(t, "a", []storage.StreamInfo{
			{Stream: "console", Count: 1, LastSeq: 7, LastTimestamp: 7},
			{Stream: "errors", Count: 1, LastSeq: 2, LastTimestamp: 2000},
		})
		// Counted, deleted and appended again between two calls: the
		// remembered count is of entries that are gone.
		app(t, s, "a", "errors", 8)
		expect(t, "a", []storage.StreamInfo{
			{Stream: "console", Count: 1, LastSeq: 7, LastTimestamp: 7},
			{Stream: "errors", Count: 2, LastSeq: 8, LastTimestamp: 8},
		})
		del(t, s, "a", "errors")
		app(t, s, "a", "errors", 9)
		app(t, s, "a", "errors", 10)
		expect(t, "a", []storage.StreamInfo{
			{Stream: "console", Count: 1, LastSeq: 7, LastTimestamp: 7},
			{Stream: "errors", Count: 2, LastSeq: 10, LastTimestamp: 10},
		})
	})
	t.Run("Reopened", func(t *testing.T) {
		want := streams(t, s, "a")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = catalogStore(t, fs)
		expect(t, "a", want)
	})
}

// TestStore_StreamsModel runs random appends and deletes over a few streams
// of two sources, and after each step checks Streams against a model and
// against List: remembered counts must follow every change.
func TestStore_StreamsModel(t *testing.T) {
	s := catalogStore(t, vfs.NewMem())
	rng := rand.New(rand.NewPCG(6, 7))
	names := []string{"s0", "s1", "s2", "s3"}
	srcs := []string{"dev", "dev/x"}
	type model struct {
		count int64
		last  storage.Entry
	}
	models := map[string]map[string]*model{}
	for _, src := range srcs {
		models[src] = map[string]*model{}
	}
	for step := 0; step < 400; step++ {
		src := srcs[rng.IntN(len(srcs))]
		stream := names[rng.IntN(len(names))]
		m := models[src]
		switch {
		case rng.IntN(10) == 0:
			del(t, s, src, stream)
			delete(m, stream)
		default:
			n := 1 + rng.IntN(3)
			for range n {
				e := app(t, s, src, stream, int64(step))
				if m[stream] == nil {
					m[stream] = &model{}
				}
				m[stream].count++
				m[stream].last = e
			}
		}
		if rng.IntN(3) != 0 {
			continue // not every step: some counts resume over several changes
		}
		var want []storage.StreamInfo
		for _, name := range names {
			if md := m[name]; md != nil {
				want = append(want, storage.StreamInfo{Stream: name, Count: md.count, LastSeq: md.last.Seq, LastTimestamp: md.last.Timestamp})
			}
		}
		got := streams(t, s, src)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: Streams(%q)\n got %+v\nwant %+v", step, src, got, want)
		}
		for _, si := range got {
			es, err := s.List(context.Background(), storage.Query{Src: src, Stream: si.Stream, Last: -1})
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(es)) != si.Count || es[len(es)-1].Seq != si.LastSeq {
				t.Fatalf("step %d: %q/%q: List has %d entries, the last %d; Streams says %+v", step, src, si.Stream, len(es), es[len(es)-1].Seq, si)
			}
		}
	}
}

// TestStore_CatalogDurableCut holds the WAL sync, so an appended batch is
// visible in Pebble but not durable: Sources and Streams must not show it
// (as List does not), and show it once the sync completes.
func TestStore_CatalogDurableCut(t *testing.T) {
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unhold := func() { hold.Store(false); releaseOnce.Do(func() { close(release) }) }
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if hold.Load() && strings.HasSuffix(op.Path, ".log") {
				select {
				case held <- struct{}{}:
				default:
				}
				<-release
			}
		}
		return nil
	}))
	s := catalogStore(t, fs)
	t.Cleanup(unhold) // runs before the store's Close
	app(t, s, "a", "console", 1)
	wantA := []storage.SourceInfo{{Src: "a", LastSeq: 1, LastTimestamp: 1}}
	wantAStreams := []storage.StreamInfo{{Stream: "console", Count: 1, LastSeq: 1, LastTimestamp: 1}}
	if got := streams(t, s, "a"); !reflect.DeepEqual(got, wantAStreams) {
		t.Fatalf("Streams(a) = %+v", got) // and its count is remembered
	}

	hold.Store(true)
	done := make(chan error, 3)
	record := func(err error) { done <- err }
	s.AppendAsync(storage.Record{Src: "a", Stream: "console", Timestamp: 2, Msg: []byte("2")}, func(_ storage.Entry, err error) { record(err) })
	s.AppendAsync(storage.Record{Src: "a", Stream: "new", Timestamp: 3, Msg: []byte("3")}, func(_ storage.Entry, err error) { record(err) })
	s.AppendAsync(storage.Record{Src: "fresh", Stream: "console", Timestamp: 4, Msg: []byte("4")}, func(_ storage.Entry, err error) { record(err) })
	select {
	case <-held:
	case <-time.After(faultTimeout):
		t.Fatal("no WAL sync")
	}
	// Pebble shows the held batch to readers: wait until some of it is
	// visible, then check the cut on whatever is.
	var visA, visFresh uint64
	await.Until(t, faultTimeout, "the held batch visible in Pebble", func() bool {
		var err error
		if visA, err = storage.VisibleSeq(s, "a"); err != nil {
			t.Fatal(err)
		}
		if visFresh, err = storage.VisibleSeq(s, "fresh"); err != nil {
			t.Fatal(err)
		}
		return visA > 1 || visFresh > 0
	})
	t.Logf("visible, not durable: a up to %d, fresh up to %d", visA, visFresh)
	if got := sources(t, s, storage.SourceQuery{}); !reflect.DeepEqual(got, wantA) {
		t.Errorf("Sources while the sync is held\n got %+v\nwant %+v", got, wantA)
	}
	if got := streams(t, s, "a"); !reflect.DeepEqual(got, wantAStreams) {
		t.Errorf("Streams(a) while the sync is held\n got %+v\nwant %+v", got, wantAStreams)
	}
	if got := streams(t, s, "fresh"); len(got) != 0 {
		t.Errorf("Streams(fresh) while the sync is held: %+v", got)
	}

	unhold()
	for range 3 {
		if err := <-done; err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	wantAll := []storage.SourceInfo{{Src: "a", LastSeq: 3, LastTimestamp: 3}, {Src: "fresh", LastSeq: 1, LastTimestamp: 4}}
	if got := sources(t, s, storage.SourceQuery{}); !reflect.DeepEqual(got, wantAll) {
		t.Errorf("Sources after the sync\n got %+v\nwant %+v", got, wantAll)
	}
	wantAStreams = []storage.StreamInfo{
		{Stream: "console", Count: 2, LastSeq: 2, LastTimestamp: 2},
		{Stream: "new", Count: 1, LastSeq: 3, LastTimestamp: 3},
	}
	if got := streams(t, s, "a"); !reflect.DeepEqual(got, wantAStreams) {
		t.Errorf("Streams(a) after the sync\n got %+v\nwant %+v", got, wantAStreams)
	}
}

func TestStore_CatalogClosed(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs, storage.Options{})
	app(t, s, "a", "console", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sources(context.Background(), storage.SourceQuery{}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Sources after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Streams(context.Background(), "a"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Streams after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkStore_Streams measures Streams of a source with one stream of
// 100k entries: Cold counts them all (the first call for a stream), Warm
// resumes from the remembered count after one new entry (a dashboard
// polling a live stream; the append is outside the timer).
func BenchmarkStore_Streams(b *testing.B) {
	const n = 100_000
	s, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	msg := []byte(`"sensor reading 21.5"`)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		s.AppendAsync(storage.Record{Src: "dev", Stream: "console", Timestamp: int64(i), Msg: msg}, func(_ storage.Entry, err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	check := func(want int64) {
		got, err := s.Streams(ctx, "dev")
		if err != nil || len(got) != 1 || got[0].Count != want {
			b.Fatalf("Streams = %+v, %v; want one stream of %d", got, err, want)
		}
	}
	b.Run("Cold", func(b *testing.B) {
		for b.Loop() {
			storage.ForgetCounts(s)
			check(n)
		}
	})
	b.Run("Warm", func(b *testing.B) {
		count := int64(n)
		check(count)
		for b.Loop() {
			b.StopTimer()
			if _, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "console", Msg: msg}); err != nil {
				b.Fatal(err)
			}
			count++
			b.StartTimer()
			check(count)
		}
	})
}

// BenchmarkStore_Sources measures one page of 100 sources of 3 streams each.
func BenchmarkStore_Sources(b *testing.B) {
	s, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for d := range 1000 {
		for i := range 9 {
			wg.Add(1)
			s.AppendAsync(storage.Record{Src: fmt.Sprintf("dev%04d", d), Stream: fmt.Sprint("s", i%3), Msg: []byte("1")}, func(_ storage.Entry, err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
	for b.Loop() {
		got, err := s.Sources(context.Background(), storage.SourceQuery{After: "dev0500", Limit: 100})
		if err != nil || len(got) != 100 || got[0].LastSeq != 9 {
			b.Fatalf("Sources = %d, %v", len(got), err)
		}
	}
}
