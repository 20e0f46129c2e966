package broker

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// message is one publish of the broker's own (an answer, a follow answer,
// a live entry), shared by the outboxes of all its subscribers. Publish
// copies what it was given into it; nothing changes it afterwards.
type message struct {
	topic   string
	payload []byte
	corr    []byte // MQTT 5 Correlation Data
	qos     byte
}

// size is what the message counts against an outbox's bound.
func (m *message) size() int { return len(m.topic) + len(m.payload) + len(m.corr) + 64 }

// target is one subscriber of a topic, as a message to it needs it.
type target struct {
	id  string // client id
	qos byte   // the subscription's maximum QoS
	ids []int  // MQTT 5 subscription identifiers, sorted
}

// entry is a message waiting in an outbox.
type entry struct {
	m   *message
	t   *target
	seq uint64
}

// outbox is logbroker's own outbound queue for one client id (one session,
// so that what waits survives a reconnect or a takeover): the messages the
// broker publishes to it, in order. Publish only appends (add), under the
// outbox's own mutex, which nothing holds across a call into mochi, a
// socket write or a wait. A goroutine (run) sends them, one at a time,
// and exists only while there is something it can send: an outbox with
// nothing queued and nothing in flight is removed from Broker.outboxes, so
// an idle connection has none.
//
// A QoS 1 message takes a packet id and an in-flight record in mochi's
// per-client map (so the ids never clash with mochi's own deliveries and
// mochi resends it to a persistent session that reconnects) and waits
// there for the client's PUBACK; while the client has ReceiveMaximum of
// the outbox's messages unacknowledged, run stops (parked) and the PUBACK
// (onAck) starts it again.
//
// The bound: when what waits passes Config.MaxPending bytes, the queue is
// dropped and run disconnects the client as a slow consumer (counted, and
// logged once).
type outbox struct {
	b  *Broker
	id string

	// sending is held by run for each message it sends; a takeover takes
	// it once, after holding the outbox, so that no send to the old
	// connection is half done while mochi moves its session (see
	// Broker.holdOutbox).
	sending sync.Mutex

	mu       sync.Mutex
	queue    []entry // queue[head:] waits, oldest first
	head     int
	bytes    int               // of queue[head:]
	seq      uint64            // of the last entry added
	inflight map[uint16]uint64 // our QoS 1 messages not yet acknowledged: packet id -> seq
	running  bool              // run is on its way
	parked   bool              // run stopped at the client's Receive Maximum
	held     int               // connections taking the session over (run waits)
	slow     bool              // the bound was passed: run disconnects the client
	dropped  int64             // messages dropped with the queue since the last log
	dead     bool              // removed from Broker.outboxes: add elsewhere
	draining bool              // Close waits for it to settle up to mark
	mark     uint64
}

// outboxFor returns the live outbox of client id, making one if needed.
func (b *Broker) outboxFor(id string) *outbox {
	if v, ok := b.outboxes.Load(id); ok {
		return v.(*outbox)
	}
	v, loaded := b.outboxes.LoadOrStore(id, &outbox{b: b, id: id})
	if !loaded {
		b.live.add(1)
	}
	return v.(*outbox)
}

// enqueue adds m for subscriber t; it never waits.
func (b *Broker) enqueue(m *message, t *target) {
	for !b.outboxFor(t.id).add(m, t) {
		// The outbox retired meanwhile; the next one is fresh.
	}
}

// add queues m for t and starts run if it can send; false if the outbox
// is dead (the caller takes a new one).
func (o *outbox) add(m *message, t *target) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead {
		return false
	}
	if o.slow {
		o.dropped++
		return true
	}
	if n := m.size(); o.bytes+n > o.b.cfg.MaxPending {
		o.dropped += int64(len(o.queue) - o.head + 1)
		clear(o.queue)
		o.queue, o.head, o.bytes = nil, 0, 0
		o.slow = true
	} else {
		o.seq++
		o.queue = append(o.queue, entry{m: m, t: t, seq: o.seq})
		o.bytes += n
	}
	o.startLocked()
	return true
}

// startLocked starts run if it is not running and has something to do.
// REQUIRES: o.mu held.
func (o *outbox) startLocked() {
	if o.running || o.held > 0 {
		return
	}
	if !o.slow && (o.parked || o.head == len(o.queue)) {
		return
	}
	o.running = true
	o.parked = false
	o.b.sending.add(1)
	go o.run()
}

// retireLocked removes the outbox from the broker once it has nothing to
// do: nothing queued, nothing in flight, no takeover under way.
// REQUIRES: o.mu held.
func (o *outbox) retireLocked() {
	if o.dead || o.running || o.held > 0 || o.slow || o.head != len(o.queue) || len(o.inflight) > 0 {
		return
	}
	o.dead = true
	o.settleLocked()
	o.b.outboxes.CompareAndDelete(o.id, o)
	o.b.live.add(-1)
}

// run sends what is queued until the queue is empty, the client's Receive
// Maximum is reached, or a takeover holds the outbox.
func (o *outbox) run() {
	defer o.b.sending.add(-1)
	for o.step() {
	}
}

// step sends the oldest message; false once run should stop.
func (o *outbox) step() bool {
	o.sending.Lock()
	defer o.sending.Unlock()

	o.mu.Lock()
	if o.slow {
		dropped := o.dropped
		o.slow, o.dropped = false, 0
		o.mu.Unlock()
		o.b.slowConsumer(o.id, dropped)
		return true
	}
	if o.held > 0 || o.head == len(o.queue) {
		o.running = false
		o.retireLocked()
		o.mu.Unlock()
		return false
	}
	e := o.queue[o.head]
	o.mu.Unlock()

	cl, ok := o.b.mochi.client(o.id)
	out, deliver := o.b.packetFor(cl, ok, e)
	if !deliver {
		o.pop(e.seq, 0)
		return true
	}
	if out.FixedHeader.Qos == 0 {
		if o.pop(e.seq, 0) {
			_ = o.b.write(cl, out)
		}
		return true
	}

	o.mu.Lock()
	if len(o.inflight) >= receiveMaximum(cl) {
		o.parked, o.running = true, false
		o.mu.Unlock()
		return false
	}
	o.mu.Unlock()
	id, err := o.b.mochi.reserve(cl, out, e.seq)
	if err != nil { // every packet id in use: mochi's own deliveries hold them
		o.b.inflightDrops.Add(1)
		o.pop(e.seq, 0)
		return true
	}
	out.PacketID = id
	if !o.pop(e.seq, id) {
		o.b.mochi.release(cl, id) // the queue was dropped meanwhile (slow consumer, expiry)
		return true
	}
	switch {
	case !online(cl) && persistent(cl):
		// Kept in the session: mochi resends it when the client is back.
	case !online(cl):
		o.forget(cl, id)
	default:
		if err := o.b.write(cl, out); errors.Is(err, packets.ErrPacketTooLarge) || (err != nil && !persistent(cl)) {
			o.forget(cl, id)
		}
	}
	return true
}

// pop takes the oldest entry, seq, off the queue; a QoS 1 message sent
// with packet id id (not 0) is in flight from now on. It reports false if
// the entry is no longer there: the queue was dropped (a slow consumer,
// an expired session) while run looked at it.
func (o *outbox) pop(seq uint64, id uint16) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.head == len(o.queue) || o.queue[o.head].seq != seq {
		return false
	}
	e := o.queue[o.head]
	o.queue[o.head] = entry{}
	o.head++
	o.bytes -= e.m.size()
	if o.head == len(o.queue) {
		o.queue, o.head = o.queue[:0], 0
		if cap(o.queue) > 64 {
			o.queue = nil
		}
	}
	if id != 0 {
		if o.inflight == nil {
			o.inflight = make(map[uint16]uint64)
		}
		o.inflight[id] = e.seq
	}
	o.settleLocked()
	return true
}

// forget drops the in-flight record of a message that will never be
// acknowledged (discarded as too large, or its session ended).
func (o *outbox) forget(cl *mqtt.Client, id uint16) {
	o.b.mochi.release(cl, id)
	o.done(id)
}

// done ends the wait for id (acknowledged, or dropped by mochi); it
// reports whether id was the outbox's.
func (o *outbox) done(id uint16) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.inflight[id]; !ok {
		return false
	}
	delete(o.inflight, id)
	o.ackedLocked()
	return true
}

// ackedLocked follows messages leaving o.inflight: a draining Close may be
// done, a parked run may send again, an outbox left with nothing retires.
// REQUIRES: o.mu held.
func (o *outbox) ackedLocked() {
	o.settleLocked()
	if o.parked {
		o.parked = false
		o.startLocked()
	}
	o.retireLocked()
}

// onAck is told of every PUBACK a client sends (OnPacketRead, before
// mochi handles it).
func (b *Broker) onAck(clientID string, id uint16) bool {
	v, ok := b.outboxes.Load(clientID)
	return ok && v.(*outbox).done(id)
}

// packetFor builds the packet of e for cl (found: ok), or reports that it
// goes to nobody: the client is unknown, is the broker itself, or may not
// read the topic (the read ACL of the
// hooks added with AddHook, asked as mochi asks them).
func (b *Broker) packetFor(cl *mqtt.Client, ok bool, e entry) (packets.Packet, bool) {
	if !ok || isInline(cl) {
		return packets.Packet{}, false
	}
	if !b.hooks.allowed(cl, e.m.topic) {
		return packets.Packet{}, false
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(e.m.qos, e.t.qos, b.maxQos)},
		TopicName:   e.m.topic,
		Payload:     e.m.payload,
		Origin:      b.inline.ID,
	}
	pk.Properties.CorrelationData = e.m.corr
	if len(e.t.ids) > 0 { // [MQTT-3.3.4-3]
		pk.Properties.SubscriptionIdentifier = e.t.ids
	}
	return pk, true
}

// write sends pk to cl; a packet larger than the client's Maximum Packet
// Size is discarded as if sent ([MQTT-3.1.2-25]) and counted.
func (b *Broker) write(cl *mqtt.Client, pk packets.Packet) error {
	err := b.mochi.write(cl, pk)
	if errors.Is(err, packets.ErrPacketTooLarge) {
		b.tooLarge.Add(1)
	}
	return err
}

// slowConsumer disconnects client id, whose outbox passed its bound and
// lost dropped messages, and logs it.
func (b *Broker) slowConsumer(id string, dropped int64) {
	b.slow.Add(1)
	connected := false
	if cl, ok := b.mochi.client(id); ok && online(cl) {
		connected = true
		b.mochi.disconnect(cl, packets.ErrQuotaExceeded)
	}
	b.cfg.Logger.Warn("slow consumer: messages dropped", "client", id, "dropped", dropped,
		"limit_bytes", b.cfg.MaxPending, "connected", connected)
}

// abandonDrain stops Close waiting for the outbox: its client is gone, so
// what it has in flight will not be acknowledged before the broker stops.
func (o *outbox) abandonDrain() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.draining {
		o.draining = false
		o.b.draining.add(-1)
	}
}

// markDrain makes Close wait until what the outbox holds now is done;
// false if nothing needs waiting for.
func (o *outbox) markDrain() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead || o.draining {
		return
	}
	o.draining, o.mark = true, o.seq
	o.b.draining.add(1)
	o.settleLocked()
}

// settleLocked tells a draining Close when everything the outbox held at
// its mark is done. REQUIRES: o.mu held.
func (o *outbox) settleLocked() {
	if !o.draining {
		return
	}
	if o.head < len(o.queue) && o.queue[o.head].seq <= o.mark {
		return
	}
	for _, s := range o.inflight {
		if s <= o.mark {
			return
		}
	}
	o.draining = false
	o.b.draining.add(-1)
}

// targetsOf turns a subscriber map into targets, sorted by client id (so
// a fan-out goes in a stable order).
func targetsOf(subs map[string]packets.Subscription) []*target {
	out := make([]*target, 0, len(subs))
	for id, sub := range subs {
		t := &target{id: id, qos: sub.Qos}
		for _, n := range sub.Identifiers {
			t.ids = append(t.ids, n)
		}
		slices.Sort(t.ids)
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *target) int { return cmp.Compare(a.id, b.id) })
	return out
}
