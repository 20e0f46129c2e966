package rpc

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// Fleet constants.
const (
	// DefaultFleetMax is the number of sources Log.Fleet keeps track of
	// unless Config.FleetMax says otherwise.
	DefaultFleetMax = 100_000
	// fleetMinutes is the window of the entry and error counts.
	fleetMinutes = 60
	// fleetRefresh is how often the catalog is walked again: it brings
	// what the live stream does not tell (deletions, retention, sources
	// of other nodes' stores).
	fleetRefresh = 10 * time.Minute
	// fleetWalkPage is the sources asked of the catalog at a time.
	fleetWalkPage = 1000
	// fleetCacheFor is how long a sorted view of the fleet is reused while
	// sources change: Log.Fleet sorts every tracked source, so the calls
	// within it share one sort, and a client calling it in a loop costs a
	// page copy, not a sort of every source, each time.
	fleetCacheFor = time.Second
)

// fleet is what Log.Fleet answers from, held in memory: every source the
// catalog lists or the store delivered since, with its latest entry and
// its entries and errors (level 0) per minute over the last hour.
//
// Entries are counted when the store hands them to the service (Subscribe,
// on the fanout goroutine, never on the commit path), by the minute of this
// node's clock then: the counts begin when the broker starts and say what
// arrived, whatever the devices' clocks say. The latest entries come from
// the catalog at start and every fleetRefresh, and from the live stream in
// between.
//
// Memory: at most max sources, each ~120 bytes plus its name plus 12 bytes
// per minute in which it logged (at most 61): ~0.9 KB for a source that
// logs every minute; and a sorted copy of the rows (~64 bytes a source)
// for each sort order asked for in the last second. Sources past max are
// not tracked (counted in untracked; the answer says "complete":false).
type fleet struct {
	max      int
	now      func() time.Time
	started  time.Time
	cacheFor time.Duration // fleetCacheFor; guarded by cacheMu (tests change it)

	// Lock order: cacheMu, then mu. The fanout goroutine (add) takes mu
	// only.
	cacheMu sync.Mutex             // held while a sorted view is made
	cache   map[string]*sortedView // by sort; guarded by cacheMu

	mu        sync.Mutex
	srcs      map[string]*fleetSource // guarded by mu
	gen       uint64                  // bumped by every add; guarded by mu
	version   uint64                  // bumped by every change; guarded by mu
	walks     uint64                  // catalog walks finished; guarded by mu
	untracked int64                   // entries of sources not kept, max reached; guarded by mu
}

// sortedView is a view of every tracked source, sorted, shared by the
// Log.Fleet calls that come within cacheFor of it (read-only).
type sortedView struct {
	fleetView
	version uint64    // fleet.version it was made at
	minute  uint32    // the minute its counts end with
	made    time.Time // wall clock
}

// fleetSource is one source's row. REQUIRES: fleet.mu held to read or
// write it.
type fleetSource struct {
	lastSeq uint64
	lastTS  int64
	empty   bool          // every entry deleted: lastSeq is its head
	touched uint64        // fleet.gen when the live stream last updated it
	walked  uint64        // the catalog walk that last listed it
	mins    []minuteCount // ascending minutes, the oldest dropped as new ones come
}

// minuteCount is what a source stored in one minute of this node's clock.
type minuteCount struct {
	minute          uint32 // minutes since the epoch
	entries, errors uint32
}

func newFleet(max int, now func() time.Time) *fleet {
	return &fleet{max: max, now: now, started: now(), cacheFor: fleetCacheFor, srcs: map[string]*fleetSource{}, cache: map[string]*sortedView{}}
}

func minuteOf(t time.Time) uint32 { return uint32(t.Unix() / 60) }

// add counts a durable group of entries. Only the fanout goroutine calls
// it.
func (f *fleet) add(group []storage.Entry) {
	minute := minuteOf(f.now())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	f.version++
	var fs *fleetSource
	for i := range group {
		e := &group[i]
		if i == 0 || e.Src != group[i-1].Src {
			if fs = f.source(e.Src); fs == nil {
				continue
			}
		} else if fs == nil {
			continue
		}
		if e.Seq > fs.lastSeq || fs.empty {
			fs.lastSeq, fs.lastTS, fs.empty = e.Seq, e.Timestamp, false
		}
		fs.touched = f.gen
		n := len(fs.mins)
		if n == 0 || fs.mins[n-1].minute != minute {
			fs.mins = trimMinutes(fs.mins, minute)
			fs.mins = append(fs.mins, minuteCount{minute: minute})
			n = len(fs.mins)
		}
		m := &fs.mins[n-1]
		m.entries++
		if isError(e) {
			m.errors++
		}
	}
}

// source returns src's row, made if new and there is room; nil if not.
// REQUIRES: f.mu held.
func (f *fleet) source(src string) *fleetSource {
	if fs := f.srcs[src]; fs != nil {
		return fs
	}
	if len(f.srcs) >= f.max {
		f.untracked++
		return nil
	}
	fs := &fleetSource{}
	f.srcs[strings.Clone(src)] = fs
	return fs
}

// trimMinutes drops the minutes that fall out of the window ending at
// minute, in place.
func trimMinutes(mins []minuteCount, minute uint32) []minuteCount {
	i := 0
	for i < len(mins) && mins[i].minute+fleetMinutes <= minute {
		i++
	}
	if i == 0 {
		return mins
	}
	return append(mins[:0], mins[i:]...)
}

// counts sums the minutes within the window ending at minute.
func (fs *fleetSource) counts(minute uint32) (entries, errors int64) {
	for _, m := range fs.mins {
		if m.minute+fleetMinutes > minute {
			entries += int64(m.entries)
			errors += int64(m.errors)
		}
	}
	return entries, errors
}

// walk reads every source from the catalog, taking its latest entry unless
// the live stream updated it since the walk began, and then drops the
// sources the catalog no longer lists that the live stream has not seen
// since either. It holds f.mu only while it merges a page.
func (f *fleet) walk(ctx context.Context, cat Catalog) error {
	f.mu.Lock()
	gen0, walk := f.gen, f.walks+1
	f.mu.Unlock()
	after := ""
	var missed int64 // sources listed but not tracked: max reached
	for {
		list, err := cat.Sources(ctx, storage.SourceQuery{After: after, Limit: fleetWalkPage})
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.version++
		for _, si := range list {
			fs := f.source(si.Src)
			if fs == nil {
				missed++
				continue
			}
			fs.walked = walk
			if fs.touched <= gen0 {
				fs.lastSeq, fs.lastTS, fs.empty = si.LastSeq, si.LastTimestamp, si.Empty
			}
		}
		f.mu.Unlock()
		if len(list) < fleetWalkPage {
			break
		}
		after = list[len(list)-1].Src
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for src, fs := range f.srcs {
		if fs.walked != walk && fs.touched <= gen0 {
			delete(f.srcs, src)
		}
	}
	f.walks = walk
	f.version++
	f.untracked = missed // counted again from here: the walk saw every source
	return nil
}

// refresh reads src's latest entry from the catalog again (after a Delete).
func (f *fleet) refresh(ctx context.Context, cat Catalog, src string) error {
	f.mu.Lock()
	gen0 := f.gen
	f.mu.Unlock()
	list, err := cat.Sources(ctx, storage.SourceQuery{Prefix: src, Limit: 1})
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.srcs[src]
	if fs == nil || fs.touched > gen0 {
		return nil
	}
	f.version++
	if len(list) == 1 && list[0].Src == src {
		fs.lastSeq, fs.lastTS, fs.empty = list[0].LastSeq, list[0].LastTimestamp, list[0].Empty
	} else {
		delete(f.srcs, src)
	}
	return nil
}

// fleetRow is one source as Log.Fleet answers it.
type fleetRow struct {
	src             string
	lastSeq         uint64
	lastTS          int64
	empty           bool
	entries, errors int64
}

// fleetView is a snapshot of the fleet.
type fleetView struct {
	rows     []fleetRow
	since    time.Time // counts cover [since, now)
	complete bool      // every source is tracked and the first walk is done
}

// view returns the rows of every source, unsorted, with counts in the
// window that ends with minute, and the version it saw.
func (f *fleet) view(minute uint32) (fleetView, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := fleetView{rows: make([]fleetRow, 0, len(f.srcs)), complete: f.untracked == 0 && f.walks > 0}
	for src, fs := range f.srcs {
		r := fleetRow{src: src, lastSeq: fs.lastSeq, lastTS: fs.lastTS, empty: fs.empty}
		r.entries, r.errors = fs.counts(minute)
		v.rows = append(v.rows, r)
	}
	// The window's first minute, or the start when the broker is younger.
	v.since = time.Unix(int64(minute+1-fleetMinutes)*60, 0)
	if f.started.After(v.since) {
		v.since = f.started
	}
	return v, f.version
}

// sorted returns every source sorted by sortBy (a key of fleetSorts): the
// cached view when nothing changed since it was made, or when it is
// younger than cacheFor, in the same minute; else a new one. Callers must
// not modify it.
func (f *fleet) sorted(sortBy string) *sortedView {
	f.cacheMu.Lock()
	defer f.cacheMu.Unlock()
	minute := minuteOf(f.now())
	f.mu.Lock()
	version := f.version
	f.mu.Unlock()
	if c := f.cache[sortBy]; c != nil && c.minute == minute && (c.version == version || time.Since(c.made) < f.cacheFor) {
		return c
	}
	v, version := f.view(minute)
	slices.SortFunc(v.rows, fleetSorts[sortBy])
	c := &sortedView{fleetView: v, version: version, minute: minute, made: time.Now()}
	f.cache[sortBy] = c
	return c
}

// fleetSorts are the orders Log.Fleet offers, each ending with the name so
// that pages are stable.
var fleetSorts = map[string]func(a, b fleetRow) int{
	"errors": func(a, b fleetRow) int {
		return cmp.Or(cmp.Compare(b.errors, a.errors), cmp.Compare(b.entries, a.entries), strings.Compare(a.src, b.src))
	},
	"entries": func(a, b fleetRow) int {
		return cmp.Or(cmp.Compare(b.entries, a.entries), cmp.Compare(b.errors, a.errors), strings.Compare(a.src, b.src))
	},
	"last": func(a, b fleetRow) int {
		return cmp.Or(cmp.Compare(b.lastTS, a.lastTS), strings.Compare(a.src, b.src))
	},
	"src": func(a, b fleetRow) int { return strings.Compare(a.src, b.src) },
}

// maxFleetOffset bounds Log.Fleet's offset.
const maxFleetOffset = 1<<31 - 1

// logFleet answers Log.Fleet {sort?, offset?, limit?, prefix?}: one page of
// the sources this node knows, sorted (by default most errors first), each
// with its latest entry and its entries and errors over the last hour (see
// fleet). A device sees only its own sources, a reader or admin all.
func (c *Conn) logFleet(r *request) {
	var buf argsBuf
	a, err := parseArgs(r.f.Args, buf[:])
	if err != nil {
		c.fail(r, err)
		return
	}
	sortBy, err := a.str("sort", "errors")
	if err != nil {
		c.fail(r, err)
		return
	}
	if _, ok := fleetSorts[sortBy]; !ok {
		c.fail(r, errorf(CodeBadRequest, "sort must be one of errors, entries, last, src, not %q", sortBy))
		return
	}
	prefix, err := a.str("prefix", "")
	if err != nil {
		c.fail(r, err)
		return
	}
	offset := 0
	if raw := a.get("offset"); raw != nil {
		n, ok := decodeCount(raw, 0, maxFleetOffset)
		if !ok {
			c.fail(r, errorf(CodeBadRequest, "offset must be a non-negative integer, not %s", raw))
			return
		}
		offset = int(n)
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
	caller := r.caller
	if caller.Secured && caller.Role == RoleNone {
		c.fail(r, errorf(CodeForbidden, "%s (%s) may not call %s", caller.Identity, caller.Role, r.method))
		return
	}
	access := methodAccess[r.method]
	all := !caller.Secured || caller.Role == RoleAdmin || caller.Role == RoleReader
	v := c.svc.fleet.sorted(sortBy)
	rows := v.rows
	total := len(rows)
	var page []fleetRow
	if all && prefix == "" {
		page = rows[min(offset, total):min(offset+limit, total)]
	} else {
		// One pass over the sorted rows: count the ones the caller may
		// see, keep those of the page.
		total = 0
		for i := range rows {
			if !strings.HasPrefix(rows[i].src, prefix) || !caller.may(access, rows[i].src) {
				continue
			}
			if total >= offset && len(page) < limit {
				page = append(page, rows[i])
			}
			total++
		}
	}
	c.respond(r, c.svc.appendFleet(nil, v.fleetView, total, offset, page))
}

// appendFleet appends a Log.Fleet result.
func (s *Service) appendFleet(dst []byte, v fleetView, total, offset int, page []fleetRow) []byte {
	dst = append(dst, `{"total":`...)
	dst = strconv.AppendInt(dst, int64(total), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, int64(offset), 10)
	dst = append(dst, `,"window_ms":`...)
	dst = strconv.AppendInt(dst, fleetMinutes*60*1000, 10)
	dst = append(dst, `,"counted_since":`...)
	dst = strconv.AppendInt(dst, v.since.UnixMilli(), 10)
	dst = append(dst, `,"complete":`...)
	dst = strconv.AppendBool(dst, v.complete)
	dst = append(dst, `,"sources":[`...)
	for i, row := range page {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"src":`...)
		dst = appendString(dst, row.src)
		dst = append(dst, `,"last_id":"`...)
		dst = appendID(dst, row.lastSeq)
		dst = append(dst, '"')
		if !row.empty {
			dst = append(dst, `,"last_timestamp":`...)
			dst = strconv.AppendInt(dst, row.lastTS, 10)
		}
		dst = append(dst, `,"entries":`...)
		dst = strconv.AppendInt(dst, row.entries, 10)
		dst = append(dst, `,"errors":`...)
		dst = strconv.AppendInt(dst, row.errors, 10)
		if cp := s.capture.Load(); cp != nil {
			if lost, restarts, ok := cp.counts(row.src); ok {
				dst = append(dst, `,"captured_lost":`...)
				dst = strconv.AppendInt(dst, lost, 10)
				dst = append(dst, `,"restarts":`...)
				dst = strconv.AppendInt(dst, restarts, 10)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// runFleet walks the catalog at start and every fleetRefresh until ctx
// ends. It runs on its own goroutine.
func (s *Service) runFleet(ctx context.Context) {
	defer close(s.fleetDone)
	cat := s.store.(Catalog)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if err := s.fleet.walk(ctx, cat); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("fleet: catalog walk failed", "err", err)
			t.Reset(time.Minute)
			continue
		}
		s.log.Debug("fleet: catalog walked", "took", time.Since(start))
		t.Reset(fleetRefresh)
	}
}

// isError reports whether e is an error: level 0.
func isError(e *storage.Entry) bool {
	return e.Level == storage.LevelError
}
