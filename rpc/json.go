package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// errNotObject is returned by members for JSON that is not an object.
var errNotObject = errors.New("not a JSON object")

// member is one key of a JSON object with the raw bytes of its value. key
// is unescaped; without escapes (the usual case) it points into the document,
// so splitting a frame allocates nothing per key.
type member struct {
	key []byte
	val []byte
}

// members splits a JSON object into its members, matching keys exactly
// (encoding/json matches struct fields case-insensitively, which would take
// "ID" for "id"). It validates the whole document first. Later duplicates of
// a key come later in the slice; lookups take the last.
func members(data []byte, buf []member) ([]member, error) {
	if !json.Valid(data) {
		return nil, errNotObject
	}
	return splitMembers(data, buf)
}

// splitMembers is members for data already known to be valid JSON, such
// as a value inside a document that members accepted: validating it again
// would cost as much as the first time.
func splitMembers(data []byte, buf []member) ([]member, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, errNotObject
	}
	i = skipSpace(data, i+1)
	out := buf[:0]
	if data[i] == '}' {
		return out, nil
	}
	for {
		// data is valid JSON, so a key string follows.
		end := skipString(data, i)
		k := data[i+1 : end-1]
		if containsByte(k, '\\') {
			s, ok := decodeString(data[i:end])
			if !ok {
				return nil, errNotObject
			}
			k = []byte(s)
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // past ':'
		vend := skipValue(data, i)
		out = append(out, member{key: k, val: data[i:vend]})
		i = skipSpace(data, vend)
		if data[i] == '}' {
			return out, nil
		}
		i = skipSpace(data, i+1) // past ','
	}
}

// lookup returns the value of the last member named key, or nil.
func lookup(ms []member, key string) []byte {
	for j := len(ms) - 1; j >= 0; j-- {
		if string(ms[j].key) == key {
			return ms[j].val
		}
	}
	return nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) int {
	i++ // opening quote
	for i < len(data) {
		switch data[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return i
}

// skipValue returns the index just past the (valid) value starting at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// decodeString decodes a raw JSON value that must be a string.
func decodeString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if !containsByte(v, '\\') {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// decodeNumber decodes a raw JSON number. One beyond the range of a float64
// (1e400) is ±Inf: huge, not malformed.
func decodeNumber(v []byte) (float64, bool) {
	if len(v) == 0 || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil || errors.Is(err, strconv.ErrRange)
}

// decodeInt decodes a raw JSON number that must have an integer value in
// [min, max]. 1e3 is 1000; 1.5 is not an integer, nor is 1.0000000000000001
// (which a float64 would round to 1).
func decodeInt(v []byte, min, max int64) (int64, bool) {
	if len(v) == 0 || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, n >= min && n <= max
	}
	if !integral(v) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f < float64(min) || f > float64(max) {
		return 0, false
	}
	return int64(f), true
}

// decodeCount decodes a raw JSON number that must have an integer value of
// at least min; any larger than max, however large (1e400), counts as max.
func decodeCount(v []byte, min, max int64) (int64, bool) {
	if n, ok := decodeInt(v, min, max); ok {
		return n, true
	}
	if len(v) == 0 || !(v[0] >= '0' && v[0] <= '9') || !integral(v) {
		return 0, false // not a number, negative, or not an integer
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if (err != nil && !errors.Is(err, strconv.ErrRange)) || f < float64(max) {
		return 0, false // below min
	}
	return max, true
}

// integral reports whether the (valid) JSON number v has an integer value,
// reading its decimal digits exactly rather than through a float64.
func integral(v []byte) bool {
	exp := 0
	if i := bytes.IndexAny(v, "eE"); i >= 0 {
		e, err := strconv.Atoi(string(v[i+1:]))
		if err != nil { // out of range: only its sign matters
			e = math.MaxInt32
			if v[i+1] == '-' {
				e = math.MinInt32
			}
		}
		exp, v = e, v[:i]
	}
	scale := 0 // digits after the decimal point
	if i := bytes.IndexByte(v, '.'); i >= 0 {
		scale = len(v) - i - 1
	}
	// v is digits × 10^(exp-scale); trailing zeros of the digits raise the
	// exponent. The value is an integer when that exponent is not negative.
	zeros := 0
	for j := len(v) - 1; j >= 0; j-- {
		switch v[j] {
		case '0':
			zeros++
		case '.':
		case '-':
			return true // every digit is 0
		default:
			return exp-scale+zeros >= 0
		}
	}
	return true
}

// decodeBool decodes a raw JSON value that must be true or false.
func decodeBool(v []byte) (bool, bool) {
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; HTML characters are left alone.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
