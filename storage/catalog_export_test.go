package storage

import (
	"encoding/binary"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// VisibleSeq reads the sequence key of src as Pebble shows it now, durable
// or not (0: none), for tests of the durable cut of Sources and Streams.
func VisibleSeq(s *Store, src string) (uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return 0, err
	}
	v, closer, err := s.db.Get(appendSeqKey(nil, src))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != seqLen {
		return 0, ErrCorrupt
	}
	return binary.BigEndian.Uint64(v), nil
}

// ForgetCounts drops every stream count s remembers, so that the next
// Streams counts from scratch (benchmarks of the first count).
func ForgetCounts(s *Store) {
	s.marks.mu.Lock()
	defer s.marks.mu.Unlock()
	clear(s.marks.m)
}
