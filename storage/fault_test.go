package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

const faultTimeout = 20 * time.Second

// crashRec is the record appender g issues as its i-th: the msg names it,
// so whatever a crashed store lists can be traced back to a call.
func crashRec(g, i int) storage.Record {
	return storage.Record{
		Src:       fmt.Sprint("dev", g%2),
		Stream:    fmt.Sprint("s", i%3),
		Timestamp: int64(1000*g + i),
		Msg:       []byte(fmt.Sprintf(`{"g":%d,"i":%d,"pad":%q}`, g, i, strings.Repeat("p", i%50))),
	}
}

// crashImage is a crash clone of the file system and what was known
// before it was taken.
type crashImage struct {
	name  string
	fs    *vfs.MemFS
	acked []storage.Entry // acknowledged before the clone was taken
}

// TestStore_Crash takes crash clones (vfs.NewCrashableMem: what was synced,
// plus some or all of what was not) while appenders run, and checks each
// clone as a restarted store would see it: every entry acknowledged before
// the clone is there, byte for byte; every listed entry is exactly a record
// some call issued (nothing torn or half-visible), in its own stream, once;
// the raw keys are consistent; and a new append gets an id above all of
// them. Groups handed to Subscribe are durable: a clone taken inside the
// callback, with none of the unsynced data, holds them.
func TestStore_Crash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s := openMem(t, mem, storage.Options{MaxBatchBytes: 4 << 10})
	defer s.Close()

	var (
		mu     sync.Mutex
		acked  []storage.Entry
		images []crashImage
	)
	subClones := 0
	cancel := s.Subscribe(func(group []storage.Entry) {
		// Committer goroutine: one call at a time.
		if subClones >= 3 {
			return
		}
		subClones++
		images = append(images, crashImage{
			name:  fmt.Sprint("InSubscribe", subClones),
			fs:    mem.CrashClone(vfs.CrashCloneCfg{}),
			acked: append([]storage.Entry(nil), group...),
		})
	})

	ctx, stop := context.WithTimeout(context.Background(), faultTimeout)
	defer stop()
	const appenders = 6
	var wg sync.WaitGroup
	var quit atomic.Bool
	errs := make(chan error, appenders)
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !quit.Load(); i++ {
				e, err := s.Append(ctx, crashRec(g, i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, e)
				mu.Unlock()
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cfgs := []struct {
		name string
		cfg  vfs.CrashCloneCfg
	}{
		{"SyncedOnly", vfs.CrashCloneCfg{}},
		{"HalfUnsynced", vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}},
		{"MostUnsynced", vfs.CrashCloneCfg{UnsyncedDataPercent: 90, RNG: rng}},
		{"SyncedOnlyLater", vfs.CrashCloneCfg{}},
		{"TenthUnsynced", vfs.CrashCloneCfg{UnsyncedDataPercent: 10, RNG: rng}},
		{"AllUnsynced", vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}},
	}
	for k, c := range cfgs {
		target := 40 * (k + 1)
		reached := await.Within(faultTimeout, func() bool {
			select {
			case err := <-errs:
				t.Fatalf("append: %v", err)
			default:
			}
			return ackedCount() >= target
		})
		if !reached {
			t.Fatalf("appenders stalled at %d acknowledged", ackedCount())
		}
		mu.Lock()
		before := append([]storage.Entry(nil), acked...)
		mu.Unlock()
		img := crashImage{name: c.name, fs: mem.CrashClone(c.cfg), acked: before}
		mu.Lock()
		images = append(images, img)
		mu.Unlock()
	}
	quit.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if subClones == 0 {
		t.Fatal("no group was delivered to the subscriber")
	}
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) { checkCrashImage(t, img) })
	}
}

func checkCrashImage(t *testing.T, img crashImage) {
	raw := checkRaw(t, img.fs, "db")
	s := openMem(t, img.fs, storage.Options{})
	defer s.Close()
	ctx := context.Background()
	listed := map[string]map[uint64]storage.Entry{}
	var top = map[string]uint64{}
	for _, src := range []string{"dev0", "dev1"} {
		es, err := s.List(ctx, storage.Query{Src: src, Last: -1})
		if err != nil {
			t.Fatalf("list %q: %v", src, err)
		}
		listed[src] = map[uint64]storage.Entry{}
		seen := map[[2]int]bool{}
		for i, e := range es {
			if i > 0 && e.Seq <= es[i-1].Seq {
				t.Errorf("%q: ids not increasing: %d after %d", src, e.Seq, es[i-1].Seq)
			}
			var m struct{ G, I int }
			if err := json.Unmarshal(e.Msg, &m); err != nil {
				t.Errorf("%q: entry %d has a torn msg %q: %v", src, e.Seq, e.Msg, err)
				continue
			}
			rec := crashRec(m.G, m.I)
			if rec.Src != src || rec.Stream != e.Stream || rec.Timestamp != e.Timestamp || string(rec.Msg) != string(e.Msg) {
				t.Errorf("%q: entry %d %q/%q ts %d msg %q is no record any call issued", src, e.Seq, e.Src, e.Stream, e.Timestamp, e.Msg)
			}
			if seen[[2]int{m.G, m.I}] {
				t.Errorf("%q: record g%d i%d stored twice", src, m.G, m.I)
			}
			seen[[2]int{m.G, m.I}] = true
			listed[src][e.Seq] = e
			top[src] = max(top[src], e.Seq)
		}
		h, err := s.Head(ctx, src)
		if err != nil || h < top[src] || h != raw.seqs[src] {
			t.Errorf("%q: head %d (err %v); highest listed %d, sequence key %d", src, h, err, top[src], raw.seqs[src])
		}
	}
	for _, a := range img.acked {
		got, ok := listed[a.Src][a.Seq]
		if !ok {
			t.Errorf("acknowledged entry %d of %q (%s) lost in the crash", a.Seq, a.Src, a.Msg)
			continue
		}
		if got.Stream != a.Stream || string(got.Msg) != string(a.Msg) {
			t.Errorf("acknowledged entry %d of %q: %q/%s, stored as %q/%s", a.Seq, a.Src, a.Stream, a.Msg, got.Stream, got.Msg)
		}
		top[a.Src] = max(top[a.Src], a.Seq)
	}
	t.Logf("%d acknowledged before the crash, %d+%d listed after it", len(img.acked), len(listed["dev0"]), len(listed["dev1"]))
	for _, src := range []string{"dev0", "dev1"} {
		e, err := s.Append(ctx, storage.Record{Src: src, Stream: "after", Msg: []byte(`"after crash"`)})
		if err != nil {
			t.Fatalf("append after crash: %v", err)
		}
		if e.Seq <= top[src] {
			t.Errorf("%q: id %d after the crash reuses one at or below %d", src, e.Seq, top[src])
		}
	}
}

// faultFS wraps a MemFS in errorfs, failing the operations of the given
// kinds, on every file, with err while on: a disk that stopped taking
// writes (reads still work).
type faultFS struct {
	mem   *vfs.MemFS
	fs    *errorfs.FS
	on    atomic.Bool
	kinds map[errorfs.OpKind]bool
	hits  atomic.Int64
}

func newFaultFS(err error, kinds ...errorfs.OpKind) *faultFS {
	f := &faultFS{mem: vfs.NewMem(), kinds: map[errorfs.OpKind]bool{}}
	for _, k := range kinds {
		f.kinds[k] = true
	}
	f.fs = errorfs.Wrap(f.mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if f.on.Load() && f.kinds[op.Kind] {
			f.hits.Add(1)
			return &os.PathError{Op: "write", Path: op.Path, Err: err}
		}
		return nil
	}))
	return f
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var (
	walWrite = []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}
	walSync  = []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}
)

// TestStore_IOFault makes the disk's writes or syncs fail, with an I/O
// error or ENOSPC (a full disk): the appends of the failed batch fail with
// ErrFailed and are never acknowledged, later writes fail fast, List and
// Head keep serving what was durable, the log says once what happened and
// what to do; once the fault clears the store recovers by itself, keeps
// every acknowledged entry and hands out ids above everything stored; a
// restart finds the same.
func TestStore_IOFault(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		kinds []errorfs.OpKind
		log   string // what the error log must say, once
	}{
		{"WALWrite", errorfs.ErrInjected, walWrite, "I/O error"},
		{"WALSync", errorfs.ErrInjected, walSync, "I/O error"},
		{"DiskFullWrite", syscall.ENOSPC, walWrite, "disk full"},
		{"DiskFullSync", syscall.ENOSPC, walSync, "disk full"},
	} {
		t.Run(c.name, func(t *testing.T) { testIOFault(t, newFaultFS(c.err, c.kinds...), c.err, c.log) })
	}
}

func testIOFault(t *testing.T, f *faultFS, cause error, logWant string) {
	ctx, stop := context.WithTimeout(context.Background(), faultTimeout)
	defer stop()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := openMem(t, f.fs, storage.Options{Logger: logger, RecoverInterval: 5 * time.Millisecond})
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	var delivered atomic.Int64
	s.Subscribe(func(g []storage.Entry) { delivered.Add(int64(len(g))) })

	var durable []storage.Entry
	for i := 0; i < 10; i++ {
		e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: fmt.Sprint("s", i%2), Msg: []byte(fmt.Sprintf(`"ok %d"`, i))})
		if err != nil {
			t.Fatalf("append before the fault: %v", err)
		}
		durable = append(durable, e)
	}
	await.Until(t, faultTimeout, "delivery of the durable entries", func() bool { return delivered.Load() == int64(len(durable)) })

	f.on.Store(true)
	// Several appenders at once: whichever batches the failure hits, none
	// of them may be acknowledged.
	const failing = 8
	errs := make(chan error, failing)
	for i := 0; i < failing; i++ {
		go func() {
			_, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "s0", Msg: []byte(fmt.Sprintf(`"doomed %d"`, i))})
			errs <- err
		}()
	}
	for i := 0; i < failing; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, storage.ErrFailed) {
				t.Errorf("append during the fault: %v, want ErrFailed", err)
			}
		case <-ctx.Done():
			t.Fatal("append during the fault did not return")
		}
	}
	if f.hits.Load() == 0 {
		t.Fatal("no fault was injected")
	}
	if err := s.Err(); !errors.Is(err, storage.ErrFailed) || !errors.Is(err, cause) {
		t.Errorf("Err after the fault: %v, want ErrFailed wrapping %v", err, cause)
	}
	t.Run("DuringOutage", func(t *testing.T) {
		if _, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "s0", Msg: []byte(`"later"`)}); !errors.Is(err, storage.ErrFailed) {
			t.Errorf("append during the outage: %v, want ErrFailed", err)
		}
		done := make(chan error, 1)
		s.AppendAsync(storage.Record{Src: "dev", Stream: "s0", Msg: []byte(`"later"`)}, func(_ storage.Entry, err error) { done <- err })
		select {
		case err := <-done:
			if !errors.Is(err, storage.ErrFailed) {
				t.Errorf("append async during the outage: %v, want ErrFailed", err)
			}
		case <-ctx.Done():
			t.Fatal("done of an append during the outage never ran")
		}
		if err := s.Delete(ctx, "dev", "s1"); !errors.Is(err, storage.ErrFailed) {
			t.Errorf("delete during the outage: %v, want ErrFailed", err)
		}
		got, err := s.List(ctx, storage.Query{Src: "dev", Last: -1})
		if err != nil {
			t.Fatalf("list during the outage: %v", err)
		}
		checkPrefix(t, "list during the outage", got, durable, false)
		if h, err := s.Head(ctx, "dev"); err != nil || h != durable[len(durable)-1].Seq {
			t.Errorf("head during the outage: %d (%v), want %d", h, err, durable[len(durable)-1].Seq)
		}
		if n := delivered.Load(); n != int64(len(durable)) {
			t.Errorf("subscriber got %d entries, want only the %d durable ones", n, len(durable))
		}
	})

	f.on.Store(false)
	await.Until(t, faultTimeout, "recovery", func() bool { return s.Err() == nil })
	var top uint64
	t.Run("Recovered", func(t *testing.T) {
		got, err := s.List(ctx, storage.Query{Src: "dev", Last: -1})
		if err != nil {
			t.Fatalf("list after recovery: %v", err)
		}
		checkPrefix(t, "list after recovery", got, durable, true)
		top = got[len(got)-1].Seq
		for i := 0; i < 3; i++ {
			e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "s0", Msg: []byte(`"recovered"`)})
			if err != nil {
				t.Fatalf("append after recovery: %v", err)
			}
			if e.Seq <= top {
				t.Errorf("append after recovery got id %d, not above the stored %d", e.Seq, top)
			}
			durable = append(durable, e)
			top = e.Seq
		}
		await.Until(t, faultTimeout, "delivery after recovery", func() bool { return delivered.Load() == int64(len(durable)) })
		if err := s.Delete(ctx, "dev", "s1"); err != nil {
			t.Errorf("delete after recovery: %v", err)
		}
		if h, err := s.Head(ctx, "dev"); err != nil || h != top {
			t.Errorf("head after recovery: %d (%v), want %d", h, err, top)
		}
	})
	out := logs.String()
	if n := strings.Count(out, logWant); n != 1 {
		t.Errorf("log says %q %d times, want once:\n%s", logWant, n, out)
	}
	if n := strings.Count(out, "storage recovered"); n != 1 {
		t.Errorf("log says it recovered %d times, want once:\n%s", n, out)
	}

	closeErr := make(chan error, 1)
	go func() { closeErr <- s.Close() }()
	select {
	case err := <-closeErr:
		if err != nil {
			t.Errorf("close of the recovered store: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("close of the recovered store hangs")
	}
	closed = true

	// Restart: what was acknowledged is there (s1 deleted); the doomed
	// entries may have reached the disk (they were written, only not
	// acknowledged), but nothing else; new ids are above everything stored.
	checkRaw(t, f.mem, "db")
	r := openMem(t, f.mem, storage.Options{})
	defer r.Close()
	got, err := r.List(ctx, storage.Query{Src: "dev", Stream: "s0", Last: -1})
	if err != nil {
		t.Fatalf("list after reopen: %v", err)
	}
	var want []storage.Entry
	for _, e := range durable {
		if e.Stream == "s0" {
			want = append(want, e)
		}
	}
	acked := map[uint64]string{}
	for _, e := range want {
		acked[e.Seq] = string(e.Msg)
	}
	n := 0
	for _, e := range got {
		if m, ok := acked[e.Seq]; ok {
			n++
			if m != string(e.Msg) {
				t.Errorf("after reopen, entry %d: %s, want %s", e.Seq, e.Msg, m)
			}
		} else if !strings.HasPrefix(string(e.Msg), `"doomed `) {
			t.Errorf("after reopen, entry %d: %s is neither acknowledged nor a failed append", e.Seq, e.Msg)
		}
	}
	if n != len(want) {
		t.Errorf("after reopen: %d of the %d acknowledged entries of s0", n, len(want))
	}
	e, err := r.Append(ctx, storage.Record{Src: "dev", Stream: "s0", Msg: []byte(`"restarted"`)})
	if err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
	if e.Seq <= top {
		t.Errorf("append after reopen got id %d, not above %d", e.Seq, top)
	}
}

// checkPrefix checks that got starts with want, entry for entry; with
// extra, later entries may follow if they are failed appends.
func checkPrefix(t *testing.T, what string, got, want []storage.Entry, extra bool) {
	t.Helper()
	if len(got) < len(want) || (!extra && len(got) != len(want)) {
		t.Errorf("%s: %d entries, want the %d acknowledged ones", what, len(got), len(want))
	}
	for i, e := range got {
		if i < len(want) {
			if e.Seq != want[i].Seq || string(e.Msg) != string(want[i].Msg) {
				t.Errorf("%s, entry %d: %d %s, want %d %s", what, i, e.Seq, e.Msg, want[i].Seq, want[i].Msg)
			}
		} else if !strings.HasPrefix(string(e.Msg), `"doomed `) {
			t.Errorf("%s, entry %d: %s is neither acknowledged nor a failed append", what, i, e.Msg)
		}
	}
}
