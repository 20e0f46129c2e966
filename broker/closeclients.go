package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// safeClose wraps a mochi listener so that closing it disconnects its
// clients without mochi's Clients.GetByListener (v2.7.9), which read-locks
// the client map and then, through Len, read-locks it again: when a client
// is removed between the two (a writer waiting on the lock), the second
// read lock waits behind the writer, which waits for the first, and
// Server.Close never returns. Seen at SIGTERM right after 10,000 idle
// clients disconnected.
type safeClose struct {
	listeners.Listener
	srv *mqtt.Server
}

// Close closes the listener, disconnecting its clients from one snapshot
// of the client map (GetAll locks it once).
func (l safeClose) Close(listeners.CloseFn) {
	l.Listener.Close(func(id string) { disconnectListener(l.srv, id) })
}

// disconnectListener disconnects every open client of listener id.
func disconnectListener(srv *mqtt.Server, id string) {
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
