package storage

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// DefaultTailCacheBytes is the default of Options.TailCacheBytes.
const DefaultTailCacheBytes = 32 << 20

// Bounds of one stream's share of the tail cache: it keeps at most the
// newest tailMaxEntries entries and tailMaxBytes bytes of their msgs, the
// older ones are dropped (the stream's bound rises).
const (
	tailMaxEntries = 1024
	tailMaxBytes   = 1 << 20
)

const (
	tailShards = 16
	// tailEntryCost is what one cached entry costs besides its msg bytes.
	tailEntryCost = int64(unsafe.Sizeof(tailEntry{}))
	// tailStreamCost is what a cached stream costs besides its entries
	// and names: the struct, its map slot, the slice headers.
	tailStreamCost = int64(unsafe.Sizeof(tailStream{})) + 64
	// Chunks a stream's msgs are copied into: the first is small, each
	// next one twice the previous up to tailChunkMax (or one msg).
	tailChunkMin = 512
	tailChunkMax = 16 << 10
)

// tailCache keeps, for streams of the Pebble store, their newest durable
// entries in memory, so that List of one stream near its head does not
// read Pebble (see doc.go, Tail cache).
//
// A stream is in one of three states. Absent: no record. Unknown: a record
// (made by a List that means to seed it) holding no entries. Known: every
// durable entry of the stream with seq > from is in ents, in seq order.
// The committer keeps known streams known by applying each synced batch's
// appends, deletes and trims to them, under Store.smu together with the
// advance of the durable heads; it leaves unknown and absent streams alone,
// only bumping an unknown stream's version (but a synced Delete makes its
// stream known and empty). A List that missed seeds the
// stream from what it read of Pebble, if the version it took with the
// durable head (both under smu) is unchanged: then no batch touched the
// stream since that head. So only streams that are listed are cached (a
// List of a stream before its first entry makes it known, empty), and an
// append to any other stream costs a map lookup.
type tailCache struct {
	budget int64
	used   atomic.Int64  // bytes accounted, over all streams
	hits   atomic.Uint64 // List calls served
	misses atomic.Uint64 // List calls of one stream not served
	clock  atomic.Uint64 // the LRU time: advanced per commit and per use
	// applying is set while the deletions of a synced batch are not yet
	// applied (suspendTail to fillTail): no seeds meanwhile.
	applying atomic.Bool
	hseed    maphash.Seed
	evictMu  sync.Mutex // TryLock only; acquired after Store.life, never with smu or a shard's mu held; held, it allows a shard's mu
	shards   [tailShards]tailShard
}

type tailShard struct {
	mu sync.RWMutex // acquired last: after Store.life, Store.smu or evictMu; no other lock is taken while it is held
	m  map[tailKey]*tailStream
	_  [64]byte // keep shards' locks off each other's cache lines
}

type tailKey struct{ src, stream string }

// tailEntry is a cached entry. msg points into one of its stream's chunks,
// capped; it is never written again.
type tailEntry struct {
	seq   uint64
	ts    int64
	msg   []byte
	level Level
}

// tailChunk holds msgs back to back; last is the seq of the last msg
// copied into it.
type tailChunk struct {
	buf  []byte
	last uint64
}

// tailStream is the cache record of one stream. Except used, its fields
// are guarded by its shard's mu.
type tailStream struct {
	key  tailKey
	used atomic.Uint64 // the cache clock at its last use

	version   uint64 // bumped by every committed op on the stream
	known     bool
	suspended bool // a synced delete or trim is being applied: not served
	dropped   bool // out of the cache: seeds are refused
	from      uint64
	ents      []tailEntry // a window of arr
	arr       []tailEntry // the array ents lives in, full length
	chunks    []tailChunk
	chunkMem  int64 // sum of the chunks' capacities
	msgBytes  int64 // sum of len(msg) over ents
	cost      int64 // what it adds to tailCache.used
}

// newTailCache returns a cache of budget bytes, or nil (no cache) if
// budget < 0.
func newTailCache(budget int64) *tailCache {
	if budget < 0 {
		return nil
	}
	if budget == 0 {
		budget = DefaultTailCacheBytes
	}
	c := &tailCache{budget: budget, hseed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[tailKey]*tailStream)
	}
	return c
}

func (c *tailCache) shard(src, stream string) *tailShard {
	h := maphash.String(c.hseed, src) ^ (maphash.String(c.hseed, stream) * 0x9e3779b97f4a7c15)
	return &c.shards[h%tailShards]
}

// touch records a use of t for the LRU order: unless t was the last
// stream used, the clock advances, so the streams' uses are ordered (a
// stream listed over and over writes no shared memory).
func (c *tailCache) touch(t *tailStream) {
	if t.used.Load() != c.clock.Load() {
		t.used.Store(c.clock.Add(1))
	}
}

// list serves q (q.Stream != "", q.Last != 0) from the cache if it can:
// false means the cache does not hold everything q selects. If shared, the
// entries' Msg are the cache's (never modified), else copies.
func (c *tailCache) list(q Query, shared bool) ([]Entry, bool) {
	if c == nil {
		return nil, false
	}
	sh := c.shard(q.Src, q.Stream)
	sh.mu.RLock()
	t := sh.m[tailKey{q.Src, q.Stream}]
	if t == nil || !t.known || t.suspended {
		sh.mu.RUnlock()
		c.misses.Add(1)
		return nil, false
	}
	ents := t.ents
	// i: the first entry with seq > After.
	i, j := 0, len(ents)
	for i < j {
		h := int(uint(i+j) >> 1)
		if ents[h].seq <= q.After {
			i = h + 1
		} else {
			j = h
		}
	}
	k := len(ents) - i
	if q.After < t.from && (q.Last < 0 || k < q.Last) {
		sh.mu.RUnlock()
		c.misses.Add(1)
		return nil, false // older entries than cached are wanted
	}
	if q.Last > 0 && k > q.Last {
		i, k = len(ents)-q.Last, q.Last
	}
	if q.Limit > 0 && k > q.Limit {
		k = q.Limit
	}
	var out []Entry
	if k > 0 && shared {
		out = make([]Entry, k)
		for j := range out {
			e := &ents[i+j]
			out[j] = Entry{Seq: e.seq, Src: q.Src, Stream: q.Stream, Timestamp: e.ts, Msg: e.msg, Level: e.level}
		}
	} else if k > 0 {
		// The caller owns the result (it may modify the msgs): copy them
		// into one slab, each capped.
		size := 0
		for _, e := range ents[i : i+k] {
			size += len(e.msg)
		}
		out = make([]Entry, k)
		slab := make([]byte, 0, size)
		for j := range out {
			e := &ents[i+j]
			start := len(slab)
			slab = append(slab, e.msg...)
			out[j] = Entry{Seq: e.seq, Src: q.Src, Stream: q.Stream, Timestamp: e.ts, Msg: slab[start:len(slab):len(slab)], Level: e.level}
		}
	}
	sh.mu.RUnlock()
	c.touch(t)
	c.hits.Add(1)
	return out, true
}

// watch returns the record of src's stream, making an unknown one if there
// is none, and its version: pass both to seed. Called with Store.smu
// read-locked, when the durable head is read.
func (c *tailCache) watch(src, stream string) (*tailStream, uint64) {
	sh := c.shard(src, stream)
	sh.mu.RLock()
	t := sh.m[tailKey{src, stream}]
	var v uint64
	if t != nil {
		v = t.version
	}
	sh.mu.RUnlock()
	if t == nil {
		sh.mu.Lock()
		if t = sh.m[tailKey{src, stream}]; t == nil {
			t = c.add(sh, src, stream)
		}
		v = t.version
		sh.mu.Unlock()
	}
	c.touch(t)
	return t, v
}

// add makes an unknown record for src's stream, not yet used (the first
// to evict, unless a List uses it). Called with sh locked.
func (c *tailCache) add(sh *tailShard, src, stream string) *tailStream {
	t := &tailStream{key: tailKey{strings.Clone(src), strings.Clone(stream)}}
	sh.m[t.key] = t
	c.account(t)
	return t
}

// seed stores out, the entries of t's stream read from Pebble up to the
// durable head taken with version v, which hold every entry of the stream
// with seq > from up to that head, unless a batch touched the stream since
// (its version moved) or the cache already knows more of it.
func (c *tailCache) seed(t *tailStream, v uint64, out []Entry, from uint64) {
	sh := c.shard(t.key.src, t.key.stream)
	sh.mu.Lock()
	if t.dropped || t.version != v || (t.known && t.from <= from) || c.applying.Load() {
		sh.mu.Unlock()
		return
	}
	// Only the newest entries within the stream's bounds.
	start := max(0, len(out)-tailMaxEntries)
	var size int64
	for i := len(out) - 1; i >= start; i-- {
		if size+int64(len(out[i].Msg)) > tailMaxBytes {
			start = i + 1
			break
		}
		size += int64(len(out[i].Msg))
	}
	if start > 0 {
		from = out[start-1].Seq
	}
	t.reset()
	t.known, t.from = true, from
	if n := len(out) - start; n > 0 {
		buf := make([]byte, 0, size)
		t.arr = make([]tailEntry, max(n, 8))
		t.ents = t.arr[:n]
		for i, e := range out[start:] {
			buf = append(buf, e.Msg...)
			t.ents[i] = tailEntry{seq: e.Seq, ts: e.Timestamp, msg: buf[len(buf)-len(e.Msg) : len(buf) : len(buf)], level: e.Level}
		}
		t.chunks = append(t.chunks, tailChunk{buf: buf, last: out[len(out)-1].Seq})
		t.chunkMem, t.msgBytes = int64(cap(buf)), size
	}
	c.account(t)
	sh.mu.Unlock()
	c.evictIfOver()
}

// appended applies a committed append to the cache: a known stream gets
// the entry (a copy of msg), an unknown one a new version. Committer only,
// with Store.smu locked.
func (c *tailCache) appended(src, stream string, seq uint64, ts int64, level Level, msg []byte) {
	sh := c.shard(src, stream)
	sh.mu.Lock()
	if t := sh.m[tailKey{src, stream}]; t != nil {
		t.version++
		if t.known {
			t.append(seq, ts, level, msg)
			c.account(t)
		}
	}
	sh.mu.Unlock()
}

// suspend stops serving src's stream until a committed delete or trim of
// it is applied (deleted, trimmed): called once it is durable, before the
// durable view is dropped, so that no read sees the stream go back in time.
func (c *tailCache) suspend(src, stream string) {
	sh := c.shard(src, stream)
	sh.mu.Lock()
	if t := sh.m[tailKey{src, stream}]; t != nil {
		t.suspended = true
	}
	sh.mu.Unlock()
}

// deleted applies a committed Delete: the stream is known to be empty.
// Committer only, with Store.smu locked.
func (c *tailCache) deleted(src, stream string) {
	sh := c.shard(src, stream)
	sh.mu.Lock()
	t := sh.m[tailKey{src, stream}]
	if t == nil {
		t = c.add(sh, src, stream)
	}
	t.version++
	t.reset()
	t.known, t.from, t.suspended = true, 0, false
	c.account(t)
	sh.mu.Unlock()
}

// trimmed applies a committed retention trim: the entries up to seq are
// gone. Committer only, with Store.smu locked.
func (c *tailCache) trimmed(src, stream string, seq uint64) {
	sh := c.shard(src, stream)
	sh.mu.Lock()
	if t := sh.m[tailKey{src, stream}]; t != nil {
		t.version++
		t.suspended = false
		if t.known {
			n := 0
			for n < len(t.ents) && t.ents[n].seq <= seq {
				n++
			}
			t.dropFront(n)
			if t.from <= seq {
				// Nothing of the stream is left at or below seq, and
				// all above from is cached: the stream is complete.
				t.from = 0
			}
			c.account(t)
		}
	}
	sh.mu.Unlock()
}

// fillTail applies the synced ops of a batch to the tail cache, in
// order, and advances its LRU clock. Committer only, with s.smu locked
// (the heads advanced).
func (s *Store) fillTail(ops []op) {
	c := s.tail
	if c == nil {
		return
	}
	for i := range ops {
		o := &ops[i]
		if o.err != nil {
			continue
		}
		switch o.kind {
		case opAppend:
			c.appended(o.rec.Src, o.rec.Stream, o.seq, o.rec.Timestamp, o.rec.Level, o.rec.Msg)
		case opDelete:
			c.deleted(o.rec.Src, o.rec.Stream)
		case opTrim:
			c.trimmed(o.rec.Src, o.rec.Stream, o.seq)
		}
	}
	c.applying.Store(false)
	c.clock.Add(1)
}

// suspendTail suspends the cached streams the synced ops of a batch delete
// from (suspend), and refuses seeds until fillTail has applied them: a
// List may have read the state before them, and the streams it seeds
// would not be suspended.
func (s *Store) suspendTail(ops []op) {
	if s.tail == nil {
		return
	}
	s.tail.applying.Store(true)
	for i := range ops {
		if o := &ops[i]; o.err == nil && (o.kind == opDelete || o.kind == opTrim) {
			s.tail.suspend(o.rec.Src, o.rec.Stream)
		}
	}
}

// account brings c.used up to date with t's cost. Called with t's shard
// locked.
func (c *tailCache) account(t *tailStream) {
	cost := tailStreamCost + int64(len(t.key.src)+len(t.key.stream)) +
		int64(len(t.arr))*tailEntryCost + t.chunkMem
	if d := cost - t.cost; d != 0 {
		t.cost = cost
		c.used.Add(d)
	}
}

// remove takes t out of the cache. Called with sh locked.
func (c *tailCache) remove(sh *tailShard, t *tailStream) {
	delete(sh.m, t.key)
	t.dropped = true
	t.reset()
	c.used.Add(-t.cost)
	t.cost = 0
}

// evictIfOver evicts the least recently used streams, whole, while the
// cache is over its budget, down to 7/8 of it (so that an eviction pass
// is not needed again at once). A pass under way elsewhere is enough.
func (c *tailCache) evictIfOver() {
	if c == nil || c.used.Load() <= c.budget || !c.evictMu.TryLock() {
		return
	}
	defer c.evictMu.Unlock()
	type cand struct {
		used uint64
		t    *tailStream
	}
	var cs []cand
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		for _, t := range sh.m {
			cs = append(cs, cand{t.used.Load(), t})
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(a.used, b.used) })
	target := c.budget - c.budget/8
	for _, x := range cs {
		if c.used.Load() <= target {
			break
		}
		sh := c.shard(x.t.key.src, x.t.key.stream)
		sh.mu.Lock()
		if sh.m[x.t.key] == x.t {
			c.remove(sh, x.t)
		}
		sh.mu.Unlock()
	}
}

// clear empties the cache (a recovery, Close).
func (c *tailCache) clear() {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, t := range sh.m {
			c.remove(sh, t)
		}
		sh.mu.Unlock()
	}
}

// reset drops t's entries (it stays in the cache, unknown).
func (t *tailStream) reset() {
	t.known, t.from = false, 0
	t.ents, t.arr, t.chunks, t.chunkMem, t.msgBytes = nil, nil, nil, 0, 0
}

// append adds an entry after the newest, copying msg, then keeps the
// stream within its bounds.
func (t *tailStream) append(seq uint64, ts int64, level Level, msg []byte) {
	if len(msg) > tailMaxBytes {
		t.reset()
		t.known, t.from = true, seq // alone over the bound: nothing cached
		return
	}
	var ch *tailChunk
	if n := len(t.chunks); n > 0 && cap(t.chunks[n-1].buf)-len(t.chunks[n-1].buf) >= len(msg) {
		ch = &t.chunks[n-1]
	} else {
		size := tailChunkMin
		if n > 0 {
			size = min(2*cap(t.chunks[n-1].buf), tailChunkMax)
		}
		size = max(size, len(msg))
		t.chunks = append(t.chunks, tailChunk{buf: make([]byte, 0, size)})
		t.chunkMem += int64(size)
		ch = &t.chunks[len(t.chunks)-1]
	}
	start := len(ch.buf)
	ch.buf = append(ch.buf, msg...)
	ch.last = seq
	if n := len(t.ents); n == cap(t.ents) {
		if off := len(t.arr) - n; off > 0 && off >= len(t.arr)/8 {
			// Slide the window back to the start of arr: at the
			// bound, every tailMaxEntries/4 appends, and no allocation.
			copy(t.arr, t.ents)
			clear(t.arr[n:])
			t.ents = t.arr[:n]
		} else {
			size := max(8, 2*n)
			if size > tailMaxEntries+tailMaxEntries/4 {
				size = max(n+1, tailMaxEntries+tailMaxEntries/4)
			}
			t.arr = make([]tailEntry, size)
			copy(t.arr, t.ents)
			t.ents = t.arr[:n]
		}
	}
	t.ents = append(t.ents, tailEntry{seq: seq, ts: ts, msg: ch.buf[start:len(ch.buf):len(ch.buf)], level: level})
	t.msgBytes += int64(len(msg))
	n, size := 0, t.msgBytes
	for len(t.ents)-n > tailMaxEntries || size > tailMaxBytes {
		size -= int64(len(t.ents[n].msg))
		n++
	}
	if n > 0 {
		t.from = t.ents[n-1].seq
		t.dropFront(n)
	}
}

// dropFront drops the n oldest entries, and the chunks left unused.
func (t *tailStream) dropFront(n int) {
	if n == 0 {
		return
	}
	for _, e := range t.ents[:n] {
		t.msgBytes -= int64(len(e.msg))
	}
	last := t.ents[n-1].seq
	clear(t.ents[:n]) // arr must not keep the chunks alive
	t.ents = t.ents[n:]
	if len(t.ents) == 0 {
		t.ents, t.arr = nil, nil
	}
	k := 0
	for k < len(t.chunks) && t.chunks[k].last <= last {
		t.chunkMem -= int64(cap(t.chunks[k].buf))
		k++
	}
	if k > 0 {
		clear(t.chunks[:k])
		t.chunks = t.chunks[k:]
	}
}
