package rpc

import (
	"context"
	"strconv"

	"github.com/logbroker/logbroker/storage"
)

// Catalog lists what a store holds, for dashboards: its sources, and the
// streams of a source. It is optional: New serves Log.Sources and
// Log.Streams only when the LogStore implements it too (storage.Store
// does); without it they are 404, as for any unknown method.
type Catalog interface {
	// Sources returns the sources q selects, sorted by name (byte order).
	Sources(ctx context.Context, q storage.SourceQuery) ([]storage.SourceInfo, error)
	// Streams returns the streams of src that hold entries, sorted by name.
	Streams(ctx context.Context, src string) ([]storage.StreamInfo, error)
}

// addCatalog registers Log.Sources and Log.Streams if the store is a
// Catalog.
func (s *Service) addCatalog() {
	if _, ok := s.store.(Catalog); !ok {
		return
	}
	s.methods["Log.Sources"] = (*Conn).logSources
	s.methods["Log.Streams"] = (*Conn).logStreams
	if s.cfg.FleetMax > 0 {
		s.fleet = newFleet(s.cfg.FleetMax, s.cfg.now)
		s.methods["Log.Fleet"] = (*Conn).logFleet
	}
}

// logSources answers Log.Sources {after?, limit?}: the sources above after,
// sorted, each with its latest entry. A device sees only its own sources
// (its identity and the sources under <identity>/), a reader or admin all.
func (c *Conn) logSources(r *request) {
	var buf argsBuf
	a, err := parseArgs(r.f.Args, buf[:])
	if err != nil {
		c.fail(r, err)
		return
	}
	after, err := a.str("after", "")
	if err != nil {
		c.fail(r, err)
		return
	}
	limit := defaultLimit
	if raw := a.get("limit"); raw != nil {
		n, ok := decodeCount(raw, 1, maxLimit) // larger values are clamped
		if !ok {
			c.fail(r, errorf(CodeBadRequest, "limit must be a positive integer, not %s", raw))
			return
		}
		limit = int(n)
	}
	// Read your writes: earlier Log.Log calls of this connection first.
	c.appends.Wait()
	cat := c.svc.store.(Catalog)
	ctx := context.Background()
	var list []storage.SourceInfo
	switch caller := r.caller; {
	case !caller.Secured || caller.Role == RoleAdmin || caller.Role == RoleReader:
		list, err = cat.Sources(ctx, storage.SourceQuery{After: after, Limit: limit})
	case caller.Role == RoleDevice:
		list, err = ownSources(ctx, cat, caller.Identity, after, limit)
	default:
		err = errorf(CodeForbidden, "%s (%s) may not call %s", caller.Identity, caller.Role, r.method)
	}
	if err != nil {
		c.fail(r, err)
		return
	}
	c.respond(r, appendSources(nil, list, c.svc.capture.Load()))
}

// ownSources returns the sources of identity above after: identity itself,
// then the sources under identity + "/", which follow it in byte order
// (others, like identity + "-x" or identity + "0", are never read).
func ownSources(ctx context.Context, cat Catalog, identity, after string, limit int) ([]storage.SourceInfo, error) {
	var out []storage.SourceInfo
	if after < identity {
		// The least source with the prefix is identity itself, if it exists.
		l, err := cat.Sources(ctx, storage.SourceQuery{Prefix: identity, After: after, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(l) == 1 && l[0].Src == identity {
			out = append(out, l[0])
		}
	}
	if len(out) == limit {
		return out, nil
	}
	l, err := cat.Sources(ctx, storage.SourceQuery{Prefix: identity + "/", After: after, Limit: limit - len(out)})
	if err != nil {
		return nil, err
	}
	return append(out, l...), nil
}

// logStreams answers Log.Streams {src?}: the streams of src (default: the
// frame's src), sorted, each with its entry count and latest entry. The
// permissions are Log.List's.
func (c *Conn) logStreams(r *request) {
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
	c.appends.Wait()
	list, err := c.svc.store.(Catalog).Streams(context.Background(), src)
	if err != nil {
		c.fail(r, err)
		return
	}
	c.respond(r, appendStreams(nil, list))
}

// appendSources appends list as a JSON array of
// {"src","last_id","last_timestamp"}; last_timestamp is left out for a
// source whose entries were all deleted (last_id is then its last
// sequence, a position for Log.List's after). A source that console
// capture has lines of also gets "captured_lost" and "restarts".
func appendSources(dst []byte, list []storage.SourceInfo, capture *Capture) []byte {
	dst = append(dst, '[')
	for i, si := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"src":`...)
		dst = appendString(dst, si.Src)
		dst = append(dst, `,"last_id":"`...)
		dst = append(dst, storage.FormatID(si.LastSeq)...)
		dst = append(dst, '"')
		if !si.Empty {
			dst = append(dst, `,"last_timestamp":`...)
			dst = strconv.AppendInt(dst, si.LastTimestamp, 10)
		}
		if capture != nil {
			if lost, restarts, ok := capture.counts(si.Src); ok {
				dst = append(dst, `,"captured_lost":`...)
				dst = strconv.AppendInt(dst, lost, 10)
				dst = append(dst, `,"restarts":`...)
				dst = strconv.AppendInt(dst, restarts, 10)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendStreams appends list as a JSON array of
// {"stream","count","last_id","last_timestamp"}.
func appendStreams(dst []byte, list []storage.StreamInfo) []byte {
	dst = append(dst, '[')
	for i, si := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"stream":`...)
		dst = appendString(dst, si.Stream)
		dst = append(dst, `,"count":`...)
		dst = strconv.AppendInt(dst, si.Count, 10)
		dst = append(dst, `,"last_id":"`...)
		dst = append(dst, storage.FormatID(si.LastSeq)...)
		dst = append(dst, `","last_timestamp":`...)
		dst = strconv.AppendInt(dst, si.LastTimestamp, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}
