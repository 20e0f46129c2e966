package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// strayAck works around a packet id clash in mochi (v2.7.9) that
// disconnected clients sending QoS 2 requests with several in flight
// ("receive maximum exceeded").
//
// mochi keeps one map of packets in flight per client, keyed by packet id,
// for both directions, although the client's ids and the server's are
// independent (MQTT 5 §2.2.1). A QoS 2 PUBLISH from the client with id X
// is recorded there as the PUBREC sent back, until the client's PUBREL.
// When the server has a QoS 1 message in flight to the client with the
// same id X (a response of the log service: mochi drops its record when
// the PUBLISH arrives), or sends one while it handles the PUBLISH (before
// it records the PUBREC), the client's PUBACK for that message deletes the
// PUBREC record instead; the PUBREL then finds nothing, the client's
// receive quota is never given back, and once ReceiveMaximum of them have
// leaked mochi disconnects the client.
//
// A PUBACK for an id whose record is a PUBREC cannot be meant for it (that
// id waits for a PUBREL, and mochi never hands a recorded id to a new
// message), so the hook renames it to id 0, which mochi never records, and
// mochi ignores it. The message it acknowledged had lost its record already.
type strayAck struct {
	mqtt.HookBase
}

func (h *strayAck) ID() string { return "logbroker-stray-ack" }

func (h *strayAck) Provides(b byte) bool { return b == mqtt.OnPacketRead }

// OnPacketRead runs on the client's read goroutine, which alone handles
// its PUBACK, PUBREL and PUBLISH packets, so the record it checks cannot
// change before mochi processes pk.
func (h *strayAck) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Puback {
		return pk, nil
	}
	if rec, ok := cl.State.Inflight.Get(pk.PacketID); ok && rec.FixedHeader.Type == packets.Pubrec {
		pk.PacketID = 0
	}
	return pk, nil
}
