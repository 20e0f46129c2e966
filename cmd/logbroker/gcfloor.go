package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// defaultGCHeapFloor is --gc-heap-floor's default.
const defaultGCHeapFloor = 32 << 20

// maxGCPercent bounds the GOGC the floor sets on a nearly empty heap.
const maxGCPercent = 5000

// setGCHeapFloor keeps the garbage collector from running before the Go
// heap holds floor bytes of garbage, while the live heap is smaller than
// floor; past it Go's default pacing (GOGC=100) applies. The broker's live
// heap is a few MiB under load (Pebble keeps its memtables and cache off
// it), so with Go's default a collection ran every ~4 MiB of allocation,
// about every 500 calls. After every collection it sets GOGC to
// 100·floor/live (at least 100): the next one starts once floor bytes of
// garbage, or as much as is live, have been allocated, whichever is more.
// It does nothing if floor is 0 or GOGC is set in the environment.
func setGCHeapFloor(floor uint64) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return
	}
	t := &gcFloor{floor: floor, sample: metricsSample(), set: debug.SetGCPercent}
	t.tune()
	t.arm()
}

type gcFloor struct {
	floor  uint64
	sample []metrics.Sample
	set    func(percent int) int // debug.SetGCPercent

	mu      sync.Mutex
	percent int  // what tune last set
	stopped bool // no more tuning (tests)
}

// stop ends the tuning after the next collection.
func (t *gcFloor) stop() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
}

func metricsSample() []metrics.Sample {
	return []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
}

// gcSentinel is garbage as soon as it is made: its finalizer runs after
// the next collection and arms a new one.
type gcSentinel struct {
	t *gcFloor
	_ [16]byte // not a tiny allocation, whose finalizer may never run
}

func (t *gcFloor) arm() {
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) {
		if s.t.tune() {
			s.t.arm()
		}
	})
}

// tune sets GOGC from the live heap; false once stopped.
func (t *gcFloor) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := gcPercent(live, t.floor)
	// Only a real change: SetGCPercent has a cost of its own.
	if p != t.percent && (p < t.percent*9/10 || p > t.percent*11/10) {
		t.set(p)
		t.percent = p
	}
	return true
}

// gcPercent is the GOGC that lets floor bytes of garbage gather on a live
// heap of live bytes, at least Go's default 100 and at most maxGCPercent.
func gcPercent(live, floor uint64) int {
	if live >= floor {
		return 100
	}
	if live == 0 {
		return maxGCPercent
	}
	return int(min(uint64(maxGCPercent), max(100, 100*floor/live)))
}
