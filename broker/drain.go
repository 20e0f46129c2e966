package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// settleTimeout bounds the last wait of Close, with reads held, for the
// packets already read to be handled and their answers written.
const settleTimeout = time.Second

// gauge is a count whose return to zero can be waited for: a channel, no
// polling.
type gauge struct {
	n       atomic.Int64
	mu      sync.Mutex
	waiters []chan struct{}
}

func (g *gauge) add(d int64) {
	if g.n.Add(d) == 0 && d < 0 {
		g.mu.Lock()
		for _, c := range g.waiters {
			close(c)
		}
		g.waiters = nil
		g.mu.Unlock()
	}
}

// zero returns a channel closed once the count is zero (at once if it is).
func (g *gauge) zero() <-chan struct{} {
	c := make(chan struct{})
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n.Load() <= 0 {
		close(c)
	} else {
		g.waiters = append(g.waiters, c)
	}
	return c
}

// waitZero waits until g is zero or d passes.
func waitZero(g *gauge, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.zero():
		return true
	case <-t.C:
		return false
	}
}

// readHold stops every client connection of a broker from reading, once
// Close has drained: a call read after that point would be acknowledged
// (PUBACK) and answered (503) on a connection about to close, and its
// answer could be cut off. busy counts the connections whose reader is
// outside Read and whose socket is open: processing a packet it read. Held,
// once busy is zero, no packet is being handled and none will be.
type readHold struct {
	held chan struct{}
	once sync.Once
	busy gauge
}

func newReadHold() *readHold { return &readHold{held: make(chan struct{})} }

// hold stops reads from now on.
func (h *readHold) hold() { h.once.Do(func() { close(h.held) }) }

func (h *readHold) isHeld() bool {
	select {
	case <-h.held:
		return true
	default:
		return false
	}
}

// Read reads from the socket; once the broker holds reads it waits
// instead, until the connection is closed.
//
// A read already waiting on the socket when the hold begins may still
// return bytes: they are dropped, unread by mochi, so the client gets no
// PUBACK for them and keeps the message to send again (QoS 1 and 2).
func (q *queuedConn) Read(p []byte) (int, error) {
	if q.hold == nil {
		return q.Conn.Read(p)
	}
	q.flip(stReading, 0)
	defer q.flip(0, stReading)
	if q.hold.isHeld() {
		<-q.done
		return 0, net.ErrClosed
	}
	n, err := q.Conn.Read(p)
	if q.hold.isHeld() {
		<-q.done
		return 0, net.ErrClosed
	}
	return n, err
}
