package storetest

import (
	"github.com/logbroker/logbroker/integration/await"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// dedupEnv is newEnv for a store with de-duplication window w.
func dedupEnv(t *testing.T, h Harness, w time.Duration) (*env, Store) {
	t.Helper()
	return newEnv(t, Harness{Fresh: func(t testing.TB) func() (Store, error) { return h.Dedup(t, w) }})
}

// dedupRec is a record with a Dedup key.
func dedupRec(key byte, msg string) storage.Record {
	return storage.Record{Src: "dev", Stream: "console", Timestamp: 1764080000000, Msg: []byte(msg), Dedup: storage.DedupKey{key, 0xd}}
}

// mustStoredOnce fails unless src "dev" holds exactly the entries seqs.
func mustStored(t *testing.T, s Store, seqs ...uint64) {
	t.Helper()
	got := seqsOf(mustList(t, s, storage.Query{Src: "dev", Last: -1}))
	if len(got) != len(seqs) {
		t.Fatalf("dev holds entries %v, want %v", got, seqs)
	}
	for i := range got {
		if got[i] != seqs[i] {
			t.Fatalf("dev holds entries %v, want %v", got, seqs)
		}
	}
}

func testDedup(t *testing.T, h Harness) {
	if h.Dedup == nil {
		t.Skip("the backend has no de-duplication harness")
	}
	const window = time.Hour
	t.Run("WithinWindow", func(t *testing.T) {
		_, s := dedupEnv(t, h, window)
		first := mustAppendRec(t, s, dedupRec(1, `"boot"`))
		if first.Duplicate {
			t.Fatalf("the first append is marked a duplicate: %s", fmtEntry(first))
		}
		again, err := s.Append(testCtx(t), dedupRec(1, `"boot"`))
		if err != nil || again.Seq != first.Seq || !again.Duplicate {
			t.Fatalf("append again = %s dup %v, %v; want id %d, a duplicate", fmtEntry(again), again.Duplicate, err, first.Seq)
		}
		// Without a key, the same bytes are a new entry.
		plain := mustAppend(t, s, "dev", "console", `"boot"`)
		mustStored(t, s, first.Seq, plain.Seq)
	})
	t.Run("DifferentKey", func(t *testing.T) {
		_, s := dedupEnv(t, h, window)
		a := mustAppendRec(t, s, dedupRec(1, `"x"`))
		b := mustAppendRec(t, s, dedupRec(2, `"x"`))
		if b.Seq == a.Seq || b.Duplicate {
			t.Fatalf("another key got id %d (dup %v), the first %d", b.Seq, b.Duplicate, a.Seq)
		}
		mustStored(t, s, a.Seq, b.Seq)
	})
	t.Run("AfterReopen", func(t *testing.T) {
		e, s := dedupEnv(t, h, window)
		first := mustAppendRec(t, s, dedupRec(1, `"before"`))
		s = e.reopen()
		again, err := s.Append(testCtx(t), dedupRec(1, `"before"`))
		if err != nil || again.Seq != first.Seq || !again.Duplicate {
			t.Fatalf("after reopen: %s dup %v, %v; want id %d, a duplicate", fmtEntry(again), again.Duplicate, err, first.Seq)
		}
		next := mustAppendRec(t, s, dedupRec(2, `"after"`))
		mustStored(t, s, first.Seq, next.Seq)
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Queued together, so that most land in one batch: all are
		// answered with one id, and one entry is stored.
		_, s := dedupEnv(t, h, window)
		const n = 32
		type res struct {
			e   storage.Entry
			err error
		}
		ch := make(chan res, n)
		for range n {
			s.AppendAsync(dedupRec(7, `{"same":true}`), func(e storage.Entry, err error) { ch <- res{e, err} })
		}
		var seq uint64
		dups := 0
		for range n {
			r := waitChan(t, "done callbacks", (<-chan res)(ch))
			if r.err != nil {
				t.Fatal(r.err)
			}
			if seq != 0 && r.e.Seq != seq {
				t.Fatalf("duplicates answered with ids %d and %d", seq, r.e.Seq)
			}
			seq = r.e.Seq
			if r.e.Duplicate {
				dups++
			}
		}
		if dups < n-1 {
			t.Errorf("%d of %d appends marked duplicates, want at least %d", dups, n, n-1)
		}
		mustStored(t, s, seq)
	})
	t.Run("Expiry", func(t *testing.T) {
		const short = time.Second
		_, s := dedupEnv(t, h, short)
		start := time.Now()
		first := mustAppendRec(t, s, dedupRec(1, `"tick"`))
		var next storage.Entry
		await.Until(t, waitTimeout, "a duplicate stored anew after the window", func() bool {
			e, err := s.Append(testCtx(t), dedupRec(1, `"tick"`))
			if err != nil {
				t.Fatal(err)
			}
			next = e
			return e.Seq != first.Seq
		})
		if since := time.Since(start); since < short {
			t.Fatalf("stored anew %v after the first append, within the window of %v", since, short)
		}
		if next.Duplicate {
			t.Errorf("the append after the window is marked a duplicate")
		}
		mustStored(t, s, first.Seq, next.Seq)
	})
	t.Run("Off", func(t *testing.T) {
		_, s := dedupEnv(t, h, 0)
		a := mustAppendRec(t, s, dedupRec(1, `"x"`))
		b := mustAppendRec(t, s, dedupRec(1, `"x"`))
		if a.Seq == b.Seq || b.Duplicate {
			t.Fatalf("window 0: the second append got id %d (dup %v), the first %d", b.Seq, b.Duplicate, a.Seq)
		}
		mustStored(t, s, a.Seq, b.Seq)
	})
}
