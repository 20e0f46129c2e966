package broker

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
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

// chunkSize is the size of the buffers a queuedConn queues bytes in. They
// come from chunkPool and go back once sent, so an idle connection holds
// none, and a burst grows no buffer by copying it.
const chunkSize = 16 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

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
	if l.hold != nil {
		q.hold = l.hold
		l.hold.busy.add(1) // a new connection is busy until it reads
	}
	return q, nil
}

// queuedConn is a connection whose Write never waits for the network: it
// queues the bytes and a goroutine of its own sends them. mochi writes a
// packet while holding its client's lock, which every publish to that
// client also takes (for a packet id); with a plain socket, one client that
// stops reading would stall every publisher to its topics, and with them
// the log service's responses. Here such a client only fills its queue,
// and once that passes the limit its connection is closed.
//
// The sending goroutine runs only while bytes wait: Write starts it, and it
// exits once the queue is empty, so an idle connection costs no goroutine
// stack and no buffer (10,000 idle devices). Under load it stays, sending
// everything queued meanwhile in one writev.
type queuedConn struct {
	net.Conn
	limit int

	mu      sync.Mutex
	pending [][]byte // accepted by Write, not yet handed to the socket; chunks of chunkPool
	queued  int      // bytes in pending
	writing bool     // the writer goroutine runs; it sends pending
	err     error    // sticky: the socket failed or the limit was passed
	closing bool
	ended   sync.Once
	done    chan struct{} // closed once the socket is closed (end)
	hold    *readHold     // Read waits once it is held (see Broker.Close)
	state   atomic.Int32  // stReading, stEnded: whether the connection counts in hold.busy

	// finished is set once mochi is done with the connection (its
	// EstablishConnection returned: the client is out of mochi's client
	// map if its session ended); finishedCh, made only when someone waits
	// (waitFinished), is closed then.
	finished   bool
	finishedCh chan struct{}
	holds      string // the client id whose outbox this connection holds while it connects (takeover)
}

// Bits of queuedConn.state. A connection is busy (counted in
// readHold.busy) while neither is set: its reader goroutine is processing
// what it read.
const (
	stReading = 1 << iota // inside Read
	stEnded               // the socket is closed
)

// flip sets and clears bits of q.state and moves the hold's busy count if
// the connection became busy or stopped being busy.
func (q *queuedConn) flip(set, clear int32) {
	for {
		old := q.state.Load()
		now := (old | set) &^ clear
		if old == now || q.state.CompareAndSwap(old, now) {
			if q.hold != nil && (old == 0) != (now == 0) {
				if now == 0 {
					q.hold.busy.add(1)
				} else {
					q.hold.busy.add(-1)
				}
			}
			return
		}
	}
}

// finish marks the connection as done with by mochi and wakes whoever
// waits for it; it returns the client id of the outbox the connection
// held, if it still did.
func (q *queuedConn) finish() (holds string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finished = true
	if q.finishedCh != nil {
		close(q.finishedCh)
		q.finishedCh = nil
	}
	holds, q.holds = q.holds, ""
	return holds
}

// waitFinished waits until finish, or d passes; it reports whether the
// connection finished.
func (q *queuedConn) waitFinished(d time.Duration) bool {
	q.mu.Lock()
	if q.finished {
		q.mu.Unlock()
		return true
	}
	if q.finishedCh == nil {
		q.finishedCh = make(chan struct{})
	}
	ch := q.finishedCh
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// setHolds records that the connection holds the outbox of client id
// while it connects; it reports false if the connection already finished
// (then nothing would release it).
func (q *queuedConn) setHolds(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.finished {
		return false
	}
	q.holds = id
	return true
}

// takeHolds clears and returns what setHolds recorded.
func (q *queuedConn) takeHolds() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.holds
	q.holds = ""
	return h
}

// queuedConnOf finds the queuedConn under c (itself, or under TLS or a
// WebSocket); nil if there is none.
func queuedConnOf(c net.Conn) *queuedConn {
	for c != nil {
		switch v := c.(type) {
		case *queuedConn:
			return v
		case *wsConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func newQueuedConn(c net.Conn, limit int) *queuedConn {
	return &queuedConn{Conn: c, limit: limit, done: make(chan struct{})}
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
	case q.queued+len(p) > q.limit:
		q.err = ErrSlowConsumer
		q.end() // ends the writer and the client's read loop
		return 0, q.err
	}
	n := len(p)
	q.queued += n
	for len(p) > 0 {
		last := len(q.pending) - 1
		if last < 0 || len(q.pending[last]) == cap(q.pending[last]) {
			q.pending = append(q.pending, (*chunkPool.Get().(*[]byte))[:0])
			last++
		}
		c := q.pending[last]
		k := copy(c[len(c):cap(c)], p)
		q.pending[last] = c[:len(c)+k]
		p = p[k:]
	}
	if !q.writing {
		q.writing = true
		go q.writer()
	}
	return n, nil
}

// writer sends what Write queued, in order, until the queue is empty or
// the socket fails. It closes the socket if the connection is closing by
// then, or failed.
func (q *queuedConn) writer() {
	var out, iov [][]byte
	for {
		q.mu.Lock()
		if q.err != nil || len(q.pending) == 0 {
			q.writing = false
			end := q.closing || q.err != nil
			q.mu.Unlock()
			if end {
				q.end()
			}
			return
		}
		out, q.pending = q.pending, out[:0]
		q.queued = 0
		q.mu.Unlock()

		iov = append(iov[:0], out...) // WriteTo consumes its slice
		bufs := net.Buffers(iov)
		_, err := bufs.WriteTo(q.Conn)
		for i, c := range out {
			c = c[:0]
			chunkPool.Put(&c)
			out[i] = nil
		}
		clear(iov)

		if err != nil {
			q.mu.Lock()
			if q.err == nil {
				q.err = err
			}
			q.mu.Unlock()
		}
	}
}

// end closes the socket, once.
func (q *queuedConn) end() {
	q.ended.Do(func() {
		_ = q.Conn.Close()
		close(q.done)
		q.flip(stEnded, 0)
	})
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
	busy := q.writing // if so, the writer closes the socket once done
	q.mu.Unlock()
	if !busy {
		q.end()
	}
	return nil
}
