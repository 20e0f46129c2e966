package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

// TestStore_DedupCrash: the memory of the de-duplication window is as
// durable as the entries it names. Crash clones (what was synced, and with
// all or half of what was not) taken after keyed appends were acknowledged
// answer a resend of each with its first id and store nothing; a key whose
// append was never acknowledged is either known with an id the clone
// lists, or stored anew.
func TestStore_DedupCrash(t *testing.T) {
	opts := storage.Options{DedupWindow: time.Hour}
	mem := vfs.NewCrashableMem()
	s := openMem(t, mem, opts)
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	rec := func(i int) storage.Record {
		return storage.Record{Src: fmt.Sprint("dev", i%3), Stream: "console", Timestamp: int64(i),
			Msg: []byte(fmt.Sprintf(`"line %d"`, i)), Dedup: storage.DedupKey{byte(i), byte(i >> 8), 0xd}}
	}
	acked := map[int]uint64{}
	for i := 1; i <= 200; i++ {
		e, err := s.Append(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		acked[i] = e.Seq
	}
	// Some in flight when the clones are taken.
	for i := 201; i <= 260; i++ {
		s.AppendAsync(rec(i), nil)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	clones := map[string]*vfs.MemFS{
		"SyncedOnly":   mem.CrashClone(vfs.CrashCloneCfg{}),
		"HalfUnsynced": mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}),
		"AllUnsynced":  mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}),
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, fs := range clones {
		t.Run(name, func(t *testing.T) {
			checkRaw(t, fs, "db")
			c := openMem(t, fs, opts)
			defer c.Close()
			for i := 1; i <= 260; i++ {
				e, err := c.Append(ctx, rec(i))
				if err != nil {
					t.Fatal(err)
				}
				if want, ok := acked[i]; ok && (e.Seq != want || !e.Duplicate) {
					t.Fatalf("acknowledged record %d resent: id %d dup %v, want %d, a duplicate", i, e.Seq, e.Duplicate, want)
				}
				// Stored now or before: exactly one entry holds it.
				es, err := c.List(ctx, storage.Query{Src: rec(i).Src, Last: -1})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, x := range es {
					if string(x.Msg) == string(rec(i).Msg) {
						n++
						if x.Seq != e.Seq {
							t.Fatalf("record %d listed as %d, answered as %d", i, x.Seq, e.Seq)
						}
					}
				}
				if n != 1 {
					t.Fatalf("record %d is listed %d times after its resend", i, n)
				}
			}
		})
	}
}
