package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// interestCacheMax bounds the topics interest remembers; past it the
// cache starts over (a fleet of many sources costs a lookup of mochi's
// index per message again, as without the cache).
const interestCacheMax = 16384

// interest answers Broker.Interested: whether a topic has any subscriber,
// remembered per topic until the subscriptions change. mochi looks up the
// subscribers of every publish in its topic index (several maps allocated
// per call); for the live <src>/log/<stream> messages, which nobody reads
// most of the time, the service asks first and skips the publish.
//
// mochi changes its index and then calls OnSubscribed (before the SUBACK)
// or OnUnsubscribed, which move gen on and so drop the cache. A subscriber
// therefore misses nothing published after its SUBACK: any lookup that
// starts after gen moved computes afresh. (A stale true after an
// unsubscribe only costs a publish that reaches no one.)
type interest struct {
	mqtt.HookBase
	mochi  mochiServer
	active atomic.Bool   // the hook is registered: until then, always true
	gen    atomic.Uint64 // moved on after every change of the subscriptions

	mu       sync.Mutex
	cacheGen uint64           // the gen the cache holds answers for
	cache    map[string]route // topic -> its subscribers
}

// route is what a message on a topic reaches.
type route struct {
	any     bool      // a message on it reaches someone
	targets []*target // its client subscribers (one of each shared group), by client id
	inline  bool      // it has inline subscriptions (mochi's path serves them)
}

// cacheTargetsMax bounds the subscribers a cached route holds: a topic
// with more (a fleet-wide wildcard) is looked up afresh each time.
const cacheTargetsMax = 64

func (h *interest) ID() string { return "logbroker-interest" }

func (h *interest) Provides(b byte) bool {
	return b == mqtt.OnSubscribed || b == mqtt.OnUnsubscribed
}

// OnSubscribed runs after mochi added the subscriptions to its index.
func (h *interest) OnSubscribed(*mqtt.Client, packets.Packet, []byte) { h.gen.Add(1) }

// OnUnsubscribed runs after mochi removed subscriptions (an UNSUBSCRIBE, or
// every subscription of a session that ended).
func (h *interest) OnUnsubscribed(*mqtt.Client, packets.Packet) { h.gen.Add(1) }

// interested reports whether a message on topic would now reach any
// subscription (of a connected client or not; ACLs are not consulted).
func (h *interest) interested(name string) bool {
	if !h.active.Load() {
		return true
	}
	return h.lookup(name).any
}

// lookup returns the subscribers of the topic name, computed afresh after
// any change of the subscriptions. The targets are shared: callers must
// not change them.
func (h *interest) lookup(name string) route {
	g := h.gen.Load()
	h.mu.Lock()
	if h.cacheGen != g {
		clear(h.cache)
		h.cacheGen = g
	}
	v, ok := h.cache[name]
	h.mu.Unlock()
	if ok {
		return v
	}
	subs, shared, inline := h.mochi.subscribers(name)
	v.targets = targetsOf(subs)
	v.inline = inline
	v.any = len(v.targets) > 0 || inline
	if shared || len(v.targets) > cacheTargetsMax {
		return v // a shared group's member is chosen per message
	}
	h.mu.Lock()
	// Only an answer computed after gen reached cacheGen may be kept; one
	// that began earlier is stale if the subscriptions changed meanwhile.
	if h.cacheGen == g {
		if h.cache == nil || len(h.cache) >= interestCacheMax {
			h.cache = make(map[string]route)
		}
		h.cache[name] = v
	}
	h.mu.Unlock()
	return v
}

// Interested reports whether a message published on topic now would reach
// any subscriber; true when unsure (before Start). The log service asks
// before each live message (rpc.Interest, through hooks.Sender).
func (b *Broker) Interested(topic string) bool { return b.subs.interested(topic) }
