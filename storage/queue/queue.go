// Package queue is the hand-off between goroutines that must never wait and
// the one goroutine that serves them: an unbounded FIFO queue, a
// mutex-guarded slice with a one-slot wake-up channel.
//
// Push never blocks (it takes a mutex held only to append or swap the
// slice). One consumer waits on Ready and takes everything queued at once
// with Take, or leaves the loop to Run. After Close, Push refuses, and the
// consumer's next Take returns whatever was queued before with closed set,
// so nothing pushed is lost. A Worker is a Queue with its own consumer
// goroutine.
//
// The queue is unbounded: whoever pushes bounds its own rate.
package queue

import "sync"

// Queue is an unbounded FIFO queue for any number of producers and one
// consumer. The zero Queue is empty and ready to use. A Queue must not be
// copied after first use.
type Queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	ready  chan struct{} // cap 1: a token while items (or Close) may be unseen
}

// readyLocked returns the wake-up channel, made on first use.
// REQUIRES: q.mu held.
func (q *Queue[T]) readyLocked() chan struct{} {
	if q.ready == nil {
		q.ready = make(chan struct{}, 1)
	}
	return q.ready
}

// Push appends v and wakes the consumer if the queue was empty. It returns
// false, and drops v, once the queue is closed. It never blocks on the
// consumer.
func (q *Queue[T]) Push(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	wasEmpty := len(q.items) == 0
	q.items = append(q.items, v)
	ready := q.readyLocked()
	q.mu.Unlock()
	if wasEmpty {
		signal(ready)
	}
	return true
}

// PushAll appends vs, in order, like as many Pushes made at once.
func (q *Queue[T]) PushAll(vs []T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	wasEmpty := len(q.items) == 0
	q.items = append(q.items, vs...)
	ready := q.readyLocked()
	q.mu.Unlock()
	if wasEmpty && len(vs) > 0 {
		signal(ready)
	}
	return true
}

// Ready returns the channel that receives a value when items were pushed
// onto an empty queue, or the queue was closed, since the consumer last
// received from it. The consumer receives from it, then Takes. A receive
// may find nothing to take (it raced a Take); no push is ever left
// without a wake-up.
func (q *Queue[T]) Ready() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyLocked()
}

// Take returns everything queued, in push order, and whether the queue is
// closed; when closed is true, nothing more will ever be queued. The queue
// goes on in spare's array (emptied), so that a consumer that is done with
// an earlier result can hand it back; nil is fine. The caller owns items.
func (q *Queue[T]) Take(spare []T) (items []T, closed bool) {
	q.mu.Lock()
	items, closed = q.items, q.closed
	q.items = spare[:0]
	q.mu.Unlock()
	return items, closed
}

// Close refuses further Pushes and wakes the consumer, which takes what was
// queued before. Close is idempotent.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	ready := q.readyLocked()
	q.mu.Unlock()
	signal(ready)
}

// Run is the consumer loop: it calls fn with each run of items taken, on
// the calling goroutine, until the queue is closed and drained. fn owns
// the slice it is given.
func (q *Queue[T]) Run(fn func([]T)) {
	ready := q.Ready()
	for {
		<-ready
		items, closed := q.Take(nil)
		if len(items) > 0 {
			fn(items)
		}
		if closed {
			return
		}
	}
}

// Worker is a Queue served by its own goroutine, which Start starts and
// Stop ends. The zero Worker is ready to use; Pushes made before Start wait
// for it. A Worker must not be copied after first use.
type Worker[T any] struct {
	q    Queue[T]
	done chan struct{} // closed when the goroutine ends
}

// Start starts the goroutine that calls fn with each run of items pushed,
// in push order, one call at a time (Queue.Run). Call it once.
func (w *Worker[T]) Start(fn func([]T)) {
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		w.q.Run(fn)
	}()
}

// Push queues v for fn; false once the Worker is stopped. It never blocks.
func (w *Worker[T]) Push(v T) bool { return w.q.Push(v) }

// PushAll queues vs, in order; false once the Worker is stopped.
func (w *Worker[T]) PushAll(vs []T) bool { return w.q.PushAll(vs) }

// Stop refuses further Pushes and waits until fn has been called with
// everything pushed before and has returned. Stop is idempotent; it must
// not be called from fn.
func (w *Worker[T]) Stop() {
	w.q.Close()
	if w.done != nil {
		<-w.done
	}
}

// signal leaves a token in ready unless one is there already.
func signal(ready chan struct{}) {
	select {
	case ready <- struct{}{}:
	default:
	}
}
