package rpcclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// DefaultBroker is the broker Dial connects to when Options.Broker is empty.
const DefaultBroker = "tcp://127.0.0.1:1883"

// DefaultService is the service id calls go to when Options.Service is empty.
const DefaultService = "logbroker"

var (
	// ErrConnectionLost is returned by Call when the connection dropped
	// before the response arrived. The request may or may not have run.
	ErrConnectionLost = errors.New("connection lost")
	// ErrClosed is returned by Call after Close.
	ErrClosed = errors.New("client closed")
)

// CallError is an error response of the service (PROTOCOL §3).
type CallError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *CallError) Error() string { return fmt.Sprintf("error %d: %s", e.Code, e.Message) }

// Options configure Dial. Only Broker is commonly set; the zero value of
// every other field has a sensible default.
type Options struct {
	Broker   string // tcp://, ssl://, ws:// or wss://host:port; default DefaultBroker
	Username string
	Password string
	Service  string // service id: requests go to <Service>/rpc; default DefaultService
	Src      string // frame src and reply topic <Src>/rpc; default NewSrc("cli")
	ClientID string // MQTT client id; default Src (with '/' as '-') and a random suffix
	CAFile   string // PEM roots for ssl:// and wss://; default the system roots
	TLS      *tls.Config

	ConnectTimeout time.Duration // for each connection attempt; default 10 s
	Logger         *slog.Logger  // connection events (lost, reconnected); default none
}

// NewSrc returns prefix-<12 hex digits>, a src unique to this process.
func NewSrc(prefix string) string { return prefix + "-" + randomHex(6) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Client is one MQTT connection that makes calls. It is safe for
// concurrent use.
type Client struct {
	opts Options
	pc   mqtt.Client
	log  *slog.Logger

	mu      sync.Mutex
	gen     uint64        // connections so far: the current one's generation
	lost    uint64        // connections lost so far
	ready   bool          // connected and subscribed to <src>/rpc (generation gen)
	subErr  error         // why the last subscription failed
	changed chan struct{} // closed and replaced when ready, subErr or closed change
	closed  bool
	nextID  uint64
	pending map[uint64]*pending
}

type pending struct {
	gen uint64
	ch  chan response // buffered, 1
}

type response struct {
	Result json.RawMessage `json:"result"`
	Error  *CallError      `json:"error"`
	err    error
}

// Dial connects to the broker, subscribes to <src>/rpc and returns once
// calls can be made, or the first error. ctx bounds the wait.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.Broker == "" {
		opts.Broker = DefaultBroker
	}
	if opts.Service == "" {
		opts.Service = DefaultService
	}
	if opts.Src == "" {
		opts.Src = NewSrc("cli")
	}
	if opts.ClientID == "" {
		opts.ClientID = strings.ReplaceAll(opts.Src, "/", "-") + "-" + randomHex(3)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.Src == "" || strings.ContainsAny(opts.Src, "+#\x00") {
		return nil, fmt.Errorf("dial: src %q: must be a topic without '+', '#'", opts.Src)
	}
	u, err := url.Parse(opts.Broker)
	if err != nil {
		return nil, fmt.Errorf("dial: broker %q: %w", opts.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("dial: broker %q: want tcp://, ssl://, ws:// or wss://host:port", opts.Broker)
	}
	tlsConf := opts.TLS
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dial: %s: no PEM certificate", opts.CAFile)
		}
		if tlsConf == nil {
			tlsConf = &tls.Config{}
		} else {
			tlsConf = tlsConf.Clone()
		}
		tlsConf.RootCAs = pool
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	var seed [8]byte
	_, _ = rand.Read(seed[:])
	c := &Client{
		opts:    opts,
		log:     log,
		changed: make(chan struct{}),
		// A random start in [1, 2^52) leaves room below 2^53-1 (PROTOCOL §2).
		nextID:  binary.BigEndian.Uint64(seed[:])%(1<<52) + 1,
		pending: map[uint64]*pending{},
	}
	mo := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetCleanSession(true).
		SetStore(noStore{}).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(opts.ConnectTimeout).
		SetWriteTimeout(opts.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onLost).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			log.Debug("reconnecting", "broker", opts.Broker)
		})
	if tlsConf != nil {
		mo.SetTLSConfig(tlsConf)
	}
	c.pc = mqtt.NewClient(mo)

	tok := c.pc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.pc.Disconnect(0)
		return nil, fmt.Errorf("dial %s: %w", opts.Broker, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		c.pc.Disconnect(0)
		return nil, fmt.Errorf("dial %s: %w", opts.Broker, err)
	}
	if err := c.waitReady(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", opts.Broker, err)
	}
	return c, nil
}

// Src is the src of this client's frames; responses come on <Src>/rpc.
func (c *Client) Src() string { return c.opts.Src }

// onConnect runs (in its own goroutine) after every connection: it
// subscribes to the reply topic and only then lets calls through.
func (c *Client) onConnect(pc mqtt.Client) {
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.ready, c.subErr = false, nil
	c.failLocked(func(p *pending) bool { return p.gen < gen }, ErrConnectionLost)
	c.mu.Unlock()
	if gen > 1 {
		c.log.Info("reconnected", "broker", c.opts.Broker)
	}

	topic := c.opts.Src + "/rpc"
	tok := pc.Subscribe(topic, 1, c.onResponse)
	var err error
	if !tok.WaitTimeout(c.opts.ConnectTimeout) {
		err = fmt.Errorf("subscribe %s: no SUBACK within %v", topic, c.opts.ConnectTimeout)
	} else if err = tok.Error(); err != nil {
		// paho fails a SUBSCRIBE only when its connection is gone (a
		// refusal comes back as a SUBACK code, below).
		err = fmt.Errorf("subscribe %s: %w (%w)", topic, ErrConnectionLost, err)
	} else if q, ok := tok.(*mqtt.SubscribeToken).Result()[topic]; !ok || q > 2 {
		err = fmt.Errorf("subscribe %s: refused by the broker (not permitted?)", topic)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.lost >= gen {
		return // this connection is gone already: the next one subscribes
	}
	if err != nil {
		c.log.Warn("cannot receive responses", "broker", c.opts.Broker, "err", err)
	}
	c.subErr = err
	c.ready = err == nil
	c.notifyLocked()
}

// onLost fails the calls in flight on the lost connection: their
// responses are gone with it (clean session). paho reports connections and
// losses from goroutines of their own, so a loss may be reported after the
// next connection is up; the n-th loss is that of the n-th connection.
func (c *Client) onLost(_ mqtt.Client, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lost++
	lostGen := c.lost
	if c.closed {
		return
	}
	c.log.Warn("connection lost; reconnecting", "broker", c.opts.Broker, "err", err)
	if c.gen == lostGen {
		c.ready = false
	}
	c.failLocked(func(p *pending) bool { return p.gen <= lostGen }, ErrConnectionLost)
}

// notifyLocked wakes every waitReady. c.mu is held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// failLocked answers, with err, every pending call that match selects.
// c.mu is held.
func (c *Client) failLocked(match func(*pending) bool, err error) {
	for id, p := range c.pending {
		if match(p) {
			p.ch <- response{err: err}
			delete(c.pending, id)
		}
	}
}

// waitReady waits until the client is connected and subscribed.
func (c *Client) waitReady(ctx context.Context) error {
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return ErrClosed
		case c.ready:
			c.mu.Unlock()
			return nil
		case c.subErr != nil:
			err := c.subErr
			c.mu.Unlock()
			return err
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// onResponse routes a response frame to its call by id.
func (c *Client) onResponse(_ mqtt.Client, m mqtt.Message) {
	var f struct {
		ID json.RawMessage `json:"id"`
		response
	}
	if err := json.Unmarshal(m.Payload(), &f); err != nil {
		c.log.Debug("undecodable response", "err", err)
		return
	}
	var id uint64
	if err := json.Unmarshal(f.ID, &id); err != nil {
		return // not one of ours: ours are integers
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pending[id]; ok {
		delete(c.pending, id)
		p.ch <- f.response
	}
}

// CallOption adjusts one request frame.
type CallOption func(frame map[string]any)

// Wait sets the frame's timeout: how long the service may wait before it
// answers (the bound of a Log.List follow).
func Wait(d time.Duration) CallOption {
	return func(f map[string]any) { f["timeout"] = math.Ceil(d.Seconds()*1000) / 1000 }
}

// Call calls method with args (nil, json.RawMessage or anything
// json.Marshal takes) and returns the result: nil when the response has
// none. An error response is a *CallError. ctx bounds the whole call,
// including the wait for a connection.
func (c *Client) Call(ctx context.Context, method string, args any, opts ...CallOption) (json.RawMessage, error) {
	frame := map[string]any{"src": c.opts.Src, "method": method}
	if args != nil {
		frame["args"] = args
	}
	for _, o := range opts {
		o(frame)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("call %s: %w", method, ErrClosed)
	}
	id := c.nextID
	c.nextID++
	p := &pending{gen: c.gen, ch: make(chan response, 1)}
	c.pending[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	frame["id"] = id
	payload, err := json.Marshal(frame)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	tok := c.pc.Publish(c.opts.Service+"/rpc", 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("call %s: publish: %w (%w)", method, ErrConnectionLost, err)
		}
	case r := <-p.ch: // the response (or the loss) may beat the PUBACK
		return r.unpack(method)
	case <-ctx.Done():
		return nil, fmt.Errorf("call %s: %w", method, ctx.Err())
	}
	select {
	case r := <-p.ch:
		return r.unpack(method)
	case <-ctx.Done():
		return nil, fmt.Errorf("call %s: %w", method, ctx.Err())
	}
}

func (r response) unpack(method string) (json.RawMessage, error) {
	switch {
	case r.err != nil:
		return nil, fmt.Errorf("call %s: %w", method, r.err)
	case r.Error != nil:
		return nil, r.Error
	}
	return r.Result, nil
}

// Publish sends payload to topic as an ordinary MQTT message, not a call,
// and returns once paho has sent it (QoS 0) or the broker acknowledged it
// (QoS 1), or ctx ends.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	tok := c.pc.Publish(topic, qos, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	}
}

// Close disconnects (waiting up to 250 ms for work in flight) and fails
// any call still waiting.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.failLocked(func(*pending) bool { return true }, ErrClosed)
	c.notifyLocked()
	c.mu.Unlock()
	c.pc.Disconnect(250)
}

// noStore is a paho Store that keeps nothing, so paho never resends a
// request after a reconnect: the call already failed with
// ErrConnectionLost and its caller decides (see the package caveats).
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
