package rpc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxSafeInt is the largest id a JSON number can carry exactly (2^53-1).
const maxSafeInt = 1<<53 - 1

// maxSrcLen bounds a src: it becomes an MQTT topic and a storage key.
const maxSrcLen = 1024

// Frame is a decoded request frame (PROTOCOL §2).
type Frame struct {
	ID          []byte // the id as sent (raw JSON); nil for a notification
	Src         string // where the reply goes: <Src>/rpc
	Dst         string
	HasDst      bool
	Method      string
	Args        []byte // raw JSON object; nil when absent or null
	Tag         string
	HasTag      bool
	Timeout     float64 // seconds; valid when HasTimeout
	HasTimeout  bool
	Deadline    float64 // Unix seconds; valid when HasDeadline
	HasDeadline bool
	NoResponse  bool // nr: true
}

// Notification reports whether the caller wants no response at all.
func (f *Frame) Notification() bool { return f.ID == nil || f.NoResponse }

// DecodeFrame parses a request frame. It returns an error wrapping ErrDropped
// when the payload cannot be answered (not a JSON object, no usable src).
// Any other error is an *Error to send back; the returned Frame then carries
// what is needed to address it (Src, ID, Tag).
func DecodeFrame(payload []byte) (*Frame, error) {
	f := &Frame{}
	if err := decodeFrame(f, payload, ""); err != nil {
		if errors.Is(err, ErrDropped) {
			return nil, err
		}
		return f, err
	}
	return f, nil
}

// FrameSrc returns the src of a frame that a receiver can only read one
// way: valid UTF-8, one JSON object, with exactly one member whose key is
// "src" in any case (a decoder that matches keys case-insensitively, as
// encoding/json does, or keeps the first duplicate rather than the last,
// must not find another src), that key spelled "src", and its value a
// string ValidSrc accepts. Anything else is an error wrapping ErrDropped.
// It only splits the object: the other members are not decoded.
func FrameSrc(payload []byte) (string, error) {
	if !utf8.Valid(payload) {
		return "", fmt.Errorf("frame src: %w: not valid UTF-8", ErrDropped)
	}
	var buf [16]member
	ms, err := members(payload, buf[:])
	if err != nil {
		return "", fmt.Errorf("frame src: %w: %w", ErrDropped, err)
	}
	var raw []byte
	for _, m := range ms {
		if len(m.key) != len("src") || !strings.EqualFold(string(m.key), "src") {
			continue
		}
		if raw != nil || string(m.key) != "src" {
			return "", fmt.Errorf("frame src: %w: more than one src, or src spelled %q", ErrDropped, m.key)
		}
		raw = m.val
	}
	if raw == nil {
		return "", fmt.Errorf("frame src: %w: no src", ErrDropped)
	}
	src, ok := decodeString(raw)
	if !ok {
		return "", fmt.Errorf("frame src: %w: src is %s, not a string", ErrDropped, jsonKind(raw))
	}
	if err := ValidSrc(src); err != nil {
		return "", fmt.Errorf("frame src: %w: %w", ErrDropped, err)
	}
	return src, nil
}

// decodeFrame is DecodeFrame into f, which the service keeps inside its
// request: one allocation per call instead of two. A src equal to lastSrc
// (the one the connection's previous call had) is taken from it rather
// than allocated again.
func decodeFrame(f *Frame, payload []byte, lastSrc string) error {
	var buf [16]member
	ms, err := members(payload, buf[:])
	if err != nil {
		return fmt.Errorf("decode frame: %w: %w", ErrDropped, err)
	}
	raw := lookup(ms, "src")
	if !utf8.Valid(raw) {
		// Checked before decoding: an escape in it would have the decoder
		// replace the bad bytes, and the reply go to a src nobody sent.
		return fmt.Errorf("decode frame: %w: src is not valid UTF-8", ErrDropped)
	}
	src, ok := lastSrc, lastSrc != "" && isString(raw, lastSrc)
	if !ok {
		src, ok = decodeString(raw)
	}
	if !ok {
		return fmt.Errorf("decode frame: %w: src is %s, not a string", ErrDropped, jsonKind(raw))
	}
	if err := ValidSrc(src); err != nil {
		return fmt.Errorf("decode frame: %w: %w", ErrDropped, err)
	}
	f.Src = src
	// Whatever else is wrong, an answer carries the id as sent and the tag.
	f.ID = lookup(ms, "id")
	if !utf8.Valid(f.ID) {
		// It could not be echoed byte for byte in a valid response.
		return fmt.Errorf("decode frame: %w: id is not valid UTF-8", ErrDropped)
	}
	rawTag := lookup(ms, "tag")
	if rawTag != nil {
		f.Tag, f.HasTag = decodeString(rawTag)
	}
	// nr before the checks below: a caller that asked for no response gets
	// none, not even for a bad id or tag.
	if raw := lookup(ms, "nr"); raw != nil {
		if f.NoResponse, ok = decodeBool(raw); !ok {
			return errorf(CodeBadRequest, "nr must be a bool, not %s", jsonKind(raw))
		}
	}
	// JSON text is UTF-8 (RFC 8259 §8.1); encoding/json lets invalid bytes
	// through in strings, and a msg stored with them would poison every
	// List that returns it.
	if !utf8.Valid(payload) {
		return errorf(CodeBadRequest, "frame is not valid UTF-8")
	}
	if f.ID != nil && !validID(f.ID) {
		return errorf(CodeBadRequest, "id must be a positive integer below 2^53 or a string, not %s", f.ID)
	}
	if rawTag != nil && !f.HasTag {
		return errorf(CodeBadRequest, "tag must be a string, not %s", jsonKind(rawTag))
	}
	if raw := lookup(ms, "dst"); raw != nil {
		if f.Dst, ok = decodeString(raw); !ok {
			return errorf(CodeBadRequest, "dst must be a string, not %s", jsonKind(raw))
		}
		f.HasDst = true
	}
	if raw := lookup(ms, "method"); raw != nil {
		if f.Method, ok = decodeString(raw); !ok {
			return errorf(CodeBadRequest, "method must be a string, not %s", jsonKind(raw))
		}
	}
	args, params := lookup(ms, "args"), lookup(ms, "params")
	if args != nil && params != nil {
		return errorf(CodeBadRequest, "args and params are both present; send one")
	}
	if args == nil {
		args = params
	}
	if args != nil {
		switch args[0] {
		case '{':
			f.Args = args
		case 'n': // null: no arguments
		default:
			return errorf(CodeBadRequest, "args must be an object, not %s", jsonKind(args))
		}
	}
	if raw := lookup(ms, "timeout"); raw != nil {
		if f.Timeout, ok = decodeNumber(raw); !ok || f.Timeout < 0 {
			return errorf(CodeBadRequest, "timeout must be a non-negative number of seconds, not %s", raw)
		}
		f.HasTimeout = true
	}
	if raw := lookup(ms, "deadline"); raw != nil {
		if f.Deadline, ok = decodeNumber(raw); !ok || f.Deadline < 0 {
			return errorf(CodeBadRequest, "deadline must be a non-negative number of Unix seconds, not %s", raw)
		}
		f.HasDeadline = true
	}
	return nil
}

// validID reports whether raw is an integer in 1..2^53-1 or a string.
func validID(raw []byte) bool {
	if raw[0] == '"' {
		return true
	}
	_, ok := decodeInt(raw, 1, maxSafeInt)
	return ok
}

// ValidSrc reports why src cannot name a log source and a reply topic:
// it must be 1..1024 bytes of UTF-8 with no NUL, '+', '#' or other control
// characters (MQTT topics should not carry them), and must not start with
// '$' (broker-internal topics).
func ValidSrc(src string) error {
	switch {
	case src == "":
		return fmt.Errorf("src is empty")
	case len(src) > maxSrcLen:
		return fmt.Errorf("src is longer than %d bytes", maxSrcLen)
	case !utf8.ValidString(src):
		return fmt.Errorf("src is not valid UTF-8")
	case strings.ContainsAny(src, "\x00+#"):
		return fmt.Errorf("src %q contains NUL, '+' or '#'", src)
	case hasControl(src):
		return fmt.Errorf("src %q contains a control character", src)
	case src[0] == '$':
		return fmt.Errorf("src %q starts with '$'", src)
	}
	return nil
}

// hasControl reports whether s has a C0 or C1 control character or DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// ValidStream reports why stream cannot name a stream: 1..128 bytes of UTF-8
// without '/', '+', '#', NUL or control characters (PROTOCOL §5).
func ValidStream(stream string) error {
	if stream == "" || len(stream) > 128 {
		return fmt.Errorf("stream must be 1 to 128 bytes, not %d", len(stream))
	}
	if !utf8.ValidString(stream) {
		return fmt.Errorf("stream is not valid UTF-8")
	}
	if hasControl(stream) || strings.ContainsAny(stream, "/+#") {
		return fmt.Errorf("stream %s contains '/', '+', '#' or a control character", strconv.Quote(stream))
	}
	return nil
}

// appendResponse appends a response frame: result when code is 0, else an
// error object.
func appendResponse(dst []byte, f *Frame, service string, result []byte, code int, msg string) []byte {
	dst = appendResponseHead(dst, f, service)
	if code != 0 {
		dst = append(dst, `,"error":{"code":`...)
		dst = strconv.AppendInt(dst, int64(code), 10)
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, msg)
		dst = append(dst, '}')
	} else if result != nil {
		dst = append(dst, `,"result":`...)
		dst = append(dst, result...)
	}
	return append(dst, '}')
}

// appendResponseHead appends the members every response to f starts with
// (v, id, src, dst, tag), leaving the object open.
func appendResponseHead(dst []byte, f *Frame, service string) []byte {
	dst = append(dst, `{"v":2`...)
	if f.ID != nil { // a notification gets no response; if built anyway, no id
		dst = append(dst, `,"id":`...)
		dst = append(dst, f.ID...)
	}
	dst = append(dst, `,"src":`...)
	dst = appendString(dst, service)
	dst = append(dst, `,"dst":`...)
	dst = appendString(dst, f.Src)
	if f.HasTag {
		dst = append(dst, `,"tag":`...)
		dst = appendString(dst, f.Tag)
	}
	return dst
}

// responseSize is the usual size of a response to f whose result or error
// takes n bytes: exact unless a string needs escapes, so that a response
// is built in one allocation.
func responseSize(f *Frame, service string, n int) int {
	return len(`{"v":2,"id":,"src":"","dst":"","tag":"","result":}`) + len(f.ID) + len(service) + len(f.Src) + len(f.Tag) + n
}
