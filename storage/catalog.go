package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// SourceQuery selects sources for Sources, in ascending byte order of their
// names.
type SourceQuery struct {
	Prefix string // only sources whose name starts with Prefix ("": all)
	After  string // only sources whose name sorts above After ("": from the first)
	Limit  int    // <= 0 means no limit (callers clamp it)
}

// SourceInfo describes one log source: where its log ends.
type SourceInfo struct {
	Src string
	// LastSeq is the sequence of the source's latest entry, in any stream.
	// When Empty, it is the source's last sequence (Head) instead: a
	// position to list from, naming no entry.
	LastSeq uint64
	// LastTimestamp is the timestamp of that entry; 0 when Empty.
	LastTimestamp int64
	// Empty reports that every entry of the source has been deleted.
	Empty bool
}

// StreamInfo describes one stream of a source.
type StreamInfo struct {
	Stream        string
	Count         int64  // entries in the stream
	LastSeq       uint64 // sequence of its latest entry
	LastTimestamp int64  // timestamp of its latest entry
}

// Sources returns the sources q selects that have at least one durable
// entry, or had one since deleted (then Empty is set). Its cost is one
// iterator step per source listed plus two seeks per stream of each, so a
// page of sources costs the same however large the log is.
func (s *Store) Sources(ctx context.Context, q SourceQuery) ([]SourceInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	out, err := s.catalogSources(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	return out, nil
}

func (s *Store) catalogSources(ctx context.Context, q SourceQuery) (out []SourceInfo, err error) {
	// The 'q' keys of the sources: one per source ever written, sorted by
	// name. Entries are read through a clone, at the same point in time.
	lower := appendSeqKey(nil, q.Prefix)
	if q.After >= q.Prefix {
		lower = append(appendSeqKey(lower[:0], q.After), sep) // the least key above After's
	}
	upper := prefixEnd(appendSeqKey(nil, q.Prefix))
	if bytes.Compare(lower, upper) >= 0 {
		return nil, nil // After is past every source with the prefix
	}
	r, release := s.reader()
	defer release()
	qit, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, qit.Error(), qit.Close()) }()
	eit, err := qit.Clone(pebble.CloneOptions{})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, eit.Error(), eit.Close()) }()
	var cr catalogReader
	for valid := qit.First(); valid && (q.Limit <= 0 || len(out) < q.Limit); valid = qit.Next() {
		if err := cr.tick(ctx); err != nil {
			return nil, err
		}
		src := string(qit.Key()[1:])
		v, err := qit.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if len(v) != seqLen {
			return nil, fmt.Errorf("sequence of %q: %w", src, ErrCorrupt)
		}
		head, err := s.durableHead(src)
		if err != nil {
			return nil, err
		}
		// The view holds the source's 'q' key, so every entry of it up
		// to that sequence that is not deleted; read no further than
		// what is durable.
		h := min(head, binary.BigEndian.Uint64(v))
		if h == 0 {
			continue // a first batch not yet synced
		}
		info, err := cr.lastOfSource(ctx, eit, src, h)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Streams returns the streams of src that hold durable entries, by name,
// each with its entry count and latest entry. Finding them costs two seeks
// per stream; counting costs one iterator step per entry the first time a
// stream is counted, then one per entry added since (see doc.go, Caveats).
func (s *Store) Streams(ctx context.Context, src string) ([]StreamInfo, error) {
	if !validName(src) {
		return nil, fmt.Errorf("streams: %w: source %q", ErrInvalid, src)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	// The head first, then the view: every entry up to the head is in it.
	head, err := s.durableHead(src)
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	if head == 0 {
		return nil, nil
	}
	out, err := s.catalogStreams(ctx, src, head)
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	return out, nil
}

func (s *Store) catalogStreams(ctx context.Context, src string, head uint64) (out []StreamInfo, err error) {
	srcPrefix := appendSourcePrefix(nil, src)
	rd, release := s.reader()
	defer release()
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: srcPrefix, UpperBound: appendSourceEnd(nil, src)})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	r := catalogReader{marks: &s.marks}
	for valid := it.SeekGE(srcPrefix); valid; valid = it.SeekGE(r.end) {
		if err := r.tick(ctx); err != nil {
			return nil, err
		}
		key := it.Key()
		first := keySeq(key)
		r.setStream(key)
		if first > head {
			continue // its entries are not durable yet
		}
		last, ts, ok, err := r.last(it, head)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("stream %q of %q: entry %d vanished from the view", r.prefix, src, first)
		}
		info := StreamInfo{Stream: string(r.prefix[len(srcPrefix) : len(r.prefix)-1]), LastSeq: last, LastTimestamp: ts}
		if info.Count, _, err = r.count(ctx, it, countKey{src, info.Stream}, first, head); err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// catalogReader holds the scratch of one Sources or Streams call.
type catalogReader struct {
	marks  *markCache // the store's remembered counts
	prefix []byte     // the current stream's key prefix: 'e' src 0x00 stream 0x00
	end    []byte     // the least key above the current stream's
	seek   []byte
	src    []byte
	steps  int
}

// tick checks ctx now and then.
func (r *catalogReader) tick(ctx context.Context) error {
	r.steps++
	if r.steps%ctxCheckEvery == 0 {
		return ctx.Err()
	}
	return nil
}

// setStream makes the stream of the entry key its current stream.
func (r *catalogReader) setStream(key []byte) {
	r.prefix = append(r.prefix[:0], key[:len(key)-seqLen]...)
	r.end = append(r.end[:0], r.prefix...)
	r.end[len(r.end)-1] = sep + 1
}

// last positions it at the current stream's latest entry with a sequence
// <= h, by one reverse seek, and returns it; ok is false if there is none.
func (r *catalogReader) last(it *pebble.Iterator, h uint64) (seq uint64, ts int64, ok bool, err error) {
	if h == math.MaxUint64 {
		r.seek = append(r.seek[:0], r.end...)
	} else {
		r.seek = binary.BigEndian.AppendUint64(append(r.seek[:0], r.prefix...), h+1)
	}
	if !it.SeekLT(r.seek) || !bytes.HasPrefix(it.Key(), r.prefix) {
		return 0, 0, false, nil
	}
	seq = keySeq(it.Key())
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, 0, false, err
	}
	ts, _, _, err = DecodeValue(v)
	if err != nil {
		return 0, 0, false, fmt.Errorf("entry %d of %q: %w", seq, r.prefix, err)
	}
	return seq, ts, true, nil
}

// lastOfSource finds the latest entry of src with a sequence <= h, over all
// its streams: one forward seek to find each stream, one reverse seek to
// find its last entry.
func (r *catalogReader) lastOfSource(ctx context.Context, it *pebble.Iterator, src string, h uint64) (SourceInfo, error) {
	info := SourceInfo{Src: src}
	r.src = appendSourcePrefix(r.src[:0], src)
	srcPrefix := r.src
	r.seek = appendSourceEnd(r.seek[:0], src)
	it.SetBounds(srcPrefix, r.seek) // copied: r.seek is free again
	for valid := it.SeekGE(srcPrefix); valid; valid = it.SeekGE(r.end) {
		if err := r.tick(ctx); err != nil {
			return info, err
		}
		r.setStream(it.Key())
		seq, ts, ok, err := r.last(it, h)
		if err != nil {
			return info, err
		}
		if ok && seq > info.LastSeq {
			info.LastSeq, info.LastTimestamp = seq, ts
		}
	}
	if info.LastSeq == 0 {
		info.LastSeq, info.Empty = h, true
	}
	return info, nil
}

// count returns how many entries the current stream holds with sequences
// in [first, h], first being its first entry, and their bytes (keys and
// values as stored, before compression). It counts from the mark left by an
// earlier count of the stream when that mark still holds.
func (r *catalogReader) count(ctx context.Context, it *pebble.Iterator, k countKey, first, h uint64) (int64, int64, error) {
	from, n, size := first, int64(0), int64(0)
	if m, ok := r.marks.get(k); ok && m.first == first && m.upto <= h {
		// The stream's first entry is still there, so no Delete has
		// removed anything of it since the mark (a Delete removes the
		// whole stream, retention the oldest entries and then updates the
		// mark, sequences are never reused), and nothing can be added at
		// or below the mark's durable head: its count stands.
		if m.upto == h {
			return m.count, m.bytes, nil
		}
		from, n, size = m.upto+1, m.count, m.bytes
	}
	r.seek = binary.BigEndian.AppendUint64(append(r.seek[:0], r.prefix...), from)
	for valid := it.SeekGE(r.seek); valid; valid = it.Next() {
		key := it.Key()
		if !bytes.HasPrefix(key, r.prefix) || keySeq(key) > h {
			break
		}
		if err := r.tick(ctx); err != nil {
			return 0, 0, err
		}
		n++
		size += entrySize(it)
	}
	if err := it.Error(); err != nil {
		return 0, 0, err
	}
	r.marks.put(k, countMark{first: first, upto: h, count: n, bytes: size})
	return n, size, nil
}

// entrySize is the size of the entry it is at: its key and value as
// stored, before compression. The value is not read.
func entrySize(it *pebble.Iterator) int64 {
	lv := it.LazyValue()
	return int64(len(it.Key()) + lv.Len())
}

// prefixEnd returns the least key above every key that starts with p (nil:
// none, p is all 0xff). It modifies p.
func prefixEnd(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			p[i]++
			return p[:i+1]
		}
	}
	return nil
}

// countKey names a stream of a source.
type countKey struct {
	src, stream string
}

// countMark is a count taken earlier: the stream held count entries (of
// bytes bytes) with sequences in [first, upto], first being its first entry.
type countMark struct {
	first, upto  uint64
	count, bytes int64
}

// maxCountMarks bounds the marks kept (about 100 bytes each).
const maxCountMarks = 1 << 14

// markCache remembers stream counts across Streams calls (Store.marks), so
// that a dashboard polling a long stream costs the entries added since its
// last poll, not the whole stream. The commit path leaves it alone: nothing
// on the write side updates or invalidates it; a mark is checked against
// the stream's first entry when used. The zero value is ready to use.
type markCache struct {
	mu sync.Mutex // a leaf: held only to read or write m
	m  map[countKey]countMark
}

func (c *markCache) get(k countKey) (countMark, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[k]
	return m, ok
}

// put keeps m for k, dropping an arbitrary mark when full.
func (c *markCache) put(k countKey, m countMark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[countKey]countMark)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxCountMarks {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = m
}
