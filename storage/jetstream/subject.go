package jetstream

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"

	"github.com/logbroker/logbroker/storage"
)

// Subject kinds (see doc.go, "Subject layout").
const (
	kindEntry = "e" // <prefix>.<part>.e.<src>.<stream>: one entry
	kindHead  = "h" // <prefix>.<part>.h.<src>: head marker written by Delete
)

// token encodes a source or stream name as one subject token: unpadded
// base64url, so '.', '*', '>', spaces and any UTF-8 are safe.
func token(name string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(name))
}

// untoken is the inverse of token.
func untoken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", fmt.Errorf("decode subject token %q: %w", tok, errCorrupt)
	}
	return string(b), nil
}

// errCorrupt marks data in a stream that this package did not write.
var errCorrupt = errors.New("unexpected message in stream")

// validName reports whether s may be a source or stream name. The subjects
// could hold any name; the rule is the Pebble store's, so that both
// backends accept the same names.
func validName(s string) bool {
	return s != "" && strings.IndexByte(s, 0) < 0
}

func checkNames(src, stream string) error {
	if !validName(src) {
		return fmt.Errorf("%w: source %q", storage.ErrInvalid, src)
	}
	if !validName(stream) {
		return fmt.Errorf("%w: stream %q", storage.ErrInvalid, stream)
	}
	return nil
}

// partition is one JetStream stream of the store: every source lives in
// exactly one, chosen by a hash of its name.
type partition struct {
	index  int
	name   string // JetStream stream name
	prefix string // "<subject prefix>.<index>"
	// The stream leader has stored every message up to this sequence, as
	// its acknowledgements and answers to awaitLeader tell.
	stored atomic.Uint64
}

// noteStored records that p's stream leader has stored seq.
func (p *partition) noteStored(seq uint64) {
	for {
		old := p.stored.Load()
		if seq <= old || p.stored.CompareAndSwap(old, seq) {
			return
		}
	}
}

func (p *partition) entrySubject(src, stream string) string {
	return p.prefix + "." + kindEntry + "." + token(src) + "." + token(stream)
}

// sourceFilter matches every entry subject of src.
func (p *partition) sourceFilter(src string) string {
	return p.prefix + "." + kindEntry + "." + token(src) + ".*"
}

// parseEntrySubject returns the source and stream of an entry subject of p.
func (p *partition) parseEntrySubject(subj string) (src, stream string, err error) {
	rest, ok := strings.CutPrefix(subj, p.prefix+"."+kindEntry+".")
	if !ok {
		return "", "", fmt.Errorf("subject %q: %w", subj, errCorrupt)
	}
	st, sm, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("subject %q: %w", subj, errCorrupt)
	}
	if src, err = untoken(st); err != nil {
		return "", "", err
	}
	if stream, err = untoken(sm); err != nil {
		return "", "", err
	}
	return src, stream, nil
}

// partitionOf returns the index of the partition that holds src.
func partitionOf(src string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(src))
	return int(h.Sum32() % uint32(n))
}

// encodeValue returns a message payload: the Pebble store's value layout
// (storage.PutValue: uvarint(timestamp), a level byte if any, msg).
func encodeValue(ts int64, level storage.Level, msg []byte) []byte {
	return storage.AppendValue(make([]byte, 0, storage.ValueLen(ts, level, msg)), ts, level, msg)
}

func decodeValue(v []byte) (ts int64, level storage.Level, msg []byte, err error) {
	ts, level, msg, err = storage.DecodeValue(v)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("decode entry: %w", err)
	}
	return ts, level, msg, nil
}
