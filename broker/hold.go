package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// settleTimeout bounds the last wait of Close, with reads held, for the
// acknowledgements of what was sent after the drain began.
const settleTimeout = time.Second

// readHold stops every client connection of a broker from reading, once
// Close has drained: a call read after that point would be acknowledged
// (PUBACK) and answered (503) on a connection about to close, and its
// answer could be cut off. Held, no new packet reaches mochi; the answers
// already published are waited for until written (settle), then
// connections close, each flushing what was written to it.
type readHold struct {
	held chan struct{}
	once sync.Once
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
// PUBACK for them and keeps the message to send again (QoS 1 and 2). Only
// a packet mochi had already taken can still be acknowledged and answered;
// settle waits for those answers.
func (q *queuedConn) Read(p []byte) (int, error) {
	if q.hold != nil && q.hold.isHeld() {
		<-q.done
		return 0, net.ErrClosed
	}
	n, err := q.Conn.Read(p)
	if q.hold != nil && q.hold.isHeld() {
		<-q.done
		return 0, net.ErrClosed
	}
	return n, err
}

// settle waits, with reads held, until every QoS 1 and 2 message queued
// for a connected client has been written to its connection (from where
// Close still flushes it), or d passes. Acknowledgements cannot be waited
// for: reads are held. Only packets mochi had already read can still add
// messages, so the count only falls to zero.
//
// A packet mochi read just before the hold may not have reached the hook
// that counts its answer yet: settle waits settleGrace first, so that the
// count includes it.
func (b *Broker) settle(d time.Duration) {
	deadline := time.Now().Add(d)
	time.Sleep(min(d, settleGrace))
	for time.Now().Before(deadline) && b.unsent.any(b.srv) {
		time.Sleep(2 * time.Millisecond)
	}
}

// settleGrace is how long settle lets packets already read by mochi reach
// the service and be answered. Processing one takes microseconds; the grace
// is generous for a loaded machine, and costs only at shutdown.
const settleGrace = 100 * time.Millisecond

// unsentLog is a mochi hook that counts, per client, the QoS 1 and 2
// messages queued for it (mochi's per-client queue, Config.ClientQueue)
// and not yet written, so that Close can wait for that queue to empty:
// mochi drops what is left in it when it closes a connection.
type unsentLog struct {
	mqtt.HookBase
	perClient sync.Map // *mqtt.Client -> *atomic.Int64
}

func (h *unsentLog) ID() string { return "logbroker-unsent" }

func (h *unsentLog) Provides(b byte) bool {
	return b == mqtt.OnQosPublish || b == mqtt.OnPacketSent || b == mqtt.OnPublishDropped || b == mqtt.OnDisconnect
}

func (h *unsentLog) add(cl *mqtt.Client, n int64) {
	v, ok := h.perClient.Load(cl)
	if !ok {
		v, _ = h.perClient.LoadOrStore(cl, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(n)
}

// OnQosPublish: a QoS 1 or 2 message to cl is in flight and about to be
// queued (or resent).
func (h *unsentLog) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish {
		h.add(cl, 1)
	}
}

// OnPacketSent: written to the connection.
func (h *unsentLog) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
		h.add(cl, -1)
	}
}

// OnPublishDropped: the queue was full; a QoS 1 or 2 message was counted.
func (h *unsentLog) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos > 0 {
		h.add(cl, -1)
	}
}

func (h *unsentLog) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.perClient.Delete(cl)
}

// any reports whether a connected client has messages queued and unsent.
func (h *unsentLog) any(srv *mqtt.Server) bool {
	found := false
	h.perClient.Range(func(k, v any) bool {
		cl := k.(*mqtt.Client)
		found = v.(*atomic.Int64).Load() > 0 && !cl.Closed()
		return !found
	})
	return found
}

// count returns how many QoS 1 and 2 messages to cl wait in its queue.
func (h *unsentLog) count(cl *mqtt.Client) int64 {
	if v, ok := h.perClient.Load(cl); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}
