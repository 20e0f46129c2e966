package storage_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// TestStore_DiskAlmostFull lowers the free space the volume reports below
// Options.MinFreeBytes: appends are refused with ErrDiskFull (wrapped with
// ErrFailed) before they reach Pebble, Delete, retention, List and Head
// keep working, the log says once what to do; once space is freed, appends
// are accepted again with ids above all before.
func TestStore_DiskAlmostFull(t *testing.T) {
	const reserve = 100 << 20
	mem := vfs.NewMem()
	setFree := func(free uint64) {
		mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: free, TotalBytes: 10 << 30, UsedBytes: 10<<30 - free})
	}
	setFree(5 << 30)
	var logs syncBuffer
	clock := newFakeClock()
	s := openMem(t, mem, storage.Options{
		Logger:            slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MinFreeBytes:      reserve,
		DiskCheckInterval: 2 * time.Millisecond,
		Retention:         storage.Retention{MaxEntriesPerStream: 2, Interval: time.Hour},
		Now:               clock.Now,
	})
	defer func() {
		s.Close()
		checkRaw(t, mem, "db")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	before := add(t, s, "dev", "a", 4, 10, 0)
	add(t, s, "dev", "b", 1, 10, 0)

	setFree(reserve - 1)
	await.Until(t, faultTimeout, "appends refused", func() bool { return errors.Is(s.Err(), storage.ErrDiskFull) })
	t.Run("Refused", func(t *testing.T) {
		_, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte(`1`)})
		if !errors.Is(err, storage.ErrDiskFull) || !errors.Is(err, storage.ErrFailed) {
			t.Errorf("append: %v, want ErrDiskFull and ErrFailed", err)
		}
		done := make(chan error, 1)
		s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte(`1`)}, func(_ storage.Entry, err error) { done <- err })
		select {
		case err := <-done:
			if !errors.Is(err, storage.ErrDiskFull) {
				t.Errorf("append async: %v, want ErrDiskFull", err)
			}
		case <-ctx.Done():
			t.Fatal("append async never answered")
		}
	})
	t.Run("DeletionsAndReadsWork", func(t *testing.T) {
		retain(t, s, 2)
		if err := s.Delete(ctx, "dev", "b"); err != nil {
			t.Errorf("delete: %v", err)
		}
		if got := seqsOf(t, s, "dev", ""); len(got) != 2 || got[1] != before[3] {
			t.Errorf("list: %v, want the last 2 of a", got)
		}
		if h, err := s.Head(ctx, "dev"); err != nil || h != 5 {
			t.Errorf("head: %d (%v), want 5", h, err)
		}
	})

	setFree(reserve * 2)
	await.Until(t, faultTimeout, "appends accepted again", func() bool { return s.Err() == nil })
	if got := add(t, s, "dev", "a", 1, 10, 0); got[0] != 6 {
		t.Errorf("append after space was freed: id %d, want 6", got[0])
	}
	out := logs.String()
	for _, want := range []string{"disk almost full", "disk space available again"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("log says %q %d times, want once:\n%s", want, n, out)
		}
	}
}
