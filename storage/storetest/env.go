package storetest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// waitTimeout bounds every wait of the suite: generous, since the suite runs
// under -race on busy machines.
const waitTimeout = 20 * time.Second

// env is one test's store, reopenable, and the suite's model of what it
// holds. Every write goes through a recorder, which keeps the model; a
// t.Cleanup registered by newEnv checks the store against it, then closes
// the store, reopens it and checks again.
type env struct {
	t    *testing.T
	open func() (Store, error)

	mu      sync.Mutex
	cur     *recorder
	sources map[string]*sourceModel
}

// sourceModel is what the suite knows of one source.
type sourceModel struct {
	maxAcked uint64 // highest sequence an append acknowledged
	streams  map[string]*streamModel
}

// streamModel is what the suite knows of one stream.
type streamModel struct {
	acked    map[uint64]storage.Entry // acknowledged and not since deleted
	inflight int                      // appends under way
	deletes  int                      // deletes under way
	// unsure: an append failed (it may or may not be stored) or a delete
	// overlapped appends, so only the structural invariants hold.
	unsure bool
}

// newEnv prepares a fresh store for t and registers the invariant check.
func newEnv(t *testing.T, h Harness) (*env, Store) {
	t.Helper()
	e := &env{t: t, open: h.Fresh(t), sources: make(map[string]*sourceModel)}
	s, err := e.open()
	if err != nil {
		t.Fatalf("open fresh store: %v", err)
	}
	e.cur = &recorder{Store: s, env: e}
	t.Cleanup(e.finalCheck)
	return e, e.cur
}

// reopen closes the current store and opens it again on the same data.
func (e *env) reopen() Store {
	e.t.Helper()
	e.mu.Lock()
	cur := e.cur
	e.mu.Unlock()
	if err := cur.Close(); err != nil {
		e.t.Fatalf("close before reopen: %v", err)
	}
	s, err := e.open()
	if err != nil {
		e.t.Fatalf("reopen: %v", err)
	}
	r := &recorder{Store: s, env: e}
	e.mu.Lock()
	e.cur = r
	e.mu.Unlock()
	return r
}

// finalCheck checks the invariants on the open store (if the test left one
// open), then on the same data reopened.
func (e *env) finalCheck() {
	t := e.t
	e.mu.Lock()
	cur := e.cur
	e.mu.Unlock()
	if !cur.isClosed() {
		e.check(cur.Store, "at end of test")
		if err := cur.Close(); err != nil {
			t.Errorf("close at end of test: %v", err)
		}
	}
	s, err := e.open()
	if err != nil {
		t.Errorf("reopen for the final check: %v", err)
		return
	}
	e.check(s, "after reopen")
	if err := s.Close(); err != nil {
		t.Errorf("close after the final check: %v", err)
	}
}

// check verifies, for every source the test wrote to: ids strictly
// increasing, nothing above Head, the per-stream lists merge into exactly
// the all-streams list, and (where the model is exact) every acknowledged,
// undeleted entry is listed as it was appended and nothing else.
func (e *env) check(s Store, phase string) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, src := range sortedKeys(e.sources) {
		sm := e.sources[src]
		head, err := s.Head(ctx, src)
		if err != nil {
			t.Errorf("invariants %s: head %q: %v", phase, src, err)
			continue
		}
		if head < sm.maxAcked {
			t.Errorf("invariants %s: head of %q is %d, below acknowledged %d", phase, src, head, sm.maxAcked)
		}
		all, err := s.List(ctx, storage.Query{Src: src, Last: -1})
		if err != nil {
			t.Errorf("invariants %s: list %q: %v", phase, src, err)
			continue
		}
		checkRun(t, phase, src, "", all, head)
		var merged []storage.Entry
		for _, stream := range sortedKeys(sm.streams) {
			st := sm.streams[stream]
			got, err := s.List(ctx, storage.Query{Src: src, Stream: stream, Last: -1})
			if err != nil {
				t.Errorf("invariants %s: list %q/%q: %v", phase, src, stream, err)
				continue
			}
			checkRun(t, phase, src, stream, got, head)
			merged = append(merged, got...)
			if st.unsure {
				continue
			}
			want := make([]storage.Entry, 0, len(st.acked))
			for _, en := range st.acked {
				want = append(want, en)
			}
			sortBySeq(want)
			if d := diffEntries(got, want); d != "" {
				t.Errorf("invariants %s: %q/%q differs from what was acknowledged: %s", phase, src, stream, d)
			}
		}
		sortBySeq(merged)
		if d := diffEntries(all, merged); d != "" {
			t.Errorf("invariants %s: all-streams list of %q differs from the per-stream lists merged: %s", phase, src, d)
		}
	}
}

// checkRun checks one list: the right source (and stream), ids strictly
// increasing, none above head.
func checkRun(t *testing.T, phase, src, stream string, es []storage.Entry, head uint64) {
	t.Helper()
	var prev uint64
	for i, en := range es {
		if en.Src != src || (stream != "" && en.Stream != stream) {
			t.Errorf("invariants %s: list %q/%q returned an entry of %q/%q", phase, src, stream, en.Src, en.Stream)
		}
		if i > 0 && en.Seq <= prev {
			t.Errorf("invariants %s: list %q/%q: ids not strictly increasing: %d after %d", phase, src, stream, en.Seq, prev)
		}
		if en.Seq > head {
			t.Errorf("invariants %s: list %q/%q: entry %d above head %d", phase, src, stream, en.Seq, head)
		}
		prev = en.Seq
	}
}

// stream returns the model of src/stream, creating it.
func (e *env) stream(src, stream string) (*sourceModel, *streamModel) {
	sm := e.sources[src]
	if sm == nil {
		sm = &sourceModel{streams: make(map[string]*streamModel)}
		e.sources[src] = sm
	}
	st := sm.streams[stream]
	if st == nil {
		st = &streamModel{acked: make(map[uint64]storage.Entry)}
		sm.streams[stream] = st
	}
	return sm, st
}

func (e *env) appendStart(rec storage.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, st := e.stream(rec.Src, rec.Stream)
	st.inflight++
	if st.deletes > 0 {
		st.unsure = true
	}
}

// appendEnd records the outcome of an append of rec (whose Msg is the
// suite's own copy).
func (e *env) appendEnd(rec storage.Record, en storage.Entry, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sm, st := e.stream(rec.Src, rec.Stream)
	st.inflight--
	if err != nil {
		st.unsure = true
		return
	}
	if prev, dup := st.acked[en.Seq]; dup && (rec.Dedup == storage.DedupKey{} || !sameEntry(prev, storage.Entry{Seq: en.Seq, Src: rec.Src, Stream: rec.Stream, Timestamp: rec.Timestamp, Msg: rec.Msg})) {
		e.t.Errorf("append %q/%q: id %d acknowledged twice", rec.Src, rec.Stream, en.Seq)
	}
	st.acked[en.Seq] = storage.Entry{Seq: en.Seq, Src: rec.Src, Stream: rec.Stream, Timestamp: rec.Timestamp, Msg: rec.Msg, Level: rec.Level}
	sm.maxAcked = max(sm.maxAcked, en.Seq)
}

// deleteStart returns the sequences the delete must remove.
func (e *env) deleteStart(src, stream string) []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, st := e.stream(src, stream)
	st.deletes++
	if st.inflight > 0 {
		st.unsure = true
	}
	seqs := make([]uint64, 0, len(st.acked))
	for seq := range st.acked {
		seqs = append(seqs, seq)
	}
	return seqs
}

func (e *env) deleteEnd(src, stream string, gone []uint64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, st := e.stream(src, stream)
	st.deletes--
	if err != nil {
		st.unsure = true
		return
	}
	for _, seq := range gone {
		delete(st.acked, seq)
	}
}

// recorder is the Store the tests use: it passes every call on and keeps
// the env's model.
type recorder struct {
	Store
	env *env

	mu     sync.Mutex
	closed bool
}

func (r *recorder) Append(ctx context.Context, rec storage.Record) (storage.Entry, error) {
	own := rec
	own.Msg = bytes.Clone(rec.Msg)
	r.env.appendStart(own)
	en, err := r.Store.Append(ctx, rec)
	r.env.appendEnd(own, en, err)
	return en, err
}

func (r *recorder) AppendAsync(rec storage.Record, done func(storage.Entry, error)) {
	own := rec
	own.Msg = bytes.Clone(rec.Msg)
	r.env.appendStart(own)
	r.Store.AppendAsync(rec, func(en storage.Entry, err error) {
		r.env.appendEnd(own, en, err)
		if done != nil {
			done(en, err)
		}
	})
}

func (r *recorder) Delete(ctx context.Context, src, stream string) error {
	gone := r.env.deleteStart(src, stream)
	err := r.Store.Delete(ctx, src, stream)
	r.env.deleteEnd(src, stream, gone, err)
	return err
}

func (r *recorder) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.Store.Close()
}

func (r *recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Helpers shared by the tests.

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortBySeq(es []storage.Entry) {
	slices.SortFunc(es, func(a, b storage.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
}

// diffEntries describes the first difference between got and want, or
// returns "".
func diffEntries(got, want []storage.Entry) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("missing entry %d %s", i, fmtEntry(want[i]))
		case i >= len(want):
			return fmt.Sprintf("unexpected entry %d %s", i, fmtEntry(got[i]))
		case !sameEntry(got[i], want[i]):
			return fmt.Sprintf("entry %d is %s, want %s", i, fmtEntry(got[i]), fmtEntry(want[i]))
		}
	}
	return ""
}

func sameEntry(a, b storage.Entry) bool {
	return a.Seq == b.Seq && a.Src == b.Src && a.Stream == b.Stream &&
		a.Timestamp == b.Timestamp && bytes.Equal(a.Msg, b.Msg) && a.Level == b.Level
}

func fmtEntry(e storage.Entry) string {
	return fmt.Sprintf("{seq %d %q/%q ts %d level %d msg %q}", e.Seq, e.Src, e.Stream, e.Timestamp, e.Level, e.Msg)
}

func seqsOf(es []storage.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// waitChan waits for ch to be closed (or to yield a value).
func waitChan[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
	var zero T
	return zero
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s Store, src, stream, msg string) storage.Entry {
	t.Helper()
	return mustAppendRec(t, s, storage.Record{Src: src, Stream: stream, Timestamp: 1764080000000, Msg: []byte(msg)})
}

func mustAppendRec(t *testing.T, s Store, rec storage.Record) storage.Entry {
	t.Helper()
	e, err := s.Append(testCtx(t), rec)
	if err != nil {
		t.Fatalf("append %q/%q: %v", rec.Src, rec.Stream, err)
	}
	if e.Src != rec.Src || e.Stream != rec.Stream || e.Timestamp != rec.Timestamp || !bytes.Equal(e.Msg, rec.Msg) || e.Level != rec.Level {
		t.Fatalf("append returned %s for record %q/%q ts %d msg %q", fmtEntry(e), rec.Src, rec.Stream, rec.Timestamp, rec.Msg)
	}
	if e.Seq == 0 {
		t.Fatalf("append %q/%q returned id 0", rec.Src, rec.Stream)
	}
	return e
}

// mustList bounds each call on its own: a test making thousands of calls
// checks each one's liveness, not their total time.
func mustList(t *testing.T, s Store, q storage.Query) []storage.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	es, err := s.List(ctx, q)
	if err != nil {
		t.Fatalf("list %+v: %v", q, err)
	}
	return es
}

func mustHead(t *testing.T, s Store, src string) uint64 {
	t.Helper()
	h, err := s.Head(testCtx(t), src)
	if err != nil {
		t.Fatalf("head %q: %v", src, err)
	}
	return h
}

func mustDelete(t *testing.T, s Store, src, stream string) {
	t.Helper()
	if err := s.Delete(testCtx(t), src, stream); err != nil {
		t.Fatalf("delete %q/%q: %v", src, stream, err)
	}
}
