// Package broker builds, starts and stops the embedded MQTT server
// (mochi-mqtt) and its listeners, and owns the outbound path of what the
// broker itself publishes.
//
// # Basics
//
// New makes a Broker from a Config; hooks are added with AddHook before
// Start, which binds every listener itself (so port 0 works and MQTTAddr and
// WSAddr report the bound addresses) and then serves. Publish sends a
// message as the broker itself, bypassing ACLs on the way in: it is how
// answers, follow answers and live entries reach subscribers. Close lets
// clients acknowledge what was published to them before it began (up to
// Config.DrainTimeout), then disconnects them and stops listening.
//
// # Listeners
//
//   - MQTT over TCP, optionally with TLS.
//   - MQTT over WebSocket (subprotocol "mqtt"), served at every path, with the
//     same TLS setting.
//
// Each accepted connection is a queuedConn: Write queues the bytes and a
// goroutine of the connection's own, running only while bytes wait, sends
// them. mochi writes a packet while holding its client's lock; with a
// plain socket, one client that stops reading would stall everyone who
// writes to it. A connection with more than Config.MaxPending bytes
// unsent is closed (ErrSlowConsumer).
//
// # The outbound path (outbox.go)
//
// Publish never waits on a client: it runs the OnPublish hooks added with
// AddHook, finds the topic's subscribers (remembered per topic until the
// subscriptions change: interest.go) and appends one shared copy of the
// message to the outbox of each subscriber's client id, under that
// outbox's own mutex, which nothing holds across a call into mochi, a
// write or a wait. Nothing on that path sleeps or polls, and no lock a
// client's connect, disconnect or socket can hold is taken, so the
// storage committer, which publishes the answers of a synced batch on its
// own goroutine, is never held up by a client.
//
// An outbox belongs to a client id, not a connection, so what waits in it
// survives a reconnect and a takeover of a persistent session. It exists
// only while it holds something (an idle connection has none), and a
// goroutine sends from it only while it has something it can send. For
// each message it checks the client's read ACL (the hooks added with
// AddHook, asked as mochi asks them), and at QoS 1 it takes a packet id
// and an in-flight record in mochi's map of the client (mochi's own
// deliveries take theirs there, so ids never clash, and mochi resends the
// records to a persistent session that reconnects). It honours the
// client's MQTT 5 Receive Maximum, and sends at most 64 unacknowledged in
// any case (inflightWindow: mochi copies and resends a session's records
// at every reconnect, which a client reconnecting in a loop would
// multiply): at that many of its messages unacknowledged it stops, and
// the PUBACK (seen in OnPacketRead) starts it again, so none is lost. A packet larger than the client's Maximum Packet
// Size is discarded as if sent ([MQTT-3.1.2-25]) and counted
// (Drops.TooLarge). An outbox that passes Config.MaxPending bytes drops
// what it holds, and the client is disconnected as a slow consumer
// (Drops.SlowConsumers, logged once).
//
// # Sessions
//
// Connects take no broker-wide lock. When a client id that has a session
// connects again:
//
//   - a session that ends with its connection (MQTT 3 clean session, MQTT 5
//     Session Expiry Interval 0): the new connection ends the old one and
//     waits, on its own goroutine, until mochi is done with it (an event
//     from the listener, not polling);
//   - a persistent session: the new connection holds that client id's
//     outbox (only it) while mochi moves the session's messages in flight
//     over, until OnSessionEstablished, or until mochi is done with the
//     connection if the CONNACK or the resend failed (a client with
//     Maximum Packet Size 2). What was published meanwhile waits in the
//     outbox and follows.
//
// # Shutdown
//
// Close waits, up to Config.DrainTimeout, until what each outbox held when
// it began is sent and acknowledged, and so are the QoS 1 and 2 messages
// mochi's own path had in flight (known from OnQosPublish and the clients'
// PUBACK and PUBCOMP: inflightLog), or their client went; then it stops
// reading from clients, so that no call is taken (acknowledged) on a
// connection about to close, waits (up to a second) until every
// connection's reader is back in Read and the outboxes have written what
// that queued, and closes the connections, each flushing what was written
// to it. Every wait is on a channel the events close.
//
// # mochi (mochi.go)
//
// Everything that uses mochi beyond its hook API and exported options is
// in mochi.go (mochiServer and a few functions of a client: the outbox's
// in-flight records and writes, the subscribers of a topic, the client
// map, a client's connection, keep-alive and subscriptions, the CONNACK a
// hook refuses a client with), with each bug of mochi v2.7.9 it avoids and
// the TestMochiQuirk_* test that reproduces it: the in-flight map's
// NextImmediate deadlock (the send quota is kept at 0), the client map's
// GetByListener deadlock (listeners close their own clients), resends in
// any order within a second (in-flight records carry an ordered Created),
// a client's QoS 2 id replacing our record (strayAck), a clean session's
// ending connection removing the new client of its id (endOld), an
// expired session's subscriptions kept for good (freeExpired), and MQTT 5
// reason codes sent as they are to 3.1.1 clients in a CONNACK (refuse).
// The bugs avoided with the hook API and exported options alone are in
// ack.go and alias.go (Limits, below).
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
// hook, which reaches mochi only through hooks and mochi.go. ack.go and
// alias.go hold the avoidance, through hooks and options, of mochi's
// invalid MQTT 5 acknowledgements and of its half-honoured topic aliases;
// each has a test (TestAcks/MochiBug, TestTopicAlias/MochiBug) that shows
// the bug against the pinned mochi.
//
// # Caveats
//
// What cannot be done without changing mochi, and what it costs:
//
//   - Receive Maximum is honoured for the broker's own messages only.
//     mochi's own deliveries (one client's publish to another's
//     subscription) are held back only at mochi's limit of 8192
//     unacknowledged messages per client: its own quota is disabled
//     because of the deadlock above. A client that never acknowledges
//     them and reconnects in a loop has mochi copy and resend them all
//     each time. Those deliveries also go through
//     mochi's per-client queue of Config.ClientQueue packets, which drops
//     (Drops.Messages) rather than waits.
//   - mochi's Info.Inflight ($SYS in-flight count) does not count the
//     broker's messages in flight, and falls when they are acknowledged:
//     it is mochi's counter, and the broker does not write it.
//   - A client's QoS 1 or 2 PUBLISH with the packet id of one of our
//     messages in flight to it deletes that message's record in mochi
//     (the id spaces are shared there): it is not resent after a
//     reconnect. The outbox still counts the client's PUBACK for it.
//   - The broker uses no outbound topic aliases; inbound ones are mochi's.
//   - Retained messages and topics with inline subscriptions take mochi's
//     own path (the log service publishes neither).
//   - A record's Created is up to 18 hours off the real time (resend
//     order, above); mochi compares it only with its maximum message
//     expiry (24 hours).
//
// The broker knows nothing of RPC frames or storage: package hooks
// carries that.
package broker
