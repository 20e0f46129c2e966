package broker

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// connCounts are the numbers the listeners keep for the limits: the
// connections open and those ended by Limits.ConnectTimeout.
type connCounts struct {
	open            atomic.Int64 // accepted and not yet closed (lingering ones included)
	connectTimeouts atomic.Int64
}

// limitListener wraps each accepted socket in a limitConn. It sits
// directly on the TCP listener, under the queuedConn, TLS and WebSocket
// layers.
type limitListener struct {
	net.Listener
	counts         *connCounts
	connectTimeout time.Duration // 0: none
}

func (l limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.counts.open.Add(1)
	lc := &limitConn{Conn: c, counts: l.counts}
	if l.connectTimeout > 0 {
		lc.connectBy = time.Now().Add(l.connectTimeout)
		lc.connecting.Store(true)
		_ = c.SetReadDeadline(lc.connectBy)
	}
	return lc, nil
}

// limitConn is an accepted socket. Until its CONNECT is processed
// (connected), no read deadline set on it reaches past connectBy: the
// HTTP server of the WebSocket listener and TLS set their own, and mochi
// sets none before it has read the CONNECT (server.go attachClient), so
// without this a client that connects and sends nothing, or half a
// CONNECT, would hold its socket and two goroutines for ever.
type limitConn struct {
	net.Conn
	counts     *connCounts
	connectBy  time.Time
	connecting atomic.Bool // the CONNECT is not processed yet
	timedOut   atomic.Bool // counted in connectTimeouts

	mu       sync.Mutex // serialises SetReadDeadline with connected
	closeOne sync.Once
	reading  sync.Mutex  // held by Read and by linger: one reader at a time
	closing  atomic.Bool // Close was called: Read fails
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.reading.Lock()
	defer c.reading.Unlock()
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	// Others end reads with a past deadline too (net/http when the
	// WebSocket upgrade takes the connection over): only one at connectBy
	// counts.
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.connecting.Load() &&
		!time.Now().Before(c.connectBy) && c.timedOut.CompareAndSwap(false, true) {
		c.counts.connectTimeouts.Add(1)
	}
	return n, err
}

// SetReadDeadline sets t, or connectBy if that is sooner and the CONNECT
// is not processed yet.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connecting.Load() && (t.IsZero() || t.After(c.connectBy)) {
		t = c.connectBy
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, the read one as SetReadDeadline does.
func (c *limitConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// connected lifts the connect deadline: the CONNECT was read, and mochi
// now sets the deadlines of the keep-alive.
func (c *limitConn) connected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connecting.CompareAndSwap(true, false) {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
}

// Close ends the connection so that the client can read what it was sent
// last (a DISCONNECT with its reason code, a refusing CONNACK) even while
// it is still writing: closing a socket with unread bytes in its receive
// buffer makes the kernel answer with a reset, and a client that gets the
// reset before it read the DISCONNECT never learns why it was closed
// (issue 13: a client past its Receive Maximum saw a reset instead of
// DISCONNECT 0x93). So Close stops this connection's reads, shuts the
// write side (the client reads everything sent, then end of stream), and
// a goroutine discards what the client still sends, for up to
// lingerTimeout or lingerBytes, or until the client closes, before the
// socket is closed. Every close goes through here: the ones the server
// initiates (protocol errors, slow consumers, takeovers, refusals,
// shutdown) and the ones that follow the client's own DISCONNECT or end
// of stream, where the socket is closed at once. Close returns at once.
// The connection counts as open (Limits.MaxConns) until the socket is
// closed.
//
// mochi's own write buffer (Options.ClientNetWriteBufferSize) is off for
// the same reason (New sets it to 1 byte): while a client had packets
// waiting in mochi's outbound queue, mochi wrote further packets into that
// buffer, and a DISCONNECT written there just before the close was never
// sent (in TestClosingServerLetsClientRead with mochi's 2 KiB buffer, most
// rounds ended without it). queuedConn already queues every write.
func (c *limitConn) Close() error {
	err := net.ErrClosed
	c.closeOne.Do(func() {
		c.closing.Store(true)
		tcp, ok := c.Conn.(interface{ CloseWrite() error })
		if !ok || tcp.CloseWrite() != nil {
			err = c.Conn.Close()
			c.counts.open.Add(-1)
			return
		}
		// A past deadline ends a Read in progress (mochi's read loop), so
		// that linger is the only reader.
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
		go c.linger()
		err = nil
	})
	return err
}

// Bounds of the discarding reads of a closing connection (Close).
const (
	lingerTimeout = 2 * time.Second
)

// linger discards what the client still sends, within the bounds, then
// closes the socket.
func (c *limitConn) linger() {
	c.reading.Lock()
	defer c.reading.Unlock()
	if err := c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout)); err == nil {
		_, _ = io.Copy(io.Discard, c.Conn) // until end of stream, an error or the deadline
	}
	_ = c.Conn.Close()
	c.counts.open.Add(-1)
}

// netConner is a connection wrapping another; *tls.Conn is one.
type netConner interface{ NetConn() net.Conn }

// NetConn is the socket under q.
func (q *queuedConn) NetConn() net.Conn { return q.Conn }

// NetConn is the connection under the WebSocket.
func (c *wsConn) NetConn() net.Conn { return c.Conn }

// limitConnOf finds the limitConn under c (TLS, queuedConn, WebSocket);
// nil if there is none (an inline client, or a listener without one).
func limitConnOf(c net.Conn) *limitConn {
	for c != nil {
		switch v := c.(type) {
		case *limitConn:
			return v
		case netConner:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
