package storage

import (
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// block is the committer's summary of the block of a source's newest
// sequence: the range of the timestamps of its entries (see doc.go, Time
// ranges).
type block struct {
	n      uint64 // the block: seq >> blockShift
	lo, hi int64  // every entry of the block has lo <= timestamp <= hi
	set    bool   // n, lo, hi hold a block
	dirty  bool   // changed in the batch being built: to be written
}

// noteBlock adds the entry seq of st, with timestamp ts, to its block's
// summary, writing the previous block's into b first if the entry starts
// a new one. Committer only.
func (s *Store) noteBlock(b *pebble.Batch, st *source, seq uint64, ts int64) {
	n := seq >> blockShift
	if !st.blk.set || st.blk.n != n {
		st.blk.write(b, st.name)
		st.blk = block{n: n, lo: ts, hi: ts, set: true}
		if (seq-1)>>blockShift == n && seq > 1 {
			// Earlier entries of the block were committed before this
			// process knew it (a restart): widen by their summary, or,
			// without one (entries of a logbroker/1 store), cover any
			// timestamp.
			st.blk.lo, st.blk.hi = math.MinInt64, math.MaxInt64
			var kb [64]byte
			if v, closer, err := s.db.Get(appendBlockKey(kb[:0], st.name, n)); err == nil {
				if lo, hi, ok := decodeBlockSummary(v); ok {
					st.blk.lo, st.blk.hi = min(lo, ts), max(hi, ts)
				}
				_ = closer.Close()
			}
		}
	}
	st.blk.lo, st.blk.hi = min(st.blk.lo, ts), max(st.blk.hi, ts)
	st.blk.dirty = true
}

// write adds the summary to b if it changed. Committer only.
func (k *block) write(b *pebble.Batch, src string) {
	if !k.dirty {
		return
	}
	k.dirty = false
	d := b.SetDeferred(1+len(src)+1+8, blockSummaryLen)
	appendBlockKey(d.Key[:0], src, k.n)
	putBlockSummary(d.Value, k.lo, k.hi)
	_ = d.Finish()
}
