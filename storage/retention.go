package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DefaultRetentionInterval is the default of Retention.Interval.
const DefaultRetentionInterval = time.Minute

// minuteMillis is the width of an age mark: the store knows each entry's
// append time to the minute.
const minuteMillis = 60_000

// Retention bounds what the store keeps. A zero field is no bound; the zero
// value keeps everything. A background goroutine applies it every Interval:
// it removes the oldest entries (by sequence) that are past a bound, never
// an entry that is not yet durable, and never touches sequences, so ids
// are not reused.
type Retention struct {
	// MaxAge removes entries appended longer ago than this, by the
	// store's clock at append time (not the client's timestamp, which can
	// be anything), to the minute: an entry goes between MaxAge and MaxAge
	// plus a minute (plus Interval) after it was appended.
	MaxAge time.Duration
	// MaxEntriesPerStream keeps at most this many entries in each stream,
	// removing the oldest.
	MaxEntriesPerStream int64
	// MaxBytesPerSource keeps at most this many bytes of entries per
	// source (keys and values as stored, before compression: about the
	// msg plus the stream and source names plus 12 bytes), removing the
	// source's oldest entries across its streams.
	MaxBytesPerSource int64
	// Interval is how often the bounds are applied; 0 means
	// DefaultRetentionInterval. Between two runs a bound can be exceeded
	// by what arrives meanwhile.
	Interval time.Duration
}

func (r Retention) enabled() bool {
	return r.MaxAge > 0 || r.MaxEntriesPerStream > 0 || r.MaxBytesPerSource > 0
}

// minute returns the current minute of the store's clock, the key of the
// age marks written now.
func (s *Store) minute() uint64 {
	ms := s.now().UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) / minuteMillis
}

// retentionLoop applies the retention bounds every Interval until Close.
func (s *Store) retentionLoop() {
	every := s.retention.Interval
	if every <= 0 {
		every = DefaultRetentionInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.failed.Load() != nil {
			continue // nothing can be written (a full disk is fine: retention frees space)
		}
		n, err := s.retain(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFailed):
			s.log.Warn("storage: retention", "err", err)
		case n > 0:
			s.log.Info("storage: retention removed entries", "entries", n)
		}
	}
}

// retainChunk is how many sources one retention step plans before it
// queues their trims: each step's trims go into one group commit, so the
// range tombstones Pebble must fragment for every new iterator change once
// per step, not once per source.
const retainChunk = 256

// retain applies the retention bounds once to every source and returns how
// many entries it removed.
func (s *Store) retain(ctx context.Context) (int64, error) {
	srcs, err := s.retentionSources(ctx)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	now := s.now()
	var removed int64
	var plans []sourcePlan
	for i, src := range srcs {
		p, err := s.planRetention(ctx, src, now)
		if err != nil {
			return removed, fmt.Errorf("retention of %q: %w", src, err)
		}
		if p.work() {
			plans = append(plans, p)
		}
		if len(plans) == retainChunk || (i == len(srcs)-1 && len(plans) > 0) {
			n, err := s.trim(ctx, plans)
			removed += n
			if err != nil {
				return removed, fmt.Errorf("retention: %w", err)
			}
			plans = plans[:0]
		}
	}
	return removed, nil
}

// retentionSources lists every source ever written, from the 'q' keys.
func (s *Store) retentionSources(ctx context.Context) (srcs []string, err error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{seqPrefix}, UpperBound: []byte{seqPrefix + 1}})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	var r catalogReader
	for valid := it.First(); valid; valid = it.Next() {
		if err := r.tick(ctx); err != nil {
			return nil, err
		}
		srcs = append(srcs, string(it.Key()[1:]))
	}
	return srcs, nil
}

// streamPlan is what retention does to one stream of a source.
type streamPlan struct {
	key          countKey
	count, bytes int64  // entries and bytes up to the durable head
	cut          uint64 // remove entries up to this sequence (0: none)
	delN, delB   int64  // entries and bytes removed by the cut
	next         uint64 // the first entry kept (0: none up to the head)
	prefix       []byte
}

// sourcePlan is what retention does to one source.
type sourcePlan struct {
	src        string
	streams    []streamPlan // only those with a cut
	head       uint64       // the durable head the plan was made at
	markMinute uint64       // remove the age marks below it (0: none)
}

func (p *sourcePlan) work() bool { return len(p.streams) > 0 || p.markMinute > 0 }

// trim queues the cuts of plans to the committer (one DeleteRange per
// stream, all in the next group commit, synced), waits for them, and
// records the streams' new counts.
func (s *Store) trim(ctx context.Context, plans []sourcePlan) (int64, error) {
	var ws []*waiter
	queue := func(o op) error {
		o.w = waiterPool.Get().(*waiter)
		if !s.enqueue(o) {
			waiterPool.Put(o.w)
			return ErrClosed
		}
		ws = append(ws, o.w)
		return nil
	}
	var errs []error
queueing:
	for _, sp := range plans {
		for _, p := range sp.streams {
			if err := queue(op{kind: opTrim, rec: Record{Src: sp.src, Stream: p.key.stream}, seq: p.cut}); err != nil {
				errs = append(errs, err)
				break queueing
			}
		}
		if sp.markMinute > 0 {
			if err := queue(op{kind: opTrimMarks, rec: Record{Src: sp.src}, seq: sp.markMinute}); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	for _, w := range ws {
		if _, err := s.wait(ctx, w, "trim"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	var removed int64
	for _, sp := range plans {
		for _, p := range sp.streams {
			removed += p.delN
			if p.next != 0 {
				// The stream now starts at p.next: keep its count, so
				// that Streams (and the next run) need not count it again.
				s.marks.put(p.key, countMark{first: p.next, upto: sp.head, count: p.count - p.delN, bytes: p.bytes - p.delB})
			}
		}
	}
	s.stats.expired.Add(uint64(removed))
	return removed, nil
}

// planRetention finds, for each stream of src, the last durable entry the
// bounds remove, reading only.
func (s *Store) planRetention(ctx context.Context, src string, now time.Time) (sp sourcePlan, err error) {
	sp.src = src
	plans, head, markMinute, err := s.planStreams(ctx, src, now)
	if err != nil {
		return sp, err
	}
	sp.head, sp.markMinute = head, markMinute
	for _, p := range plans {
		if p.delN > 0 {
			sp.streams = append(sp.streams, p)
		}
	}
	return sp, nil
}

// planStreams plans every stream of src. markMinute > 0 means the age
// marks below it are no longer needed.
func (s *Store) planStreams(ctx context.Context, src string, now time.Time) (plans []streamPlan, head, markMinute uint64, err error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return nil, 0, 0, err
	}
	if head, err = s.durableHead(src); err != nil || head == 0 {
		return nil, 0, 0, err
	}
	rt := s.retention
	var ageCut uint64
	if rt.MaxAge > 0 {
		if ageCut, markMinute, err = s.ageCut(src, now.Add(-rt.MaxAge)); err != nil {
			return nil, 0, 0, err
		}
		ageCut = min(ageCut, head)
	}

	srcPrefix := appendSourcePrefix(nil, src)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: srcPrefix, UpperBound: appendSourceEnd(nil, src)})
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	r := catalogReader{marks: &s.marks}
	for valid := it.SeekGE(srcPrefix); valid; valid = it.SeekGE(r.end) {
		if err := r.tick(ctx); err != nil {
			return nil, 0, 0, err
		}
		key := it.Key()
		first := keySeq(key)
		r.setStream(key)
		if first > head {
			continue // nothing durable yet
		}
		p := streamPlan{
			key:    countKey{src, string(r.prefix[len(srcPrefix) : len(r.prefix)-1])},
			prefix: bytes.Clone(r.prefix),
			next:   first,
		}
		if p.count, p.bytes, err = r.count(ctx, it, p.key, first, head); err != nil {
			return nil, 0, 0, err
		}
		var over int64
		if rt.MaxEntriesPerStream > 0 && p.count > rt.MaxEntriesPerStream {
			over = p.count - rt.MaxEntriesPerStream
		}
		if ageCut >= first || over > 0 {
			// Step over the oldest entries the age or count bound removes.
			r.seek = binary.BigEndian.AppendUint64(append(r.seek[:0], r.prefix...), first)
			p.next = 0
			for valid := it.SeekGE(r.seek); valid; valid = it.Next() {
				k := it.Key()
				seq := keySeq(k)
				if !bytes.HasPrefix(k, r.prefix) || seq > head {
					break
				}
				if seq > ageCut && p.delN >= over {
					p.next = seq
					break
				}
				if err := r.tick(ctx); err != nil {
					return nil, 0, 0, err
				}
				p.cut, p.delN, p.delB = seq, p.delN+1, p.delB+entrySize(it)
			}
			if err := it.Error(); err != nil {
				return nil, 0, 0, err
			}
		}
		plans = append(plans, p)
	}
	if rt.MaxBytesPerSource > 0 {
		if err := s.planBytes(ctx, it, plans, head, rt.MaxBytesPerSource, &r); err != nil {
			return nil, 0, 0, err
		}
	}
	return plans, head, markMinute, nil
}

// planBytes extends the cuts of plans until the source's entries up to
// head take at most limit bytes, removing its oldest entries first, across
// streams: one cursor per stream, the lowest sequence goes next.
func (s *Store) planBytes(ctx context.Context, it *pebble.Iterator, plans []streamPlan, head uint64, limit int64, r *catalogReader) error {
	var total int64
	for i := range plans {
		total += plans[i].bytes - plans[i].delB
	}
	if total <= limit {
		return nil
	}
	curs := make([]*pebble.Iterator, len(plans))
	defer func() {
		for _, c := range curs {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	for i := range plans {
		if plans[i].next == 0 {
			continue
		}
		c, err := it.Clone(pebble.CloneOptions{})
		if err != nil {
			return err
		}
		curs[i] = c
		c.SeekGE(binary.BigEndian.AppendUint64(bytes.Clone(plans[i].prefix), plans[i].next))
	}
	for total > limit {
		if err := r.tick(ctx); err != nil {
			return err
		}
		best := -1
		for i, p := range plans {
			if p.next != 0 && (best < 0 || p.next < plans[best].next) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		p, c := &plans[best], curs[best]
		n := entrySize(c)
		p.cut, p.delN, p.delB = p.next, p.delN+1, p.delB+n
		total -= n
		p.next = 0
		if c.Next() && bytes.HasPrefix(c.Key(), p.prefix) {
			if seq := keySeq(c.Key()); seq <= head {
				p.next = seq
			}
		}
		if err := c.Error(); err != nil {
			return err
		}
	}
	return nil
}

// ageCut returns the highest sequence of src appended before cutoff, by
// the age marks (0: none), and the minute of the mark that says so when
// older marks exist (else 0): those are no longer needed.
func (s *Store) ageCut(src string, cutoff time.Time) (seq, minute uint64, err error) {
	ms := cutoff.UnixMilli()
	if ms < minuteMillis {
		return 0, 0, nil
	}
	// A mark of minute m covers entries appended before (m+1) minutes:
	// the marks of the minutes below ms/minuteMillis qualify.
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendAgePrefix(nil, src),
		UpperBound: appendAgeKey(nil, src, uint64(ms)/minuteMillis),
	})
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	if !it.Last() {
		return 0, 0, nil
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, 0, err
	}
	if len(v) != seqLen {
		return 0, 0, fmt.Errorf("age mark of %q: %w", src, ErrCorrupt)
	}
	seq, minute = binary.BigEndian.Uint64(v), keySeq(it.Key())
	if !it.Prev() {
		minute = 0 // no older mark to remove
	}
	return seq, minute, nil
}
