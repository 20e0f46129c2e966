package storage

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	Level     Level  // the severity; NoLevel (the zero value) for none
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
	Level     Level
	// Duplicate is set on what Append returns for a record whose Dedup
	// matched an entry stored before: nothing was stored, Seq is that
	// entry's (durable by then) and the other fields are the record's.
	Duplicate bool
}

// Level is an entry's severity (PROTOCOL §4), or NoLevel. The zero value
// is NoLevel, so a Record made without one has none; a level's wire
// number (Mongoose OS's: 0 error, 1 warn, 2 info, 3 debug, 4 verbose) is
// one less than its Level: LevelOf and Number convert.
type Level uint8

// The levels, most severe first.
const (
	NoLevel Level = iota
	LevelError
	LevelWarn
	LevelInfo
	LevelDebug
	LevelVerbose
)

// LevelOf returns the Level of wire number n (0 error .. 4 verbose), or
// NoLevel for any other n (-1, Mongoose OS's "none", included).
func LevelOf(n int) Level {
	if n < 0 || n > 4 {
		return NoLevel
	}
	return Level(n + 1)
}

// Number returns l's wire number (0 error .. 4 verbose); false for NoLevel
// (or a value out of range).
func (l Level) Number() (int, bool) {
	if l == NoLevel || l > LevelVerbose {
		return 0, false
	}
	return int(l) - 1, true
}

// levelNames are the names of the levels by wire number (PROTOCOL §5).
var levelNames = [...]string{"error", "warn", "info", "debug", "verbose"}

// ParseLevel returns the Level named s (error, warn, info, debug,
// verbose; any case); false for anything else.
func ParseLevel(s string) (Level, bool) {
	for i, n := range levelNames {
		if strings.EqualFold(s, n) {
			return Level(i + 1), true
		}
	}
	return NoLevel, false
}

// String returns l's name ("" for NoLevel).
func (l Level) String() string {
	if n, ok := l.Number(); ok {
		return levelNames[n]
	}
	return ""
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
	// Filter, if not nil, keeps only the entries that pass it: the
	// selection above applies to those (PROTOCOL §5), After still pages
	// by id. A filtered List scans as far as it must: bound it with ctx.
	Filter *Filter
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
