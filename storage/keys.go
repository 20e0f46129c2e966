package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Key prefixes (see doc.go, "Key layout").
const (
	entryPrefix = 'e' // 'e' src 0x00 stream 0x00 seq[8] -> uvarint(timestamp) msg
	seqPrefix   = 'q' // 'q' src -> seq[8]: the last sequence assigned to src
	agePrefix   = 't' // 't' src 0x00 minute[8] -> seq[8]: entries <= seq were appended before the end of that minute
	dedupPrefix = 'd' // 'd' ms[8] n[8] -> (key[16] seq[8])...: the records with a Dedup key one batch stored at ms
	blockPrefix = 'b' // 'b' src 0x00 block[8] -> minTs[8] maxTs[8]: the timestamps of src's entries with seq>>blockShift == block
	sep         = 0x00
	seqLen      = 8
)

// metaKey holds formatVersion, so Open can refuse a Pebble directory that
// holds something else.
var metaKey = []byte("m")

const formatVersion = "logbroker/2"

// formatVersion1 marks a store written before entries had levels and
// block summaries: Open upgrades it in place (see doc.go, Key layout).
const formatVersion1 = "logbroker/1"

// validName reports whether s may be used as a source or stream name: the
// key layout needs it non-empty and free of NUL bytes.
func validName(s string) bool {
	return s != "" && strings.IndexByte(s, sep) < 0
}

// checkNames returns an error wrapping ErrInvalid unless src and stream
// are both valid names.
func checkNames(src, stream string) error {
	if !validName(src) {
		return fmt.Errorf("%w: source %q", ErrInvalid, src)
	}
	if !validName(stream) {
		return fmt.Errorf("%w: stream %q", ErrInvalid, stream)
	}
	return nil
}

// appendSourcePrefix appends 'e' src 0x00: the prefix of every entry of src.
func appendSourcePrefix(dst []byte, src string) []byte {
	dst = append(dst, entryPrefix)
	dst = append(dst, src...)
	return append(dst, sep)
}

// appendStreamPrefix appends 'e' src 0x00 stream 0x00: the prefix of every
// entry of src in stream.
func appendStreamPrefix(dst []byte, src, stream string) []byte {
	dst = appendSourcePrefix(dst, src)
	dst = append(dst, stream...)
	return append(dst, sep)
}

// appendStreamEnd appends the smallest key above every entry of src in
// stream: 'e' src 0x00 stream 0x01. Since names contain no NUL, a longer
// stream name that starts with stream sorts at or after it.
func appendStreamEnd(dst []byte, src, stream string) []byte {
	dst = appendSourcePrefix(dst, src)
	dst = append(dst, stream...)
	return append(dst, sep+1)
}

// appendSourceEnd appends 'e' src 0x01, the smallest key above every entry
// of src.
func appendSourceEnd(dst []byte, src string) []byte {
	dst = append(dst, entryPrefix)
	dst = append(dst, src...)
	return append(dst, sep+1)
}

// entryKeyLen is len(appendEntryKey(nil, src, stream, seq)).
func entryKeyLen(src, stream string) int {
	return 1 + len(src) + 1 + len(stream) + 1 + seqLen
}

// putEntryKey writes the key of an entry into dst, which must be
// entryKeyLen long.
func putEntryKey(dst []byte, src, stream string, seq uint64) {
	dst[0] = entryPrefix
	n := 1 + copy(dst[1:], src)
	dst[n] = sep
	n++
	n += copy(dst[n:], stream)
	dst[n] = sep
	n++
	binary.BigEndian.PutUint64(dst[n:], seq)
}

// appendSeqKey appends the key that holds the last sequence of src.
func appendSeqKey(dst []byte, src string) []byte {
	dst = append(dst, seqPrefix)
	return append(dst, src...)
}

// appendAgePrefix appends 't' src 0x00, the prefix of the age marks of src.
func appendAgePrefix(dst []byte, src string) []byte {
	dst = append(dst, agePrefix)
	dst = append(dst, src...)
	return append(dst, sep)
}

// appendAgeKey appends the key of the age mark of src for a minute.
func appendAgeKey(dst []byte, src string, minute uint64) []byte {
	return binary.BigEndian.AppendUint64(appendAgePrefix(dst, src), minute)
}

// blockShift sets the size of a block of sequences that one summary
// covers: 256 (see doc.go, Time ranges).
const blockShift = 8

// appendBlockPrefix appends 'b' src 0x00, the prefix of the block
// summaries of src.
func appendBlockPrefix(dst []byte, src string) []byte {
	dst = append(dst, blockPrefix)
	dst = append(dst, src...)
	return append(dst, sep)
}

// appendBlockKey appends the key of the summary of src's block.
func appendBlockKey(dst []byte, src string, block uint64) []byte {
	return binary.BigEndian.AppendUint64(appendBlockPrefix(dst, src), block)
}

// blockSummaryLen is the length of a block summary's value.
const blockSummaryLen = 16

// putBlockSummary encodes a block's timestamp range.
func putBlockSummary(dst []byte, lo, hi int64) {
	binary.BigEndian.PutUint64(dst, uint64(lo))
	binary.BigEndian.PutUint64(dst[8:], uint64(hi))
}

// decodeBlockSummary decodes a block summary's value.
func decodeBlockSummary(v []byte) (lo, hi int64, ok bool) {
	if len(v) != blockSummaryLen {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), true
}

// keySeq returns the sequence at the end of an entry key.
func keySeq(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-seqLen:])
}

// keyStream returns the stream of an entry key of the source whose prefix
// ('e' src 0x00) has length srcPrefixLen.
func keyStream(key []byte, srcPrefixLen int) []byte {
	return key[srcPrefixLen : len(key)-1-seqLen]
}

// An entry's value is uvarint(timestamp), then a header byte if needed,
// then msg. A header byte is below valueHeaderMax and holds the Level
// (NoLevel included): it is written when the entry has a level, or when
// msg itself starts with a byte below valueHeaderMax (never a JSON
// value, which starts with one of `"{[-tfn`, a digit or whitespace). So a
// value written before levels existed (no header, a JSON msg) decodes
// unchanged, as an entry without a level, and any msg round-trips.
const valueHeaderMax = 0x08

// valueHeader reports whether an entry of this level and msg needs the
// header byte.
func valueHeader(level Level, msg []byte) bool {
	return level != NoLevel || (len(msg) > 0 && msg[0] < valueHeaderMax)
}

// ValueLen is the length of an encoded entry value.
func ValueLen(ts int64, level Level, msg []byte) int {
	n := uvarintLen(uint64(ts)) + len(msg)
	if valueHeader(level, msg) {
		n++
	}
	return n
}

// PutValue encodes an entry value into dst, which must be ValueLen long.
// Every backend stores entries in this layout (see doc.go, Key layout).
func PutValue(dst []byte, ts int64, level Level, msg []byte) {
	n := binary.PutUvarint(dst, uint64(ts))
	if valueHeader(level, msg) {
		dst[n] = byte(level)
		n++
	}
	copy(dst[n:], msg)
}

// AppendValue appends the encoded entry value to dst.
func AppendValue(dst []byte, ts int64, level Level, msg []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, ValueLen(ts, level, msg))...)
	PutValue(dst[n:], ts, level, msg)
	return dst
}

// DecodeValue splits an entry value into its timestamp, level and msg. msg
// aliases v.
func DecodeValue(v []byte) (ts int64, level Level, msg []byte, err error) {
	u, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, 0, nil, ErrCorrupt
	}
	msg = v[n:]
	if len(msg) > 0 && msg[0] < valueHeaderMax {
		if msg[0] > byte(LevelVerbose) {
			return 0, 0, nil, ErrCorrupt
		}
		level, msg = Level(msg[0]), msg[1:]
	}
	return int64(u), level, msg, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// ErrCorrupt reports stored data (an entry value, a sequence) that does
// not decode.
var ErrCorrupt = errors.New("corrupt entry value")
