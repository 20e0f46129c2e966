package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
)

//go:embed static
var static embed.FS

// Config tells the page how to reach the broker.
type Config struct {
	Service string // the service id: requests go to <Service>/rpc
	WSAddr  string // bound address of the MQTT-over-WebSocket listener; "" when disabled
	TLS     bool   // the WebSocket listener speaks TLS (wss://)
	Secured bool   // secured mode: the page asks for a username and password
}

// csp lets the page load its own scripts and styles and open WebSockets
// (to the broker's other port), nothing else.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// New returns the dashboard's handler. Mount it at "/" (it answers "/" and
// "/dashboard/..." and 404 for anything else).
func New(cfg Config) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})
	mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard", files))
	mux.HandleFunc("GET /dashboard/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Service string `json:"service"`
			Secured bool   `json:"secured"`
			WSURL   string `json:"ws_url"`
		}{cfg.Service, cfg.Secured, wsURL(cfg, r)})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		mux.ServeHTTP(w, r)
	})
}

// wsURL is where the page opens its WebSocket: the listener's port, on the
// host name the browser used for the page when the listener is bound to a
// wildcard or loopback address, else on the bound address.
func wsURL(cfg Config, r *http.Request) string {
	if cfg.WSAddr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(cfg.WSAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || host == "localhost" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		} else if r.Host != "" {
			host = strings.Trim(r.Host, "[]")
		}
	}
	scheme := "ws"
	if cfg.TLS {
		scheme = "wss"
	}
	if _, err := strconv.Atoi(port); err != nil {
		return ""
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}
