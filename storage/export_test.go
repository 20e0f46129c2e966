package storage

import (
	"context"
	"errors"

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
