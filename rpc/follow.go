package rpc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/queue"
)

// follower is a Log.List with follow that is waiting for entries. It holds
// no goroutine: a timer bounds it, and the fanout wakes it.
type follower struct {
	c      *Conn
	r      *request
	q      storage.Query // After is the position: entries above it wake it
	timer  *time.Timer
	claims atomic.Bool // set by whoever answers or drops it, once
	// armed: the first read found nothing, so a wake may answer f with its
	// group alone. Before that a wake only sets missed, and follow reads
	// again: answering with the group would skip older entries past the
	// position that the read is about to return. Both guarded by hub.mu.
	armed, missed bool
}

// hub indexes waiting followers by source.
type hub struct {
	mu      sync.Mutex
	bySrc   map[string]map[*follower]struct{}
	closed  bool // set by releaseAll (Shutdown): no more waiting
	waiting atomic.Int64
}

// errGone is returned by hub.add for a follow whose connection has closed:
// it is dropped unanswered, as if it had been waiting.
var errGone = errors.New("connection closed")

func (h *hub) init() { h.bySrc = map[string]map[*follower]struct{}{} }

// add registers f unless the service is shutting down, its connection has
// closed, or that connection has too many waiting already. Checked under mu,
// so a follow registers before releaseAll or dropConn (and is released by
// them) or not at all.
func (h *hub) add(f *follower, max int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrShuttingDown
	case f.c.gone:
		return errGone
	case f.c.follows >= max:
		return errorf(CodeTooMany, "too many waiting follow calls on this connection (limit %d)", max)
	}
	f.c.follows++
	m := h.bySrc[f.q.Src]
	if m == nil {
		m = map[*follower]struct{}{}
		h.bySrc[f.q.Src] = m
	}
	m[f] = struct{}{}
	h.waiting.Add(1)
	return nil
}

// claim takes f out of the hub; only the first caller gets true.
func (h *hub) claim(f *follower) bool {
	if !f.claims.CompareAndSwap(false, true) {
		return false
	}
	h.mu.Lock()
	if f.timer != nil { // f.timer is written under mu
		f.timer.Stop()
	}
	h.removeLocked(f)
	h.mu.Unlock()
	return true
}

func (h *hub) removeLocked(f *follower) {
	m := h.bySrc[f.q.Src]
	if _, ok := m[f]; !ok {
		return
	}
	delete(m, f)
	if len(m) == 0 {
		delete(h.bySrc, f.q.Src)
	}
	f.c.follows--
	h.waiting.Add(-1)
}

// dropConn releases every follower of c without answering.
func (h *hub) dropConn(c *Conn) {
	h.mu.Lock()
	c.gone = true
	h.mu.Unlock()
	h.collect(func(f *follower) bool { return f.c == c })
}

// releaseAll claims every follower and calls answer for each.
func (h *hub) releaseAll(answer func(*follower)) {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	for _, f := range h.collect(func(*follower) bool { return true }) {
		answer(f)
	}
}

// collect claims and returns the followers that match.
func (h *hub) collect(match func(*follower) bool) []*follower {
	h.mu.Lock()
	var out []*follower
	for _, m := range h.bySrc {
		for f := range m {
			if match(f) && f.claims.CompareAndSwap(false, true) {
				out = append(out, f)
			}
		}
	}
	for _, f := range out {
		if f.timer != nil {
			f.timer.Stop()
		}
		h.removeLocked(f)
	}
	h.mu.Unlock()
	return out
}

// wake answers the followers that entries (one durable commit group) satisfy.
func (h *hub) wake(entries []storage.Entry) {
	if h.waiting.Load() == 0 || len(entries) == 0 {
		return
	}
	type woken struct {
		f   *follower
		got []storage.Entry
	}
	var ready []woken
	var bySrc map[string][]storage.Entry
	if !oneSource(entries) {
		bySrc = map[string][]storage.Entry{}
		for _, e := range entries {
			bySrc[e.Src] = append(bySrc[e.Src], e)
		}
	}
	wakeSrc := func(src string, group []storage.Entry) {
		for f := range h.bySrc[src] {
			got := f.match(group)
			switch {
			case len(got) == 0:
			case !f.armed:
				f.missed = true // follow reads again and finds them
			case f.claims.CompareAndSwap(false, true):
				if ready == nil {
					ready = make([]woken, 0, len(h.bySrc[src]))
				}
				ready = append(ready, woken{f, got})
			}
		}
	}
	h.mu.Lock()
	if bySrc == nil {
		wakeSrc(entries[0].Src, entries)
	} else {
		for src, group := range bySrc {
			wakeSrc(src, group)
		}
	}
	for _, w := range ready {
		if w.f.timer != nil {
			w.f.timer.Stop()
		}
		h.removeLocked(w.f)
	}
	h.mu.Unlock()
	if len(ready) == 1 {
		ready[0].f.c.respondEntries(ready[0].f.r, ready[0].got)
		return
	}
	// Followers at the same position get the same entries: encode them
	// once for all (a thousand dashboards tailing one device), and build
	// each response in one buffer, reused: the Publisher keeps no payload.
	type same struct {
		src, stream string
		filter      *storage.Filter // followers with filters share nothing
		first       uint64
		n           int
	}
	var encoded map[same][]byte
	var last same
	var res, buf []byte
	for _, w := range ready {
		k := same{w.f.q.Src, w.f.q.Stream, w.f.q.Filter, w.got[0].Seq, len(w.got)}
		if res == nil || k != last {
			var ok bool
			if res, ok = encoded[k]; !ok {
				res = appendEntries(make([]byte, 0, entriesSize(w.got)), w.got)
				if encoded == nil {
					encoded = map[same][]byte{}
				}
				encoded[k] = res
			}
			last = k
		}
		buf = w.f.c.respondReusing(buf, w.f.r, res)
	}
}

// oneSource reports whether every entry is of the first one's source.
func oneSource(entries []storage.Entry) bool {
	for i := 1; i < len(entries); i++ {
		if entries[i].Src != entries[0].Src {
			return false
		}
	}
	return true
}

// match returns the entries of group (all of f's source, in seq order) that
// f waits for, at most f.q.Limit. It returns a part of group when they are
// adjacent there (always when f reads every stream; when group holds only
// f's stream), a copy only when other streams' entries lie between.
func (f *follower) match(group []storage.Entry) []storage.Entry {
	wants := func(e *storage.Entry) bool {
		return e.Seq > f.q.After && (f.q.Stream == "" || f.q.Stream == e.Stream) && f.q.Filter.Keep(e)
	}
	i := 0
	for i < len(group) && !wants(&group[i]) {
		i++
	}
	j := i
	for j < len(group) && j-i < f.q.Limit && wants(&group[j]) {
		j++
	}
	if j == len(group) || j-i == f.q.Limit {
		return group[i:j:j]
	}
	got := group[i:j:j]
	for k := j; k < len(group) && len(got) < f.q.Limit; k++ {
		if wants(&group[k]) {
			got = append(got, group[k]) // copies: got's capacity ends at j
		}
	}
	return got
}

// follow serves a Log.List with follow: answer now if there is anything,
// else wait for the first durable entry past the position, or the bound.
func (c *Conn) follow(r *request, q storage.Query) {
	s := c.svc
	ctx := context.Background()
	f := &follower{c: c, r: r, q: q}
	if q.Last == 0 {
		// tail -f from now: the position is the source's head.
		head, err := s.store.Head(ctx, q.Src)
		if err != nil {
			c.fail(r, err)
			return
		}
		f.q.After = max(q.After, head)
	}
	f.q.Last = -1
	if err := s.hub.add(f, s.cfg.MaxFollows); err != nil {
		if !errors.Is(err, errGone) {
			c.fail(r, err)
		}
		return
	}
	// Registered first, then read: an entry made durable in between is
	// seen by the read or wakes f, never neither.
	first := q
	if q.Last == 0 {
		first = f.q
	}
	for {
		sctx, cancel := c.scanContext(r.f, first)
		entries, err := s.newer(sctx, first)
		cancel()
		if err != nil || len(entries) > 0 {
			if s.hub.claim(f) {
				if err != nil {
					c.fail(r, scanError(first, err))
				} else {
					c.respondEntries(r, entries)
				}
			}
			return
		}
		s.hub.mu.Lock()
		missed := f.missed
		f.armed, f.missed = !missed, false
		s.hub.mu.Unlock()
		if !missed {
			break
		}
		// A group matching f became durable after the read: read again.
	}
	wait := c.followWait(r.f)
	t := time.AfterFunc(wait, func() {
		if s.hub.claim(f) {
			c.respond(r, []byte("[]"))
		}
	})
	s.hub.mu.Lock() // whoever claims f reads f.timer under mu
	f.timer = t
	s.hub.mu.Unlock()
	// A wake or Shutdown may have claimed f before the timer existed.
	if f.claims.Load() {
		t.Stop()
	}
}

// newer lists what q selects, unless the source's durable head shows that
// nothing lies past q.After: a Head is a map lookup, a List opens an
// iterator, and a follower's next call usually finds nothing new (it was
// just answered with the newest). List never returns an entry above the
// durable head, so both answers are the same.
func (s *Service) newer(ctx context.Context, q storage.Query) ([]storage.Entry, error) {
	head, err := s.store.Head(ctx, q.Src)
	if err != nil {
		return nil, err
	}
	if head <= q.After {
		return nil, nil
	}
	// At most head-After entries lie past the position (sequences are
	// never reused): asking for no more keeps the store from reserving
	// room for a limit of 1000 on every call of a follower that is
	// usually one entry behind.
	if n := head - q.After; q.Limit > 0 && uint64(q.Limit) > n {
		q.Limit = int(n)
	}
	if n := head - q.After; q.Last > 0 && uint64(q.Last) > n {
		q.Last = int(n)
	}
	return s.list(ctx, q)
}

// followWait is how long a follow may wait: the frame's timeout or deadline
// (the earlier), else the configured default, never over the maximum.
func (c *Conn) followWait(f *Frame) time.Duration {
	cfg := &c.svc.cfg
	if !f.HasTimeout && !f.HasDeadline {
		return min(cfg.FollowTimeout, cfg.FollowMax)
	}
	return c.frameWait(f)
}

// frameWait is the frame's own bound (timeout or deadline, the earlier),
// never over --follow-max. Only for a frame that has one.
func (c *Conn) frameWait(f *Frame) time.Duration {
	cfg := &c.svc.cfg
	// In float seconds, clamped before converting: a timeout of 1e10 s or a
	// deadline of 1e300 must mean FollowMax, not overflow a Duration.
	wait := cfg.FollowMax.Seconds()
	if f.HasTimeout {
		wait = min(wait, f.Timeout)
	}
	if f.HasDeadline {
		wait = min(wait, f.Deadline-float64(time.Now().UnixNano())/1e9)
	}
	return time.Duration(max(wait, 0) * float64(time.Second))
}

// fanout hands durable commit groups from the store to one goroutine that
// publishes live topics and wakes followers, so the commit path never waits
// on publishing.
type fanout struct {
	w queue.Worker[[]storage.Entry]
}

func (q *fanout) init(deliver func([]storage.Entry)) {
	q.w.Start(func(groups [][]storage.Entry) {
		for _, g := range groups {
			deliver(g)
		}
	})
}

func (q *fanout) push(group []storage.Entry) {
	q.w.Push(group)
}

// stop delivers what is queued and ends the goroutine.
func (q *fanout) stop() {
	q.w.Stop()
}

// deliver publishes each entry on <src>/log/<stream>, if anyone listens
// there, wakes followers and counts the entries for Log.Fleet.
func (s *Service) deliver(group []storage.Entry) {
	if s.fleet != nil {
		s.fleet.add(group)
	}
	for i := range group {
		e := &group[i]
		topic := s.liveTopic(e.Src, e.Stream)
		if s.listens != nil && !s.listens.Interested(topic) {
			s.skipped.Add(1)
			continue
		}
		err := s.pub.Publish(Message{
			Topic:   topic,
			Payload: appendEntry(make([]byte, 0, entrySize(e)), *e),
			QoS:     0,
		})
		if err != nil {
			s.log.Warn("live publish failed", "src", e.Src, "err", err)
			continue
		}
		s.live.Add(1)
	}
	s.hub.wake(group)
}

// liveKey names a stream of a source.
type liveKey struct{ src, stream string }

// liveTopicsMax bounds the topics liveTopic remembers; past it, it starts
// over.
const liveTopicsMax = 4096

// liveTopic returns <src>/log/<stream>, remembered: deliver asks for it for
// every entry, mostly to learn that nobody listens, and building it each
// time was an allocation per entry. Only deliver calls it, on the fanout's
// goroutine.
func (s *Service) liveTopic(src, stream string) string {
	k := liveKey{src, stream}
	if t, ok := s.liveTopics[k]; ok {
		return t
	}
	if s.liveTopics == nil || len(s.liveTopics) >= liveTopicsMax {
		s.liveTopics = make(map[liveKey]string)
	}
	t := src + "/log/" + stream
	s.liveTopics[k] = t
	return t
}
