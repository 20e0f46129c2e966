package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/logbroker/logbroker/broker"
)

// limitFlags are the limits of a public broker (issue 11 item 4, issue 13).
type limitFlags struct {
	maxKeepalive time.Duration
}

func limitsFlags(fs *flag.FlagSet, c *limitFlags) {
	fs.DurationVar(&c.maxKeepalive, "max-keepalive", 0, "longest MQTT keep-alive granted, whole seconds up to 65535s: an MQTT 5 client asking for more (or for none) is given this one in CONNACK's Server Keep Alive; an MQTT 3.1.1 client asking for more (or for none) is refused with CONNACK return code 2, as mosquitto's max_keepalive; 0 = no cap")
}

// check refuses values the broker cannot apply.
func (c *limitFlags) check() error {
	if c.maxKeepalive < 0 || c.maxKeepalive%time.Second != 0 || c.maxKeepalive > 65535*time.Second {
		return fmt.Errorf("--max-keepalive %v: want whole seconds from 0 (no cap) to 65535s", c.maxKeepalive)
	}
	return nil
}

// broker is the broker's view of the flags.
func (c *limitFlags) broker() broker.Limits {
	return broker.Limits{
		MaxKeepalive: c.maxKeepalive,
	}
}
