package storage_test

import (
	"context"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

func sumBatches(st storage.Stats) (n uint64) {
	for _, b := range st.Batches {
		n += b
	}
	return n
}

func TestStore_Stats(t *testing.T) {
	ctx := context.Background()
	t.Run("Fresh", func(t *testing.T) {
		s := openMem(t, vfs.NewMem(), storage.Options{})
		defer s.Close()
		st := s.Stats()
		if st.Entries != 0 || st.Bytes != 0 || st.Syncs != 0 || st.Deletes != 0 || sumBatches(st) != 0 {
			t.Fatalf("fresh store stats = %+v, want zero counters", st)
		}
	})
	t.Run("AppendsAndDelete", func(t *testing.T) {
		s := openMem(t, vfs.NewMem(), storage.Options{})
		defer s.Close()
		msgs := []string{`"boot ok"`, `{"t":21.5}`, `1`}
		var bytes uint64
		for _, m := range msgs {
			if _, err := s.Append(ctx, storage.Record{Src: "dev1", Stream: "console", Msg: []byte(m)}); err != nil {
				t.Fatal(err)
			}
			bytes += uint64(len(m))
		}
		if err := s.Delete(ctx, "dev1", "console"); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.Entries != 3 || st.Bytes != bytes || st.Deletes != 1 {
			t.Errorf("stats = %+v, want 3 entries, %d bytes, 1 delete", st, bytes)
		}
		// Synchronous calls one after another: one sync each.
		if st.Syncs != 4 || sumBatches(st) != 4 {
			t.Errorf("syncs = %d, batches = %v, want 4 and 4", st.Syncs, st.Batches)
		}
		if st.Batches[0] != 4 {
			t.Errorf("batches = %v, want all 4 in the first bucket (<= 1 entry)", st.Batches)
		}
		if st.DiskBytes == 0 {
			t.Errorf("DiskBytes = 0 on an open store with a WAL")
		}
	})
	t.Run("GroupCommit", func(t *testing.T) {
		s := openMem(t, vfs.NewMem(), storage.Options{})
		defer s.Close()
		const n = 200
		var wg sync.WaitGroup
		wg.Add(n)
		for range n {
			s.AppendAsync(storage.Record{Src: "dev1", Stream: "console", Msg: []byte(`"x"`)}, func(_ storage.Entry, err error) {
				if err != nil {
					t.Error(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
		st := s.Stats()
		if st.Entries != n || st.Bytes != 3*n {
			t.Errorf("stats = %+v, want %d entries of 3 bytes", st, n)
		}
		if st.Syncs == 0 || st.Syncs > n || sumBatches(st) != st.Syncs {
			t.Errorf("syncs = %d, batches %v: want 1..%d and batches summing to syncs", st.Syncs, st.Batches, n)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		s := openMem(t, vfs.NewMem(), storage.Options{})
		if _, err := s.Append(ctx, storage.Record{Src: "dev1", Stream: "console", Msg: []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.Entries != 1 || st.DiskBytes != 0 {
			t.Errorf("closed store stats = %+v, want 1 entry and DiskBytes 0", st)
		}
	})
}
