package dashboard

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, cfg Config, target, host string) (int, map[string][]string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	if host != "" {
		req.Host = host
	}
	rec := httptest.NewRecorder()
	New(cfg).ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, rec.Header(), string(body)
}

func TestHandler_Files(t *testing.T) {
	cfg := Config{Service: "logbroker", WSAddr: "127.0.0.1:8083"}
	cases := []struct {
		name, path string
		code       int
		ctype      string
		contains   string
	}{
		{"Index", "/", 200, "text/html", `<script src="/dashboard/app.js">`},
		{"App", "/dashboard/app.js", 200, "javascript", "Log.Sources"},
		{"AppFleet", "/dashboard/app.js", 200, "javascript", "Log.Fleet"},
		{"MQTT", "/dashboard/mqtt.js", 200, "javascript", "PINGREQ"},
		{"Style", "/dashboard/style.css", 200, "text/css", "@media"},
		{"Unknown", "/nope", 404, "", ""},
		{"UnknownAsset", "/dashboard/nope.js", 404, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := get(t, cfg, c.path, "")
			if code != c.code {
				t.Fatalf("GET %s: %d, want %d", c.path, code, c.code)
			}
			if !strings.Contains(h["Content-Security-Policy"][0], "script-src 'self'") {
				t.Errorf("GET %s: CSP %q", c.path, h["Content-Security-Policy"])
			}
			if c.code != 200 {
				return
			}
			if ct := strings.Join(h["Content-Type"], ""); !strings.Contains(ct, c.ctype) {
				t.Errorf("GET %s: Content-Type %q, want %q", c.path, ct, c.ctype)
			}
			if !strings.Contains(body, c.contains) {
				t.Errorf("GET %s: body lacks %q", c.path, c.contains)
			}
		})
	}
	t.Run("NoInnerHTML", func(t *testing.T) {
		for _, f := range []string{"/dashboard/app.js", "/dashboard/mqtt.js"} {
			if _, _, body := get(t, cfg, f, ""); strings.Contains(body, "innerHTML") || strings.Contains(body, "insertAdjacentHTML") {
				t.Errorf("%s writes HTML: broker data must go through textContent", f)
			}
		}
	})
}

func TestHandler_Config(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		host string // Host of the page request
		want string
	}{
		{"Loopback", Config{WSAddr: "127.0.0.1:8083"}, "localhost:8080", "ws://localhost:8083/"},
		{"Wildcard", Config{WSAddr: "0.0.0.0:9001"}, "logs.example:8080", "ws://logs.example:9001/"},
		{"WildcardV6", Config{WSAddr: "[::]:9001"}, "[::1]:8080", "ws://[::1]:9001/"},
		{"HostWithoutPort", Config{WSAddr: "[::]:9001"}, "[::1]", "ws://[::1]:9001/"},
		{"SpecificAddress", Config{WSAddr: "192.0.2.7:9001"}, "logs.example:8080", "ws://192.0.2.7:9001/"},
		{"TLS", Config{WSAddr: "0.0.0.0:8443", TLS: true}, "logs.example", "wss://logs.example:8443/"},
		{"NoWebSocket", Config{}, "localhost:8080", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Service = "svc"
			c.cfg.Secured = c.name == "TLS"
			code, h, body := get(t, c.cfg, "/dashboard/config.json", c.host)
			if code != 200 || !strings.Contains(h["Content-Type"][0], "application/json") {
				t.Fatalf("config.json: %d %q", code, h["Content-Type"])
			}
			var got struct {
				Service string `json:"service"`
				Secured bool   `json:"secured"`
				WSURL   string `json:"ws_url"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("config.json %s: %v", body, err)
			}
			if got.WSURL != c.want || got.Service != "svc" || got.Secured != c.cfg.Secured {
				t.Errorf("config.json = %+v, want ws_url %q, service svc, secured %v", got, c.want, c.cfg.Secured)
			}
		})
	}
}
