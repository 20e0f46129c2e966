package broker

import (
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverWait bounds how long a connection taking over a client id waits
// for the old connection to finish ending.
const takeoverWait = 5 * time.Second

// holdMax bounds how long a takeover of a persistent session holds the
// broker's publishes, should the new connection fail before it is
// established.
const holdMax = time.Second

// takeover orders a session takeover (a client connecting with the client
// id of a connected one) around two races in mochi (v2.7.9).
//
// A session that ends with its connection (MQTT 3 clean session, MQTT 5
// Session Expiry Interval 0): mochi ends the old connection while the new
// one connects, and the old one's goroutine, once it sees its connection
// closed, removes its client id from the server's client map unless the
// takeover has marked it first. When that goroutine wins the race by a hair
// it removes the new client instead: the new connection then receives no
// message at all, and the server's Close, which disconnects only the clients
// in the map and then waits for every connection, never returns. So the new
// connection ends the old one itself, before mochi's takeover, and waits
// until the old one is out of the map; mochi then finds no session to take
// over.
//
// A persistent session: mochi copies the old connection's QoS 1 and 2
// messages in flight to the new one, then registers the new one; a message
// published to the client id in between goes to the old connection and is
// lost. So the broker's own publishes (responses, live entries) wait from
// before the copy until the new connection is established (at most
// holdMax).
type takeover struct {
	mqtt.HookBase
	srv  *mqtt.Server
	log  *slog.Logger
	pubs *sync.RWMutex // Broker.Publish holds it shared

	mu      sync.Mutex
	holding map[*mqtt.Client]func() // new connection -> release of pubs
}

func (h *takeover) ID() string { return "logbroker-takeover" }

func (h *takeover) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablish || b == mqtt.OnSessionEstablished
}

// OnSessionEstablish runs on the new connection's goroutine, after
// authentication and before mochi looks for a session to inherit.
func (h *takeover) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old == cl {
		return
	}
	if !endsWithConnection(old) {
		h.holdPublishes(cl)
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

// holdPublishes takes the broker's publishes until cl is established.
func (h *takeover) holdPublishes(cl *mqtt.Client) {
	h.pubs.Lock()
	var once sync.Once
	var timer *time.Timer
	release := func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.holding, cl)
			h.mu.Unlock()
			timer.Stop()
			h.pubs.Unlock()
		})
	}
	h.mu.Lock()
	if h.holding == nil {
		h.holding = map[*mqtt.Client]func(){}
	}
	h.holding[cl] = release
	timer = time.AfterFunc(holdMax, release)
	h.mu.Unlock()
}

// OnSessionEstablished runs once mochi has registered cl (and resent the
// inherited messages).
func (h *takeover) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	release := h.holding[cl]
	h.mu.Unlock()
	if release != nil {
		release()
	}
}

// endsWithConnection reports whether cl's session ends when its connection
// does, so that its goroutine removes it from the client map.
// It reads only the fields set at CONNECT: copying all of cl.Properties
// would race with mochi clearing the Will when the old connection ends.
func endsWithConnection(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}
