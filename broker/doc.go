// Package broker builds, starts and stops the embedded MQTT server
// (mochi-mqtt) and its listeners.
//
// # Basics
//
// New makes a Broker from a Config; hooks are added with AddHook before
// Start, which binds every listener itself (so port 0 works and MQTTAddr and
// WSAddr report the bound addresses) and then serves. Publish injects a
// packet as the broker itself, bypassing ACLs: it is how responses and live
// entries reach subscribers. Close first lets clients acknowledge the QoS 1
// and 2 messages in flight to them (up to Config.DrainTimeout, so that the
// answers sent at shutdown arrive), then disconnects them and stops
// listening.
//
// # Listeners
//
//   - MQTT over TCP, optionally with TLS.
//   - MQTT over WebSocket (subprotocol "mqtt"), served at every path, with the
//     same TLS setting.
//
// # Slow clients
//
// mochi writes a packet to a client while holding that client's lock, and
// every publish to the client takes the same lock for a packet id; on a
// plain socket, one subscriber that stops reading would stall every
// publisher to its topics, the log service's responses included. So each
// accepted connection is a queuedConn: Write queues the bytes and the
// connection's own goroutine sends them. A client with more than
// Config.MaxPending bytes waiting is disconnected (ErrSlowConsumer).
//
// # Caveats
//
// The broker knows nothing of RPC frames or storage: package hooks carries
// that. Per-client queues are sized by Config.ClientQueue (mochi's default
// of 8192 pending writes costs memory per idle connection).
package broker
