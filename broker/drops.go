package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Drops counts what the broker did not deliver to slow or stuck clients.
type Drops struct {
	// Messages dropped because the client's queue of packets to write
	// (Config.ClientQueue) was full (mochi's MessagesDropped).
	Messages int64
	// QoS 1 and 2 messages dropped because the client already held
	// mochi's maximum of unacknowledged ones (8192; InflightDropped): a
	// client that never sends PUBACK.
	Inflight int64
	// Clients disconnected because more than Config.MaxPending bytes
	// waited for their socket (ErrSlowConsumer).
	SlowConsumers int64
	// Publishes that waited for room in their subscriber's queue rather
	// than be dropped (see Broker.Publish); none was lost.
	Waited int64
}

// Drops returns the broker's drop counters, for metrics.
func (b *Broker) Drops() Drops {
	return Drops{
		Messages:      atomic.LoadInt64(&b.srv.Info.MessagesDropped),
		Inflight:      atomic.LoadInt64(&b.srv.Info.InflightDropped),
		SlowConsumers: b.drops.slow.Load(),
		Waited:        b.waits.Load(),
	}
}

// dropLog is a mochi hook that counts, per client, the messages dropped
// because its queue was full, and logs, when the client goes, those, a
// disconnection for being a slow consumer, and a client that held mochi's
// maximum of unacknowledged messages.
type dropLog struct {
	mqtt.HookBase
	log       *slog.Logger
	perClient sync.Map // *mqtt.Client -> *atomic.Int64
	slow      atomic.Int64
}

func (h *dropLog) ID() string { return "logbroker-drops" }

func (h *dropLog) Provides(b byte) bool {
	return b == mqtt.OnPublishDropped || b == mqtt.OnDisconnect
}

// OnPublishDropped runs on the publisher's goroutine: it only counts.
func (h *dropLog) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	n, ok := h.perClient.Load(cl)
	if !ok {
		n, _ = h.perClient.LoadOrStore(cl, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
}

// OnDisconnect logs what the client lost, if anything.
func (h *dropLog) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	var dropped int64
	if n, ok := h.perClient.LoadAndDelete(cl); ok {
		dropped = n.(*atomic.Int64).Load()
	}
	slow := slowConsumer(cl.Net.Conn)
	if slow {
		h.slow.Add(1)
	}
	// A client at mochi's limit of unacknowledged messages had every QoS
	// 1 and 2 message past it dropped (counted in Drops.Inflight).
	held := cl.State.Inflight.Len()
	full := held >= int(maxInflight)
	if dropped > 0 || slow || full {
		h.log.Warn("messages to a slow client dropped", "client", cl.ID, "dropped", dropped, "slow_consumer", slow,
			"unacknowledged", held, "unacknowledged_limit_reached", full)
	}
}

// maxInflight is mochi's limit of unacknowledged QoS 1 and 2 messages per
// client; New keeps its default.
var maxInflight = mqtt.NewDefaultServerCapabilities().MaximumInflight

// slowConsumer reports whether c (a queuedConn, possibly under TLS or a
// WebSocket) was closed for holding too many bytes unsent.
func slowConsumer(c net.Conn) bool {
	for c != nil {
		switch v := c.(type) {
		case *queuedConn:
			v.mu.Lock()
			defer v.mu.Unlock()
			return errors.Is(v.err, ErrSlowConsumer)
		case *wsConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return false
		}
	}
	return false
}
