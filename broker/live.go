package broker

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Live messages (QoS 0, not retained: the log service's <src>/log/<stream>
// entries) are written to each subscriber's connection by the publishing
// goroutine itself, not handed to mochi's per-client queue of
// Config.ClientQueue packets, which drops what does not fit. A dashboard
// that keeps reading therefore loses nothing however fast devices log and
// however small that queue is: the bytes wait in its queuedConn, and only a
// client with more than Config.MaxPending bytes unsent is cut off
// (ErrSlowConsumer), as for every other write. The per-client queue then
// holds only responses and acknowledgements, so it can be kept short,
// which is what an idle connection costs.
//
// Like mochi, it first runs the OnPublish hooks added with AddHook (a hook
// may consume the message: the log service does on its request topics).
// Per subscriber this does what mochi's publishToClient does for a QoS 0
// message: the NoLocal rule, the read ACL (the hooks added with AddHook
// that provide OnACLCheck, allowing if any allows, as mochi asks them),
// subscription identifiers and outbound topic aliases; mochi's
// Client.WritePacket does the rest (protocol version, the client's maximum
// packet size, the OnPacketEncode and OnPacketSent hooks). Topics with
// shared or inline subscriptions take mochi's own path.

// userHooks are the hooks added with AddHook that the direct paths must
// ask as mochi would: those that check ACLs and those that see publishes.
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

// isLive reports whether pk takes the direct path to every subscriber.
func isLive(pk *packets.Packet) bool {
	return pk.FixedHeader.Qos == 0 && !pk.FixedHeader.Retain
}

// publishLive writes pk (see isLive) to every subscriber of its topic. It
// returns false, having sent nothing, when the topic has shared or inline
// subscriptions: the caller then publishes through mochi. Called with
// b.pubs held shared.
func (b *Broker) publishLive(pk packets.Packet) bool {
	subs := b.srv.Topics.Subscribers(pk.TopicName)
	if len(subs.Shared) > 0 || len(subs.InlineSubscriptions) > 0 {
		return false
	}
	pk, ok := b.hooks.onPublish(b.inline, pk)
	if !ok {
		return true
	}
	pk.Origin = b.inline.ID
	pk.Created = time.Now().Unix()
	for id, sub := range subs.Subscriptions {
		if cl, ok := b.srv.Clients.Get(id); ok {
			b.deliver(cl, sub, pk)
		}
	}
	return true
}

// publishSole sends pk, a QoS 1 or 2 message that is not retained (a
// response), straight to t.sole, the only subscriber of its topic
// (interest.lookup, taken by Publish), as mochi's queue would, with a
// packet id and an in-flight record kept for a resend after a reconnect.
// It returns false, having sent nothing, when mochi must deliver it
// instead: the client is unknown, or QoS 1 and 2 messages to it already
// wait in mochi's queue (this one must not overtake them).
//
// Called with b.pubs held shared.
func (b *Broker) publishSole(pk packets.Packet, t topic) bool {
	cl, ok := b.srv.Clients.Get(t.sole)
	if !ok || b.unsent.count(cl) > 0 {
		return false
	}
	pk, ok = b.hooks.onPublish(b.inline, pk)
	if !ok {
		return true
	}
	pk.Origin = b.inline.ID
	pk.Created = time.Now().Unix()
	b.deliver(cl, t.sub, pk)
	return true
}

// deliver sends pk to cl for its subscription sub, as mochi's
// publishToClient does, but writes it at once instead of queueing it.
func (b *Broker) deliver(cl *mqtt.Client, sub packets.Subscription, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if sub.NoLocal && pk.Origin == cl.ID { // [MQTT-3.8.3-3]
		return
	}
	if !b.hooks.allowed(cl, pk.TopicName) {
		return
	}
	out := pk
	if len(sub.Identifiers) > 0 { // [MQTT-3.3.4-3]
		ids := make([]int, 0, len(sub.Identifiers))
		for _, id := range sub.Identifiers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		out.Properties.SubscriptionIdentifier = ids
	}
	out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos, b.srv.Options.Capabilities.MaximumQos)
	if out.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Len() >= int(b.srv.Options.Capabilities.MaximumInflight) {
			atomic.AddInt64(&b.srv.Info.InflightDropped, 1) // a client that never acknowledges
			return
		}
		id, err := cl.NextPacketID()
		if err != nil {
			atomic.AddInt64(&b.srv.Info.InflightDropped, 1)
			return
		}
		out.PacketID = uint16(id)
		// The in-flight record outlives the call: it keeps its own copy.
		out.Payload = bytes.Clone(pk.Payload)
		if out.Properties.CorrelationData != nil {
			out.Properties.CorrelationData = bytes.Clone(out.Properties.CorrelationData)
		}
		if cl.State.Inflight.Set(out) {
			atomic.AddInt64(&b.srv.Info.Inflight, 1)
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
	if cl.Net.Conn == nil || cl.Closed() {
		return // a persistent session gets it again when it reconnects
	}
	if cl.Properties.Props.TopicAliasMaximum > 0 {
		alias, exists := cl.State.TopicAliases.Outbound.Set(pk.TopicName)
		if alias > 0 {
			out.Properties.TopicAlias = alias
			out.Properties.TopicAliasFlag = true
			if exists {
				out.TopicName = ""
			}
		}
	}
	if out.FixedHeader.Qos > 0 {
		b.unsent.add(cl, 1) // as mochi's OnQosPublish; OnPacketSent takes it back
	}
	if err := cl.WritePacket(out); err != nil {
		b.cfg.Logger.Debug("message not written", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
}
