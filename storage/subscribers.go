package storage

import (
	"sync"
	"sync/atomic"
)

// Subscribers is the list of Subscribe callbacks of a backend: added and
// cancelled under a mutex, read without one (copy on write), so delivering
// a group costs no lock. The zero value is empty and ready to use.
type Subscribers struct {
	mu   sync.Mutex // serializes Add and cancel; a leaf, never held by Deliver
	list atomic.Pointer[[]*subscription]
}

type subscription struct {
	fn        func([]Entry)
	cancelled atomic.Bool
}

// Add registers fn. After cancel returns, fn is not called by a Deliver
// that starts later; cancel may be called more than once.
func (l *Subscribers) Add(fn func([]Entry)) (cancel func()) {
	sub := &subscription{fn: fn}
	l.mu.Lock()
	var next []*subscription
	if old := l.list.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, sub)
	l.list.Store(&next)
	l.mu.Unlock()
	return func() {
		if sub.cancelled.Swap(true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		old := *l.list.Load()
		next := make([]*subscription, 0, len(old))
		for _, o := range old {
			if o != sub {
				next = append(next, o)
			}
		}
		l.list.Store(&next)
	}
}

// Any reports whether a callback is registered, so that a backend can skip
// building a group nobody receives.
func (l *Subscribers) Any() bool {
	p := l.list.Load()
	return p != nil && len(*p) > 0
}

// Deliver calls every registered callback with group, one after another,
// on the calling goroutine.
func (l *Subscribers) Deliver(group []Entry) {
	p := l.list.Load()
	if p == nil {
		return
	}
	for _, sub := range *p {
		if !sub.cancelled.Load() {
			sub.fn(group)
		}
	}
}
