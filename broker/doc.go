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
// Messages the broker publishes at QoS 0 without retain (the live log
// entries) skip mochi's per-client queue and are written to each
// subscriber's queuedConn by the publisher (live.go): a subscriber that
// keeps reading never loses one, however short Config.ClientQueue is.
// A QoS 1 or 2 message to a topic with one subscriber (a response to its
// caller) waits, rather than be dropped, while that client's queue is three
// quarters full (Broker.waitRoom): the queue drains at the speed of the
// client's write loop, so this evens out a commit group answering hundreds
// of one client's calls at once.
// Drops counts what was not delivered (a full client queue, QoS 1 and 2
// messages past mochi's 8192 unacknowledged, slow-consumer disconnects),
// and each such client is logged once, when it goes.
//
// # Session takeover
//
// A client connecting with the id of a connected one takes its session
// over. The takeover hook orders that around two races in mochi (v2.7.9):
// a clean session's old connection is ended and gone from mochi's client
// map before the new one registers (it could remove the new one), and a
// persistent session's takeover holds the broker's own publishes until the
// new connection is registered (what was published in between was lost).
//
// # Shutdown
//
// Close drains (see Basics), then stops reading from clients, so that no
// call is taken (acknowledged) on a connection about to close, and waits,
// up to a second, until what was queued for them is written; each closing
// connection flushes what was written to it.
//
// # Limits
//
// Config.Limits bounds what one client may take (limits.go): the time to
// send CONNECT, open connections, subscriptions per session, how long an
// offline session lives, keep-alive. The connection limits live on a
// limitConn, the socket under queuedConn, TLS and WebSocket
// (limitconn.go), which also closes every connection so that the client
// can read what it was sent last: it half-closes the socket and discards
// the client's bytes for up to 2 s before closing it. The rest is one
// hook. ack.go and alias.go hold the avoidance of mochi's invalid MQTT 5
// acknowledgements and of its half-honoured topic aliases; each has a test
// (TestAcks/MochiBug, TestTopicAlias/MochiBug, TestSessionExpiry/MochiBug)
// that shows the bug against the pinned mochi.
//
// # Caveats
//
// The broker knows nothing of RPC frames or storage: package hooks carries
// that. Per-client queues are sized by Config.ClientQueue (mochi's default
// of 8192 pending writes costs 64 KiB per idle connection; ours is 256).
package broker
