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
	sep         = 0x00
	seqLen      = 8
)

// metaKey holds formatVersion, so Open can refuse a Pebble directory that
// holds something else.
var metaKey = []byte("m")

const formatVersion = "logbroker/1"

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

// keySeq returns the sequence at the end of an entry key.
func keySeq(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-seqLen:])
}

// keyStream returns the stream of an entry key of the source whose prefix
// ('e' src 0x00) has length srcPrefixLen.
func keyStream(key []byte, srcPrefixLen int) []byte {
	return key[srcPrefixLen : len(key)-1-seqLen]
}

// valueLen is the length of an encoded entry value.
func valueLen(ts int64, msg []byte) int {
	return uvarintLen(uint64(ts)) + len(msg)
}

// putValue encodes an entry value into dst, which must be valueLen long.
func putValue(dst []byte, ts int64, msg []byte) {
	n := binary.PutUvarint(dst, uint64(ts))
	copy(dst[n:], msg)
}

// decodeValue splits an entry value into its timestamp and msg. msg aliases
// v.
func decodeValue(v []byte) (ts int64, msg []byte, err error) {
	u, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, errCorrupt
	}
	return int64(u), v[n:], nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// errCorrupt reports a stored value that does not decode.
var errCorrupt = errors.New("corrupt entry value")
