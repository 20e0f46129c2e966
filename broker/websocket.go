package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket on a listener it was given, so the
// bound address (port 0) is known before serving.
type wsListener struct {
	id       string
	ln       net.Listener
	upgrader websocket.Upgrader
	log      *slog.Logger
	once     sync.Once

	mu     sync.Mutex   // guards srv and closed: Serve and Close run on different goroutines
	srv    *http.Server // set by Serve
	closed bool         // set by Close: Serve does not start
}

var _ listeners.Listener = (*wsListener)(nil)

func newWebsocket(id string, ln net.Listener) *wsListener {
	l := &wsListener{
		id: id,
		ln: ln,
		upgrader: websocket.Upgrader{
			Subprotocols:    []string{"mqtt", "mqttv3.1"},
			CheckOrigin:     func(*http.Request) bool { return true },
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
		},
	}
	return l
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := l.upgrader.Upgrade(w, r, nil)
			if err != nil {
				return // the upgrader has answered with an HTTP error
			}
			defer c.Close()
			if err := establish(l.id, &wsConn{Conn: c.UnderlyingConn(), ws: c}); err != nil && l.log != nil {
				l.log.Debug("websocket client ended", "err", err)
			}
		}),
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.srv = srv
	l.mu.Unlock()
	if err := srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && l.log != nil {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		closeClients(l.id)
		l.mu.Lock()
		l.closed = true
		srv := l.srv
		l.mu.Unlock()
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		} else {
			_ = l.ln.Close()
		}
	})
}

// wsConn presents a WebSocket as a byte stream: MQTT packets may span
// binary messages and a message may hold several packets.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
	mu sync.Mutex // one writer at a time
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
