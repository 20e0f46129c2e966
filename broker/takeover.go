package broker

import (
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverWait bounds how long a connection taking over a client id waits
// for the old connection to finish ending.
const takeoverWait = 5 * time.Second

// takeover orders a session takeover of a session that ends with its
// connection (MQTT 3 clean session, MQTT 5 Session Expiry Interval 0).
//
// mochi (v2.7.9) ends the old connection while the new one connects, and
// the old one's goroutine, once it sees its connection closed, removes its
// client id from the server's client map unless the takeover has marked it
// first. When that goroutine wins the race by a hair it removes the new
// client instead: the new connection then receives no message at all, and
// the server's Close, which disconnects only the clients in the map and then
// waits for every connection, never returns. So the new connection ends the
// old one itself, before mochi's takeover, and waits until the old one is
// out of the map; mochi then finds no session to take over.
type takeover struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
}

func (h *takeover) ID() string { return "logbroker-takeover" }

func (h *takeover) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

// OnSessionEstablish runs on the new connection's goroutine, after
// authentication and before mochi looks for a session to inherit.
func (h *takeover) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old == cl || !endsWithConnection(old) {
		return
	}
	_ = h.srv.DisconnectClient(old, packets.ErrSessionTakenOver)
	deadline := time.Now().Add(takeoverWait)
	for time.Now().Before(deadline) {
		if cur, ok := h.srv.Clients.Get(cl.ID); !ok || cur != old {
			return
		}
		time.Sleep(time.Millisecond)
	}
	h.log.Warn("session takeover: the old connection did not end in time", "client", cl.ID)
}

// endsWithConnection reports whether cl's session ends when its connection
// does, so that its goroutine removes it from the client map.
func endsWithConnection(cl *mqtt.Client) bool {
	p := cl.Properties
	if p.ProtocolVersion == 5 {
		return p.Props.SessionExpiryInterval == 0
	}
	return p.Clean
}
