package queue_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage/queue"
)

// liveness bounds how long a test waits for a wake-up that must come.
const liveness = 10 * time.Second

func TestOrderAndSpare(t *testing.T) {
	var q queue.Queue[int]
	for i := range 3 {
		if !q.Push(i) {
			t.Fatalf("Push(%d) refused on an open queue", i)
		}
	}
	q.PushAll([]int{3, 4})
	select {
	case <-q.Ready():
	default:
		t.Fatal("no wake-up after pushes to an empty queue")
	}
	spare := make([]int, 7, 16)
	items, closed := q.Take(spare)
	if closed || !slices.Equal(items, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("Take = %v, %v; want [0 1 2 3 4], false", items, closed)
	}
	q.Push(5)
	items, _ = q.Take(nil)
	if !slices.Equal(items, []int{5}) {
		t.Fatalf("Take after a spare = %v; want [5]", items)
	}
	if &items[0] != &spare[:1][0] {
		t.Error("the queue did not go on in the spare's array")
	}
	if items, _ := q.Take(nil); len(items) != 0 {
		t.Fatalf("Take of an empty queue = %v", items)
	}
}

func TestCloseKeepsQueuedAndRefusesMore(t *testing.T) {
	var q queue.Queue[string]
	q.Push("a")
	<-q.Ready()
	q.Close()
	q.Close() // idempotent
	if q.Push("b") || q.PushAll([]string{"c"}) {
		t.Fatal("Push accepted after Close")
	}
	items, closed := q.Take(nil)
	if !closed || !slices.Equal(items, []string{"a"}) {
		t.Fatalf("Take after Close = %v, %v; want [a], true", items, closed)
	}
	select {
	case <-q.Ready():
	default:
		t.Fatal("Close did not wake the consumer")
	}
}

// TestNoLostWakeup has pushers race one consumer that waits on Ready for
// every item: a lost wake-up leaves it waiting with items queued, and the
// liveness bound fails the test. Run it with -race.
func TestNoLostWakeup(t *testing.T) {
	const pushers, each = 8, 5000
	var q queue.Queue[int]
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Go(func() {
			for i := range each {
				q.Push(p*each + i)
			}
		})
	}
	next := make([]int, pushers) // per pusher, the next value expected
	var spare []int
	for got := 0; got < pushers*each; {
		select {
		case <-q.Ready():
		case <-time.After(liveness):
			t.Fatalf("no wake-up for %v with %d of %d items taken", liveness, got, pushers*each)
		}
		items, _ := q.Take(spare)
		for _, v := range items {
			p := v / each
			if v != p*each+next[p] {
				t.Fatalf("pusher %d: got %d, want %d (order broken)", p, v, p*each+next[p])
			}
			next[p]++
		}
		got += len(items)
		spare = items
	}
	wg.Wait()
}

// TestRunDeliversEverythingBeforeClose checks that Run returns only after
// Close, having passed every item pushed before Close, in order.
func TestRunDeliversEverythingBeforeClose(t *testing.T) {
	var q queue.Queue[int]
	var got []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(func(items []int) { got = append(got, items...) })
	}()
	const n = 10000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			q.Push(i)
		}
	})
	wg.Wait()
	q.Close()
	select {
	case <-done:
	case <-time.After(liveness):
		t.Fatal("Run did not return after Close")
	}
	if len(got) != n {
		t.Fatalf("Run delivered %d items, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d = %d: order broken", i, v)
		}
	}
}
