package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/logbroker/logbroker/broker"
	"github.com/logbroker/logbroker/cmd/internal/metrics"
)

// limitFlags are the limits of a public broker (issue 11 item 4, issue 13).
type limitFlags struct {
	maxKeepalive     time.Duration
	connectTimeout   time.Duration
	maxConns         int
	maxSubsPerClient int
	sessionExpiryMax time.Duration
}

func limitsFlags(fs *flag.FlagSet, c *limitFlags) {
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "close a connection that has not sent a whole MQTT CONNECT this long after it was accepted (TLS and WebSocket handshakes included); 0 = no limit")
	fs.IntVar(&c.maxConns, "max-conns", 100000, "connections open at once, all users together (see --max-conns-per-user for one identity); a CONNECT over it is refused with CONNACK 0x97 Quota exceeded (MQTT 5) or return code 3 Server unavailable (3.1.1); 0 = no limit")
	fs.IntVar(&c.maxSubsPerClient, "max-subs-per-client", 1000, "subscriptions one session may hold (a persistent session keeps them across reconnects); filters over it are refused in the SUBACK (0x97 for MQTT 5, 0x80 for 3.1.1), the others in the same SUBSCRIBE are granted; 0 = no limit")
	fs.DurationVar(&c.sessionExpiryMax, "session-expiry-max", time.Hour, "longest a persistent session (3.1.1 clean session off, MQTT 5 Session Expiry Interval) and its subscriptions are kept after its client disconnects; an MQTT 5 client asking for more is told the granted value in CONNACK; 0 = no limit")
	fs.DurationVar(&c.maxKeepalive, "max-keepalive", 0, "longest MQTT keep-alive granted, whole seconds up to 65535s: an MQTT 5 client asking for more (or for none) is given this one in CONNACK's Server Keep Alive; an MQTT 3.1.1 client asking for more (or for none) is refused with CONNACK return code 2, as mosquitto's max_keepalive; 0 = no cap")
}

// check refuses values the broker cannot apply.
func (c *limitFlags) check() error {
	if c.maxKeepalive < 0 || c.maxKeepalive%time.Second != 0 || c.maxKeepalive > 65535*time.Second {
		return fmt.Errorf("--max-keepalive %v: want whole seconds from 0 (no cap) to 65535s", c.maxKeepalive)
	}
	if c.connectTimeout < 0 || c.maxConns < 0 || c.maxSubsPerClient < 0 || c.sessionExpiryMax < 0 {
		return errors.New("--connect-timeout, --max-conns, --max-subs-per-client, --session-expiry-max: must not be negative (0 = no limit)")
	}
	return nil
}

// broker is the broker's view of the flags.
func (c *limitFlags) broker() broker.Limits {
	return broker.Limits{
		MaxKeepalive:     c.maxKeepalive,
		ConnectTimeout:   c.connectTimeout,
		MaxConns:         c.maxConns,
		MaxSubsPerClient: c.maxSubsPerClient,
		SessionExpiryMax: c.sessionExpiryMax,
	}
}

// limitMetrics are the broker's limit counters for /metrics.
func limitMetrics(b *broker.Broker) func() metrics.Limits {
	return func() metrics.Limits {
		st := b.LimitStats()
		return metrics.Limits{
			ConnectTimeouts:  st.ConnectTimeouts,
			ConnsRefused:     st.ConnsRefused,
			SubsRefused:      st.SubsRefused,
			SessionsExpired:  st.SessionsExpired,
			KeepaliveRefused: st.KeepaliveRefused,
		}
	}
}
