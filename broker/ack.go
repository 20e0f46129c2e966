package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// validAcks makes the acknowledgements mochi (v2.7.9) sends MQTT 5
// clients valid. It is the one place that avoids these bugs
// (TestAcks reproduces them against the pinned mochi):
//
//   - processPublish acknowledges a QoS 1 PUBLISH with reason code
//     packets.QosCodes[1], 0x01 ("granted QoS 1"), which is not a PUBACK
//     reason code ([MQTT-3.4.2-1]; 0x00 is success). mochi's encoder drops a
//     reason code below 0x80 when the packet has no properties, so the bug
//     shows once properties are present: paho-python's network thread dies
//     on it and MQTT.js reports "Invalid puback reason code".
//   - buildAck copies the PUBLISH's properties (User Properties, Content
//     Type, Response Topic...) into the PUBACK, PUBREC, PUBREL and PUBCOMP.
//     mochi's exported option Compatibilities.NoInheritedPropertiesOnAck
//     stops that (set in New, through ackCapabilities).
//   - processSubscribe and processUnsubscribe copy the request's User
//     Properties into SUBACK and UNSUBACK. That says nothing to the client,
//     and a SUBACK made larger than the client's Maximum Packet Size by a
//     copy of its own properties is not sent at all (mochi refuses to
//     write it), so the client waits for it forever. Here they are removed;
//     logbroker puts no User Property of its own on acknowledgements.
type validAcks struct {
	mqtt.HookBase
}

func (h *validAcks) ID() string { return "logbroker-valid-acks" }

func (h *validAcks) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

// OnPacketEncode runs on every packet mochi writes, just before encoding.
func (h *validAcks) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Puback:
		if pk.ReasonCode == packets.CodeGrantedQos1.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		}
	case packets.Suback, packets.Unsuback:
		pk.Properties.User = nil
	}
	return pk
}

// ackCapabilities sets mochi's exported options that validAcks relies on.
func ackCapabilities(caps *mqtt.Capabilities) {
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
}
