package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Open lets every client connect, publish and subscribe: open mode, with no
// --auth file. Request frames are still consumed by RPC, never delivered.
type Open struct {
	mqtt.HookBase
}

// ID names the hook in mochi's logs.
func (h *Open) ID() string { return "logbroker-open" }

// Provides reports the events the hook handles.
func (h *Open) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate accepts every client.
func (h *Open) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic.
func (h *Open) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
