package broker

import (
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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

// inflightLog is a mochi hook that keeps, per client id, the packet ids of
// the QoS 1 and 2 messages mochi's own path has in flight to it (one
// client's publish to another's subscription), learnt from OnQosPublish
// and, for the end of each wait, from the client's PUBACK or PUBCOMP
// (OnPacketRead) or mochi dropping the record: so that Close can let those
// be acknowledged too, as it does for the outboxes' messages.
type inflightLog struct {
	mqtt.HookBase
	draining *gauge

	mu      sync.Mutex
	clients map[string]*clientInflight
}

type clientInflight struct {
	ids     map[uint16]struct{} // in flight
	waiting map[uint16]struct{} // those Close waits for
}

func (h *inflightLog) ID() string { return "logbroker-inflight" }

func (h *inflightLog) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosPublish, mqtt.OnQosDropped, mqtt.OnPacketRead, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnQosPublish: a QoS 1 or 2 message to cl is in flight (or resent).
func (h *inflightLog) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.clients[cl.ID]
	if c == nil {
		if h.clients == nil {
			h.clients = make(map[string]*clientInflight)
		}
		c = &clientInflight{ids: make(map[uint16]struct{})}
		h.clients[cl.ID] = c
	}
	c.ids[pk.PacketID] = struct{}{}
}

// OnPacketRead: a PUBACK or PUBCOMP from the client ends a wait.
func (h *inflightLog) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if t := pk.FixedHeader.Type; t == packets.Puback || t == packets.Pubcomp {
		h.done(cl.ID, pk.PacketID)
	}
	return pk, nil
}

// OnQosDropped: mochi dropped a record (moved to a new connection of a
// persistent session, it is published again there).
func (h *inflightLog) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.done(cl.ID, pk.PacketID) }

func (h *inflightLog) done(id string, pid uint16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.clients[id]
	if c == nil {
		return
	}
	delete(c.ids, pid)
	if _, ok := c.waiting[pid]; ok {
		delete(c.waiting, pid)
		if len(c.waiting) == 0 {
			h.draining.add(-1)
		}
	}
	if len(c.ids) == 0 && len(c.waiting) == 0 {
		delete(h.clients, id)
	}
}

// OnDisconnect: Close no longer waits for cl.
func (h *inflightLog) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.clients[cl.ID]; c != nil && len(c.waiting) > 0 {
		c.waiting = nil
		h.draining.add(-1)
	}
}

// markDrain makes Close wait for what is in flight now.
func (h *inflightLog) markDrain(online func(id string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, c := range h.clients {
		if len(c.ids) == 0 || len(c.waiting) > 0 || !online(id) {
			continue
		}
		c.waiting = maps.Clone(c.ids)
		h.draining.add(1)
	}
}
