package storage

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors returned by every backend. Callers match them with errors.Is.
var (
	// ErrClosed is returned by calls made after Close, or cut short by it.
	ErrClosed = errors.New("store closed")
	// ErrBadID is returned by ParseID for a token that is not an entry id.
	ErrBadID = errors.New("malformed entry id")
)

// Record is what a caller appends: the store assigns the id.
type Record struct {
	Src       string // the log source; never empty, never contains NUL
	Stream    string // the stream within the source; never empty, never contains NUL
	Timestamp int64  // milliseconds since the Unix epoch, UTC
	Msg       []byte // the logged JSON value, kept byte for byte
	// Dedup, when not zero, names the call that made the record: a record
	// with the Dedup of one stored within the store's de-duplication
	// window is not stored again (doc.go, De-duplication). It must be a
	// strong hash of everything that identifies the call, src included.
	Dedup DedupKey
}

// DedupKey names a record for de-duplication; the zero key names none.
type DedupKey [16]byte

// Entry is a stored record with its id.
type Entry struct {
	Seq       uint64 // per-source sequence: strictly increasing in append order, never reused
	Src       string
	Stream    string
	Timestamp int64
	Msg       []byte
	// Duplicate is set on what Append returns for a record whose Dedup
	// matched an entry stored before: nothing was stored, Seq is that
	// entry's (durable by then) and the other fields are the record's.
	Duplicate bool
}

// ID returns the entry's wire token (see FormatID).
func (e Entry) ID() string { return FormatID(e.Seq) }

// Query selects entries of one source, in this order (PROTOCOL §5):
// (1) entries of Src (and Stream, when not empty) with Seq > After;
// (2) if Last >= 0, only the final Last of those;
// (3) the first Limit of what remains.
// Results are in ascending Seq order.
type Query struct {
	Src    string
	Stream string // "" means every stream of Src, merged in Seq order
	After  uint64 // 0 means from the start
	Last   int    // < 0 means not given
	Limit  int    // <= 0 means no limit (callers clamp it)
}

// idLen is the length of an id token: 16 lowercase hex digits of the sequence.
const idLen = 16

// FormatID renders a sequence number as the id token clients see:
// 16 lowercase hex digits, so tokens sort like the sequence they encode.
func FormatID(seq uint64) string {
	var b [idLen]byte
	const hex = "0123456789abcdef"
	for i := idLen - 1; i >= 0; i-- {
		b[i] = hex[seq&0xf]
		seq >>= 4
	}
	return string(b[:])
}

// ParseID is the inverse of FormatID. It accepts exactly 16 lowercase hex
// digits and returns ErrBadID for anything else.
func ParseID(s string) (uint64, error) {
	if len(s) != idLen {
		return 0, fmt.Errorf("parse id %q: %w", s, ErrBadID)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, fmt.Errorf("parse id %q: %w", s, ErrBadID)
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("parse id %q: %w", s, ErrBadID)
	}
	return v, nil
}
