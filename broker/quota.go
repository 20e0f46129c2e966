package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// noSendQuota works around a deadlock in mochi (v2.7.9) with MQTT 5
// clients that set a Receive Maximum.
//
// For such a client mochi keeps a send quota, and after each packet it
// reads from the client while QoS 1 or 2 messages are in flight to it, it
// calls Inflight.NextImmediate, which read-locks the client's in-flight map
// and then read-locks it again in GetAll (inflight.go:95-99). A publisher
// recording a message in that map (Inflight.Set, write lock) between the
// two read locks blocks the second one; the client's read loop and that
// publisher then wait on each other for good, and with them every caller
// whose response that publisher would send next
// (broker/TestPublishSole/ReceiveMaximum... hung within 2,000 responses).
//
// The hook sets the client's send quota to 0 once its session is
// established, before its read loop starts, so that mochi never takes that
// path: messages to the client are no longer held back at its Receive
// Maximum, only at mochi's limit of unacknowledged messages (8192). A
// client that answers each message with PUBACK as it arrives (as MQTT
// clients do at QoS 1) is not affected.
type noSendQuota struct {
	mqtt.HookBase
}

func (h *noSendQuota) ID() string { return "logbroker-no-send-quota" }

func (h *noSendQuota) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }

// OnSessionEstablished runs after mochi set the quota from the CONNECT
// (and from an inherited session) and before the client's read loop.
func (h *noSendQuota) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
}
