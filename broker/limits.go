package broker

import (
	"errors"
	"log/slog"
	"math"
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
}

// LimitStats counts what the limits of Config refused or ended.
type LimitStats struct {
	KeepaliveRefused int64 // 3.1.1 connects refused for their keep-alive (Limits.MaxKeepalive)
}

// limitCapabilities sets the mochi options behind the limits of cfg.
func limitCapabilities(caps *mqtt.Capabilities, cfg Config) {
	ackCapabilities(caps)
}

// addLimitHooks adds the hooks that enforce the limits of b.cfg and make
// mochi's acknowledgements valid; Start calls it.
func (b *Broker) addLimitHooks() error {
	b.limits.cfg = b.cfg
	b.limits.srv = b.srv
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
	}
}

// limits is the hook behind the per-client limits of Config.
type limits struct {
	mqtt.HookBase
	cfg Config
	srv *mqtt.Server
	log *slog.Logger

	keepaliveRefused atomic.Int64
}

func (h *limits) ID() string { return "logbroker-limits" }

func (h *limits) Provides(b byte) bool {
	return b == mqtt.OnConnect
}

// OnConnect applies Limits.MaxKeepalive. mochi reads the keep-alive the
// client asked for into cl.State.Keepalive before this hook, arms the
// connection's read deadline from it after, and sends it as Server Keep
// Alive in the CONNACK when cl.State.ServerKeepalive is set.
func (h *limits) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if err := h.keepalive(cl); err != nil {
		return err
	}
	return nil
}

// keepalive lowers an MQTT 5 client's keep-alive to Limits.MaxKeepalive
// (a client asking for none gets it too) and tells it so in the CONNACK;
// it refuses a 3.1.1 client asking for more, or for none.
func (h *limits) keepalive(cl *mqtt.Client) error {
	most := keepaliveSeconds(h.cfg.Limits.MaxKeepalive)
	if most == 0 {
		return nil
	}
	asked := cl.State.Keepalive
	if asked != 0 && asked <= most {
		return nil
	}
	if cl.Properties.ProtocolVersion >= 5 {
		cl.State.Keepalive = most
		cl.State.ServerKeepalive = true
		return nil
	}
	h.keepaliveRefused.Add(1)
	h.log.Info("connection refused", "client", cl.ID, "remote", cl.Net.Remote, "err", ErrKeepalive,
		"keepalive", asked, "max_keepalive", most)
	_ = h.srv.SendConnack(cl, packets.Err3ClientIdentifierNotValid, false, nil)
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
