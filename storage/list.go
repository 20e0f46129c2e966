package storage

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// ctxCheckEvery is how many iterator steps List takes between checks of
// its context.
const ctxCheckEvery = 1024

// List returns the entries q selects (PROTOCOL §5), in ascending Seq order,
// only ever durable ones: nothing above the source's durable head at the
// time of the call. q.Limit <= 0 means no limit. The cost is proportional
// to the entries returned (plus, with Last, the entries stepped over to find
// the final Last; plus one seek per stream when Stream is empty), not to
// the size of the log. A query of one stream that the tail cache covers
// reads no Pebble at all (see doc.go, Tail cache). The result is the
// caller's: it may keep and modify it.
func (s *Store) List(ctx context.Context, q Query) ([]Entry, error) {
	return s.list(ctx, q, false)
}

// ListShared is List, except that the Msg of the entries it returns may
// be the store's own memory (its tail cache's), shared with other callers:
// the caller must not modify them. It may keep them, as the store never
// modifies an entry's msg once written. It saves copying the msgs of each
// query the tail cache serves, for callers that only read them (the rpc
// layer encodes them into its response).
func (s *Store) ListShared(ctx context.Context, q Query) ([]Entry, error) {
	return s.list(ctx, q, true)
}

func (s *Store) list(ctx context.Context, q Query, shared bool) ([]Entry, error) {
	return s.listCounting(ctx, q, shared, nil)
}

// listCounting is list; if read is not nil, it adds the bytes of the
// Pebble blocks the List loaded (from the cache or the disk) to it.
func (s *Store) listCounting(ctx context.Context, q Query, shared bool, read *uint64) ([]Entry, error) {
	if !validName(q.Src) {
		return nil, fmt.Errorf("list: %w: source %q", ErrInvalid, q.Src)
	}
	if q.Stream != "" && !validName(q.Stream) {
		return nil, fmt.Errorf("list: %w: stream %q", ErrInvalid, q.Stream)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	q.Filter = q.Filter.Prepared()
	if q.Filter != nil && q.Filter.none() {
		return nil, nil // nothing to scan for (until <= since)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	if q.Stream != "" && q.Last != 0 && q.Filter == nil {
		if out, ok := s.tail.list(q, shared); ok {
			return out, nil
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = math.MaxInt
	}
	// Seed the tail cache from what Pebble returns if that is the whole
	// stream above some bound, up to the head: the final Last, or all.
	seedable := s.tail != nil && q.Stream != "" && q.Filter == nil && (q.Last < 0 || (q.Last > 0 && q.Last <= limit))
	head, watch, version, err := s.headAndWatch(q, seedable)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	if q.Last == 0 || q.After >= head {
		if watch != nil {
			s.tail.seed(watch, version, nil, head) // none above head: complete from it
		}
		return nil, nil
	}
	r, release := s.reader()
	defer release()
	l := lister{db: r, q: q, head: head, limit: limit, f: q.Filter, yield: &s.lifeWanted, read: read}
	out, err := l.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	if watch != nil {
		switch {
		case q.Last > 0 && len(out) == q.Last:
			s.tail.seed(watch, version, out, out[0].Seq-1)
		case q.Last > 0 || len(out) < limit:
			s.tail.seed(watch, version, out, q.After) // all of (After, head]
		}
	}
	return out, nil
}

// headAndWatch returns the durable head of q.Src and, if watch, the tail
// cache's record of q's stream with its version, all taken under s.smu:
// the committer advances the heads and bumps the versions of the streams a
// batch touched together, under s.smu, so an unchanged version later
// proves that no entry of the stream was committed above head since.
func (s *Store) headAndWatch(q Query, watch bool) (head uint64, t *tailStream, version uint64, err error) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	if watch {
		t, version = s.tail.watch(q.Src, q.Stream)
	}
	if st := s.sources[q.Src]; st != nil {
		return st.head, t, version, nil
	}
	head, err = s.loadSeq(q.Src)
	return head, t, version, err
}

// cursor walks the entries of one stream with seq in (After, head].
type cursor struct {
	it     *pebble.Iterator
	stream string
	prefix []byte // the stream's key prefix, with room for a seq after it
	seq    uint64 // of the current position
}

// seekGE positions c at its first entry with sequence >= seq.
func (c *cursor) seekGE(seq uint64) bool {
	k := binary.BigEndian.AppendUint64(c.prefix[:len(c.prefix):len(c.prefix)], seq)
	if !c.it.SeekGE(k) {
		return false
	}
	c.seq = keySeq(c.it.Key())
	return true
}

// seekLE positions c at its last entry with sequence <= seq.
func (c *cursor) seekLE(seq uint64) bool {
	if seq == math.MaxUint64 {
		return c.step(c.it.Last())
	}
	k := binary.BigEndian.AppendUint64(c.prefix[:len(c.prefix):len(c.prefix)], seq+1)
	return c.step(c.it.SeekLT(k))
}

func (c *cursor) step(ok bool) bool {
	if ok {
		c.seq = keySeq(c.it.Key())
	}
	return ok
}

// cursorHeap orders cursors by seq: smallest first, or largest if desc.
type cursorHeap struct {
	cs   []*cursor
	desc bool
}

func (h *cursorHeap) Len() int { return len(h.cs) }
func (h *cursorHeap) Less(i, j int) bool {
	if h.desc {
		return h.cs[i].seq > h.cs[j].seq
	}
	return h.cs[i].seq < h.cs[j].seq
}
func (h *cursorHeap) Swap(i, j int) { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *cursorHeap) Push(x any)    { h.cs = append(h.cs, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}

// lister runs one List.
type lister struct {
	db      pebble.Reader // the database, or the durable view
	q       Query
	head    uint64
	limit   int
	cursors []*cursor
	heap    cursorHeap
	steps   int

	// A filtered List: f keeps entries; blocks skips the blocks of
	// sequences whose timestamps lie outside f's range; buf is f's
	// scratch; the value under the heap's top cursor, decoded.
	f      *Filter
	blocks *blockSkip
	buf    []byte
	ts     int64
	level  Level
	msg    []byte
	// yield is the store's count of goroutines waiting to lock it
	// (Close, a recovery): a filtered scan gives up for them.
	yield *atomic.Int32
	read  *uint64 // if not nil: add the block bytes the iterators loaded

	want int // how many entries the result will likely hold (0: unknown)
	out  []Entry
	slab []byte // every returned Msg, back to back
	ends []int  // end of out[i].Msg in slab
}

// maxReserve bounds what the lister reserves up front for its result.
const maxReserve = 1024

func (l *lister) run(ctx context.Context) (out []Entry, err error) {
	defer func() {
		for _, c := range l.cursors {
			if l.read != nil {
				*l.read += c.it.Stats().InternalStats.BlockBytes
			}
			err = errors.Join(err, c.it.Error(), c.it.Close())
		}
		if l.blocks != nil {
			if l.read != nil {
				*l.read += l.blocks.it.Stats().InternalStats.BlockBytes
			}
			err = errors.Join(err, l.blocks.it.Error(), l.blocks.it.Close())
		}
		if err != nil {
			out = nil
		}
	}()
	if err := l.open(); err != nil {
		return nil, err
	}
	if len(l.cursors) == 0 {
		return nil, nil
	}
	from := l.q.After + 1
	if l.q.Last > 0 {
		// Walk back from the head to find the first of the final Last
		// (matching) entries. When Last <= limit those are exactly the
		// result: collect them.
		collect := l.q.Last <= l.limit
		if collect {
			l.want = l.q.Last
		}
		l.heap = cursorHeap{cs: l.heap.cs[:0], desc: true}
		for _, c := range l.cursors {
			if c.step(c.it.Last()) {
				l.heap.cs = append(l.heap.cs, c)
			}
		}
		heap.Init(&l.heap)
		n := 0
		for n < l.q.Last && len(l.heap.cs) > 0 {
			if err := l.tick(ctx); err != nil {
				return nil, err
			}
			c := l.heap.cs[0]
			if l.blocks != nil {
				if to := l.blocks.backward(c.seq); to < c.seq {
					l.moveTop(c.seekLE(to))
					continue
				}
			}
			keep, err := l.decode(c)
			if err != nil {
				return nil, err
			}
			if keep {
				from = c.seq
				if collect {
					l.add(c)
				}
				n++
			}
			l.moveTop(c.step(c.it.Prev()))
		}
		if collect || n == 0 {
			l.finish()
			for i, j := 0, len(l.out)-1; i < j; i, j = i+1, j-1 {
				l.out[i], l.out[j] = l.out[j], l.out[i]
			}
			return l.out, nil
		}
	}
	// Merge forward from the first wanted sequence.
	if l.limit != math.MaxInt {
		l.want = l.limit
	}
	l.heap = cursorHeap{cs: l.heap.cs[:0]}
	for _, c := range l.cursors {
		if c.seekGE(from) {
			l.heap.cs = append(l.heap.cs, c)
		}
	}
	heap.Init(&l.heap)
	for len(l.out) < l.limit && len(l.heap.cs) > 0 {
		if err := l.tick(ctx); err != nil {
			return nil, err
		}
		c := l.heap.cs[0]
		if l.blocks != nil {
			if to := l.blocks.forward(c.seq); to > c.seq {
				l.moveTop(c.seekGE(to))
				continue
			}
		}
		keep, err := l.decode(c)
		if err != nil {
			return nil, err
		}
		if keep {
			l.add(c)
		}
		l.moveTop(c.step(c.it.Next()))
	}
	l.finish()
	return l.out, nil
}

// moveTop restores the heap after its top cursor moved (ok) or ran out.
func (l *lister) moveTop(ok bool) {
	switch {
	case !ok:
		heap.Pop(&l.heap)
	case len(l.heap.cs) > 1:
		heap.Fix(&l.heap, 0)
	}
}

// errYield ends a filtered scan that Close or a recovery waits for.
var errYield = fmt.Errorf("%w: scan interrupted by a close or reopen", ErrClosed)

// tick checks ctx now and then, and gives way to Close and recovery: a
// filtered scan may run for seconds, and while one of them waits for the
// store's lock every other read would wait behind it.
func (l *lister) tick(ctx context.Context) error {
	l.steps++
	if l.steps%ctxCheckEvery == 0 {
		if l.f != nil && l.yield != nil && l.yield.Load() > 0 {
			return errYield
		}
		return ctx.Err()
	}
	return nil
}

// open makes one cursor per stream to read, each bounded to the sequences
// (After, head].
func (l *lister) open() error {
	if l.f != nil && l.f.timed() {
		b, err := newBlockSkip(l.db, l.q.Src, l.q.After, l.head, l.f)
		if err != nil {
			return err
		}
		l.blocks = b
	}
	if l.q.Stream != "" {
		prefix := appendStreamPrefix(make([]byte, 0, entryKeyLen(l.q.Src, l.q.Stream)), l.q.Src, l.q.Stream)
		it, err := l.db.NewIter(l.bounds(prefix))
		if err != nil {
			return err
		}
		l.cursors = append(l.cursors, &cursor{it: it, stream: l.q.Stream, prefix: prefix})
		return nil
	}
	// Skip-scan the source's streams: one seek per stream.
	srcPrefix := appendSourcePrefix(nil, l.q.Src)
	disc, err := l.db.NewIter(&pebble.IterOptions{
		LowerBound: srcPrefix,
		UpperBound: appendSourceEnd(nil, l.q.Src),
	})
	if err != nil {
		return err
	}
	var seek []byte
	for valid := disc.SeekGE(srcPrefix); valid; valid = disc.SeekGE(seek) {
		stream := string(keyStream(disc.Key(), len(srcPrefix)))
		prefix := appendStreamPrefix(make([]byte, 0, entryKeyLen(l.q.Src, stream)), l.q.Src, stream)
		// A clone shares disc's view of the database: every stream is read
		// at the same point in time.
		it, err := disc.Clone(pebble.CloneOptions{IterOptions: l.bounds(prefix)})
		if err != nil {
			return errors.Join(err, disc.Close())
		}
		l.cursors = append(l.cursors, &cursor{it: it, stream: stream, prefix: prefix})
		seek = appendStreamEnd(seek[:0], l.q.Src, stream)
	}
	return errors.Join(disc.Error(), disc.Close())
}

// bounds returns iterator options limiting a stream (by its key prefix) to
// the sequences (After, head].
func (l *lister) bounds(prefix []byte) *pebble.IterOptions {
	n := len(prefix)
	buf := make([]byte, 0, 2*(n+seqLen))
	lower := binary.BigEndian.AppendUint64(append(buf, prefix...), l.q.After+1)
	var upper []byte
	if l.head == math.MaxUint64 {
		upper = append(lower[len(lower):], prefix[:n-1]...)
		upper = append(upper, sep+1)
	} else {
		upper = binary.BigEndian.AppendUint64(append(lower[len(lower):], prefix...), l.head+1)
	}
	return &pebble.IterOptions{LowerBound: lower, UpperBound: upper}
}

// decode decodes the value under c into l.ts, l.level and l.msg, and
// reports whether the entry passes the filter.
func (l *lister) decode(c *cursor) (bool, error) {
	v, err := c.it.ValueAndErr()
	if err != nil {
		return false, err
	}
	l.ts, l.level, l.msg, err = DecodeValue(v)
	if err != nil {
		return false, fmt.Errorf("entry %d of %q/%q: %w", c.seq, l.q.Src, c.stream, err)
	}
	return l.f == nil || l.f.keep(l.ts, l.level, l.msg, &l.buf), nil
}

// add appends the entry under c, just decoded, to the result.
func (l *lister) add(c *cursor) {
	msg := l.msg
	if l.out == nil && l.want > 0 {
		// Reserve for the whole result, guessing every msg is about as
		// long as the first: one allocation each instead of a doubling
		// series.
		n := min(l.want, maxReserve)
		l.out = make([]Entry, 0, n)
		l.ends = make([]int, 0, n)
		l.slab = make([]byte, 0, n*(len(msg)+len(msg)/4+16))
	}
	l.slab = append(l.slab, msg...)
	l.ends = append(l.ends, len(l.slab))
	l.out = append(l.out, Entry{Seq: c.seq, Src: l.q.Src, Stream: c.stream, Timestamp: l.ts, Level: l.level})
}

// finish points each entry's Msg into the slab. Each Msg is capped, so
// appending to one cannot clobber the next.
func (l *lister) finish() {
	start := 0
	for i := range l.out {
		end := l.ends[i]
		l.out[i].Msg = l.slab[start:end:end]
		start = end
	}
}
