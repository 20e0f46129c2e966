package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// CompactAll compacts the whole key range of s's database, for the disk
// size benchmark: the files then hold only live data, as a long-running
// store converges to.
func CompactAll(s *Store) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return err
	}
	return s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
}

// Retain applies s's retention bounds once, now, and returns how many
// entries it removed.
func Retain(s *Store) (int64, error) {
	return s.retain(context.Background())
}

// VisibleEntries counts the entries of src in stream as Pebble shows them
// now, durable or not, bypassing the store's durable view.
func VisibleEntries(s *Store, src, stream string) (int, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return 0, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendStreamPrefix(nil, src, stream),
		UpperBound: appendStreamEnd(nil, src, stream),
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n, errors.Join(it.Error(), it.Close())
}

// CheckTailCache checks the invariants of s's tail cache: each stream's
// entries ascend, all above its bound, within its bounds, its counters
// match them, and the cache's byte count is the sum of its streams'.
func CheckTailCache(s *Store) error {
	c := s.tail
	if c == nil {
		return nil
	}
	var total int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		for k, t := range sh.m {
			var err error
			var msgs int64
			for j, e := range t.ents {
				msgs += int64(len(e.msg))
				switch {
				case !t.known:
					err = fmt.Errorf("unknown, with entries")
				case e.seq <= t.from:
					err = fmt.Errorf("entry %d at or below the bound %d", e.seq, t.from)
				case j > 0 && e.seq <= t.ents[j-1].seq:
					err = fmt.Errorf("entry %d after %d", e.seq, t.ents[j-1].seq)
				}
			}
			switch {
			case err != nil:
			case t.dropped:
				err = fmt.Errorf("dropped, still in the map")
			case t.suspended:
				err = fmt.Errorf("suspended between commits")
			case len(t.ents) > tailMaxEntries || msgs > tailMaxBytes:
				err = fmt.Errorf("%d entries, %d bytes: over the bounds", len(t.ents), msgs)
			case msgs != t.msgBytes:
				err = fmt.Errorf("%d msg bytes counted, %d held", t.msgBytes, msgs)
			}
			total += t.cost
			if err != nil {
				sh.mu.RUnlock()
				return fmt.Errorf("tail cache: %q/%q: %w", k.src, k.stream, err)
			}
		}
		sh.mu.RUnlock()
	}
	if used := c.used.Load(); used != total {
		return fmt.Errorf("tail cache: %d bytes counted, its streams hold %d", used, total)
	}
	return nil
}

// ListReadBytes is List, returning also the bytes of the Pebble blocks the
// List's iterators loaded (from the block cache or the disk).
func ListReadBytes(s *Store, q Query) ([]Entry, uint64, error) {
	var n uint64
	out, err := s.listCounting(context.Background(), q, false, &n)
	return out, n, err
}

// ScanRaw is a bare Pebble iteration over every key and value of src's
// stream (touching each value's bytes), the reference a filtered scan is
// measured against. It returns the entries it saw.
func ScanRaw(s *Store, src, stream string) (int, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return 0, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendStreamPrefix(nil, src, stream),
		UpperBound: appendStreamEnd(nil, src, stream),
	})
	if err != nil {
		return 0, err
	}
	n, sum := 0, 0
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, errors.Join(err, it.Close())
		}
		sum += int(v[len(v)-1])
		n++
	}
	_ = sum
	return n, errors.Join(it.Error(), it.Close())
}
