package broker

// This file is the adapter to mochi (v2.7.9): every use of mochi beyond
// its hook API and its exported options is here (reading the ID and
// Properties of the client a hook receives is the hook API), and so is
// every avoidance of one of its bugs that needs such a use, each naming
// the test that reproduces the bug against the pinned version
// (mochi_test.go): when an upgrade makes one of those tests fail, the
// avoidance can go. Bugs avoided with hooks and options alone: ack.go,
// alias.go.

import (
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiServer is what the broker does to mochi's server and clients
// outside the hook API.
type mochiServer struct{ srv *mqtt.Server }

// client returns the session of client id: connected, or kept after its
// connection ended (persistent).
func (m mochiServer) client(id string) (*mqtt.Client, bool) { return m.srv.Clients.Get(id) }

// clients is the number of sessions in mochi's client map.
func (m mochiServer) clients() int { return m.srv.Clients.Len() }

// subscribers returns the client subscriptions matching topic, one member
// of each shared subscription group included (chosen as mochi would
// without an OnSelectSubscribers hook), and whether the topic has inline
// subscriptions (Server.Subscribe), which only mochi's own path serves.
func (m mochiServer) subscribers(topic string) (subs map[string]packets.Subscription, shared, inline bool) {
	s := m.srv.Topics.Subscribers(topic)
	shared = len(s.Shared) > 0
	if shared {
		s.SelectShared()
		s.MergeSharedSelected()
	}
	return s.Subscriptions, shared, len(s.InlineSubscriptions) > 0
}

// inject publishes pk through mochi's own path, as the inline client.
func (m mochiServer) inject(inline *mqtt.Client, pk packets.Packet) error {
	return m.srv.InjectPacket(inline, pk)
}

// reserve gives pk a packet id of cl and records it in cl's in-flight map,
// where mochi's own deliveries take their ids too (so none clashes), the
// client's PUBACK finds it, and a persistent session keeps it: mochi
// resends it when the client reconnects. mochi's Info.Inflight does not
// count it (a counter of mochi's is not ours to write).
//
// resendOrder: mochi resends a session's messages in flight sorted by
// the low 16 bits of their Created time (Inflight.GetAll), in seconds, so
// messages of the same second came back in any order ([MQTT-4.6.0-1] wants
// the order they were sent in). The record's Created is therefore the
// current time with its low 16 bits replaced by those of seq, the
// message's place in its outbox: at most 18 hours off (mochi only
// compares it with its maximum message expiry, 24 hours by default), and
// in order but where seq wraps past 65535.
// TestMochiQuirk_ResendOrderBySecond.
func (m mochiServer) reserve(cl *mqtt.Client, pk packets.Packet, seq uint64) (uint16, error) {
	id, err := cl.NextPacketID()
	if err != nil {
		return 0, err
	}
	pk.PacketID = uint16(id)
	pk.Created = time.Now().Unix()&^0xffff | int64(seq&0xffff)
	cl.State.Inflight.Set(pk)
	return pk.PacketID, nil
}

// release drops the in-flight record id of cl.
func (m mochiServer) release(cl *mqtt.Client, id uint16) { cl.State.Inflight.Delete(id) }

// recorded reports whether cl has an in-flight record id.
func (m mochiServer) recorded(cl *mqtt.Client, id uint16) bool {
	_, ok := cl.State.Inflight.Get(id)
	return ok
}

// write encodes pk for cl (its protocol version and Maximum Packet Size:
// packets.ErrPacketTooLarge, and no OnPacketSent, for one larger) and
// writes it to its connection, which never waits for the network
// (queuedConn).
func (m mochiServer) write(cl *mqtt.Client, pk packets.Packet) error { return cl.WritePacket(pk) }

// disconnect sends cl a DISCONNECT with code (MQTT 5) and closes it.
func (m mochiServer) disconnect(cl *mqtt.Client, code packets.Code) {
	_ = m.srv.DisconnectClient(cl, code)
}

// dropped is mochi's count of messages dropped for a full client queue.
func (m mochiServer) dropped() int64 { return atomic.LoadInt64(&m.srv.Info.MessagesDropped) }

// inflightDropped is mochi's count of QoS 1 and 2 messages it dropped at
// a client's limit of unacknowledged ones.
func (m mochiServer) inflightDropped() int64 { return atomic.LoadInt64(&m.srv.Info.InflightDropped) }

// online reports whether cl's connection is open.
func online(cl *mqtt.Client) bool { return !cl.Closed() }

// isInline reports whether cl is the broker's own inline client.
func isInline(cl *mqtt.Client) bool { return cl.Net.Inline }

// connOf is cl's connection as the listener accepted it.
func connOf(cl *mqtt.Client) net.Conn { return cl.Net.Conn }

// takenOver reports whether a new connection took cl's session over.
func takenOver(cl *mqtt.Client) bool { return cl.IsTakenOver() }

// remoteOf is the remote address of cl's connection, for logs.
func remoteOf(cl *mqtt.Client) string { return cl.Net.Remote }

// keepaliveOf is cl's keep-alive in seconds: during OnConnect, the one its
// CONNECT asked for (mochi reads it into the client before that hook).
func keepaliveOf(cl *mqtt.Client) uint16 { return cl.State.Keepalive }

// grantKeepalive, called from OnConnect only, makes s seconds cl's
// keep-alive: mochi arms the connection's read deadline from the client's
// keep-alive after that hook (server.go attachClient) and, with
// ServerKeepalive set, sends it to an MQTT 5 client as Server Keep Alive
// in the CONNACK (SendConnack).
func grantKeepalive(cl *mqtt.Client, s uint16) {
	cl.State.Keepalive = s
	cl.State.ServerKeepalive = true
}

// subscriptionCount is how many subscriptions cl's session holds.
func subscriptionCount(cl *mqtt.Client) int { return cl.State.Subscriptions.Len() }

// subscribed reports whether cl's session holds filter.
func subscribed(cl *mqtt.Client, filter string) bool {
	_, ok := cl.State.Subscriptions.Get(filter)
	return ok
}

// refuse sends cl a CONNACK refusing its CONNECT with code, for an
// OnConnect hook that then returns an error (mochi sends no CONNACK
// then, it closes the connection). code is an MQTT 5 reason code, or a
// 3.1.1 return code for a 3.1.1 client. mochi (v2.7.9, SendConnack) gives
// a 3.1.1 client the 3.1.1 code of an MQTT 5 one only where
// packets.V5CodesToV3 has it, and the others as they are: 0x97 Quota
// exceeded, not a 3.1.1 return code, among them. refuse sends those as 3
// Server unavailable. TestMochiQuirk_ConnackV5CodeToV3Client.
func (m mochiServer) refuse(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion < 5 && code.Code >= packets.ErrUnspecifiedError.Code {
		if _, ok := packets.V5CodesToV3[code]; !ok {
			code = packets.Err3ServerUnavailable
		}
	}
	_ = m.srv.SendConnack(cl, code, false, nil)
}

// freeExpired, called from OnClientExpired, removes the subscriptions of
// cl, a session that expired, from the topic index. mochi (v2.7.9,
// server.go clearExpiredClients) removes the session from its client map
// but leaves its subscriptions in the topic index for good: 5 offline
// sessions with 100,000 subscriptions each kept 318 MB (issue 11).
// TestMochiQuirk_ExpiredSessionKeepsSubscriptions. A session already
// taken over by a new connection of the same client id is left alone:
// unsubscribing by client id would remove the new connection's
// subscriptions.
func (m mochiServer) freeExpired(cl *mqtt.Client) {
	if cur, ok := m.client(cl.ID); ok && cur != cl {
		return
	}
	m.srv.UnsubscribeClient(cl)
}

// receiveMaximum is how many QoS 1 messages of the broker's own cl may
// have unacknowledged: its MQTT 5 Receive Maximum, at most inflightWindow.
func receiveMaximum(cl *mqtt.Client) int {
	if n := int(cl.Properties.Props.ReceiveMaximum); n > 0 && cl.Properties.ProtocolVersion == 5 {
		return min(n, inflightWindow)
	}
	return inflightWindow
}

// inflightWindow bounds the broker's own QoS 1 messages unacknowledged by
// one client, whatever Receive Maximum it set (MQTT 3 clients set none).
// mochi copies a persistent session's records at every takeover and
// resends them all at every reconnect: a client that reconnects in a loop
// and never acknowledges would otherwise have the broker copy and write
// up to 8192 of them each time. A client that acknowledges as messages
// arrive is not slowed: it has at most its calls in flight.
const inflightWindow = 64

// persistent reports whether cl's session outlives its connection. It
// reads only the fields set at CONNECT: copying all of cl.Properties
// would race with mochi clearing the Will when the connection ends.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// strayAck: a PUBACK for an id whose record is the client's own QoS 2
// PUBLISH (a PUBREC waiting for its PUBREL) is renamed to id 0, which
// mochi never records, so mochi ignores it.
//
// mochi keeps one in-flight map per client, keyed by packet id, for both
// directions, although the client's ids and the server's are independent
// (MQTT 5 §2.2.1). A client's QoS 2 PUBLISH with id X replaces (deletes,
// [MQTT-4.3.2-5] misapplied) a QoS 1 message of ours in flight to it with
// id X; the client's PUBACK for ours then deleted the PUBREC record, its
// PUBREL found nothing, the client's receive quota was never given back,
// and after ReceiveMaximum such leaks mochi disconnected it ("receive
// maximum exceeded"). TestMochiQuirk_InboundIDReplacesOutboundRecord.
// The outbox counted the PUBACK before (onAck): ours is done either way.
func strayAck(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if rec, ok := cl.State.Inflight.Get(pk.PacketID); ok && rec.FixedHeader.Type == packets.Pubrec {
		pk.PacketID = 0
	}
	return pk
}

// noSendQuota sets cl's send quota to 0 once its session is established,
// before its read loop starts, so that mochi never calls
// Inflight.NextImmediate, which read-locks the in-flight map and then
// read-locks it again in GetAll: a writer (Inflight.Set, of a message to
// the client) between the two blocks the second, and the client's read
// loop and that writer wait on each other for good.
// TestMochiQuirk_NextImmediateDeadlocks. The outbox honours Receive
// Maximum for the broker's own messages; mochi's own deliveries (device
// to device) are then held back only at its MaximumInflight (doc.go).
func noSendQuota(cl *mqtt.Client) { cl.State.Inflight.ResetSendQuota(0) }

// endOld ends old, a connection whose session ends with it, before a new
// connection with its client id takes over, and waits (on the new
// connection's goroutine, up to takeoverWait) until mochi is done with
// it. mochi (v2.7.9) removes an ended clean session from its client map
// by id unless it is marked taken over, and marks it only after the new
// connection's takeover began: when the old goroutine wins that race by a
// hair it removes the new client, which then gets no message and makes
// Server.Close wait for ever. TestMochiQuirk_CleanTakeoverRemovesNewClient.
func (m mochiServer) endOld(old *mqtt.Client) bool {
	q := queuedConnOf(connOf(old))
	if q == nil {
		return true
	}
	_ = m.srv.DisconnectClient(old, packets.ErrSessionTakenOver)
	return q.waitFinished(takeoverWait)
}

// takeoverWait bounds how long a connection taking over a client id waits
// for the old connection to finish ending.
const takeoverWait = 5 * time.Second

// safeClose wraps a mochi listener: it tells the broker when mochi is done
// with each connection (Broker.finished), and closing it disconnects its
// clients without mochi's Clients.GetByListener, which read-locks the
// client map and then, through Len, read-locks it again: when a client is
// removed between the two (a writer waiting on the lock), the second read
// lock waits behind the writer, which waits for the first, and
// Server.Close never returns. TestMochiQuirk_GetByListenerDeadlocks.
type safeClose struct {
	listeners.Listener
	b *Broker
}

// Serve serves the listener; after mochi's EstablishConnection returns for
// a connection (the client is out of the client map if its session
// ended), the broker is told.
func (l safeClose) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		err := establish(id, c)
		l.b.finished(c)
		return err
	})
}

// Close closes the listener, disconnecting its clients from one snapshot
// of the client map (GetAll locks it once).
func (l safeClose) Close(listeners.CloseFn) {
	l.Listener.Close(func(id string) {
		for _, cl := range l.b.srv.Clients.GetAll() {
			if cl.Net.Listener == id && online(cl) {
				_ = l.b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
}
