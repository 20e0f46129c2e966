package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWebSocket checks MQTT over WebSocket (served at every path) with a
// paho client, and that TCP and WebSocket clients share one broker.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	s := start(t)
	if s.WS == "" {
		t.Fatal("start line names no WebSocket address")
	}
	tcp := s.dial(t)
	tcp.subscribe("+/log/#", 1)
	for _, path := range []string{"/", "/mqtt"} {
		t.Run(path, func(t *testing.T) {
			ws := connect(t, "ws://"+s.WS+path)
			from := tcp.mark()
			id := ws.log(map[string]any{"msg": "over websocket " + path})
			if es := ws.list(nil); len(es) != 1 || es[0].ID != id {
				t.Errorf("List over WebSocket: %+v", es)
			}
			tcp.waitMsg(from, callTimeout, "the live entry at the TCP client", func(m message) bool {
				return m.Topic == ws.src+"/log/console"
			})
		})
	}
}

// TestHealthz checks GET /healthz on --http.
func TestHealthz(t *testing.T) {
	t.Parallel()
	s := start(t)
	if s.HTTP == "" {
		t.Fatal("start line names no HTTP address")
	}
	cl := &http.Client{Timeout: callTimeout}
	resp, err := cl.Get("http://" + s.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s %s", resp.Status, body)
	}
	resp, err = cl.Get("http://" + s.HTTP + "/no-such-page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /no-such-page: %s, want 404", resp.Status)
	}
}

// TestServeHelp checks that `logbroker serve --help` documents every flag
// with its environment twin.
func TestServeHelp(t *testing.T) {
	t.Parallel()
	out, code := runBinary(t, 20*time.Second, "serve", "--help")
	if code != 0 {
		t.Errorf("serve --help exited %d, want 0", code)
	}
	flagLine := regexp.MustCompile(`^  --([a-z0-9-]+)`)
	lines := strings.Split(out, "\n")
	documented := map[string]bool{}
	for i, l := range lines {
		m := flagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		name := m[1]
		documented[name] = true
		// The flag's paragraph: up to the next flag line.
		var para []string
		for _, p := range lines[i+1:] {
			if flagLine.MatchString(p) {
				break
			}
			para = append(para, strings.TrimSpace(p))
		}
		text := strings.Join(para, " ")
		env := "LOGBROKER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if !strings.Contains(text, env) {
			t.Errorf("--%s: help does not name its environment twin %s: %q", name, env, text)
		}
		if len(strings.Fields(text)) < 6 {
			t.Errorf("--%s: help too short to explain it: %q", name, text)
		}
	}
	for _, f := range []string{"mqtt", "ws", "http", "data", "id", "alias", "auth", "tls-cert", "tls-key",
		"insecure-open", "max-msg", "max-frame", "follow-timeout", "follow-max", "max-follows", "rate"} {
		if !documented[f] {
			t.Errorf("serve --help does not document --%s:\n%s", f, out)
		}
	}
}

// TestServeFlags checks command-line handling: an environment twin, an
// unknown flag, and open mode on a non-loopback address.
func TestServeFlags(t *testing.T) {
	t.Parallel()
	t.Run("EnvTwin", func(t *testing.T) {
		t.Parallel()
		s := startEnvIn(t, []string{"LOGBROKER_ID=other", "LOGBROKER_MAX_MSG=10"}, t.TempDir())
		if !strings.Contains(s.logs(), "id=other") {
			t.Errorf("start line does not show id=other:\n%s", s.logs())
		}
		c := s.dial(t)
		r := c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "x"}}, "other/rpc")
		checkShape(t, r, "other", c.src, r.ID, nil)
		r.logID(t)
		c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "longer than ten"}}, "other/rpc").fails(t, 413)
		// A flag beats its twin.
		s2 := startEnvIn(t, []string{"LOGBROKER_ID=other"}, t.TempDir(), "--id", "flagged")
		d := s2.dial(t)
		r = d.call(map[string]any{"method": "RPC.Ping", "id": 3}, "flagged/rpc")
		checkShape(t, r.ok(t), "flagged", d.src, json.RawMessage(`3`), nil)
	})
	t.Run("BadEnvValue", func(t *testing.T) {
		t.Parallel()
		out, code := runBinaryEnv(t, 20*time.Second, []string{"LOGBROKER_MAX_MSG=lots"}, "serve",
			"--mqtt", "127.0.0.1:0", "--ws", "", "--http", "", "--data", t.TempDir())
		if code == 0 || !strings.Contains(out, "LOGBROKER_MAX_MSG") {
			t.Errorf("bad LOGBROKER_MAX_MSG: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("BadIDOrAlias", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"--id", "a/b"}, {"--id", "#"}, {"--alias", "ok,a/b"}, {"--alias", "x+"}, {"--alias", "$SYS"}} {
			all := append([]string{"serve", "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "", "--data", t.TempDir()}, args...)
			out, code := runBinary(t, 20*time.Second, all...)
			if code == 0 || !strings.Contains(out, args[0]) {
				t.Errorf("%v: exit %d, want a refusal naming %s; output:\n%s", args, code, args[0], out)
			}
		}
	})
	t.Run("UnknownFlag", func(t *testing.T) {
		t.Parallel()
		out, code := runBinary(t, 20*time.Second, "serve", "--no-such-flag")
		if code != 2 {
			t.Errorf("unknown flag: exit %d, want 2; output:\n%s", code, out)
		}
		if !strings.Contains(out, "no-such-flag") {
			t.Errorf("unknown flag: output does not name it:\n%s", out)
		}
	})
	t.Run("OpenModeNonLoopback", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			{"--mqtt", "0.0.0.0:0", "--ws", "", "--http", ""},
			{"--mqtt", "127.0.0.1:0", "--ws", ":0", "--http", ""},
			{"--mqtt", "127.0.0.1:0", "--ws", "", "--http", "0.0.0.0:0"},
		} {
			all := append([]string{"serve", "--data", t.TempDir()}, args...)
			out, code := runBinary(t, 20*time.Second, all...)
			if code == 0 {
				t.Errorf("%v: exit 0, want a refusal", args)
			}
			if !strings.Contains(out, "loopback") || !strings.Contains(out, "--insecure-open") || !strings.Contains(out, "--auth") {
				t.Errorf("%v: the message does not say why nor what to do:\n%s", args, out)
			}
		}
	})
	t.Run("InsecureOpen", func(t *testing.T) {
		t.Parallel()
		s := start(t, "--mqtt", "0.0.0.0:0", "--insecure-open")
		_, port, err := net.SplitHostPort(s.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		c := connect(t, "tcp://127.0.0.1:"+port)
		c.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
	})
}
