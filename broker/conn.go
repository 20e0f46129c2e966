package broker

import (
	"errors"
	"net"
	"sync"
	"time"
)

// ErrSlowConsumer ends the connection of a client that does not read what
// it is sent fast enough: more than Config.MaxPending bytes waited for its
// socket.
var ErrSlowConsumer = errors.New("slow consumer: too many bytes waiting to be sent")

// DefaultMaxPending is Config.MaxPending when it is 0.
const DefaultMaxPending = 32 << 20

// flushTimeout bounds how long a closed connection keeps sending what was
// queued before it.
const flushTimeout = time.Second

// maxSpare is the largest buffer the writer keeps for reuse.
const maxSpare = 64 << 10

// queuedListener wraps every accepted connection in a queuedConn.
type queuedListener struct {
	net.Listener
	limit int
	hold  *readHold // nil: reads are never held
}

func (l queuedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	q := newQueuedConn(c, l.limit)
	q.hold = l.hold
	return q, nil
}

// queuedConn is a connection whose Write never waits for the network: it
// queues the bytes and a goroutine of its own sends them. mochi writes a
// packet while holding its client's lock, which every publish to that
// client also takes (for a packet id); with a plain socket, one client that
// stops reading would stall every publisher to its topics, and with them
// the log service's responses. Here such a client only fills its queue,
// and once that passes the limit its connection is closed.
type queuedConn struct {
	net.Conn
	limit int

	mu      sync.Mutex
	pending []byte        // accepted by Write, not yet handed to the socket
	spare   []byte        // the writer's previous buffer, reused
	wake    chan struct{} // capacity 1: pending grew, or closing
	err     error         // sticky: the socket failed or the limit was passed
	closing bool
	done    chan struct{} // closed when the writer has exited
	hold    *readHold     // Read waits once it is held (see Broker.Close)
}

func newQueuedConn(c net.Conn, limit int) *queuedConn {
	q := &queuedConn{Conn: c, limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.writer()
	return q
}

// Write queues p; it fails only once the connection has failed, is closed,
// or would hold more than the limit.
func (q *queuedConn) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.err != nil:
		return 0, q.err
	case q.closing:
		return 0, net.ErrClosed
	case len(q.pending)+len(p) > q.limit:
		q.err = ErrSlowConsumer
		_ = q.Conn.Close() // ends the writer and the client's read loop
		return 0, q.err
	}
	q.pending = append(q.pending, p...)
	q.signal()
	return len(p), nil
}

func (q *queuedConn) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// writer sends what Write queued, in order, until the socket fails or the
// connection is closed and everything queued before is sent.
func (q *queuedConn) writer() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closing && q.err == nil {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if q.err != nil || len(q.pending) == 0 {
			q.mu.Unlock()
			return
		}
		out := q.pending
		q.pending = q.spare[:0]
		q.mu.Unlock()

		_, err := q.Conn.Write(out)

		q.mu.Lock()
		if cap(out) <= maxSpare {
			q.spare = out
		} else {
			// A burst's large buffer is not kept for an idle connection;
			// and spare must let go of the array pending now grows in,
			// or the next round would send from it while Write appends.
			q.spare = nil
		}
		if err != nil && q.err == nil {
			q.err = err
		}
		q.mu.Unlock()
		if err != nil {
			_ = q.Conn.Close()
			return
		}
	}
}

// SetDeadline sets the read deadline, and the write deadline unless the
// connection is closing (mochi renews deadlines on every packet it reads;
// that must not extend the flush bound of Close).
func (q *queuedConn) SetDeadline(t time.Time) error {
	if err := q.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return q.SetWriteDeadline(t)
}

// SetWriteDeadline sets the write deadline unless the connection is closing.
func (q *queuedConn) SetWriteDeadline(t time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return nil
	}
	return q.Conn.SetWriteDeadline(t)
}

// Close stops accepting writes and returns at once; what was queued is
// still sent, for up to flushTimeout, before the socket closes.
func (q *queuedConn) Close() error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return nil
	}
	q.closing = true
	_ = q.Conn.SetWriteDeadline(time.Now().Add(flushTimeout))
	q.mu.Unlock()
	q.signal()
	go func() {
		<-q.done
		_ = q.Conn.Close()
	}()
	return nil
}
