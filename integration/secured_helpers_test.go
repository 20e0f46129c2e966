package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"
)

// account is one user of a test users file; its password is "pw-<name>".
type account struct {
	name, role string
}

func password(name string) string { return "pw-" + name }

// hashes keeps one bcrypt hash per user name, so that rewriting a users
// file leaves the unchanged accounts byte for byte the same (a reload drops
// the connections of an account whose hash changed).
var hashes sync.Map // name -> string

// usersYAML renders a users file for accounts, with bcrypt hashes of the
// minimum cost (the broker accepts any cost; tests want speed).
func usersYAML(t testing.TB, accounts ...account) []byte {
	t.Helper()
	accounts = slices.Clone(accounts) // callers share slices such as secFleet
	sort.Slice(accounts, func(i, j int) bool { return accounts[i].name < accounts[j].name })
	var b bytes.Buffer
	b.WriteString("users:\n")
	for _, a := range accounts {
		h, ok := hashes.Load(a.name)
		if !ok {
			raw, err := bcrypt.GenerateFromPassword([]byte(password(a.name)), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			h, _ = hashes.LoadOrStore(a.name, string(raw))
		}
		fmt.Fprintf(&b, "  %s: {password: %q, role: %s}\n", a.name, h, a.role)
	}
	return b.Bytes()
}

// writeUsers writes a users file into a fresh t.TempDir() and returns its path.
func writeUsers(t testing.TB, accounts ...account) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeFileAtomic(t, path, usersYAML(t, accounts...))
	return path
}

func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	// Write then rename, as an operator's editor would: a reload never
	// sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dialOpts say how a secured client connects.
type dialOpts struct {
	user, password string
	noPassword     bool        // send a username without a password
	clientID       string      // "" picks a fresh one
	tls            *tls.Config // for ssl:// and wss://
	willTopic      string      // "" : no will
	willPayload    string      // "": a frame with src "forged"
	willNoRetain   bool        // the will is retained unless this is set
}

// dialAs connects a paho MQTT 3.1.1 client to broker as user (password
// "pw-<user>" unless o says otherwise) and subscribes it to <user>/rpc. Its
// src is its identity.
func dialAs(t testing.TB, broker, user string) *client {
	t.Helper()
	c, err := tryDial(t, broker, dialOpts{user: user, password: password(user)})
	if err != nil {
		t.Fatalf("connect %s as %s: %v", broker, user, err)
	}
	c.subscribe(c.src+"/rpc", 1)
	return c
}

// tryDial connects without subscribing and returns the CONNACK error, if any.
func tryDial(t testing.TB, broker string, o dialOpts) (*client, error) {
	t.Helper()
	n := clientSeq.Add(1)
	id, src := o.clientID, o.user
	if id == "" {
		id = fmt.Sprintf("sec-%d", n)
	}
	if src == "" {
		src = id
	}
	return dialClient(t, broker, id, src, 2*callTimeout, func(opts *mqtt.ClientOptions) {
		opts.SetProtocolVersion(4) // no silent retry as MQTT 3.1 after a refusal
		if o.user != "" {
			opts.SetUsername(o.user)
		}
		if !o.noPassword && o.password != "" {
			opts.SetPassword(o.password)
		}
		if o.tls != nil {
			opts.SetTLSConfig(o.tls)
		}
		if o.willTopic != "" {
			payload := o.willPayload
			if payload == "" {
				payload = `{"id":"0000000000000001","src":"forged","msg":"forged"}`
			}
			opts.SetWill(o.willTopic, payload, 0, !o.willNoRetain)
		}
	})
}

// trySubscribe subscribes to filter and returns what the SUBACK granted:
// the QoS, or 0x80 for a refusal (paho reports no error for it: the code is
// only in SubscribeToken.Result).
func (c *client) trySubscribe(filter string, qos byte) byte {
	c.t.Helper()
	tok := c.pc.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(callTimeout) {
		c.t.Fatalf("%s: subscribe %q: no SUBACK within %v", c.id, filter, callTimeout)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("%s: subscribe %q: paho error %v", c.id, filter, err)
	}
	// One filter, one code; paho keys it by the filter without any
	// "$share/<group>/" prefix.
	res := tok.(*mqtt.SubscribeToken).Result()
	if len(res) != 1 {
		c.t.Fatalf("%s: subscribe %q: SUBACK codes %v, want one", c.id, filter, res)
	}
	for _, code := range res {
		return code
	}
	return 0
}

// callOn publishes frame as call does but waits for the response on topic
// replyTopic (not <src>/rpc): where a refused foreign src is answered.
func (c *client) callOn(frame map[string]any, replyTopic string) response {
	c.t.Helper()
	payload, _, id := c.frameOf(frame, true)
	if !c.subscribed(replyTopic) {
		c.subscribe(replyTopic, 1)
	}
	from := c.mark()
	c.publish("logbroker/rpc", 1, false, payload)
	m, _ := c.waitMsg(from, callTimeout, "response on "+replyTopic, func(m message) bool {
		r, ok := decodeResponse(m)
		return ok && m.Topic == replyTopic && bytes.Equal(compact(r.ID), id)
	})
	r, _ := decodeResponse(m)
	return r
}

// pingBarrier makes a call that must succeed and returns the count of messages
// recorded once its response arrived: everything the broker queued for c
// before the call was made is among them (one connection's queue is FIFO).
func (c *client) pingBarrier() int {
	c.t.Helper()
	c.call(map[string]any{"method": "RPC.Ping"}, "").ok(c.t)
	return c.mark()
}

// topicsBetween lists the topics c received in [from, to).
func (c *client) topicsBetween(from, to int) []string {
	var out []string
	for i, m := range c.messages(from) {
		if from+i >= to {
			break
		}
		out = append(out, m.Topic)
	}
	return out
}

// waitDropped waits until the broker drops c's connection.
func (c *client) waitDropped(d time.Duration) error {
	c.t.Helper()
	select {
	case <-c.lostCh:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lost
	case <-time.After(d):
		c.t.Fatalf("%s: still connected after %v", c.id, d)
		return nil
	}
}

// countLogLines returns how many lines of the server's log contain substr.
func (s *server) countLogLines(substr string) (int, <-chan struct{}) {
	b := s.stderr
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n, b.changed
}

// waitLogLines waits until the log holds n lines containing substr and returns
// the last of them.
func (s *server) waitLogLines(substr string, n int, d time.Duration) string {
	s.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		got, changed := s.countLogLines(substr)
		if got >= n {
			b := s.stderr
			b.mu.Lock()
			defer b.mu.Unlock()
			for i := len(b.lines) - 1; i >= 0; i-- {
				if strings.Contains(b.lines[i], substr) {
					return b.lines[i]
				}
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.t.Fatalf("log has %d lines with %q within %v, want %d; log:\n%s", got, substr, d, n, tail(s.logs(), 4000))
		}
	}
}

// sighup sends SIGHUP (reload the users file).
func (s *server) sighup() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		s.t.Fatalf("SIGHUP: %v", err)
	}
}

var plainLine = regexp.MustCompile(`msg="logbroker started".* plain_mqtt=(\S*)`)

// plainAddr is the plain MQTT listener's address from the start line ("" none).
func (s *server) plainAddr() string {
	s.t.Helper()
	line, ok, _ := s.stderr.find(`msg="logbroker started"`)
	m := plainLine.FindStringSubmatch(line)
	if !ok || m == nil {
		s.t.Fatalf("no plain_mqtt in the start line %q", line)
	}
	return unquote(m[1])
}

// rawConnack sends a hand-made CONNECT (MQTT 3.1.1 if version is 4, MQTT 5
// if 5) over TCP and returns the CONNACK's return / reason code.
func rawConnack(t testing.TB, addr string, version byte, user, pass string) byte {
	t.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var vh bytes.Buffer
	vh.Write(str("MQTT"))
	vh.WriteByte(version)
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	vh.WriteByte(flags)
	vh.Write([]byte{0, 30}) // keep alive
	if version == 5 {
		vh.WriteByte(0) // no properties
	}
	vh.Write(str(fmt.Sprintf("raw-%d", clientSeq.Add(1))))
	if user != "" {
		vh.Write(str(user))
	}
	if pass != "" {
		vh.Write(str(pass))
	}
	conn, err := net.DialTimeout("tcp", addr, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * callTimeout))
	pkt := append([]byte{0x10, byte(vh.Len())}, vh.Bytes()...) // < 128 bytes
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(conn, head); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if head[0] != 0x20 {
		t.Fatalf("got packet type %#x, want CONNACK", head[0])
	}
	return head[3]
}

// testPKI is a CA and a server certificate for 127.0.0.1 and localhost,
// made for one test.
type testPKI struct {
	CAFile, CertFile, KeyFile string
	Pool                      *x509.CertPool
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "logbroker test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
		Pool:     x509.NewCertPool(),
	}
	p.Pool.AddCert(ca)
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{p.CAFile, "CERTIFICATE", caDER}, {p.CertFile, "CERTIFICATE", der}, {p.KeyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// portOf is the port of a host:port address.
func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runCmd runs a command (mosquitto_pub, the binary with stdin, ...) to
// completion within 4*callTimeout and returns its combined output and exit
// code. stdin may be nil.
func runCmd(t testing.TB, stdin io.Reader, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv()
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v; output:\n%s", name, strings.Join(args, " "), 4*callTimeout, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}
