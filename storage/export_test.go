package storage

import "context"

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
