package storage

import (
	"sync/atomic"
)

// BatchBounds are the upper bounds of the buckets of Stats.Batches: how
// many entries one synced batch carried (group commit at work).
var BatchBounds = [...]uint64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// Stats are the store's counters since Open, for metrics. Counters only
// grow; DiskBytes is read when Stats is called.
type Stats struct {
	Entries uint64 // entries made durable
	Bytes   uint64 // bytes of their msg
	Deletes uint64 // Delete calls made durable
	Syncs   uint64 // batches written with a WAL sync
	Expired uint64 // entries removed by retention
	// Batches[i] counts the synced batches that carried at most
	// BatchBounds[i] entries and more than BatchBounds[i-1]; the last
	// element counts those over the last bound. Not cumulative.
	Batches [len(BatchBounds) + 1]uint64
	// DiskBytes is Pebble's disk space use (WAL, tables, files awaiting
	// deletion); 0 once the store is closed or failed.
	DiskBytes uint64
	// TailHits counts the List calls of one stream the tail cache served,
	// TailMisses those it could not (they read Pebble); TailBytes is the
	// memory the cache accounts for now (at most about
	// Options.TailCacheBytes). All 0 with the cache off.
	TailHits, TailMisses, TailBytes uint64
}

// counters are updated by the committer, read by Stats.
type counters struct {
	entries, bytes, deletes, syncs atomic.Uint64
	expired                        atomic.Uint64 // updated by retention
	batches                        [len(BatchBounds) + 1]atomic.Uint64
}

// committed counts the successful ops of a batch that was just synced.
func (c *counters) committed(ops []op) {
	var entries, bytes, deletes uint64
	for i := range ops {
		switch o := &ops[i]; {
		case o.err != nil:
		case o.kind == opAppend:
			entries++
			bytes += uint64(len(o.rec.Msg))
		case o.kind == opDelete:
			deletes++
		}
	}
	c.entries.Add(entries)
	c.bytes.Add(bytes)
	c.deletes.Add(deletes)
	c.syncs.Add(1)
	b := len(BatchBounds)
	for i, bound := range BatchBounds {
		if entries <= bound {
			b = i
			break
		}
	}
	c.batches[b].Add(1)
}

// Stats returns the store's counters and its size on disk.
func (s *Store) Stats() Stats {
	st := Stats{
		Entries: s.stats.entries.Load(),
		Bytes:   s.stats.bytes.Load(),
		Deletes: s.stats.deletes.Load(),
		Syncs:   s.stats.syncs.Load(),
		Expired: s.stats.expired.Load(),
	}
	for i := range st.Batches {
		st.Batches[i] = s.stats.batches[i].Load()
	}
	if c := s.tail; c != nil {
		st.TailHits, st.TailMisses = c.hits.Load(), c.misses.Load()
		st.TailBytes = uint64(max(0, c.used.Load()))
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.readable() == nil {
		_ = catch(func() error {
			st.DiskBytes = s.db.Metrics().DiskSpaceUsage()
			return nil
		})
	}
	return st
}
