package broker

import (
	"bytes"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// ackExchange runs, as an MQTT 5 client on a raw socket, a QoS 1 and a
// QoS 2 PUBLISH, a SUBSCRIBE and an UNSUBSCRIBE, each carrying a User
// Property, and returns the acknowledgements' bytes: PUBACK, PUBREC,
// PUBCOMP, SUBACK, UNSUBACK.
func ackExchange(t *testing.T, addr string) [][]byte {
	t.Helper()
	c := dialWire(t, addr)
	if ack := c.connack(connectV5("acks", 60, nil)); ack[3] != 0 {
		t.Fatalf("CONNACK % x", ack)
	}
	up := userProp("k", "v")
	var out [][]byte

	c.write(publishV5("a/b", 1, 1, up, "x"))
	out = append(out, c.read())

	c.write(publishV5("a/b", 2, 2, up, "x"))
	out = append(out, c.read())
	var rel wire // PUBREL: packet id, reason 0, properties
	rel.u16(2).u8(0).Write(props(up))
	c.write(packet(0x62, rel.Bytes()))
	out = append(out, c.read())

	var sub wire
	sub.u16(3).Write(props(up))
	sub.str("x/y").u8(1)
	c.write(packet(0x82, sub.Bytes()))
	out = append(out, c.read())

	var unsub wire
	unsub.u16(4).Write(props(up))
	unsub.str("x/y")
	c.write(packet(0xA2, unsub.Bytes()))
	out = append(out, c.read())
	return out
}

// TestAcks checks the acknowledgements on the wire (validAcks).
func TestAcks(t *testing.T) {
	t.Run("MochiBug", func(t *testing.T) {
		// The pinned mochi, as configured by default: the PUBACK carries
		// reason 0x01 and a copy of the PUBLISH's User Property (issue 13:
		// 40 12 00 01 01 0e 26 ...). When this fails, mochi was fixed and
		// validAcks can go.
		_, addr := startMochi(t, &mqtt.Options{})
		got := ackExchange(t, addr)
		puback := got[0]
		if len(puback) < 5 || puback[4] != 0x01 || !bytes.Contains(puback, userProp("k", "v")) {
			t.Fatalf("mochi's PUBACK % x: the bug is gone", puback)
		}
		if !bytes.Contains(got[3], userProp("k", "v")) {
			t.Fatalf("mochi's SUBACK % x no longer copies the SUBSCRIBE's User Property", got[3])
		}
	})
	t.Run("Broker", func(t *testing.T) {
		b := startBroker(t, Config{})
		got := ackExchange(t, b.MQTTAddr())
		// A success reason code with no properties may be left out
		// (MQTT 5 3.4.2.1); what remains is exact.
		want := [][]byte{
			{0x40, 0x02, 0x00, 0x01},             // PUBACK 1
			{0x50, 0x02, 0x00, 0x02},             // PUBREC 2
			{0x70, 0x02, 0x00, 0x02},             // PUBCOMP 2
			{0x90, 0x04, 0x00, 0x03, 0x00, 0x01}, // SUBACK 3: no properties, granted QoS 1
			{0xB0, 0x04, 0x00, 0x04, 0x00, 0x00}, // UNSUBACK 4: no properties, success
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("ack %d: got % x, want % x", i, got[i], want[i])
			}
		}
	})
}
