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
	if !validJSON(data) {
		return nil, errNotObject
	}
	return splitMembers(data, buf)
}

// maxDepth is the deepest nesting of arrays and objects validJSON accepts,
// as encoding/json does.
const maxDepth = 10000

// validJSON reports whether data is one valid JSON value, accepting exactly
// what encoding/json.Valid accepts (invalid UTF-8 inside strings included;
// DecodeFrame checks that apart) in a third of its time: Valid runs a
// state-machine function per byte, and every frame is checked. FuzzValidJSON
// compares the two.
func validJSON(data []byte) bool {
	var objects [maxDepth/64 + 1]uint64 // bit d: the container at depth d+1 is an object
	depth := 0
	inObject := func() bool { return objects[(depth-1)/64]&(1<<((depth-1)%64)) != 0 }
	i := skipSpace(data, 0)
	for {
		// A value starts at i.
		if i >= len(data) {
			return false
		}
		ok := true
		switch c := data[i]; c {
		case '{', '[':
			if depth == maxDepth {
				return false
			}
			bit := uint64(1) << (depth % 64)
			if c == '{' {
				objects[depth/64] |= bit
			} else {
				objects[depth/64] &^= bit
			}
			depth++
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' or ']': empty
				depth--
				i++
				break
			}
			if c == '[' {
				continue // its first value
			}
			if i, ok = validKey(data, i); !ok {
				return false
			}
			continue
		case '"':
			i, ok = validString(data, i)
		case 't':
			i, ok = validLiteral(data, i, "true")
		case 'f':
			i, ok = validLiteral(data, i, "false")
		case 'n':
			i, ok = validLiteral(data, i, "null")
		default:
			i, ok = validNumber(data, i)
		}
		if !ok {
			return false
		}
		// After a value: close containers, or go on to the next member.
		for {
			i = skipSpace(data, i)
			if depth == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			obj := inObject()
			switch data[i] {
			case ',':
				i = skipSpace(data, i+1)
				if obj {
					if i, ok = validKey(data, i); !ok {
						return false
					}
				}
			case '}':
				if !obj {
					return false
				}
				depth--
				i++
				continue
			case ']':
				if obj {
					return false
				}
				depth--
				i++
				continue
			default:
				return false
			}
			break
		}
	}
}

// validKey checks a member's key and its colon at data[i], and returns
// where its value starts.
func validKey(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	i, ok := validString(data, i)
	if !ok {
		return 0, false
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return 0, false
	}
	return skipSpace(data, i+1), true
}

// validString checks the string at data[i] (a '"') and returns the index
// past it.
func validString(data []byte, i int) (int, bool) {
	for i++; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c != '\\':
			continue
		}
		i++
		if i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if i+4 >= len(data) {
				return 0, false
			}
			for _, h := range data[i+1 : i+5] {
				if !isHex(h) {
					return 0, false
				}
			}
			i += 4
		default:
			return 0, false
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// validLiteral checks that lit (true, false, null) is at data[i].
func validLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// validNumber checks the number at data[i] (RFC 8259 §6: -?int frac? exp?)
// and returns the index past it.
func validNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return 0, false
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
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

// isString reports whether the raw JSON value v is the string s written
// without escapes, without allocating s again.
func isString(v []byte, s string) bool {
	return len(v) == len(s)+2 && v[0] == '"' && string(v[1:len(v)-1]) == s && !containsByte(v[1:len(v)-1], '\\')
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
