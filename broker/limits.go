package broker

import (
	"errors"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrKeepalive refuses an MQTT 3.1.1 client whose keep-alive is above
// Limits.MaxKeepalive, or 0 (none), while a maximum is set: 3.1.1 has no
// way to tell the client a lower one (CONNACK return code 2, as
// mosquitto's max_keepalive).
var ErrKeepalive = errors.New("keep-alive above the server's maximum")

// Limits are the limits a public broker needs against clients that take
// more than their share. Each 0 means no limit.
type Limits struct {
	// MaxKeepalive is the longest keep-alive granted: an MQTT 5 client
	// asking for more, or for none, gets this one and is told so in the
	// CONNACK (Server Keep Alive); a 3.1.1 client cannot be told, so one
	// asking for more, or for none, is refused (CONNACK return code 2).
	// Whole seconds, at most 65535.
	MaxKeepalive time.Duration
	// ConnectTimeout closes a connection that has not sent a whole
	// CONNECT this long after it was accepted (TLS and WebSocket
	// handshakes included).
	ConnectTimeout time.Duration
	// MaxConns is how many connections may be open at once, counted from
	// accept to close; a CONNECT over it is refused with CONNACK 0x97
	// Quota exceeded (MQTT 5) or return code 3 Server unavailable (3.1.1).
	MaxConns int
	// MaxSubsPerClient is how many subscriptions one session may hold
	// (persistent sessions keep theirs across reconnects); filters over it
	// are refused in the SUBACK (0x97 Quota exceeded for MQTT 5, 0x80 for
	// 3.1.1), the others in the same SUBSCRIBE are granted.
	MaxSubsPerClient int
	// SessionExpiryMax is the longest a persistent session (3.1.1
	// clean=false, MQTT 5 Session Expiry Interval) outlives its
	// connection; an MQTT 5 client asking for more is told the granted
	// value in the CONNACK. At expiry its subscriptions are freed.
	// Rounded up to whole seconds.
	SessionExpiryMax time.Duration
}

// ErrTooManyConns refuses a client while Limits.MaxConns connections are
// open.
var ErrTooManyConns = errors.New("too many connections")

// LimitStats counts what the limits of Config refused or ended.
type LimitStats struct {
	KeepaliveRefused int64 // 3.1.1 connects refused for their keep-alive (Limits.MaxKeepalive)
	ConnectTimeouts  int64 // connections closed without a whole CONNECT in time (Limits.ConnectTimeout)
	ConnsRefused     int64 // CONNECTs refused over Limits.MaxConns
	SubsRefused      int64 // filters refused over Limits.MaxSubsPerClient
	SessionsExpired  int64 // persistent sessions ended by their expiry (Limits.SessionExpiryMax or the client's own)
}

// limitCapabilities sets the mochi options behind the limits of cfg.
func limitCapabilities(caps *mqtt.Capabilities, cfg Config) {
	ackCapabilities(caps)
	aliasCapabilities(caps)
	if s := sessionExpirySeconds(cfg.Limits.SessionExpiryMax); s > 0 {
		// mochi lowers an MQTT 5 client's Session Expiry Interval to it
		// (telling it in the CONNACK) and expires 3.1.1 persistent
		// sessions after it; its default is 136 years.
		caps.MaximumSessionExpiryInterval = s
	}
}

// sessionExpirySeconds is d in whole seconds, rounded up (0: no limit).
func sessionExpirySeconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32(min((d+time.Second-1)/time.Second, math.MaxUint32))
}

// limitListener wraps a TCP listener for the connection limits
// (limitconn.go).
func (b *Broker) limitListener(ln net.Listener) net.Listener {
	return limitListener{Listener: ln, counts: &b.limits.conns, connectTimeout: b.cfg.Limits.ConnectTimeout}
}

// addLimitHooks adds the hooks that enforce the limits of b.cfg and make
// mochi's acknowledgements valid; Start calls it.
func (b *Broker) addLimitHooks() error {
	b.limits.cfg = b.cfg
	b.limits.mochi = b.mochi
	b.limits.log = b.cfg.Logger
	for _, h := range []mqtt.Hook{new(validAcks), &b.limits} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return err
		}
	}
	return nil
}

// LimitStats returns the counts of the limits' refusals.
func (b *Broker) LimitStats() LimitStats {
	return LimitStats{
		KeepaliveRefused: b.limits.keepaliveRefused.Load(),
		ConnectTimeouts:  b.limits.conns.connectTimeouts.Load(),
		ConnsRefused:     b.limits.connsRefused.Load(),
		SubsRefused:      b.limits.subsRefused.Load(),
		SessionsExpired:  b.limits.sessionsExpired.Load(),
	}
}

// limits is the hook behind the per-client limits of Config.
type limits struct {
	mqtt.HookBase
	cfg   Config
	mochi mochiServer
	log   *slog.Logger

	conns            connCounts // kept by the listeners (limitconn.go)
	keepaliveRefused atomic.Int64
	connsRefused     atomic.Int64
	subsRefused      atomic.Int64
	sessionsExpired  atomic.Int64

	// refused holds, per client, the filters of its SUBSCRIBE being
	// processed that OnSubscribe refused, until OnPacketEncode marks them
	// in the SUBACK.
	refused sync.Map // *mqtt.Client -> subRefusal
}

// subRefusal is which filters of SUBSCRIBE packet id were refused, by index.
type subRefusal struct {
	id      uint16
	indexes []int
}

func (h *limits) ID() string { return "logbroker-limits" }

func (h *limits) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnClientExpired:
		return true
	case mqtt.OnPacketRead:
		return h.cfg.Limits.SessionExpiryMax > 0
	case mqtt.OnSubscribe, mqtt.OnPacketEncode, mqtt.OnDisconnect:
		return h.cfg.Limits.MaxSubsPerClient > 0
	}
	return false
}

// OnConnect ends the connect deadline, applies Limits.MaxConns and
// Limits.MaxKeepalive.
func (h *limits) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if lc := limitConnOf(connOf(cl)); lc != nil {
		lc.connected()
	}
	if most := h.cfg.Limits.MaxConns; most > 0 && h.conns.open.Load() > int64(most) {
		h.connsRefused.Add(1)
		h.log.Warn("connection refused", "client", cl.ID, "remote", remoteOf(cl), "err", ErrTooManyConns, "max_conns", most)
		h.mochi.refuse(cl, packets.ErrQuotaExceeded) // 3.1.1: return code 3 Server unavailable
		return ErrTooManyConns
	}
	return h.keepalive(cl)
}

// keepalive lowers an MQTT 5 client's keep-alive to Limits.MaxKeepalive
// (a client asking for none gets it too) and tells it so in the CONNACK;
// it refuses a 3.1.1 client asking for more, or for none.
func (h *limits) keepalive(cl *mqtt.Client) error {
	most := keepaliveSeconds(h.cfg.Limits.MaxKeepalive)
	if most == 0 {
		return nil
	}
	asked := keepaliveOf(cl)
	if asked != 0 && asked <= most {
		return nil
	}
	if cl.Properties.ProtocolVersion >= 5 {
		grantKeepalive(cl, most)
		return nil
	}
	h.keepaliveRefused.Add(1)
	h.log.Info("connection refused", "client", cl.ID, "remote", remoteOf(cl), "err", ErrKeepalive,
		"keepalive", asked, "max_keepalive", most)
	h.mochi.refuse(cl, packets.Err3ClientIdentifierNotValid)
	return ErrKeepalive
}

// keepaliveSeconds is d in whole seconds as MQTT carries it (at most
// 65535; 0 for no limit).
func keepaliveSeconds(d time.Duration) uint16 {
	s := int64(d / time.Second)
	if s <= 0 {
		return 0
	}
	return uint16(min(s, math.MaxUint16))
}

// OnSubscribe refuses the filters of pk that would take cl's session past
// Limits.MaxSubsPerClient. A filter the session holds already, or that
// comes twice in pk, takes no more room. mochi offers no way for a hook to
// set a filter's reason code, so a refused filter is made empty (mochi
// answers 0x8F "topic filter invalid", 0x80 for 3.1.1, and subscribes
// nothing) and OnPacketEncode turns the MQTT 5 code into 0x97 Quota
// exceeded. Filters are counted before the ACL check: one refused by the
// ACL later still took its room within this packet.
func (h *limits) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	most := h.cfg.Limits.MaxSubsPerClient
	have := subscriptionCount(cl)
	var refused []int
	seen := map[string]bool{}
	for i, f := range pk.Filters {
		if subscribed(cl, f.Filter) || seen[f.Filter] {
			continue
		}
		if have >= most {
			refused = append(refused, i)
			continue
		}
		seen[f.Filter] = true
		have++
	}
	if len(refused) == 0 {
		return pk
	}
	pk.Filters = slices.Clone(pk.Filters)
	for _, i := range refused {
		pk.Filters[i].Filter = ""
	}
	h.subsRefused.Add(int64(len(refused)))
	h.log.Info("subscriptions refused", "client", cl.ID, "err", "too many subscriptions", "refused", len(refused), "max_subs_per_client", most)
	h.refused.Store(cl, subRefusal{id: pk.PacketID, indexes: refused})
	return pk
}

// OnPacketEncode marks the filters OnSubscribe refused as 0x97 Quota
// exceeded in an MQTT 5 SUBACK.
func (h *limits) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Suback {
		return pk
	}
	v, ok := h.refused.LoadAndDelete(cl)
	if !ok {
		return pk
	}
	r := v.(subRefusal)
	if r.id != pk.PacketID || cl.Properties.ProtocolVersion < 5 {
		return pk
	}
	pk.ReasonCodes = slices.Clone(pk.ReasonCodes)
	for _, i := range r.indexes {
		if i < len(pk.ReasonCodes) {
			pk.ReasonCodes[i] = packets.ErrQuotaExceeded.Code
		}
	}
	return pk
}

// OnPacketRead keeps an MQTT 5 DISCONNECT from raising the session's
// expiry past Limits.SessionExpiryMax: mochi takes the DISCONNECT's Session
// Expiry Interval as it comes (server.go processDisconnect).
func (h *limits) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	most := sessionExpirySeconds(h.cfg.Limits.SessionExpiryMax)
	if pk.FixedHeader.Type == packets.Disconnect && most > 0 && pk.Properties.SessionExpiryIntervalFlag &&
		pk.Properties.SessionExpiryInterval > most {
		pk.Properties.SessionExpiryInterval = most
	}
	return pk, nil
}

// OnDisconnect forgets a refusal whose SUBACK was never written.
func (h *limits) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.refused.Delete(cl)
}

// OnClientExpired counts an expired session and frees its subscriptions,
// which mochi keeps (mochiServer.freeExpired).
func (h *limits) OnClientExpired(cl *mqtt.Client) {
	h.sessionsExpired.Add(1)
	h.mochi.freeExpired(cl)
}
