package hooks

import (
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/rpc"
)

// Refusals counts what Auth refused because it would have let a client
// speak as someone else.
type Refusals struct {
	// Frames are publishes to an RPC topic (<x>/rpc, <x>/rpc/...) whose
	// payload is not a frame with one of the publisher's own sources as
	// src: dropped (QoS 0) or refused (QoS 1/2).
	Frames int64
	// Wills are CONNECTs refused for their will: retained, on a topic the
	// user may not publish to, or on an RPC topic with a foreign src.
	Wills int64
}

// refusals are Auth's Refusals, counted as they happen.
type refusals struct {
	frames, wills atomic.Int64
}

// Refusals reports the counts so far.
func (a *Auth) Refusals() Refusals {
	return Refusals{Frames: a.refused.frames.Load(), Wills: a.refused.wills.Load()}
}

// rpcTopic reports whether topic is an RPC topic, <x>/rpc or <x>/rpc/...:
// a level "rpc" after the first. Frames published there are read as
// requests or responses by whoever subscribes, so their src must be true.
func rpcTopic(topic string) bool {
	i := strings.IndexByte(topic, '/')
	for i >= 0 {
		rest := topic[i+1:]
		if rest == "rpc" || strings.HasPrefix(rest, "rpc/") {
			return true
		}
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// serviceTopic reports whether topic is a request topic of the service.
// Those frames are consumed by the RPC hook and never delivered; a foreign
// src there is answered by the service itself with 403 on the caller's own
// <identity>/rpc (PROTOCOL §6), so the frame rule leaves them to it.
func (a *Auth) serviceTopic(topic string) bool {
	for _, s := range a.services {
		if topic == s+"/rpc" || strings.HasPrefix(topic, s+"/rpc/") {
			return true
		}
	}
	return false
}

// forgedFrame reports why a non-admin's payload may not go to topic: on an
// RPC topic other than the service's, it must be one JSON object whose src
// is one of the publisher's own sources (rpc.Caller.Owns), and not a name of
// the service, even for a user who happens to be named like it. "" means it
// may.
func (a *Auth) forgedFrame(c rpc.Caller, topic string, payload []byte) string {
	if !rpcTopic(topic) || a.serviceTopic(topic) {
		return ""
	}
	src, err := rpc.FrameSrc(payload)
	if err != nil {
		return err.Error()
	}
	if !c.Owns(src) {
		return "src " + src + " is not the publisher's"
	}
	for _, s := range a.services {
		// Only the broker speaks as the service; a user named like it
		// owns nothing under that name either (other clients' sources
		// under it, such as mos reply roots, are owned only as Owns says).
		if src == s || (c.Identity == s && strings.HasPrefix(src, s+"/")) {
			return "src " + src + " is the service's"
		}
	}
	return ""
}

// willRefusal reports why a non-admin may not leave this will ("" if it
// may): mochi publishes a will past OnPublish, so what OnPublish enforces
// for publishes is checked here, once, at CONNECT. A retained will would be
// a standing message for every later subscriber, and only admins retain.
func (a *Auth) willRefusal(u User, caller rpc.Caller, c packets.ConnectParams) string {
	if !a.willAllowed(u, c.WillTopic) {
		return "will topic not allowed" // admins included: never on the service's request topics
	}
	if u.Role == rpc.RoleAdmin {
		return ""
	}
	if c.WillRetain {
		return "will has the retain flag: only admins may retain"
	}
	if why := a.forgedFrame(caller, c.WillTopic, c.WillPayload); why != "" {
		return "will on an rpc topic: " + why
	}
	return ""
}

// refusePublish refuses pk the way mochi refuses a publish its ACL denies
// (Server.processPublish): QoS 0 is dropped; QoS 1 and 2 are answered
// with PUBACK or PUBREC "not authorized" (0x87) for MQTT 5, and close the
// connection of a 3.1.1 client, which has no such code. It returns the
// error OnPublish must return.
//
// The refusal is done here, not by returning packets.ErrNotAuthorized from
// OnPublish: mochi v2.7.9 still delivers a publish whose OnPublish returned
// an error code when it is QoS 0 or from a 3.1.1 client, and answers a
// QoS 2 one with a PUBACK instead of a PUBREC
// (TestMochiOnPublishCodeStillDelivers).
func (a *Auth) refusePublish(cl *mqtt.Client, pk packets.Packet) error {
	switch {
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion < 5:
		_ = a.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	default:
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    pk.PacketID,
			ReasonCode:  packets.ErrNotAuthorized.Code,
		}
		if pk.FixedHeader.Qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		_ = cl.WritePacket(ack)
	}
	return packets.ErrRejectPacket
}
