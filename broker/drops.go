package broker

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Drops counts what the broker did not deliver to slow or stuck clients.
type Drops struct {
	// Messages of other clients (mochi's own path) dropped because the
	// client's queue of packets to write (Config.ClientQueue) was full
	// (mochi's MessagesDropped).
	Messages int64
	// QoS 1 and 2 messages dropped because every packet id of the client
	// was in use, or mochi's own path found it holding its maximum of
	// unacknowledged messages (8192; mochi's InflightDropped, plus ours).
	Inflight int64
	// Clients disconnected as slow consumers: more than Config.MaxPending
	// bytes waited in their outbox or for their socket.
	SlowConsumers int64
	// Messages of the broker's own discarded because they were larger
	// than the client's MQTT 5 Maximum Packet Size ([MQTT-3.1.2-25]).
	TooLarge int64
}

// Drops returns the broker's drop counters, for metrics.
func (b *Broker) Drops() Drops {
	return Drops{
		Messages:      b.mochi.dropped(),
		Inflight:      b.mochi.inflightDropped() + b.inflightDrops.Load(),
		SlowConsumers: b.slow.Load() + b.drops.slow.Load(),
		TooLarge:      b.tooLarge.Load(),
	}
}

// dropLog is a mochi hook that counts, per client, the messages of mochi's
// own path dropped because its queue was full, and logs, when the client
// goes, those and a disconnection for not reading its socket.
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
	slow := false
	if q := queuedConnOf(connOf(cl)); q != nil {
		q.mu.Lock()
		slow = errors.Is(q.err, ErrSlowConsumer)
		q.mu.Unlock()
	}
	if slow {
		h.slow.Add(1)
	}
	if dropped > 0 || slow {
		h.log.Warn("messages to a slow client dropped", "client", cl.ID, "dropped", dropped, "slow_consumer", slow)
	}
}
