package storage

import (
	"encoding/binary"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// blockSkip tells a List with a time range which blocks of sequences it
// may skip: those whose summary shows no timestamp in the range (see
// doc.go, Time ranges). A block without a summary may hold anything. The
// lister asks with sequences that only grow (forward) or only shrink
// (backward), the top of its merge heap, so the summaries are read in one
// pass; the last block found to be kept and the last run found skippable
// are remembered, for the other streams' cursors that reach them.
type blockSkip struct {
	it           *pebble.Iterator // the source's summaries of the blocks of (After, head]
	prefix       []byte           // 'b' src 0x00
	since, until int64            // the range: since <= ts < until
	kept         uint64           // a block found to be kept, if keptSet
	keptSet      bool
	skipLo       uint64 // blocks [skipLo, skipHi) found skippable
	skipHi       uint64
}

func newBlockSkip(db pebble.Reader, src string, after, head uint64, f *Filter) (*blockSkip, error) {
	b := &blockSkip{prefix: appendBlockPrefix(nil, src), since: f.Since, until: math.MaxInt64}
	if f.HasUntil {
		b.until = f.Until
	}
	lower := binary.BigEndian.AppendUint64(append([]byte(nil), b.prefix...), (after+1)>>blockShift)
	upper := append([]byte(nil), b.prefix...)
	if hb := head >> blockShift; hb < math.MaxUint64 {
		upper = binary.BigEndian.AppendUint64(upper, hb+1)
	} else {
		upper[len(upper)-1] = sep + 1
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	b.it = it
	return b, nil
}

// key returns the summary key of block n.
func (b *blockSkip) key(n uint64) []byte {
	return binary.BigEndian.AppendUint64(b.prefix[:len(b.prefix):len(b.prefix)], n)
}

// skippable reports whether the iterator is at the summary of block n and
// it rules the block out.
func (b *blockSkip) skippable(valid bool, n uint64) bool {
	if !valid {
		return false
	}
	k := b.it.Key()
	if len(k) != len(b.prefix)+8 || binary.BigEndian.Uint64(k[len(b.prefix):]) != n {
		return false // no summary of n: it may hold any timestamp
	}
	lo, hi, ok := decodeBlockSummary(b.it.Value())
	return ok && (hi < b.since || lo >= b.until)
}

// forward returns the smallest sequence >= seq in a block that may hold
// an entry in the range.
func (b *blockSkip) forward(seq uint64) uint64 {
	n := seq >> blockShift
	if b.keptSet && n == b.kept {
		return seq
	}
	if n >= b.skipLo && n < b.skipHi {
		n = b.skipHi
		seq = n << blockShift
		if b.keptSet && n == b.kept {
			return seq
		}
	}
	first := n
	for valid := b.it.SeekGE(b.key(n)); b.skippable(valid, n); valid = b.it.Next() {
		n++
	}
	if n > first {
		b.skipLo, b.skipHi = first, n
	}
	b.kept, b.keptSet = n, true
	return max(seq, n<<blockShift)
}

// backward returns the largest sequence <= seq in a block that may hold an
// entry in the range; 0 if there is none.
func (b *blockSkip) backward(seq uint64) uint64 {
	n := seq >> blockShift
	if b.keptSet && n == b.kept {
		return seq
	}
	if n >= b.skipLo && n < b.skipHi {
		if b.skipLo == 0 {
			return 0
		}
		n = b.skipLo - 1
		seq = n<<blockShift | (1<<blockShift - 1)
		if b.keptSet && n == b.kept {
			return seq
		}
	}
	last := n
	valid := b.it.SeekLT(b.key(n + 1))
	for b.skippable(valid, n) {
		if n == 0 {
			b.skipLo, b.skipHi = 0, last+1
			return 0
		}
		n--
		valid = b.it.Prev()
	}
	if n < last {
		b.skipLo, b.skipHi = n+1, last+1
	}
	b.kept, b.keptSet = n, true
	return min(seq, n<<blockShift|(1<<blockShift-1))
}
