// Package jstest runs a NATS JetStream cluster inside a test process, for
// the tests of logbroker's JetStream store and of nodes over it.
package jstest

import (
	"fmt"
	"github.com/logbroker/logbroker/integration/await"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is a JetStream cluster of embedded nats-servers on loopback, each
// with its store in a temporary directory and sync_interval always.
type Cluster struct {
	t       TB
	mu      sync.Mutex
	opts    []*server.Options
	servers []*server.Server // nil: stopped
}

// TB is the part of testing.TB a Cluster uses, so that a TestMain can
// start one shared by several tests.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewCluster starts n servers and waits until JetStream has a meta leader
// that knows them all. The servers pick their ports; they route to server 0
// (routes gossip the full mesh); a restarted server keeps its ports and
// routes to every other. They are shut down by t.Cleanup.
func NewCluster(t TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName:         fmt.Sprintf("n%d", i),
			Host:               "127.0.0.1",
			Port:               -1,
			NoLog:              true,
			NoSigs:             true,
			JetStream:          true,
			StoreDir:           t.TempDir(),
			SyncAlways:         true,
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  4 << 30,
			Cluster:            server.ClusterOpts{Name: "logbroker-test", Host: "127.0.0.1", Port: -1},
		})
		c.servers = append(c.servers, nil)
	}
	t.Cleanup(c.shutdown)
	// A clustered JetStream server needs a route to start: server 0 gets
	// one to itself (ignored), which needs its port known in advance.
	c.opts[0].Cluster.Port = freePort(t)
	for i := range n {
		c.opts[i].Routes = []*url.URL{c.routeURL(0)}
		c.Start(i)
	}
	c.WaitReady()
	return c
}

func (c *Cluster) routeURL(i int) *url.URL {
	return &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", c.opts[i].Cluster.Port)}
}

// Start (re)starts server i on its directory; after its first start, on
// its ports, routed to every other server.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	c.mu.Lock()
	if c.opts[i].Port > 0 {
		var routes []*url.URL
		for j := range c.opts {
			if j != i {
				routes = append(routes, c.routeURL(j))
			}
		}
		c.opts[i].Routes = routes
	}
	o := *c.opts[i] // the server keeps and mutates its options
	c.mu.Unlock()
	// Clients without credentials land in the global account, as without
	// users; user "sys" is in the system account (for CheckSync). Accounts
	// hold server state: each start gets its own.
	sys := server.NewAccount("SYS")
	o.Accounts = []*server.Account{sys}
	o.SystemAccount = "SYS"
	o.Users = []*server.User{
		{Username: "sys", Password: "sys", Account: sys},
		{Username: "app", Password: "app"},
	}
	o.NoAuthUser = "app"
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("server %d: %v", i, err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("server %d not ready", i)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.opts[i].Port = s.Addr().(*net.TCPAddr).Port
	c.opts[i].Cluster.Port = s.ClusterAddr().Port
	c.mu.Unlock()
}

// Stop shuts server i down, as a crash would (nothing is flushed beyond
// what SyncAlways already synced).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (c *Cluster) shutdown() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// WaitReady waits until JetStream has a meta leader that counts every
// running server as a peer able to take streams.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	await.Until(c.t, 30*time.Second, "a jetstream meta leader with every peer", c.ready)
}

// ready reports whether JetStream has a meta leader that counts every
// running server as a peer.
func (c *Cluster) ready() bool {
	{
		c.mu.Lock()
		defer c.mu.Unlock()
		running, peers := 0, 0
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			running++
			if !s.JetStreamEnabled() {
				return false
			}
			if s.JetStreamIsLeader() {
				peers = len(s.JetStreamClusterPeers())
			}
		}
		return peers == running
	}
}

// URLs returns the client URLs of every server, comma-separated.
func (c *Cluster) URLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

// Connect returns a client connection to the cluster, preferring server
// first, that reconnects for ever; t.Cleanup closes it.
func (c *Cluster) Connect(first int) *nats.Conn {
	c.t.Helper()
	urls := strings.Split(c.URLs(), ",")
	urls[0], urls[first] = urls[first], urls[0]
	nc, err := nats.Connect(strings.Join(urls, ","),
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		c.t.Fatalf("connect: %v", err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// StreamLeader returns the index of the server leading stream, or -1.
func (c *Cluster) StreamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}
