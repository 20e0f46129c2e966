package broker

import (
	"errors"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// events is the broker's own mochi hook: it tells the outboxes of
// acknowledgements and of sessions that come, move and go.
type events struct {
	mqtt.HookBase
	b *Broker
}

func (h *events) ID() string { return "logbroker-events" }

func (h *events) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnQosDropped, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnPacketRead runs on the client's read goroutine, before mochi handles
// pk: a PUBACK ends the wait for the outbox's message with its id.
func (h *events) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Puback {
		return pk, nil
	}
	h.b.onAck(cl.ID, pk.PacketID)
	return strayAck(cl, pk), nil
}

// OnQosDropped: mochi dropped an in-flight record of cl's (its session
// ended, or a clean session took it over). Records moved to the new
// connection of a persistent session (cl is then marked taken over) are
// still in flight there.
func (h *events) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if takenOver(cl) {
		return
	}
	if v, ok := h.b.outboxes.Load(cl.ID); ok {
		v.(*outbox).done(pk.PacketID)
	}
}

// OnSessionEstablish runs on the new connection's goroutine, after
// authentication and before mochi looks for a session to inherit. When
// the client id has a session already, this is a takeover:
//
//   - the old session ends with its connection: the old connection is
//     ended, and waited for, first (mochiServer.endOld);
//   - it is persistent: the outbox of the client id is held, so that
//     nothing is sent to the old connection while mochi copies its
//     messages in flight to the new one (they would be lost), until the
//     new connection is established or mochi gives up on it. Only this
//     client id's messages wait; no lock is held.
func (h *events) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.b.mochi.client(cl.ID)
	if !ok || old == cl {
		return
	}
	if !persistent(old) {
		if !h.b.mochi.endOld(old) {
			h.b.cfg.Logger.Warn("session takeover: the old connection did not end in time", "client", cl.ID)
		}
		return
	}
	h.b.holdOutbox(cl)
}

// OnSessionEstablished runs once mochi has registered cl, sent its
// CONNACK and resent the inherited messages in flight, before its read
// loop starts.
func (h *events) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	noSendQuota(cl)
	if q := queuedConnOf(connOf(cl)); q != nil {
		if id := q.takeHolds(); id != "" {
			h.b.releaseOutbox(id, cl)
			return
		}
	}
	if v, ok := h.b.outboxes.Load(cl.ID); ok {
		v.(*outbox).reconcile(cl)
	}
}

// OnDisconnect: a Close draining no longer waits for acknowledgements
// from cl. Drops are logged by dropLog.
func (h *events) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if v, ok := h.b.outboxes.Load(cl.ID); ok {
		v.(*outbox).abandonDrain()
	}
}

// OnClientExpired: a persistent session expired; what its outbox holds
// has nobody to go to.
func (h *events) OnClientExpired(cl *mqtt.Client) {
	if v, ok := h.b.outboxes.Load(cl.ID); ok {
		v.(*outbox).expire()
	}
}

// holdOutbox holds the outbox of cl's client id until cl is established
// (releaseOutbox), and waits for a send under way to end.
func (b *Broker) holdOutbox(cl *mqtt.Client) {
	q := queuedConnOf(connOf(cl))
	if q == nil || !q.setHolds(cl.ID) {
		return
	}
	for {
		o := b.outboxFor(cl.ID)
		o.sending.Lock() // a send to the old connection under way ends first
		o.mu.Lock()
		dead := o.dead
		if !dead {
			o.held++
		}
		o.mu.Unlock()
		o.sending.Unlock()
		if !dead {
			return
		}
	}
}

// releaseOutbox ends a hold of client id's outbox; cl is the connection
// now established (nil if it failed).
func (b *Broker) releaseOutbox(id string, cl *mqtt.Client) {
	v, ok := b.outboxes.Load(id)
	if !ok {
		return // a held outbox is never retired; expire may have dropped it
	}
	o := v.(*outbox)
	if cl != nil {
		o.reconcile(cl)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held > 0 {
		o.held--
	}
	o.startLocked()
	o.retireLocked()
}

// reconcile stops the outbox waiting for ids that are not in flight on
// cl, the connection just established: mochi dropped them with the old
// session (a clean start, an expiry). An id is recorded in mochi before
// the outbox counts it, so none sent meanwhile is dropped. mochi is asked
// without o.mu held (Publish takes it).
func (o *outbox) reconcile(cl *mqtt.Client) {
	o.mu.Lock()
	ids := make([]uint16, 0, len(o.inflight))
	for pid := range o.inflight {
		ids = append(ids, pid)
	}
	o.mu.Unlock()
	var gone []uint16
	for _, pid := range ids {
		if !o.b.mochi.recorded(cl, pid) {
			gone = append(gone, pid)
		}
	}
	if len(gone) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, pid := range gone {
		delete(o.inflight, pid)
	}
	o.ackedLocked()
}

// expire drops everything the outbox holds: its session is gone.
func (o *outbox) expire() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.queue)
	o.queue, o.head, o.bytes = nil, 0, 0
	o.inflight = nil
	o.parked = false
	o.settleLocked()
	o.retireLocked()
}

// userHooks are the hooks added with AddHook that the broker's own path
// asks as mochi would: those that check ACLs and those that see publishes.
type userHooks struct {
	mu      sync.RWMutex
	acl     []mqtt.Hook
	publish []mqtt.Hook
}

func (u *userHooks) add(h mqtt.Hook) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if h.Provides(mqtt.OnACLCheck) {
		u.acl = append(u.acl, h)
	}
	if h.Provides(mqtt.OnPublish) {
		u.publish = append(u.publish, h)
	}
}

// allowed asks the hooks as mochi's Hooks.OnACLCheck does: any that
// allows, allows; none, denies.
func (u *userHooks) allowed(cl *mqtt.Client, topic string) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	for _, h := range u.acl {
		if h.OnACLCheck(cl, topic, false) {
			return true
		}
	}
	return false
}

// onPublish runs the OnPublish hooks on pk, published by cl, as mochi's
// processPublish does: it returns what to deliver, and false if a hook
// consumed or rejected it (the log service consumes what is published on
// its request topics, the broker's own responses there included).
func (u *userHooks) onPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	pkx := pk
	for _, h := range u.publish {
		npk, err := h.OnPublish(cl, pkx)
		switch {
		case err == nil:
			pkx = npk
		case errors.Is(err, packets.ErrRejectPacket), errors.Is(err, packets.CodeSuccessIgnore):
			return pk, false
		default:
			return pk, true // mochi logs the error and delivers the packet as published
		}
	}
	return pkx, true
}
