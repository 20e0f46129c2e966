package loadgen

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// bufferedConn reads through a bufio.Reader. paho reads a packet's fixed
// header byte by byte from its connection; unbuffered, that is a syscall
// per byte, which on a shared machine takes CPU from the broker measured.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialBuffered opens tcp:// and ssl:// connections for paho with a read
// buffer; other schemes (ws://, wss://) are left to paho (nil, false).
func dialBuffered(u *url.URL, tlsConf *tls.Config, timeout time.Duration) (mqtt.OpenConnectionFunc, bool) {
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return nil, false
	}
	return func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		var c net.Conn
		var err error
		switch uri.Scheme {
		case "tcp", "mqtt":
			c, err = d.Dial("tcp", uri.Host)
		default:
			conf := tlsConf
			if conf == nil {
				conf = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			c, err = tls.DialWithDialer(d, "tcp", uri.Host, conf)
		}
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
	}, true
}
