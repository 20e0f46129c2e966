package hooks

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/logbroker/logbroker/rpc"
)

// Auth is the hook of secured mode: it authenticates CONNECT against the
// users file, limits connections per identity, and applies the ACL table
// (aclRules) to every publish, subscription and delivery.
//
// At CONNECT it also refuses (not authorized) a will on a topic the user may
// not publish to or on a service request topic, since mochi publishes wills
// without an ACL check and past the RPC hook; and a client id that is the
// session of another user, since a takeover would disconnect that client
// and could inherit its subscriptions. Only admins may retain messages.
//
// A non-admin's publish or will on an RPC topic of another client
// (<x>/rpc, <x>/rpc/...) must be a frame whose src is the publisher's own
// (trust.go): nobody but the broker speaks as the service.
//
// Reload swaps the users file in place: connections of removed users, and
// of users whose role or password hash changed, are closed at once; all
// other connections stay.
type Auth struct {
	mqtt.HookBase
	srv      *mqtt.Server
	services []string
	maxConns int
	capture  CaptureFilters // topics a device may publish its console to (AllowCapture)
	log      *slog.Logger

	users   atomic.Pointer[Users]
	refused refusals

	mu     sync.Mutex
	conns  map[string]map[*mqtt.Client]struct{} // identity -> its connections
	claims map[string]*mqtt.Client              // client id -> the connection that passed OnConnect with it
	proven map[string][32]byte                  // identity -> sha256 of a password bcrypt accepted
}

// NewAuth makes the hook. services are the service's names (for the ACL);
// maxConns bounds connections per identity (0: no bound).
func NewAuth(srv *mqtt.Server, users Users, services []string, maxConns int, log *slog.Logger) *Auth {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Auth{srv: srv, services: services, maxConns: maxConns, log: log,
		conns: map[string]map[*mqtt.Client]struct{}{}, claims: map[string]*mqtt.Client{}, proven: map[string][32]byte{}}
	a.users.Store(&users)
	return a
}

// ID names the hook in mochi's logs.
func (a *Auth) ID() string { return "logbroker-auth" }

// Provides reports the events the hook handles.
func (a *Auth) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnPublish:
		return true
	}
	return false
}

func (a *Auth) user(cl *mqtt.Client) (User, bool) {
	u, ok := (*a.users.Load())[string(cl.Properties.Username)]
	return u, ok
}

// Caller is the rpc identity of a connected client. A client whose user is
// no longer in the users file (a reload is disconnecting it) may do nothing.
//
// Its own sources also include "<service>/rpc-resp/<client id>" (and below)
// for the connection's own client id, where the mos tool asks for its
// replies: a client id belongs to one user at a time (OnConnect), and an id
// that is not one topic level (a/b, +) gets no such source.
func (a *Auth) Caller(cl *mqtt.Client) rpc.Caller {
	u, ok := a.user(cl)
	if !ok {
		return rpc.Caller{Identity: string(cl.Properties.Username), Role: rpc.RoleNone, Secured: true}
	}
	c := rpc.Caller{Identity: u.Name, Role: u.Role, Secured: true}
	if oneLevel(cl.ID) {
		for _, s := range a.services {
			c.Replies = append(c.Replies, s+"/rpc-resp/"+cl.ID)
		}
	}
	return c
}

// refuse sends a refusing CONNACK itself, because mochi would send a 3.1.1
// client the MQTT 5 code unmapped: "not authorized" is 0x87 for MQTT 5 and
// return code 5 for 3.1.1; "quota exceeded" is 0x97, and 3 "server
// unavailable" for 3.1.1.
func (a *Auth) refuse(cl *mqtt.Client, code packets.Code) error {
	wire := code
	if cl.Properties.ProtocolVersion < 5 {
		switch code {
		case packets.ErrNotAuthorized:
			wire = packets.Err3NotAuthorized
		case packets.ErrQuotaExceeded:
			wire = packets.Err3ServerUnavailable
		}
	}
	_ = a.srv.SendConnack(cl, wire, false, nil)
	return code
}

// OnConnect checks the username and password, the will's topic, that the
// client id is not another identity's session (a takeover would disconnect
// that client and could inherit its subscriptions), and the per-identity
// connection limit.
func (a *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	name := string(pk.Connect.Username)
	u, ok := a.user(cl)
	if !ok || !a.checkPassword(u, pk.Connect.Password) {
		a.log.Info("connection refused", "client", cl.ID, "user", name, "remote", cl.Net.Remote, "err", "bad username or password")
		return a.refuse(cl, packets.ErrNotAuthorized)
	}
	if why := a.willRefusal(u, a.Caller(cl), pk.Connect); pk.Connect.WillFlag && why != "" {
		a.refused.wills.Add(1)
		a.log.Warn("connection refused", "client", cl.ID, "user", name, "remote", cl.Net.Remote, "err", why, "topic", pk.Connect.WillTopic)
		return a.refuse(cl, packets.ErrNotAuthorized)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.claimable(cl, name) {
		a.log.Warn("connection refused", "client", cl.ID, "user", name, "remote", cl.Net.Remote, "err", "client id is in use by another user")
		return a.refuse(cl, packets.ErrNotAuthorized)
	}
	if a.maxConns > 0 {
		if a.liveConns(name, cl.ID) >= a.maxConns {
			a.log.Warn("connection refused", "client", cl.ID, "user", name, "remote", cl.Net.Remote, "err", "too many connections for this identity")
			return a.refuse(cl, packets.ErrQuotaExceeded)
		}
		// Counted from here, so that simultaneous connects cannot all pass the
		// check; a connect that fails later is closed and no longer counts.
		if a.conns[name] == nil {
			a.conns[name] = map[*mqtt.Client]struct{}{}
		}
		a.conns[name][cl] = struct{}{}
	}
	a.claims[cl.ID] = cl
	return nil
}

// claimable reports whether user name may take the client id of cl: not if
// another user has it, as a session in mochi's table (connected, or kept for
// a reconnect) or as a connection that passed OnConnect and is not in the
// table yet (mochi adds it after the hooks: without the claim, two users
// connecting at once with one id would both pass, and the second would take
// the first's session over). OnConnect records the claim, OnDisconnect drops
// it. a.mu is held.
func (a *Auth) claimable(cl *mqtt.Client, name string) bool {
	if other, ok := a.srv.Clients.Get(cl.ID); ok && string(other.Properties.Username) != name {
		return false
	}
	if c, ok := a.claims[cl.ID]; ok && c != cl && !c.Closed() && string(c.Properties.Username) != name {
		return false
	}
	return true
}

// willAllowed reports whether u may leave a will on topic. mochi publishes a
// will without an ACL check and without the RPC hook, so it is checked here,
// once, like a publish; and never on a request topic of the service, which
// would deliver (and perhaps retain) a request frame that the service never
// sees.
func (a *Auth) willAllowed(u User, topic string) bool {
	for _, s := range a.services {
		if topic == s+"/rpc" || strings.HasPrefix(topic, s+"/rpc/") {
			return false
		}
	}
	return allowed(u.Role, u.Name, "", a.services, topic, true)
}

// liveConns counts the identity's open connections, forgetting closed ones
// (a connect that failed after OnConnect never sees OnDisconnect). A
// connection with the id clientID does not count: the new one takes it
// over. a.mu is held.
func (a *Auth) liveConns(name, clientID string) int {
	n := 0
	for c := range a.conns[name] {
		switch {
		case c.Closed():
			delete(a.conns[name], c)
		case c.ID != clientID:
			n++
		}
	}
	return n
}

// checkPassword runs bcrypt once per identity and password; later connects
// with the same password compare a SHA-256 in constant time, so a reconnect
// storm does not cost a bcrypt each.
func (a *Auth) checkPassword(u User, password []byte) bool {
	sum := sha256.Sum256(append(append([]byte(nil), u.Hash...), password...))
	a.mu.Lock()
	known, ok := a.proven[u.Name]
	a.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(known[:], sum[:]) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword(u.Hash, password) != nil {
		return false
	}
	a.mu.Lock()
	a.proven[u.Name] = sum
	a.mu.Unlock()
	return true
}

// OnConnectAuthenticate accepts: OnConnect has already refused bad logins.
func (a *Auth) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionEstablished logs the connection.
func (a *Auth) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	a.log.Info("client connected", "client", cl.ID, "user", string(cl.Properties.Username), "remote", cl.Net.Remote)
}

// OnDisconnect uncounts the connection.
func (a *Auth) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	name := string(cl.Properties.Username)
	a.mu.Lock()
	delete(a.conns[name], cl)
	if len(a.conns[name]) == 0 {
		delete(a.conns, name)
	}
	if a.claims[cl.ID] == cl {
		delete(a.claims, cl.ID)
	}
	a.mu.Unlock()
	a.log.Info("client disconnected", "client", cl.ID, "user", name, "err", err)
}

// OnACLCheck applies aclRules.
func (a *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	u, ok := a.user(cl)
	if !ok {
		return false
	}
	if allowed(u.Role, u.Name, cl.ID, a.services, topic, write) || (write && a.mayCapture(u, topic)) {
		return true
	}
	verb := "subscribe"
	if write {
		verb = "publish"
	}
	a.log.Info("acl denied", "client", cl.ID, "user", u.Name, "role", u.Role.String(), "op", verb, "topic", topic)
	return false
}

// OnPublish refuses a non-admin's frame with a foreign src on another
// client's RPC topic (forgedFrame), and delivers a non-admin's retained
// publish as an ordinary one: the topics a device or reader may publish to
// are <id>/rpc topics, where a retained message would be a standing forged
// reply for whoever subscribes next.
func (a *Auth) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	u, ok := a.user(cl)
	if ok && u.Role == rpc.RoleAdmin {
		return pk, nil
	}
	if why := a.forgedFrame(a.Caller(cl), pk.TopicName, pk.Payload); why != "" {
		a.refused.frames.Add(1)
		a.log.Info("publish refused", "client", cl.ID, "user", string(cl.Properties.Username), "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "err", why)
		return pk, a.refusePublish(cl, pk)
	}
	if !pk.FixedHeader.Retain {
		return pk, nil
	}
	a.log.Debug("retain flag dropped", "client", cl.ID, "user", string(cl.Properties.Username), "topic", pk.TopicName)
	pk.FixedHeader.Retain = false
	return pk, nil
}

// Reload swaps in a new users file. Clients whose user was removed, or whose
// role or password changed, are disconnected at once (their next connect is
// checked against the new file); the others stay connected.
func (a *Auth) Reload(users Users) {
	old := *a.users.Swap(&users)
	a.mu.Lock()
	a.proven = map[string][32]byte{}
	a.mu.Unlock()
	for _, cl := range a.srv.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		name := string(cl.Properties.Username)
		was, had := old[name]
		now, has := users[name]
		if had && has && was.Role == now.Role && string(was.Hash) == string(now.Hash) {
			continue
		}
		a.log.Info("disconnecting client after reload", "client", cl.ID, "user", name)
		_ = a.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}
