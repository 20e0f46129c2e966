package hooks

import (
	"net"
	"slices"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/rpc"
)

// connecting is a client of srv in the middle of CONNECT as user: it has
// passed no hook yet and is not in srv.Clients.
func connecting(t *testing.T, srv *mqtt.Server, id, user string) (*mqtt.Client, packets.Packet) {
	t.Helper()
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c1.Close(); c2.Close() })
	go func() { // swallow what the hook writes (a refusing CONNACK)
		buf := make([]byte, 256)
		for {
			if _, err := c2.Read(buf); err != nil {
				return
			}
		}
	}()
	cl := srv.NewClient(c1, "t", id, false)
	cl.Properties.Username = []byte(user)
	cl.Properties.ProtocolVersion = 5
	pk := packets.Packet{Connect: packets.ConnectParams{Username: []byte(user), Password: []byte("pw")}}
	return cl, pk
}

func testAuth(t *testing.T) (*Auth, *mqtt.Server) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	users := Users{}
	for _, u := range []struct {
		name string
		role rpc.Role
	}{{"dev1", rpc.RoleDevice}, {"dev2", rpc.RoleDevice}, {"dash", rpc.RoleReader}} {
		users[u.name] = User{Name: u.name, Hash: []byte(testHash), Role: u.role}
	}
	return NewAuth(srv, users, []string{"logbroker", "lb"}, 0, nil), srv
}

// TestAuth_ClientIDClaim: a client id belongs to one user at a time, also
// while two users connect with it at once. mochi adds a client to its table
// after the OnConnect hooks, so two connects that both passed OnConnect
// before either was added would let the second take the first's session
// over (and, with it, the replies of "<svc>/rpc-resp/<client id>").
func TestAuth_ClientIDClaim(t *testing.T) {
	a, srv := testAuth(t)
	first, pk1 := connecting(t, srv, "mos-123", "dev1")
	if err := a.OnConnect(first, pk1); err != nil {
		t.Fatalf("dev1 as mos-123: %v", err)
	}
	// first has passed OnConnect but is not in srv.Clients yet.
	other, pk2 := connecting(t, srv, "mos-123", "dev2")
	if err := a.OnConnect(other, pk2); err == nil {
		t.Fatal("dev2 took mos-123 while dev1's connect with it was under way")
	}
	same, pk3 := connecting(t, srv, "mos-123", "dev1")
	if err := a.OnConnect(same, pk3); err != nil {
		t.Fatalf("dev1 again as mos-123 (a takeover of its own session): %v", err)
	}
	// Once in the table, the session is the guard, as before.
	srv.Clients.Add(same)
	a.OnDisconnect(first, nil, false)
	if err := a.OnConnect(other, pk2); err == nil {
		t.Fatal("dev2 took mos-123 from dev1's session")
	}
	// Gone from both: the id is free.
	a.OnDisconnect(same, nil, true)
	srv.Clients.Delete("mos-123")
	if err := a.OnConnect(other, pk2); err != nil {
		t.Fatalf("dev2 as mos-123 after dev1 left: %v", err)
	}
	a.mu.Lock()
	n := len(a.claims)
	a.mu.Unlock()
	a.OnDisconnect(other, nil, true)
	a.mu.Lock()
	defer a.mu.Unlock()
	if n != 1 || len(a.claims) != 0 {
		t.Fatalf("claims: %d while connected, %d after (want 1, 0)", n, len(a.claims))
	}
}

// TestAuth_CallerReplies: the rpc-resp roots of the connection's own client
// id, for every name of the service, and none for an id that is not one
// topic level.
func TestAuth_CallerReplies(t *testing.T) {
	a, srv := testAuth(t)
	cases := []struct {
		id   string
		want []string
	}{
		{"mos-123", []string{"logbroker/rpc-resp/mos-123", "lb/rpc-resp/mos-123"}},
		{"a/b", nil},
		{"+", nil},
		{"#", nil},
		{"$x", nil},
		{"", nil},
	}
	for _, c := range cases {
		cl, _ := connecting(t, srv, c.id, "dev1")
		if got := a.Caller(cl).Replies; !slices.Equal(got, c.want) {
			t.Errorf("client id %q: Replies %q, want %q", c.id, got, c.want)
		}
	}
}

// TestAllowed_ClientReplies: the {client} rows let a device or reader
// subscribe to its own client id's rpc-resp topics, and nothing else.
func TestAllowed_ClientReplies(t *testing.T) {
	svcs := []string{"logbroker", "lb"}
	for _, role := range []rpc.Role{rpc.RoleDevice, rpc.RoleReader} {
		for _, f := range []string{"logbroker/rpc-resp/mos-123/rpc", "lb/rpc-resp/mos-123/#", "logbroker/rpc-resp/mos-123/+"} {
			if !allowed(role, "dev1", "mos-123", svcs, f, false) {
				t.Errorf("%s as mos-123: subscribe %q denied", role, f)
			}
		}
		deny := []struct{ client, filter string }{
			{"mos-123", "logbroker/rpc-resp/mos-124/rpc"},
			{"mos-123", "logbroker/rpc-resp/+/rpc"},
			{"mos-123", "logbroker/rpc-resp/#"},
			{"mos-123", "other/rpc-resp/mos-123/rpc"},
			{"mos", "logbroker/rpc-resp/mos-123/rpc"},
			{"+", "logbroker/rpc-resp/mos-123/rpc"},
			{"#", "logbroker/rpc-resp/mos-123/rpc"},
			{"a/b", "logbroker/rpc-resp/a/b/rpc"},
			{"", "logbroker/rpc-resp//rpc"},
		}
		for _, d := range deny {
			if allowed(role, "dev1", d.client, svcs, d.filter, false) {
				t.Errorf("%s as %q: subscribe %q allowed", role, d.client, d.filter)
			}
		}
		if allowed(role, "dev1", "mos-123", svcs, "logbroker/rpc-resp/mos-123/rpc", true) {
			t.Errorf("%s as mos-123: may publish to its reply topic", role)
		}
	}
}
