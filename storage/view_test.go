package storage_test

import (
	"context"
	"errors"
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

// syncHold is a file system whose WAL syncs can be held, then released or
// failed.
type syncHold struct {
	fs      vfs.FS
	hold    atomic.Bool
	fail    atomic.Bool
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func newSyncHold() *syncHold {
	h := &syncHold{held: make(chan struct{}, 1), release: make(chan struct{})}
	h.fs = errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if h.hold.Load() && strings.HasSuffix(op.Path, ".log") {
				select {
				case h.held <- struct{}{}:
				default:
				}
				<-h.release
				if h.fail.Load() {
					return errorfs.ErrInjected
				}
			}
		}
		return nil
	}))
	return h
}

func (h *syncHold) unhold() { h.hold.Store(false); h.once.Do(func() { close(h.release) }) }

// TestStore_DeleteDurableCut holds the WAL sync of a deleting batch (a
// Delete, a retention trim): Pebble already shows the deletion, but List
// and Streams must not until it is durable, and, if its sync fails, not
// during the outage either.
func TestStore_DeleteDurableCut(t *testing.T) {
	for _, c := range []struct {
		name      string
		opts      storage.Options
		del       func(s *storage.Store) error
		after     int // entries of stream a left once the deletion is durable
		afterB    int // and of stream b
		failsSync bool
	}{
		{"Delete", storage.Options{}, func(s *storage.Store) error { return s.Delete(context.Background(), "dev", "a") }, 0, 2, false},
		{"Retention", storage.Options{Retention: storage.Retention{MaxEntriesPerStream: 1, Interval: time.Hour}},
			func(s *storage.Store) error { _, err := storage.Retain(s); return err }, 1, 1, false},
		{"DeleteFails", storage.Options{}, func(s *storage.Store) error { return s.Delete(context.Background(), "dev", "a") }, 3, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newSyncHold()
			o := c.opts
			o.RecoverInterval = time.Hour // the outage lasts the test
			s := openMem(t, h.fs, o)
			t.Cleanup(func() { s.Close() })
			t.Cleanup(h.unhold) // runs before the store's Close
			ctx := context.Background()
			add(t, s, "dev", "a", 3, 10, 0)
			add(t, s, "dev", "b", 2, 10, 0)

			h.fail.Store(c.failsSync)
			h.hold.Store(true)
			done := make(chan error, 1)
			go func() { done <- c.del(s) }()
			select {
			case <-h.held:
			case <-time.After(faultTimeout):
				t.Fatal("no WAL sync")
			}
			await.Until(t, faultTimeout, "the deletion visible in Pebble", func() bool {
				n, err := storage.VisibleEntries(s, "dev", "a")
				if err != nil {
					t.Fatal(err)
				}
				return n == c.after || (c.after == 3 && n == 0)
			})
			check := func(when string, wantA, wantB int) {
				t.Helper()
				if got := seqsOf(t, s, "dev", "a"); len(got) != wantA {
					t.Errorf("%s: List of a: %v, want %d entries", when, got, wantA)
				}
				if got := seqsOf(t, s, "dev", ""); len(got) != wantA+wantB {
					t.Errorf("%s: List of dev: %v, want %d entries", when, got, wantA+wantB)
				}
				sts, err := s.Streams(ctx, "dev")
				if err != nil {
					t.Fatal(err)
				}
				var n int64
				for _, st := range sts {
					if st.Stream == "a" {
						n = st.Count
					}
				}
				if n != int64(wantA) {
					t.Errorf("%s: Streams count of a: %d, want %d", when, n, wantA)
				}
			}
			check("while the deletion syncs", 3, 2)
			h.unhold()
			select {
			case err := <-done:
				if c.failsSync != errors.Is(err, storage.ErrFailed) {
					t.Errorf("deletion: %v (want ErrFailed: %v)", err, c.failsSync)
				}
			case <-time.After(faultTimeout):
				t.Fatal("deletion did not return")
			}
			check("once durable (or failed)", c.after, c.afterB)
		})
	}
}

// TestStore_DeleteFailsThenRecovers fails the WAL sync of a Delete: the
// store keeps its durable view through the outage, drops it before it
// reopens the database, and after the recovery the stream is either whole
// or gone (the disk decides), and appends go on above every id.
func TestStore_DeleteFailsThenRecovers(t *testing.T) {
	h := newSyncHold()
	s := openMem(t, h.fs, storage.Options{RecoverInterval: 5 * time.Millisecond})
	t.Cleanup(func() { s.Close() })
	t.Cleanup(h.unhold)
	add(t, s, "dev", "a", 3, 10, 0)
	add(t, s, "dev", "b", 2, 10, 0)
	h.fail.Store(true)
	h.hold.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.Delete(context.Background(), "dev", "a") }()
	select {
	case <-h.held:
	case <-time.After(faultTimeout):
		t.Fatal("no WAL sync")
	}
	h.unhold()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrFailed) {
			t.Fatalf("delete: %v, want ErrFailed", err)
		}
	case <-time.After(faultTimeout):
		t.Fatal("delete did not return")
	}
	await.Until(t, faultTimeout, "recovery", func() bool { return s.Err() == nil })
	if got := seqsOf(t, s, "dev", "a"); len(got) != 3 && len(got) != 0 {
		t.Errorf("stream a after the recovery: %v, want all 3 or none", got)
	}
	if got := seqsOf(t, s, "dev", "b"); len(got) != 2 {
		t.Errorf("stream b after the recovery: %v, want both", got)
	}
	if got := add(t, s, "dev", "a", 1, 10, 0); got[0] != 6 {
		t.Errorf("append after the recovery: id %d, want 6", got[0])
	}
}
