package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// fakeClock is a controllable clock for Options.Now.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// retStore opens a store with retention bounds r (applied only when a test
// calls storage.Retain: the background interval is an hour) on the clock,
// and checks its raw keys after the test.
func retStore(t *testing.T, mem *vfs.MemFS, clock *fakeClock, r storage.Retention) *storage.Store {
	t.Helper()
	if r.Interval == 0 {
		r.Interval = time.Hour
	}
	s := openMem(t, mem, storage.Options{Retention: r, Now: clock.Now})
	t.Cleanup(func() {
		s.Close()
		checkRaw(t, mem, "db")
	})
	return s
}

// add appends n entries of src in stream with msg bodies of pad bytes and
// returns their sequences.
func add(t *testing.T, s *storage.Store, src, stream string, n, pad int, ts int64) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i++ {
		e, err := s.Append(context.Background(), storage.Record{Src: src, Stream: stream, Timestamp: ts, Msg: []byte(`"` + strings.Repeat("x", pad-2) + `"`)})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

// seqsOf lists the sequences of src (in stream, "" for all).
func seqsOf(t *testing.T, s *storage.Store, src, stream string) []uint64 {
	t.Helper()
	es, err := s.List(context.Background(), storage.Query{Src: src, Stream: stream, Last: -1})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func retain(t *testing.T, s *storage.Store, want int64) {
	t.Helper()
	n, err := storage.Retain(s)
	if err != nil {
		t.Fatalf("retain: %v", err)
	}
	if n != want {
		t.Errorf("retain removed %d entries, want %d", n, want)
	}
}

// checkCounts compares Streams (with the counts retention left behind)
// against a count from scratch, and against want.
func checkCounts(t *testing.T, s *storage.Store, src string, want map[string]int64) {
	t.Helper()
	got := map[string]int64{}
	sts, err := s.Streams(context.Background(), src)
	if err != nil {
		t.Fatalf("streams: %v", err)
	}
	for _, st := range sts {
		got[st.Stream] = st.Count
	}
	storage.ForgetCounts(s)
	fresh := map[string]int64{}
	if sts, err = s.Streams(context.Background(), src); err != nil {
		t.Fatalf("streams: %v", err)
	}
	for _, st := range sts {
		fresh[st.Stream] = st.Count
	}
	if !reflect.DeepEqual(got, fresh) || !reflect.DeepEqual(got, want) {
		t.Errorf("stream counts of %q: %v, counted afresh %v, want %v", src, got, fresh, want)
	}
}

func seqRange(from, to uint64) []uint64 {
	out := []uint64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestStore_Retention(t *testing.T) {
	t.Run("MaxAge", func(t *testing.T) {
		clock := newFakeClock()
		s := retStore(t, vfs.NewMem(), clock, storage.Retention{MaxAge: time.Hour})
		// Client timestamps far in the past and far in the future: only
		// the append time counts.
		add(t, s, "dev", "a", 5, 10, 0)
		add(t, s, "dev", "b", 3, 10, 1<<50)
		clock.Advance(10 * time.Minute)
		add(t, s, "dev", "a", 4, 10, 0) // 9..12
		add(t, s, "idle", "a", 2, 10, 0)

		clock.Advance(50 * time.Minute) // the first ones are 60 minutes old
		retain(t, s, 0)
		clock.Advance(2 * time.Minute) // past their minute's end: older than an hour
		retain(t, s, 8)
		if got := seqsOf(t, s, "dev", ""); !reflect.DeepEqual(got, seqRange(9, 12)) {
			t.Errorf("dev after the first cut: %v, want 9..12", got)
		}
		if got := seqsOf(t, s, "idle", ""); len(got) != 2 {
			t.Errorf("idle, appended later: %v, want both", got)
		}
		checkCounts(t, s, "dev", map[string]int64{"a": 4})

		clock.Advance(10 * time.Minute) // everything is over an hour old
		retain(t, s, 6)
		for _, src := range []string{"dev", "idle"} {
			if got := seqsOf(t, s, src, ""); len(got) != 0 {
				t.Errorf("%s after everything aged out: %v", src, got)
			}
		}
		retain(t, s, 0)
		if h, err := s.Head(context.Background(), "dev"); err != nil || h != 12 {
			t.Errorf("head after retention: %d (%v), want 12", h, err)
		}
		if got := add(t, s, "dev", "a", 1, 10, 0); got[0] != 13 {
			t.Errorf("append after retention: id %d, want 13", got[0])
		}
	})

	t.Run("MaxEntriesPerStream", func(t *testing.T) {
		s := retStore(t, vfs.NewMem(), newFakeClock(), storage.Retention{MaxEntriesPerStream: 3})
		for i := 0; i < 5; i++ {
			add(t, s, "dev", "a", 2, 10, 0) // a: 1,2, 4,5, 7,8, ...
			if i < 2 {
				add(t, s, "dev", "b", 1, 10, 0) // b: 3, 6
			}
		}
		add(t, s, "other", "a", 3, 10, 0)
		checkCounts(t, s, "dev", map[string]int64{"a": 10, "b": 2})
		retain(t, s, 7)
		if got := seqsOf(t, s, "dev", "a"); !reflect.DeepEqual(got, []uint64{10, 11, 12}) {
			t.Errorf("stream a: %v, want the last 3", got)
		}
		if got := seqsOf(t, s, "dev", "b"); !reflect.DeepEqual(got, []uint64{3, 6}) {
			t.Errorf("stream b: %v, want both", got)
		}
		checkCounts(t, s, "dev", map[string]int64{"a": 3, "b": 2})
		checkCounts(t, s, "other", map[string]int64{"a": 3})
		add(t, s, "dev", "a", 2, 10, 0)
		retain(t, s, 2)
		if got := seqsOf(t, s, "dev", "a"); !reflect.DeepEqual(got, []uint64{12, 13, 14}) {
			t.Errorf("stream a, second run: %v, want 12..14", got)
		}
		if st := s.Stats(); st.Expired != 9 {
			t.Errorf("Stats.Expired = %d, want 9", st.Expired)
		}
	})

	t.Run("MaxBytesPerSource", func(t *testing.T) {
		// An entry of dev in a one-letter stream: key 'e' dev 0 a 0 seq
		// (15 bytes) plus value uvarint(1) msg (1+100): 116 bytes.
		const size = 15 + 1 + 100
		s := retStore(t, vfs.NewMem(), newFakeClock(), storage.Retention{MaxBytesPerSource: 5*size + size/2})
		for i := 0; i < 6; i++ {
			add(t, s, "dev", "a", 1, 100, 1)
			add(t, s, "dev", "b", 1, 100, 1)
		}
		add(t, s, "dev2", "a", 5, 100, 1)
		retain(t, s, 7)
		if got := seqsOf(t, s, "dev", ""); !reflect.DeepEqual(got, seqRange(8, 12)) {
			t.Errorf("dev: %v, want the newest 5 (8..12)", got)
		}
		if got := seqsOf(t, s, "dev2", ""); len(got) != 5 {
			t.Errorf("dev2, within its bound: %v", got)
		}
		checkCounts(t, s, "dev", map[string]int64{"a": 2, "b": 3})
		// One stream grows: the other's old entries go first.
		add(t, s, "dev", "a", 3, 100, 1) // 13..15
		retain(t, s, 3)
		if got := seqsOf(t, s, "dev", ""); !reflect.DeepEqual(got, seqRange(11, 15)) {
			t.Errorf("dev, second run: %v, want 11..15", got)
		}
	})

	t.Run("AllBoundsTogether", func(t *testing.T) {
		clock := newFakeClock()
		s := retStore(t, vfs.NewMem(), clock, storage.Retention{MaxAge: time.Hour, MaxEntriesPerStream: 4, MaxBytesPerSource: 1 << 20})
		add(t, s, "dev", "a", 3, 10, 0)
		clock.Advance(2 * time.Hour)
		add(t, s, "dev", "a", 6, 10, 0) // 4..9
		retain(t, s, 5)                 // 3 by age, 2 more by count
		if got := seqsOf(t, s, "dev", "a"); !reflect.DeepEqual(got, seqRange(6, 9)) {
			t.Errorf("dev/a: %v, want 6..9", got)
		}
		checkCounts(t, s, "dev", map[string]int64{"a": 4})
	})

	t.Run("IDsNeverReused", func(t *testing.T) {
		mem := vfs.NewMem()
		clock := newFakeClock()
		s := openMem(t, mem, storage.Options{Retention: storage.Retention{MaxEntriesPerStream: 1, Interval: time.Hour}, Now: clock.Now})
		add(t, s, "dev", "a", 5, 10, 0)
		add(t, s, "dev", "b", 5, 10, 0)
		retain(t, s, 8)
		if got := seqsOf(t, s, "dev", ""); !reflect.DeepEqual(got, []uint64{5, 10}) {
			t.Errorf("after retention: %v, want 5 10", got)
		}
		if err := s.Delete(context.Background(), "dev", "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		r := retStore(t, mem, clock, storage.Retention{MaxEntriesPerStream: 1})
		if got := add(t, r, "dev", "a", 1, 10, 0); got[0] != 11 {
			t.Errorf("after retention, delete and reopen: id %d, want 11", got[0])
		}
		retain(t, r, 0)
	})
}

// TestStore_RetentionBackground runs retention on its own goroutine, every
// few milliseconds, while appenders run: they are never refused, and once
// they stop the bound holds.
func TestStore_RetentionBackground(t *testing.T) {
	mem := vfs.NewMem()
	s := openMem(t, mem, storage.Options{Retention: storage.Retention{MaxEntriesPerStream: 20, Interval: 2 * time.Millisecond}})
	defer func() {
		s.Close()
		checkRaw(t, mem, "db")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	var wg sync.WaitGroup
	last := make([]uint64, 4)
	for g := range last {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				e, err := s.Append(ctx, storage.Record{Src: fmt.Sprint("dev", g%2), Stream: fmt.Sprint("s", g), Msg: []byte(`"x"`)})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if e.Seq <= last[g] {
					t.Errorf("id %d after %d", e.Seq, last[g])
				}
				last[g] = e.Seq
			}
		}()
	}
	wg.Wait()
	await.Until(t, faultTimeout, "retention down to 20 entries per stream", func() bool {
		for g := range last {
			if len(seqsOf(t, s, fmt.Sprint("dev", g%2), fmt.Sprint("s", g))) > 20 {
				return false
			}
		}
		return s.Stats().Expired >= 4*130
	})
	for g := range last {
		got := seqsOf(t, s, fmt.Sprint("dev", g%2), fmt.Sprint("s", g))
		if len(got) != 20 || got[19] != last[g] {
			t.Errorf("stream s%d: %d entries ending at %v, want the 20 newest ending at %d", g, len(got), got[len(got)-1:], last[g])
		}
	}
	if st := s.Stats(); st.Expired != 4*130 {
		t.Errorf("Stats.Expired = %d, want %d", st.Expired, 4*130)
	}
}

// BenchmarkRetain measures one retention run over 100 sources of 2
// streams, each at its bound of 1000 entries, after 10 new entries per
// stream: the steady state of a fleet under MaxEntriesPerStream. ns/op is
// per run (it removes 2000 entries, one trim per stream); appending the
// new entries is not timed.
func BenchmarkRetain(b *testing.B) {
	s, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Retention: storage.Retention{MaxEntriesPerStream: 1000, Interval: time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := []byte(`"` + strings.Repeat("x", 100) + `"`)
	fill := func(n int) {
		var wg sync.WaitGroup
		for src := 0; src < 100; src++ {
			for st := 0; st < 2; st++ {
				for i := 0; i < n; i++ {
					wg.Add(1)
					s.AppendAsync(storage.Record{Src: fmt.Sprint("dev", src), Stream: fmt.Sprint("s", st), Msg: msg}, func(_ storage.Entry, err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
				}
			}
		}
		wg.Wait()
	}
	fill(1000)
	if _, err := storage.Retain(s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fill(10)
		b.StartTimer()
		n, err := storage.Retain(s)
		if err != nil || n != 2000 {
			b.Fatalf("retain: %d %v", n, err)
		}
	}
}

// TestStore_RetentionCrash takes crash clones (vfs.NewCrashableMem) right
// after retention runs, with none or some of the unsynced data: every
// acknowledged entry retention kept is there, what it removed is gone or
// whole again (never torn), and ids go on above everything.
func TestStore_RetentionCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s := openMem(t, mem, storage.Options{Retention: storage.Retention{MaxEntriesPerStream: 5, Interval: time.Hour}})
	defer s.Close()
	type image struct {
		fs   *vfs.MemFS
		kept []uint64 // the entries retention kept
		top  uint64
	}
	var images []image
	rng := rand.New(rand.NewPCG(3, 4))
	var all []uint64
	for round := 0; round < 4; round++ {
		all = append(all, add(t, s, "dev", "a", 10, 20, int64(round))...)
		want := int64(10) // 10 new beside the 5 kept
		if round == 0 {
			want = 5
		}
		retain(t, s, want)
		kept := seqsOf(t, s, "dev", "a")
		for _, cfg := range []vfs.CrashCloneCfg{{}, {UnsyncedDataPercent: 50, RNG: rng}} {
			images = append(images, image{fs: mem.CrashClone(cfg), kept: kept, top: all[len(all)-1]})
		}
	}
	for i, img := range images {
		t.Run(fmt.Sprint("Image", i), func(t *testing.T) {
			r := openMem(t, img.fs, storage.Options{})
			defer r.Close()
			es, err := r.List(context.Background(), storage.Query{Src: "dev", Stream: "a", Last: -1})
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range es {
				got = append(got, e.Seq)
				if string(e.Msg) != `"`+strings.Repeat("x", 18)+`"` {
					t.Errorf("entry %d torn: %q", e.Seq, e.Msg)
				}
			}
			present := map[uint64]bool{}
			for j, seq := range got {
				present[seq] = true
				if j > 0 && seq <= got[j-1] {
					t.Errorf("ids not increasing: %v", got)
				}
			}
			for _, k := range img.kept {
				if !present[k] {
					t.Errorf("entry %d, kept by retention and acknowledged, lost in the crash (listed %v)", k, got)
				}
			}
			if len(got) > 0 && got[len(got)-1] != img.top {
				t.Errorf("listed %v, want it to end at the last acknowledged %d", got, img.top)
			}
			if e := add(t, r, "dev", "a", 1, 20, 0); e[0] <= img.top {
				t.Errorf("append after the crash: id %d, not above %d", e[0], img.top)
			}
		})
	}
}
