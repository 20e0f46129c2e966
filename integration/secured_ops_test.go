package integration

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/crypto/bcrypt"
)

// TestSecured_TLS: with --tls-cert/--tls-key the MQTT and WebSocket
// listeners speak TLS only, with a certificate made for the test; there is
// no plain listener unless --plain-mqtt asks for one.
func TestSecured_TLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	s := start(t, "--auth", writeUsers(t, secFleet...), "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile)
	trusted := &tls.Config{RootCAs: pki.Pool}

	t.Run("MQTT", func(t *testing.T) {
		c, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{user: "dev1", password: password("dev1"), tls: trusted})
		if err != nil {
			t.Fatalf("connect over TLS: %v", err)
		}
		id := c.log(map[string]any{"msg": "over tls"})
		if es := c.list(map[string]any{}); len(es) == 0 || es[len(es)-1].ID != id {
			t.Fatalf("list over TLS: %+v, want %s last", es, id)
		}
	})
	t.Run("WebSocket", func(t *testing.T) {
		c, err := tryDial(t, "wss://"+s.WS+"/mqtt", dialOpts{user: "dash", password: password("dash"), tls: trusted})
		if err != nil {
			t.Fatalf("connect over WebSocket+TLS: %v", err)
		}
		c.call(map[string]any{"method": "Log.List", "args": map[string]any{"src": "dev1"}}, "").entries(t)
	})
	t.Run("WrongPasswordOverTLS", func(t *testing.T) {
		_, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{user: "dev1", password: "wrong", tls: trusted})
		if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Fatalf("wrong password over TLS: %v, want not authorised", err)
		}
	})
	t.Run("UntrustedCA", func(t *testing.T) {
		_, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{user: "dev1", password: password("dev1"), tls: &tls.Config{}})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a client that does not trust the test CA: %v, want a certificate error", err)
		}
	})
	t.Run("PlainMQTTOnTLSPort", func(t *testing.T) {
		if _, err := tryDial(t, "tcp://"+s.MQTT, dialOpts{user: "dev1", password: password("dev1")}); err == nil {
			t.Fatal("plain MQTT to the TLS listener connected")
		}
		if _, err := tryDial(t, "ws://"+s.WS+"/mqtt", dialOpts{user: "dev1", password: password("dev1")}); err == nil {
			t.Fatal("plain WebSocket to the TLS listener connected")
		}
	})
	t.Run("NoPlainListener", func(t *testing.T) {
		if a := s.plainAddr(); a != "" {
			t.Fatalf("a plain MQTT listener on %s without --plain-mqtt", a)
		}
	})
	t.Run("MosquittoCafile", func(t *testing.T) {
		frame := `{"id":7,"src":"dev2","method":"Log.Log","args":{"msg":"from mosquitto_pub"}}`
		out, code := runCmd(t, nil, "mosquitto_pub", "--cafile", pki.CAFile, "-h", "localhost", "-p", portOf(t, s.MQTT),
			"-u", "dev2", "-P", password("dev2"), "-q", "1", "-t", "logbroker/rpc", "-m", frame)
		if code != 0 {
			t.Fatalf("mosquitto_pub --cafile: exit %d: %s", code, out)
		}
		ops, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{user: "ops", password: password("ops"), tls: trusted})
		if err != nil {
			t.Fatal(err)
		}
		// Published at QoS 1 and acknowledged: the call is queued; a List
		// from another connection finds it once it is durable.
		for i := 0; ; i++ {
			es := ops.list(map[string]any{"src": "dev2", "follow": true, "timeout": 5})
			if len(es) == 1 && string(es[0].Msg) == `"from mosquitto_pub"` {
				break
			}
			if i == 2 {
				t.Fatalf("dev2's entry from mosquitto_pub not found: %+v", es)
			}
		}
		out, code = runCmd(t, nil, "mosquitto_pub", "--cafile", pki.CAFile, "-h", "localhost", "-p", portOf(t, s.MQTT),
			"-u", "dev2", "-P", "wrong", "-t", "logbroker/rpc", "-m", frame)
		if code == 0 || !strings.Contains(strings.ToLower(out), "not authori") {
			t.Fatalf("mosquitto_pub --cafile with a wrong password: exit %d: %q", code, out)
		}
	})
}

// TestSecured_PlainListener: --plain-mqtt adds a plain listener beside TLS,
// with the same users.
func TestSecured_PlainListener(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	s := start(t, "--auth", writeUsers(t, secFleet...), "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile,
		"--plain-mqtt", "127.0.0.1:0", "--ws", "")
	plain := s.plainAddr()
	if plain == "" || plain == s.MQTT {
		t.Fatalf("plain_mqtt=%q beside mqtt=%s", plain, s.MQTT)
	}
	c := dialAs(t, "tcp://"+plain, "dev1")
	c.log(map[string]any{"msg": "plain"})
	if _, err := tryDial(t, "tcp://"+plain, dialOpts{user: "dev1", password: "wrong"}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("wrong password on the plain listener: %v", err)
	}
	if _, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{user: "dev1", password: password("dev1"), tls: &tls.Config{RootCAs: pki.Pool}}); err != nil {
		t.Fatalf("TLS beside the plain listener: %v", err)
	}
}

// TestSecured_Reload: SIGHUP reloads the users file. An added user can
// connect; a removed user's new connections are refused and its open
// connections are closed at once (revocation must not wait for the client
// to leave); everyone else stays connected. A bad file is not loaded: the
// old users stay and the log says why.
func TestSecured_Reload(t *testing.T) {
	t.Parallel()
	path := writeUsers(t, account{"dev1", "device"}, account{"dash", "reader"}, account{"gone", "device"})
	s := start(t, "--auth", path, "--ws", "")
	url := "tcp://" + s.MQTT
	gone := dialAs(t, url, "gone")
	dash := dialAs(t, url, "dash")
	dev1 := dialAs(t, url, "dev1")
	if _, err := tryDial(t, url, dialOpts{user: "newdev", password: password("newdev")}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("newdev before the reload: %v, want refused", err)
	}

	writeFileAtomic(t, path, usersYAML(t, account{"dev1", "device"}, account{"dash", "reader"}, account{"newdev", "device"}))
	s.sighup()
	if line := s.waitLogLines(`msg="users file reloaded"`, 1, startTimeout); !strings.Contains(line, "users=3") {
		t.Errorf("reload log line %q does not count 3 users", line)
	}

	t.Run("AddedUserConnects", func(t *testing.T) {
		c := dialAs(t, url, "newdev")
		c.log(map[string]any{"msg": "new here"})
		c.call(map[string]any{"method": "Log.List", "args": map[string]any{"src": "dev1"}}, "").fails(t, 403)
	})
	t.Run("RemovedUserRefused", func(t *testing.T) {
		if _, err := tryDial(t, url, dialOpts{user: "gone", password: password("gone")}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Fatalf("removed user connecting: %v, want not authorised", err)
		}
	})
	t.Run("RemovedUsersConnectionClosed", func(t *testing.T) {
		gone.waitDropped(startTimeout)
		s.waitLogLines(`msg="disconnecting client after reload" client=`+gone.id+" user=gone", 1, callTimeout)
	})
	t.Run("OthersStayConnected", func(t *testing.T) {
		dash.pingBarrier()
		dev1.log(map[string]any{"msg": "still here"})
		for _, c := range []*client{dash, dev1} {
			select {
			case <-c.lostCh:
				t.Errorf("%s lost its connection on reload: %v", c.src, c.lost)
			default:
			}
		}
	})
	t.Run("PasswordChangeDisconnects", func(t *testing.T) {
		h, err := bcrypt.GenerateFromPassword([]byte("new-secret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		file := string(usersYAML(t, account{"dev1", "device"}, account{"newdev", "device"}))
		file += fmt.Sprintf("  dash: {password: %q, role: reader}\n", h)
		writeFileAtomic(t, path, []byte(file))
		s.sighup()
		s.waitLogLines(`msg="users file reloaded"`, 2, startTimeout)
		dash.waitDropped(startTimeout)
		if _, err := tryDial(t, url, dialOpts{user: "dash", password: password("dash")}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Fatalf("old password after the change: %v, want refused", err)
		}
		if _, err := tryDial(t, url, dialOpts{user: "dash", password: "new-secret"}); err != nil {
			t.Fatalf("new password after the change: %v", err)
		}
		dev1.pingBarrier()
	})
	t.Run("BadReloadKeepsOld", func(t *testing.T) {
		bad := []struct {
			name, file, why string
		}{
			{"PlainPassword", "users:\n  dev1: {password: hunter2, role: device}\n", `user \"dev1\": password is not a bcrypt hash`},
			{"UnknownRole", strings.Replace(string(usersYAML(t, account{"dev1", "device"})), "role: device", "role: root", 1), `unknown role \"root\"`},
			{"Malformed", "users: [\n", "bad users file"},
			{"Empty", "", "empty file"},
		}
		for i, b := range bad {
			writeFileAtomic(t, path, []byte(b.file))
			s.sighup()
			line := s.waitLogLines(`msg="users file not reloaded; keeping the previous one"`, i+1, startTimeout)
			if !strings.Contains(line, b.why) {
				t.Errorf("%s: log line %q does not say %q", b.name, line, b.why)
			}
		}
		// The last good file is still in force, and nobody was dropped.
		c := dialAs(t, url, "newdev")
		c.pingBarrier()
		if _, err := tryDial(t, url, dialOpts{user: "gone", password: password("gone")}); err == nil {
			t.Error("a bad reload brought back a removed user")
		}
		dev1.pingBarrier()
		if n, _ := s.countLogLines(`msg="users file reloaded"`); n != 2 {
			t.Errorf("%d successful reloads logged, want 2", n)
		}
	})
}

// TestSecured_BadUsersFileAtStart: a users file with a problem is refused
// at start, exit 1, with a message naming the user and the problem.
func TestSecured_BadUsersFileAtStart(t *testing.T) {
	t.Parallel()
	h, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file string // file "" : no such file
		want       []string
	}{
		{"Malformed", "users:\n  dev1: {password: \"" + string(h) + "\", role: device\n", []string{"bad users file"}},
		{"UnknownRole", "users:\n  dev1: {password: \"" + string(h) + "\", role: device}\n  bob: {password: \"" + string(h) + "\", role: root}\n", []string{`user "bob"`, `unknown role "root"`}},
		{"PlainTextPassword", "users:\n  alice: {password: hunter2, role: reader}\n", []string{`user "alice"`, "not a bcrypt hash", "logbroker passwd"}},
		{"NoUsers", "users: {}\n", []string{"no users"}},
		{"Missing", "", []string{"no such file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "users.yaml")
			if c.file != "" {
				writeFileAtomic(t, path, []byte(c.file))
			}
			out, code := runBinary(t, startTimeout, "serve", "--auth", path, "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "", "--data", t.TempDir())
			if code != 1 {
				t.Errorf("exit code %d, want 1; output:\n%s", code, out)
			}
			if strings.Contains(out, "logbroker started") {
				t.Errorf("it started:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestSecured_OpenModeLoopbackOnly: without --auth a non-loopback address
// is refused with the reason, unless --insecure-open; with --auth it is fine.
func TestSecured_OpenModeLoopbackOnly(t *testing.T) {
	t.Parallel()
	out, code := runBinary(t, startTimeout, "serve", "--mqtt", "0.0.0.0:0", "--ws", "", "--http", "", "--data", t.TempDir())
	if code != 1 || !strings.Contains(out, "not a loopback address") || !strings.Contains(out, "--insecure-open") || !strings.Contains(out, "--auth") {
		t.Fatalf("open mode on 0.0.0.0: exit %d, output:\n%s", code, out)
	}
	s := start(t, "--auth", writeUsers(t, account{"dev1", "device"}), "--mqtt", "0.0.0.0:0", "--ws", "", "--http", "")
	dialAs(t, "tcp://127.0.0.1:"+portOf(t, s.MQTT), "dev1").pingBarrier()
}

// TestSecured_Passwd: `logbroker passwd` hashes stdin's first line; the hash
// works in a users file.
func TestSecured_Passwd(t *testing.T) {
	t.Parallel()
	out, code := runCmd(t, strings.NewReader("correct horse battery\n"), binPath, "passwd")
	if code != 0 {
		t.Fatalf("passwd: exit %d: %s", code, out)
	}
	hash := strings.TrimSpace(out)
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost < bcrypt.DefaultCost {
		t.Fatalf("passwd printed %q: cost %d, %v; want a bcrypt hash of cost >= %d", out, cost, err, bcrypt.DefaultCost)
	}
	if out, code := runCmd(t, strings.NewReader(""), binPath, "passwd"); code == 0 || !strings.Contains(out, "empty password") {
		t.Errorf("passwd with nothing on stdin: exit %d: %s", code, out)
	}

	path := filepath.Join(t.TempDir(), "users.yaml")
	writeFileAtomic(t, path, []byte(fmt.Sprintf("users:\n  ops: {password: %q, role: admin}\n", hash)))
	s := start(t, "--auth", path, "--ws", "", "--http", "")
	c, err := tryDial(t, "tcp://"+s.MQTT, dialOpts{user: "ops", password: "correct horse battery"})
	if err != nil {
		t.Fatalf("the passwd hash refuses its password: %v", err)
	}
	c.subscribe("ops/rpc", 1)
	c.pingBarrier()
	if _, err := tryDial(t, "tcp://"+s.MQTT, dialOpts{user: "ops", password: "correct horse"}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("another password: %v, want refused", err)
	}
}
