package broker

import (
	"bytes"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// aliasProp is a Topic Alias property (0x23).
func aliasProp(n int) []byte { return []byte{0x23, byte(n >> 8), byte(n)} }

// TestTopicAlias checks that topic aliases are neither advertised nor
// accepted (aliasCapabilities).
func TestTopicAlias(t *testing.T) {
	t.Run("MochiBug", func(t *testing.T) {
		// The pinned mochi, by default: no Topic Alias Maximum in the
		// CONNACK (so 0), yet a PUBLISH with an alias is acknowledged.
		// When this fails, mochi changed and aliasCapabilities needs a
		// second look.
		_, addr := startMochi(t, &mqtt.Options{})
		c := dialWire(t, addr)
		if _, ok := connackProps(t, c.connack(connectV5("alias", 60, nil)))[0x22]; ok {
			t.Fatal("mochi advertises a Topic Alias Maximum")
		}
		c.write(publishV5("t/x", 1, 1, aliasProp(1), "x"))
		if got := c.read(); got[0] != 0x40 {
			t.Fatalf("got % x, mochi no longer acknowledges an alias it never advertised", got)
		}
	})
	b := startBroker(t, Config{})
	for _, tc := range []struct {
		name  string
		topic string
	}{
		{"WithTopic", "t/x"},
		{"EmptyTopic", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWire(t, b.MQTTAddr())
			if _, ok := connackProps(t, c.connack(connectV5("alias-"+tc.name, 60, nil)))[0x22]; ok {
				t.Fatal("CONNACK advertises a Topic Alias Maximum")
			}
			c.write(publishV5(tc.topic, 1, 1, aliasProp(1), "x"))
			got := c.read()
			if len(got) < 3 || got[0] != 0xE0 || got[2] != 0x94 {
				t.Fatalf("got % x, want DISCONNECT 0x94 Topic Alias invalid", got)
			}
			c.closed()
		})
	}
	t.Run("NoAliasStillWorks", func(t *testing.T) {
		c := dialWire(t, b.MQTTAddr())
		c.connack(connectV5("noalias", 60, nil))
		c.write(publishV5("t/x", 1, 1, nil, "x"))
		if got := c.read(); !bytes.Equal(got, []byte{0x40, 2, 0, 1}) {
			t.Fatalf("got % x, want PUBACK", got)
		}
	})
}
