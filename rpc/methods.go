package rpc

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/logbroker/logbroker/storage"
)

// args is the decoded argument object of a call.
type args struct {
	ms []member
}

// parseArgs splits raw, the args of a frame that DecodeFrame accepted (so
// valid JSON: it is not validated again), into its members. They go into
// buf when they fit: a caller's array on its stack makes the usual call
// allocate nothing.
func parseArgs(raw []byte, buf []member) (args, error) {
	if raw == nil {
		return args{}, nil
	}
	ms, err := splitMembers(raw, buf[:0])
	if err != nil {
		return args{}, errorf(CodeBadRequest, "args must be an object")
	}
	return args{ms: ms}, nil
}

// argsBuf is the room for the members of a usual call's args.
type argsBuf [8]member

func (a args) get(key string) []byte { return lookup(a.ms, key) }

// str returns the string argument key, or def when it is absent.
func (a args) str(key, def string) (string, error) {
	raw := a.get(key)
	if raw == nil {
		return def, nil
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", errorf(CodeBadRequest, "%s must be a string, not %s", key, jsonKind(raw))
	}
	return s, nil
}

// src returns args.src (default: the frame's src), checked.
func (a args) src(r *request) (string, error) {
	src := r.f.Src // valid: DecodeFrame checked it
	if raw := a.get("src"); raw != nil {
		if last := r.conn.argSrc.Load(); last != nil && isString(raw, *last) {
			src = *last // checked when the connection's earlier call named it
		} else {
			var err error
			if src, err = a.str("src", ""); err != nil {
				return "", err
			}
			if err := ValidSrc(src); err != nil {
				return "", errorf(CodeBadRequest, "%v", err)
			}
			checked := src // its own variable: only this path allocates it
			r.conn.argSrc.Store(&checked)
		}
	}
	if !r.caller.may(methodAccess[r.method], src) {
		return "", errorf(CodeForbidden, "%s (%s) may not call %s for src %q", r.caller.Identity, r.caller.Role, r.method, src)
	}
	return src, nil
}

// stream returns args.stream, checked, or def when it is absent.
func (a args) stream(def string) (string, error) {
	if a.get("stream") == nil {
		return def, nil
	}
	stream, err := a.str("stream", def)
	if err != nil {
		return "", err
	}
	if err := ValidStream(stream); err != nil {
		return "", errorf(CodeBadRequest, "%v", err)
	}
	return stream, nil
}

// level returns the level argument key (PROTOCOL §5): an integer 0..4
// written as one, or a level's name in any case. Absent or null: NoLevel.
func (a args) level(key string) (storage.Level, error) {
	raw := a.get(key)
	if raw == nil || raw[0] == 'n' {
		return storage.NoLevel, nil
	}
	if len(raw) == 1 && raw[0] >= '0' && raw[0] <= '4' {
		return storage.LevelOf(int(raw[0] - '0')), nil
	}
	if s, ok := decodeString(raw); ok {
		if l, ok := storage.ParseLevel(s); ok {
			return l, nil
		}
	}
	return storage.NoLevel, errorf(CodeBadRequest, "%s must be an integer 0..4 or one of error, warn, info, debug, verbose, not %s", key, shown(raw))
}

// shown is a raw argument as an error message shows it: itself when
// short, else its JSON type.
func shown(raw []byte) string {
	if len(raw) <= 40 {
		return string(raw)
	}
	return jsonKind(raw)
}

func (c *Conn) logLog(r *request) {
	s := c.svc
	var buf argsBuf
	a, err := parseArgs(r.f.Args, buf[:])
	if err != nil {
		c.fail(r, err)
		return
	}
	msg := a.get("msg")
	if msg == nil || msg[0] == 'n' {
		c.fail(r, errorf(CodeBadRequest, "msg is required"))
		return
	}
	if len(msg) > s.cfg.MaxMsg {
		c.fail(r, errorf(CodeTooLarge, "msg is %d bytes, over the limit of %d", len(msg), s.cfg.MaxMsg))
		return
	}
	src, err := a.src(r)
	if err != nil {
		c.fail(r, err)
		return
	}
	stream, err := a.stream(defaultStream)
	if err != nil {
		c.fail(r, err)
		return
	}
	ts := time.Now().UnixMilli()
	if raw := a.get("timestamp"); raw != nil {
		var ok bool
		if ts, ok = decodeInt(raw, 0, maxTimestamp-1); !ok {
			c.fail(r, errorf(CodeBadRequest, "timestamp must be an integer of milliseconds in [0, %d), not %s", int64(maxTimestamp), raw))
			return
		}
	}
	level, err := a.level("level")
	if err != nil {
		c.fail(r, err)
		return
	}
	// msg points into the call's payload, which nobody modifies (Call):
	// the store copies it into its batch and nothing keeps it after done.
	rec := storage.Record{Src: src, Stream: stream, Timestamp: ts, Msg: msg, Level: level}
	if s.cfg.Dedup && r.f.ID != nil {
		rec.Dedup = DedupKey(r.f.Src, r.f.ID, r.call.Payload)
	}
	c.appends.Add(1)
	s.store.AppendAsync(rec, func(e storage.Entry, err error) {
		defer c.appends.Done()
		if err != nil {
			c.fail(r, err)
			return
		}
		if !e.Duplicate { // a duplicate stored nothing: onCommit never has it
			s.unpublished.Add(1) // until onCommit has it: see Shutdown
		}
		if r.f.Notification() {
			c.observe(r, 0) // respond would, but the result is not needed
			return
		}
		buf := c.resultHead(r, len(`{"id":""}`)+idLen)
		buf = append(buf, `{"id":"`...)
		buf = appendID(buf, e.Seq)
		c.finish(r, append(buf, `"}`...))
	})
}

// listArgs are the decoded arguments of Log.List.
type listArgs struct {
	q      storage.Query
	follow bool
}

// maxPattern bounds match and regex, in bytes (PROTOCOL §5).
const maxPattern = 256

// parseFilter reads the filters of a Log.List (PROTOCOL §5): nil when it
// has none.
func parseFilter(a args) (*storage.Filter, error) {
	var f storage.Filter
	var err error
	if f.Level, err = a.level("level"); err != nil {
		return nil, err
	}
	for _, key := range []string{"match", "regex"} {
		raw := a.get(key)
		if raw == nil {
			continue
		}
		s, ok := decodeString(raw)
		if !ok {
			return nil, errorf(CodeBadRequest, "%s must be a string, not %s", key, jsonKind(raw))
		}
		if len(s) == 0 || len(s) > maxPattern {
			return nil, errorf(CodeBadRequest, "%s must be 1 to %d bytes, not %d", key, maxPattern, len(s))
		}
		if !utf8.ValidString(s) {
			return nil, errorf(CodeBadRequest, "%s is not valid UTF-8", key)
		}
		if key == "match" {
			f.Match = s
			continue
		}
		if f.Regex, err = regexp.Compile(s); err != nil {
			return nil, errorf(CodeBadRequest, "regex is not valid RE2 syntax: %v", err)
		}
	}
	for _, key := range []string{"since", "until"} {
		raw := a.get(key)
		if raw == nil {
			continue
		}
		ts, ok := decodeInt(raw, 0, maxTimestamp)
		if !ok {
			return nil, errorf(CodeBadRequest, "%s must be an integer of milliseconds in [0, %d], not %s", key, int64(maxTimestamp), shown(raw))
		}
		if key == "since" {
			f.Since = ts
		} else {
			f.Until, f.HasUntil = ts, true
		}
	}
	if f.Empty() {
		return nil, nil
	}
	return storage.NewFilter(f), nil
}

func parseListArgs(r *request) (listArgs, error) {
	var la listArgs
	var buf argsBuf
	a, err := parseArgs(r.f.Args, buf[:])
	if err != nil {
		return la, err
	}
	if la.q.Src, err = a.src(r); err != nil {
		return la, err
	}
	if la.q.Stream, err = a.stream(""); err != nil {
		return la, err
	}
	if raw := a.get("after"); raw != nil {
		tok, ok := decodeString(raw)
		if !ok {
			return la, errorf(CodeBadRequest, "after must be an entry id string, not %s", jsonKind(raw))
		}
		if la.q.After, err = storage.ParseID(tok); err != nil {
			return la, errorf(CodeBadRequest, "after %q is not a valid entry id", tok)
		}
	}
	la.q.Last = -1
	if raw := a.get("last"); raw != nil {
		n, ok := decodeCount(raw, 0, 1<<31-1)
		if !ok {
			return la, errorf(CodeBadRequest, "last must be a non-negative integer, not %s", raw)
		}
		la.q.Last = int(n)
	}
	la.q.Limit = defaultLimit
	if raw := a.get("limit"); raw != nil {
		n, ok := decodeCount(raw, 1, maxLimit) // larger values are clamped
		if !ok {
			return la, errorf(CodeBadRequest, "limit must be a positive integer, not %s", raw)
		}
		la.q.Limit = int(n)
	}
	if raw := a.get("follow"); raw != nil {
		var ok bool
		if la.follow, ok = decodeBool(raw); !ok {
			return la, errorf(CodeBadRequest, "follow must be a bool, not %s", jsonKind(raw))
		}
	}
	if la.q.Filter, err = parseFilter(a); err != nil {
		return la, err
	}
	return la, nil
}

func (c *Conn) logList(r *request) {
	la, err := parseListArgs(r)
	if err != nil {
		c.fail(r, err)
		return
	}
	// Read your writes: earlier Log.Log calls of this connection first.
	c.appends.Wait()
	if la.follow {
		c.follow(r, la.q)
		return
	}
	ctx, cancel := c.scanContext(r.f, la.q)
	entries, err := c.svc.list(ctx, la.q)
	cancel()
	if err != nil {
		c.fail(r, scanError(la.q, err))
		return
	}
	c.respondEntries(r, entries)
}

// scanContext bounds a filtered List's scan (PROTOCOL §5): by the frame's
// timeout or deadline (the earlier; at most --follow-max), else
// --scan-timeout. An unfiltered List is bounded by its limit: no bound.
func (c *Conn) scanContext(f *Frame, q storage.Query) (context.Context, context.CancelFunc) {
	if q.Filter == nil {
		return context.Background(), func() {}
	}
	wait := c.svc.cfg.ScanTimeout
	if f.HasTimeout || f.HasDeadline {
		wait = c.frameWait(f)
	} else if wait < 0 {
		return context.WithCancel(context.Background()) // --scan-timeout 0: no limit
	}
	return context.WithTimeout(context.Background(), wait)
}

// errScanTimeout answers a filtered List whose scan ran out of time.
var errScanTimeout = errorf(CodeScanTimeout, "scan did not finish: narrow the selection with stream, since/until or after")

// scanError maps a filtered List's timeout to 504.
func scanError(q storage.Query, err error) error {
	if q.Filter != nil && errors.Is(err, context.DeadlineExceeded) {
		return errScanTimeout
	}
	return err
}

// respondEntries answers r with entries, encoded straight into the
// response.
func (c *Conn) respondEntries(r *request, entries []storage.Entry) {
	if r.f.Notification() {
		c.observe(r, 0)
		return
	}
	buf := c.resultHead(r, entriesSize(entries))
	c.finish(r, appendEntries(buf, entries))
}

func (c *Conn) logDelete(r *request) {
	var buf argsBuf
	a, err := parseArgs(r.f.Args, buf[:])
	if err != nil {
		c.fail(r, err)
		return
	}
	src, err := a.src(r)
	if err != nil {
		c.fail(r, err)
		return
	}
	stream, err := a.stream(defaultStream)
	if err != nil {
		c.fail(r, err)
		return
	}
	if err := c.svc.store.Delete(context.Background(), src, stream); err != nil {
		c.fail(r, err)
		return
	}
	if f := c.svc.fleet; f != nil {
		// The source's latest entry may have gone with the stream.
		if err := f.refresh(context.Background(), c.svc.store.(Catalog), src); err != nil {
			c.svc.log.Warn("fleet: refresh after delete failed", "client", c.client, "src", src, "err", err)
		}
	}
	c.respond(r, nil)
}

func (c *Conn) rpcList(r *request) {
	res := []byte{'['}
	for i, n := range c.svc.methodNames() {
		if i > 0 {
			res = append(res, ',')
		}
		res = appendString(res, n)
	}
	c.respond(r, append(res, ']'))
}

// rpcPing answers at once without touching storage, as a Mongoose OS peer
// does: the result names the channel the call came over.
func (c *Conn) rpcPing(r *request) {
	c.respond(r, []byte(`{"channel_info":"MQTT"}`))
}

// idLen is the length of an entry id token (storage.FormatID).
const idLen = 16

// appendID appends the id token of seq: storage.FormatID(seq), without
// allocating it.
func appendID(dst []byte, seq uint64) []byte {
	const hex = "0123456789abcdef"
	var b [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		b[i] = hex[seq&0xf]
		seq >>= 4
	}
	return append(dst, b[:]...)
}

// entrySize is the length of e's entry object, exact unless src or stream
// needs escapes.
func entrySize(e *storage.Entry) int {
	return len(`{"id":"","src":"","stream":"","timestamp":,"level":0,"msg":}`) + idLen + len(e.Src) + len(e.Stream) + 20 + len(e.Msg)
}

// entriesSize is at least the length of entries as a JSON array, unless
// some src or stream needs escapes.
func entriesSize(entries []storage.Entry) int {
	n := 2
	for i := range entries {
		n += entrySize(&entries[i]) + 1
	}
	return n
}

// appendEntry appends e as the entry object of PROTOCOL §4.
func appendEntry(dst []byte, e storage.Entry) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendID(dst, e.Seq)
	dst = append(dst, `","src":`...)
	dst = appendString(dst, e.Src)
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, e.Stream)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, e.Timestamp, 10)
	if n, ok := e.Level.Number(); ok {
		dst = append(dst, `,"level":`...)
		dst = append(dst, byte('0'+n))
	}
	dst = append(dst, `,"msg":`...)
	dst = append(dst, e.Msg...)
	return append(dst, '}')
}

// appendEntries appends entries as a JSON array.
func appendEntries(dst []byte, entries []storage.Entry) []byte {
	dst = append(dst, '[')
	for i, e := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEntry(dst, e)
	}
	return append(dst, ']')
}
