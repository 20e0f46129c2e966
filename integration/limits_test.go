package integration

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestLimits runs the binary with the limits of a public broker set low and
// checks what a client sees and /metrics counts (each limit is tested in
// detail in package broker).
func TestPublicLimits(t *testing.T) {
	s := start(t, "--connect-timeout", "300ms", "--max-keepalive", "20s", "--max-conns", "4")

	t.Run("ConnectTimeout", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", s.MQTT, callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(2 * callTimeout))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection that sent nothing got bytes")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("a connection that sent nothing is still open after %v", 2*callTimeout)
		}
		s.waitMetric(t, "the connect timeout", "logbroker_mqtt_connect_timeouts_total", func(v float64) bool { return v == 1 })
	})
	t.Run("MaxKeepalive", func(t *testing.T) {
		// rawConnack asks for a keep-alive of 30 s.
		if code := rawConnack(t, s.MQTT, 4, "", ""); code != 2 {
			t.Errorf("MQTT 3.1.1 asking for 30 s: return code %d, want 2", code)
		}
		if code := rawConnack(t, s.MQTT, 5, "", ""); code != 0 {
			t.Errorf("MQTT 5 asking for 30 s: reason %#x, want success (lowered)", code)
		}
		s.waitMetric(t, "the keep-alive refusal", "logbroker_mqtt_keepalive_refused_total", func(v float64) bool { return v == 1 })
	})
	t.Run("MaxConns", func(t *testing.T) {
		// Paho's default keep-alive (30 s) is over --max-keepalive.
		for range 4 {
			newClientOpts(t, "tcp://"+s.MQTT, func(o *mqtt.ClientOptions) { o.SetKeepAlive(10 * time.Second) })
		}
		if code := rawConnack(t, s.MQTT, 5, "", ""); code != 0x97 {
			t.Errorf("MQTT 5 over --max-conns: reason %#x, want 0x97", code)
		}
		s.waitMetric(t, "the refused connection", "logbroker_mqtt_connections_refused_total", func(v float64) bool { return v == 1 })
	})
}

// TestConnectTimeoutTLS checks --connect-timeout on a TLS listener: a
// connection that never starts the handshake is closed, one that
// connected stays past the deadline.
func TestConnectTimeoutTLS(t *testing.T) {
	pki := newTestPKI(t)
	s := start(t, "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile, "--connect-timeout", "300ms")
	c, err := tryDial(t, "ssl://"+s.MQTT, dialOpts{tls: &tls.Config{RootCAs: pki.Pool}})
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.DialTimeout("tcp", s.MQTT, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(2 * callTimeout))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection that sent nothing got bytes")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a connection that sent nothing is still open after %v", 2*callTimeout)
	}
	// silent was accepted after c and has timed out: c is past its
	// connect deadline too.
	if code := c.trySubscribe(c.src+"/rpc", 1); code != 1 {
		t.Fatalf("the TLS client connected before the deadline: SUBACK %#x, want QoS 1", code)
	}
}
