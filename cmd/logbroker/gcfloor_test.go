package main

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbroker/logbroker/integration/await"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		name        string
		live, floor uint64
		want        int
	}{
		{"AboveFloor", 64 << 20, 32 << 20, 100},
		{"AtFloor", 32 << 20, 32 << 20, 100},
		{"HalfFloor", 16 << 20, 32 << 20, 200},
		{"SmallHeap", 4 << 20, 32 << 20, 800},
		{"TinyHeapCapped", 1 << 10, 32 << 20, maxGCPercent},
		{"NothingLive", 0, 32 << 20, maxGCPercent},
		{"JustBelow", 31 << 20, 32 << 20, 103},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := gcPercent(c.live, c.floor); got != c.want {
				t.Errorf("gcPercent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
			}
		})
	}
}

// TestGCHeapFloorRetunes: the floor is set again after collections.
func TestGCHeapFloorRetunes(t *testing.T) {
	var calls atomic.Int64
	var last atomic.Int64
	f := &gcFloor{floor: 1 << 40, sample: metricsSample(), set: func(p int) int {
		calls.Add(1)
		last.Store(int64(p))
		return 0
	}}
	f.arm()
	t.Cleanup(f.stop)
	await.Within(10*time.Second, func() bool { // checked below
		if calls.Load() > 0 {
			return true
		}
		runtime.GC()
		return false
	})
	if calls.Load() == 0 || last.Load() != maxGCPercent {
		t.Fatalf("after collections: %d settings, last %d; want GOGC set to %d", calls.Load(), last.Load(), maxGCPercent)
	}
	// Once set, it changes nothing while the heap stays as it is.
	before := calls.Load()
	for range 3 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != before {
		t.Errorf("GOGC set %d more times for an unchanged heap, want 0", calls.Load()-before)
	}
}
