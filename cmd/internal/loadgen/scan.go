package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

var errScan = errors.New("not a response frame")

// reply is the part of a response frame the generator looks at.
type reply struct {
	id     int64  // the integer id; 0 if absent or not an integer
	code   int    // error.code; 0 on success
	result []byte // the raw result value; nil when absent
	elems  int    // the elements of result when it is an array
}

// scanReply reads the top-level "id", "error" and "result" of a response
// object, skipping every other value without decoding it.
func scanReply(b []byte) (reply, error) {
	var r reply
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return r, errScan
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' {
			return r, nil
		}
		if i >= len(b) || b[i] != '"' {
			return r, errScan
		}
		kend := skipString(b, i)
		if kend < 0 {
			return r, errScan
		}
		key := b[i+1 : kend-1]
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return r, errScan
		}
		i = skipSpace(b, i+1)
		vend, elems := skipCount(b, i)
		if vend < 0 {
			return r, errScan
		}
		v := b[i:vend]
		switch string(key) {
		case "id":
			r.id, _ = strconv.ParseInt(string(v), 10, 64)
		case "result":
			r.result, r.elems = v, elems
		case "error":
			var e struct {
				Code int `json:"code"`
			}
			if err := json.Unmarshal(v, &e); err != nil {
				return r, errScan
			}
			r.code = e.Code
			if r.code == 0 {
				r.code = -1 // an error object without a code is still an error
			}
		}
		i = skipSpace(b, vend)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"',
// or -1.
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		// The quote ends the string unless an odd run of backslashes
		// precedes it.
		k := i - 1
		for k >= 0 && b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			return i + 1
		}
		i++
	}
}

// skipCount returns the index after the JSON value starting at b[i] (or
// -1), and the number of elements of an array value (0 for anything else),
// in one pass. It checks brackets and strings, not the grammar of numbers
// and literals.
func skipCount(b []byte, i int) (end, elems int) {
	if i >= len(b) {
		return -1, 0
	}
	switch b[i] {
	case '"':
		return skipString(b, i), 0
	case '{', '[':
		array := b[i] == '['
		depth := 0
		for i < len(b) {
			switch c := b[i]; c {
			case '"':
				if depth == 1 && elems == 0 {
					elems = 1
				}
				i = skipString(b, i)
				if i < 0 {
					return -1, 0
				}
				continue
			case '{', '[':
				if depth == 1 && elems == 0 {
					elems = 1
				}
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					if !array {
						elems = 0
					}
					return i + 1, elems
				}
			case ',':
				if depth == 1 {
					elems++
				}
			case ' ', '\t', '\n', '\r':
			default:
				if depth == 1 && elems == 0 {
					elems = 1
				}
			}
			i++
		}
		return -1, 0
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		if j == i {
			return -1, 0
		}
		return j, 0
	}
}
