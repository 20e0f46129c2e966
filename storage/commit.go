package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// opKind says what a queued op does.
type opKind uint8

const (
	opAppend    opKind = iota
	opDelete           // delete every entry of rec.Src in rec.Stream
	opTrim             // retention: delete the entries of rec.Src in rec.Stream up to seq
	opTrimMarks        // retention: delete the age marks of rec.Src below minute seq
	opDuplicate        // an append whose rec.Dedup names the entry seq, stored before: nothing to write
)

// op is one queued call. Exactly one of done and w is set for appends; w is
// set for deletes.
type op struct {
	rec  Record
	done func(Entry, error)
	w    *waiter
	seq  uint64 // assigned by the committer
	err  error  // the call failed (not yet wrapped with the operation)
	kind opKind
}

// size estimates the bytes op adds to a batch.
func (o *op) size() int {
	n := 2*len(o.rec.Src) + 2*len(o.rec.Stream) + 32
	if o.kind == opAppend {
		n += len(o.rec.Msg)
	}
	return n
}

func (o *op) wrapErr() error {
	switch o.kind {
	case opDelete:
		return fmt.Errorf("delete: %w", o.err)
	case opTrim, opTrimMarks:
		return fmt.Errorf("trim: %w", o.err)
	}
	return fmt.Errorf("append: %w", o.err)
}

// waiter is how a synchronous call (Append, Delete) waits for its op.
// Waiters are pooled; one whose caller gave up (ctx) is left to the GC.
type waiter struct {
	ch  chan struct{} // cap 1
	e   Entry
	err error
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// group is a committed (or failed) run of ops, waiting for delivery.
type group struct {
	ops []op
	buf []op // set on the last group of a drained queue: recycled after delivery
}

// Append stores rec and returns its entry once it is durable (synced). If
// ctx ends first it returns ctx's error; the entry may still be stored.
// rec.Msg must not be modified until Append returns.
func (s *Store) Append(ctx context.Context, rec Record) (Entry, error) {
	if err := checkNames(rec.Src, rec.Stream); err != nil {
		return Entry{}, fmt.Errorf("append: %w", err)
	}
	if err := s.precheck(ctx); err != nil {
		return Entry{}, fmt.Errorf("append: %w", err)
	}
	w := waiterPool.Get().(*waiter)
	if !s.enqueue(op{kind: opAppend, rec: rec, w: w}) {
		waiterPool.Put(w)
		return Entry{}, fmt.Errorf("append: %w", ErrClosed)
	}
	return s.wait(ctx, w, "append")
}

// AppendAsync queues rec and returns at once. done (if not nil) runs exactly
// once, on another goroutine, when the entry is durable or has failed.
// Records queued by one goroutine, and the Deletes it issues after them,
// take effect in the order it queued them. rec.Msg must not be modified
// until done runs.
func (s *Store) AppendAsync(rec Record, done func(Entry, error)) {
	if err := checkNames(rec.Src, rec.Stream); err != nil {
		s.refuse(done, err)
		return
	}
	if !s.enqueue(op{kind: opAppend, rec: rec, done: done}) {
		s.refuse(done, ErrClosed)
	}
}

// refuse fails an AppendAsync that was never queued, on another goroutine
// as promised.
func (s *Store) refuse(done func(Entry, error), err error) {
	if done != nil {
		go done(Entry{}, fmt.Errorf("append: %w", err))
	}
}

// Delete removes every entry of src in stream, durably. It takes effect
// after every AppendAsync the calling goroutine issued before it. Other
// streams, the source's sequence and its Head are untouched. If ctx ends
// first it returns ctx's error; the delete may still happen.
func (s *Store) Delete(ctx context.Context, src, stream string) error {
	if err := checkNames(src, stream); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if f := s.failed.Load(); f != nil {
		return fmt.Errorf("delete: %w", f.err) // a full disk is fine: a Delete frees space
	}
	w := waiterPool.Get().(*waiter)
	if !s.enqueue(op{kind: opDelete, rec: Record{Src: src, Stream: stream}, w: w}) {
		waiterPool.Put(w)
		return fmt.Errorf("delete: %w", ErrClosed)
	}
	_, err := s.wait(ctx, w, "delete")
	return err
}

// precheck refuses an Append early: ctx already done, the store failed,
// or its disk is almost full.
func (s *Store) precheck(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Err()
}

// wait waits for w's op to be delivered, or ctx to end. The error of a
// delivered op is already wrapped with its operation.
func (s *Store) wait(ctx context.Context, w *waiter, opName string) (Entry, error) {
	select {
	case <-w.ch:
		e, err := w.e, w.err
		w.e, w.err = Entry{}, nil
		waiterPool.Put(w)
		return e, err
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("%s: %w", opName, ctx.Err())
	}
}

// enqueue adds o to the queue; false means the store is closing.
func (s *Store) enqueue(o op) bool {
	return s.queue.Push(o)
}

// commitLoop is the committer goroutine: it drains the queue and commits
// it, a batch at a time. Each committed batch is delivered (done callbacks,
// waiters, subscribers) while the WAL syncs the next one, or at once when
// there is no next one.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	ready := s.queue.Ready()
	for {
		if len(s.pending) > 0 {
			select {
			case <-ready:
			default:
				s.deliverPending()
				continue
			}
		} else {
			<-ready
		}
		ops, closing := s.queue.Take(s.spare)
		s.spare = nil

		s.process(ops)
		if closing {
			// Calls are refused once closing is set, and this drain took
			// everything queued before.
			s.deliverPending()
			return
		}
	}
}

// process commits ops in batches of at most s.maxBatch bytes, adding each
// to s.pending.
func (s *Store) process(ops []op) {
	if len(ops) == 0 {
		return
	}
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) {
			n := ops[end].size()
			if end > start && size+n > s.maxBatch {
				break
			}
			size += n
			end++
		}
		s.commit(ops[start:end])
		g := group{ops: ops[start:end]}
		if end == len(ops) {
			g.buf = ops
		}
		s.pending = append(s.pending, g)
		start = end
	}
}

// deliverPending delivers the committed groups in commit order, and keeps
// the last drained queue slice for reuse.
func (s *Store) deliverPending() {
	for i, g := range s.pending {
		s.deliver(g.ops)
		if g.buf != nil {
			clear(g.buf)
			s.spare = g.buf[:0]
		}
		s.pending[i] = group{}
	}
	s.pending = s.pending[:0]
}

// commit writes ops as one Pebble batch, synced, and on success publishes
// the new durable heads. Failed ops get their err set. While the WAL syncs
// the batch, it delivers the groups committed before. Each batch is
// applied only after the previous one's sync succeeded: once a WAL write
// or sync failed, Pebble panics on the next write, so none may be under
// way when the failure is found.
func (s *Store) commit(ops []op) {
	if f := s.failed.Load(); f != nil {
		for i := range ops {
			ops[i].err = f.err
		}
		return
	}
	var low error
	if p := s.low.Load(); p != nil {
		low = *p // appends are refused; deletions still go through
	}
	s.batchNo++
	minute := s.minute()
	touched := s.touched[:0]
	b := s.db.NewBatch()
	if s.dd != nil {
		s.dd.begin(b, s.now().UnixMilli(), minute)
	}
	n, deletes := 0, false
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opAppend:
			if s.dd != nil && s.dd.duplicate(o) {
				continue // answered with the entry's seq once this batch is delivered; stores nothing, so a full disk is fine
			}
			if low != nil {
				o.err = low
				continue
			}
			st, err := s.sourceFor(o.rec.Src)
			if err != nil {
				o.err = err
				continue
			}
			if st.mark != s.batchNo {
				st.mark = s.batchNo
				touched = append(touched, st)
			}
			st.last++
			o.seq = st.last
			r := &o.rec
			s.noteBlock(b, st, o.seq, r.Timestamp)
			d := b.SetDeferred(entryKeyLen(r.Src, r.Stream), ValueLen(r.Timestamp, r.Level, r.Msg))
			putEntryKey(d.Key, r.Src, r.Stream, o.seq)
			PutValue(d.Value, r.Timestamp, r.Level, r.Msg)
			_ = d.Finish() // only indexed batches can fail
			if s.dd != nil {
				s.dd.record(o)
			}
		case opDelete:
			r := &o.rec
			d := b.DeleteRangeDeferred(entryKeyLen(r.Src, r.Stream)-seqLen, entryKeyLen(r.Src, r.Stream)-seqLen)
			appendStreamPrefix(d.Key[:0], r.Src, r.Stream)
			appendStreamEnd(d.Value[:0], r.Src, r.Stream)
			_ = d.Finish()
			deletes = true
		case opTrim:
			r := &o.rec
			start := appendStreamPrefix(nil, r.Src, r.Stream)
			end := binary.BigEndian.AppendUint64(appendStreamPrefix(nil, r.Src, r.Stream), o.seq+1)
			_ = b.DeleteRange(start, end, nil)
			deletes = true
		case opTrimMarks:
			_ = b.DeleteRange(appendAgePrefix(nil, o.rec.Src), appendAgeKey(nil, o.rec.Src, o.seq), nil)
		}
		n++
	}
	if s.dd != nil {
		s.dd.finish(b) // the de-duplication records, in the same batch as their entries
	}
	// The sequences, in the same batch as the entries: whatever of it is on
	// disk, no entry's sequence is above its source's stored one. And the
	// age mark of this minute: every entry up to st.last was appended
	// before the minute ends (retention by age reads it).
	for _, st := range touched {
		st.blk.write(b, st.name)
		d := b.SetDeferred(1+len(st.name), seqLen)
		appendSeqKey(d.Key[:0], st.name)
		binary.BigEndian.PutUint64(d.Value, st.last)
		_ = d.Finish()
		d = b.SetDeferred(1+len(st.name)+1+8, seqLen)
		appendAgeKey(d.Key[:0], st.name, minute)
		binary.BigEndian.PutUint64(d.Value, st.last)
		_ = d.Finish()
	}
	s.touched = touched
	if n == 0 {
		_ = b.Close()
		return
	}
	if deletes {
		// Pebble shows b to readers before its WAL sync: let reads use
		// the state before it, all durable (the previous batch's sync
		// completed), until b is durable too.
		v := &durableView{snap: s.db.NewSnapshot()}
		v.refs.Store(1)
		s.setView(v) // kept if b fails: until the recovery, reads show the durable state
	}
	err := s.apply(b)
	if err == nil {
		// The WAL syncs b meanwhile: overlap it with the delivery of the
		// previous batch. Outside apply and syncWait, whose recover would
		// take a callback's panic for Pebble's.
		s.deliverPending()
		err = s.syncWait(b)
	}
	if err != nil {
		// The ops' sequences stay consumed (s.sources keeps them): the batch
		// may be on disk, so they must not be handed out again. The store
		// is failed from now on anyway.
		for i := range ops {
			if ops[i].err == nil {
				ops[i].err = err
			}
		}
		return
	}
	if deletes {
		// Before the heads advance: the view holds nothing above the old
		// heads, the database nothing not durable below them. The tail
		// cache stops serving the streams b deletes from until it has
		// applied the deletions (below), so that no read sees them
		// after one has not.
		s.suspendTail(ops)
		s.setView(nil)
	}
	s.smu.Lock()
	for _, st := range touched {
		st.head = st.last
	}
	s.fillTail(ops)
	s.smu.Unlock()
	s.tail.evictIfOver()
	s.stats.committed(ops)
}

// apply writes b to Pebble, asking for a WAL sync without waiting for
// it. Any error, or a panic in Pebble, fails the store: after a failed WAL
// write or sync Pebble cannot take further writes safely.
func (s *Store) apply(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(fmt.Errorf("commit: %w", panicError(r)), true)
		}
	}()
	// ApplyNoSyncWait + SyncWait rather than Apply: a failed sync comes
	// back as an error instead of through Pebble's Fatalf.
	if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return s.fail(fmt.Errorf("commit: %w", err), false)
	}
	return nil
}

// syncWait waits for the WAL sync of an applied batch and closes it; like
// apply, a failure fails the store.
func (s *Store) syncWait(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(fmt.Errorf("sync: %w", panicError(r)), true)
		}
	}()
	if err := b.SyncWait(); err != nil {
		return s.fail(fmt.Errorf("sync: %w", err), false)
	}
	_ = b.Close()
	return nil
}

// deliver runs the done callbacks and wakes the waiters of a committed
// group, in queue order, then calls the subscribers with its entries.
func (s *Store) deliver(ops []op) {
	var entries []Entry
	if s.subs.Any() {
		n := 0
		for i := range ops {
			if ops[i].kind == opAppend && ops[i].err == nil {
				n++
			}
		}
		if n > 0 {
			entries = make([]Entry, 0, n)
		}
	}
	for i := range ops {
		o := &ops[i]
		var e Entry
		var err error
		if o.err != nil {
			err = o.wrapErr()
		} else if o.kind == opAppend {
			e = Entry{Seq: o.seq, Src: o.rec.Src, Stream: o.rec.Stream, Timestamp: o.rec.Timestamp, Msg: o.rec.Msg, Level: o.rec.Level}
			if entries != nil {
				entries = append(entries, e)
			}
		} else if o.kind == opDuplicate {
			e = Entry{Seq: o.seq, Src: o.rec.Src, Stream: o.rec.Stream, Timestamp: o.rec.Timestamp, Msg: o.rec.Msg, Duplicate: true}
		}
		if o.done != nil {
			o.done(e, err)
		}
		if o.w != nil {
			o.w.e, o.w.err = e, err
			o.w.ch <- struct{}{}
		}
	}
	if len(entries) > 0 {
		s.subs.Deliver(entries)
	}
}
