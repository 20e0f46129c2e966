package broker

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/auth"
)

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session, keep-alive
// 0 and the client id "c" + id.
func connectPacket(id string) []byte {
	cid := "c" + id
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, byte(len(cid))}
	body = append(body, cid...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestCloseWhileClientsLeave closes the broker while hundreds of clients
// drop their connections: Close must return (mochi's own closer could
// deadlock on its client map there; see safeClose).
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := range 3 {
		b := New(Config{MQTTAddr: "127.0.0.1:0", DrainTimeout: time.Millisecond})
		if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		const n = 300
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := net.DialTimeout("tcp", b.MQTTAddr(), waitFor)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
			if _, err := c.Write(connectPacket(strconv.Itoa(round) + "-" + strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns { // every CONNACK: all clients are in the map
			_ = c.SetReadDeadline(time.Now().Add(waitFor))
			var ack [4]byte
			if _, err := bufio.NewReader(c).Read(ack[:]); err != nil || ack[0] != 0x20 {
				t.Fatalf("client %d: no CONNACK (%v, % x)", i, err, ack)
			}
		}
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.Close() })
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(waitFor):
			t.Fatalf("round %d: Close did not return within %v while clients left", round, waitFor)
		}
		wg.Wait()
	}
}
