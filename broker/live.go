package broker

import (
	"slices"
	"sync"
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
// Per subscriber this does what mochi's publishToClient does for a QoS 0
// message: the NoLocal rule, the read ACL (the hooks added with AddHook
// that provide OnACLCheck, allowing if any allows, as mochi asks them),
// subscription identifiers and outbound topic aliases; mochi's
// Client.WritePacket does the rest (protocol version, the client's maximum
// packet size, the OnPacketEncode and OnPacketSent hooks). Topics with
// shared or inline subscriptions take mochi's own path.

// aclHooks are the hooks added with AddHook that check ACLs.
type aclHooks struct {
	mu    sync.RWMutex
	hooks []mqtt.Hook
}

func (a *aclHooks) add(h mqtt.Hook) {
	if !h.Provides(mqtt.OnACLCheck) {
		return
	}
	a.mu.Lock()
	a.hooks = append(a.hooks, h)
	a.mu.Unlock()
}

// allowed asks the hooks as mochi's Hooks.OnACLCheck does: any that
// allows, allows; none, denies.
func (a *aclHooks) allowed(cl *mqtt.Client, topic string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, h := range a.hooks {
		if h.OnACLCheck(cl, topic, false) {
			return true
		}
	}
	return false
}

// isLive reports whether pk takes the direct path.
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
	pk.Origin = b.inline.ID
	pk.Created = time.Now().Unix()
	for id, sub := range subs.Subscriptions {
		cl, ok := b.srv.Clients.Get(id)
		if !ok || cl.Net.Inline || cl.Net.Conn == nil || cl.Closed() {
			continue
		}
		if sub.NoLocal && pk.Origin == cl.ID { // [MQTT-3.8.3-3]
			continue
		}
		if !b.acl.allowed(cl, pk.TopicName) {
			continue
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
		if err := cl.WritePacket(out); err != nil {
			b.cfg.Logger.Debug("live message not written", "client", cl.ID, "topic", pk.TopicName, "err", err)
		}
	}
	return true
}
