package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// DefaultDedupMax is the default of Options.DedupMax.
const DefaultDedupMax = 1 << 18

// dedupKeyLen is the length of a 'd' key: kind, ms[8], n[8].
const dedupKeyLen = 1 + 8 + 8

// dedupRecLen is the length of one record in a 'd' value: key[16], seq[8].
const dedupRecLen = len(DedupKey{}) + seqLen

// dedup is the store's memory of the records with a Dedup key stored
// within the window (doc.go, De-duplication). The committer alone uses
// it while the store is not failed; a recovery reloads it while the
// committer leaves it alone.
type dedup struct {
	window int64 // ms
	max    int
	m      map[DedupKey]dedupSlot
	fifo   []dedupItem // in append order; from fifo[head]
	head   int
	now    int64  // ms, the clock of the batch being built
	swept  uint64 // the minute whose expired keys were last deleted from disk
	n      uint64 // the last n of a 'd' key (distinguishes batches of one ms)
	batch  []byte // the records of the batch being built: key[16] seq[8] each
}

type dedupSlot struct {
	seq uint64
	at  int64 // ms
}

type dedupItem struct {
	key DedupKey
	dedupSlot
}

func newDedup(window int64, max int) *dedup {
	if max <= 0 {
		max = DefaultDedupMax
	}
	return &dedup{window: window, max: max, m: map[DedupKey]dedupSlot{}}
}

// begin starts a batch at now: it forgets what aged out or is over the
// count bound, and once a minute adds to b the deletion of the keys on
// disk older than the window.
func (d *dedup) begin(b *pebble.Batch, now int64, minute uint64) {
	d.now = now
	d.expire()
	if minute != d.swept {
		d.swept = minute
		_ = b.DeleteRange([]byte{dedupPrefix}, appendDedupKey(nil, d.now-d.window, 0), nil)
	}
}

// duplicate reports whether o repeats a record stored within the window,
// and if so turns o into an opDuplicate of that entry's sequence.
func (d *dedup) duplicate(o *op) bool {
	k := o.rec.Dedup
	if k == (DedupKey{}) {
		return false
	}
	s, ok := d.m[k]
	if !ok || d.now-s.at > d.window {
		return false
	}
	o.kind, o.seq = opDuplicate, s.seq
	return true
}

// record remembers o (just given its sequence), for the 'd' key that
// finish writes into the batch that stores its entry.
func (d *dedup) record(o *op) {
	k := o.rec.Dedup
	if k == (DedupKey{}) {
		return
	}
	d.add(k, dedupSlot{seq: o.seq, at: d.now})
	d.batch = append(d.batch, k[:]...)
	d.batch = binary.BigEndian.AppendUint64(d.batch, o.seq)
}

// finish writes the batch's records into b as one 'd' key: one memtable
// insert per batch rather than one per entry.
func (d *dedup) finish(b *pebble.Batch) {
	if len(d.batch) == 0 {
		return
	}
	d.n++
	kv := b.SetDeferred(dedupKeyLen, len(d.batch))
	appendDedupKey(kv.Key[:0], d.now, d.n)
	copy(kv.Value, d.batch)
	_ = kv.Finish()
	if cap(d.batch) > 64<<10 {
		d.batch = nil // a burst's buffer is not kept
	} else {
		d.batch = d.batch[:0]
	}
}

func (d *dedup) add(k DedupKey, s dedupSlot) {
	d.m[k] = s
	d.fifo = append(d.fifo, dedupItem{key: k, dedupSlot: s})
	if len(d.fifo)-d.head > d.max {
		d.pop()
	}
}

// expire forgets the records older than the window.
func (d *dedup) expire() {
	for d.head < len(d.fifo) && d.now-d.fifo[d.head].at > d.window {
		d.pop()
	}
}

// pop forgets the oldest record, unless its key was recorded again since.
func (d *dedup) pop() {
	it := d.fifo[d.head]
	d.fifo[d.head] = dedupItem{}
	d.head++
	if s, ok := d.m[it.key]; ok && s == it.dedupSlot {
		delete(d.m, it.key)
	}
	if d.head > len(d.fifo)/2 && d.head > 64 {
		n := copy(d.fifo, d.fifo[d.head:])
		clear(d.fifo[n:])
		d.fifo = d.fifo[:n]
		d.head = 0
	}
}

// load forgets everything, then reads the keys of the window from db.
func (d *dedup) load(db *pebble.DB, now int64) error {
	clear(d.m)
	d.fifo, d.head, d.now, d.swept, d.batch = d.fifo[:0], 0, now, 0, d.batch[:0]
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: appendDedupKey(nil, now-d.window, 0),
		UpperBound: []byte{dedupPrefix + 1},
	})
	if err != nil {
		return fmt.Errorf("load dedup keys: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != dedupKeyLen || len(v)%dedupRecLen != 0 {
			continue
		}
		at := int64(binary.BigEndian.Uint64(k[1:9]))
		d.n = max(d.n, binary.BigEndian.Uint64(k[9:]))
		for ; len(v) > 0; v = v[dedupRecLen:] {
			var key DedupKey
			copy(key[:], v)
			d.add(key, dedupSlot{seq: binary.BigEndian.Uint64(v[len(key):]), at: at})
		}
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return fmt.Errorf("load dedup keys: %w", err)
	}
	return it.Close()
}

// appendDedupKey appends 'd' ms[8] n[8]; a negative ms counts as 0.
func appendDedupKey(dst []byte, ms int64, n uint64) []byte {
	dst = append(dst, dedupPrefix)
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(ms, 0)))
	return binary.BigEndian.AppendUint64(dst, n)
}
