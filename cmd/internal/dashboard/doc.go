// Package dashboard serves logbroker's live web dashboard: a static page
// (index.html, app.js, style.css, mqtt.js) embedded in the binary, with no
// build step, and /dashboard/config.json, which tells the page where the
// broker's MQTT-over-WebSocket listener is and whether to ask for a login.
//
// # Basics
//
// The page is an ordinary MQTT client of the broker: mqtt.js is a small
// MQTT 3.1.1 client over WebSocket, and the page calls Log.Fleet,
// Log.Sources, Log.Streams and Log.List as RPC frames on <service>/rpc,
// with replies on its own <src>/rpc. Its first page is the fleet (Log.Fleet,
// one server-side page at a time). A source's view is a selection the
// server answers: the search (match, or regex when written /.../), level
// and time range are Log.List filters (PROTOCOL §5), the live tail is
// Log.List with follow and the same filters, the download pages through the
// whole selection with after, and the histogram counts what is shown. Only
// a broker without Log.Sources makes the page subscribe to +/log/# (to learn
// sources). In secured mode the user signs in with an MQTT username and
// password, so the broker's ACL and permission rules apply to the page
// exactly as to any client: the HTTP server grants nothing.
//
// Routes: GET / (the page), GET /dashboard/{app.js,mqtt.js,style.css},
// GET /dashboard/config.json:
//
//	{"service":"logbroker","secured":false,"ws_url":"ws://127.0.0.1:8083/"}
//
// ws_url takes the host name the browser used for the page when the
// WebSocket listener is bound to a wildcard or loopback address, so a page
// opened as http://localhost:8080/ connects to ws://localhost:8083/. A page
// behind a proxy can override it with a URL on the page's own host name,
// /?ws=wss://logs.example.org/mqtt; another host is ignored, so that a link
// cannot make the page send a password elsewhere (the sign-in form names
// the broker it signs in to).
//
// # Caveats
//
// Every response carries a Content-Security-Policy that allows scripts and
// styles from the page's own origin only; the page itself never uses
// innerHTML for broker data (entries are untrusted text).
package dashboard
