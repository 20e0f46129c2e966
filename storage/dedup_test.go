package storage

import "testing"

// TestDedup_Bounds: the memory of the window holds at most max records,
// the newest, and none older than the window.
func TestDedup_Bounds(t *testing.T) {
	d := newDedup(1000, 4)
	key := func(i int) DedupKey { return DedupKey{byte(i), 1} }
	found := func(i int) bool {
		o := op{kind: opAppend, rec: Record{Dedup: key(i)}}
		return d.duplicate(&o)
	}
	for i := 1; i <= 10; i++ {
		d.now = int64(i)
		d.add(key(i), dedupSlot{seq: uint64(i), at: d.now})
		if n := len(d.m); n > 4 || len(d.fifo)-d.head > 4 {
			t.Fatalf("after %d records: %d in the map, %d queued; the bound is 4", i, n, len(d.fifo)-d.head)
		}
	}
	for i := 1; i <= 10; i++ {
		if got, want := found(i), i > 6; got != want {
			t.Errorf("record %d found: %v, want %v", i, got, want)
		}
	}
	// A key recorded again outlives the queue slot of its first record.
	d.now = 11
	d.add(key(7), dedupSlot{seq: 70, at: d.now})
	d.now = 1011 // 7..10 at 7..10 are older than the window; 7 again at 11 is not
	d.expire()
	if !found(7) || found(8) || found(10) {
		t.Errorf("after expiry: 7 found %v (want true), 8 %v, 10 %v (want false)", found(7), found(8), found(10))
	}
	d.now = 1012
	d.expire()
	if found(7) || len(d.m) != 0 {
		t.Errorf("everything is older than the window, yet %d records remain", len(d.m))
	}
}
