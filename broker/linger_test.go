package broker

import (
	"bytes"
	"github.com/logbroker/logbroker/integration/await"
	"net"
	"strings"
	"testing"
	"time"
)

// TestClosingServerLetsClientRead checks limitConn.Close: a client past the
// server's Receive Maximum (QoS 2 PUBLISHes never released: mochi allows
// 1024) that goes on writing still reads everything it was sent, and last
// DISCONNECT 0x93. The client subscribes to its own topic, so the server
// has much to send when it decides to disconnect; closed at once, the
// socket would answer the client's next bytes with a reset, discarding
// what the kernel had not sent yet: the reason code was lost in most
// rounds. A client that never stops writing loses its socket all the same.
func TestClosingServerLetsClientRead(t *testing.T) {
	b := startBroker(t, Config{})
	for round := range 4 {
		c := dialWire(t, b.MQTTAddr())
		// A small window keeps some of what the server sends in its
		// kernel's queue when it closes.
		if err := c.conn.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
			t.Fatal(err)
		}
		c.connack(connectV5("greedy", 60, nil))
		c.write(subscribeV5(1, "greedy/x"))
		c.read()
		payload := strings.Repeat("x", 1000)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Until the socket fails: the server discards what it reads
			// after the DISCONNECT only for a while (lingerTimeout).
			for id := 1; ; id++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.conn.Write(publishV5("greedy/x", 2, id%65535+1, nil, payload)); err != nil {
					return
				}
			}
		}()
		pubrecs, echoes := 0, 0
		for {
			pk, err := c.next(waitFor)
			if err != nil {
				close(stop)
				<-done
				t.Fatalf("round %d: read after %d PUBRECs and %d messages: %v, want DISCONNECT 0x93", round, pubrecs, echoes, err)
			}
			switch pk[0] & 0xF0 {
			case 0x50:
				pubrecs++
				continue
			case 0x30:
				echoes++
				continue
			}
			if !bytes.HasPrefix(pk, []byte{0xE0}) || len(pk) < 3 || pk[2] != 0x93 {
				t.Fatalf("round %d: got % x, want DISCONNECT 0x93", round, pk)
			}
			break
		}
		select {
		case <-done:
		case <-time.After(waitFor):
			close(stop)
			<-done
			t.Fatalf("round %d: a client writing without pause kept its socket %v after the DISCONNECT", round, waitFor)
		}
		if pubrecs != 1024 {
			t.Errorf("round %d: %d PUBRECs before the DISCONNECT, want 1024", round, pubrecs)
		}
		c.closed()
	}
	// Every socket is closed in the end (none lingers for good).
	await.Until(t, waitFor, "every socket closed after its client was disconnected", func() bool { return b.limits.conns.open.Load() == 0 })
}
