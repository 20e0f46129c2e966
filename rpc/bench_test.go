package rpc

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

// Run with: go test -run='^$' -bench=. -benchmem ./rpc/

// logFrame is a typical Log.Log frame, as a device sends it.
const logFrame = `{"id":12345,"src":"device_123","method":"Log.Log","args":{"stream":"console","msg":"boot ok: fw 1.2.3, heap 41234, uptime 12.5 s"}}`

// BenchmarkDecodeFrame measures decoding a typical Log.Log frame.
func BenchmarkDecodeFrame(b *testing.B) {
	payload := []byte(logFrame)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeFrame(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendResponse measures building a Log.Log response into a
// reused buffer.
func BenchmarkAppendResponse(b *testing.B) {
	f, err := DecodeFrame([]byte(`{"id":12345,"src":"device_123","tag":"t1","method":"Log.Log","args":{"msg":1}}`))
	if err != nil {
		b.Fatal(err)
	}
	result := []byte(`{"id":"000000000000002a"}`)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendResponse(buf[:0], f, DefaultID, result, 0, "")
	}
}

// BenchmarkAppendEntries measures encoding a Log.List result of 100
// entries into a reused buffer.
func BenchmarkAppendEntries(b *testing.B) {
	es := make([]storage.Entry, 100)
	for i := range es {
		es[i] = storage.Entry{Seq: uint64(i + 1), Src: "device_123", Stream: "console", Timestamp: 1764080000123 + int64(i),
			Msg: []byte(fmt.Sprintf(`"line %d: temperature 21.5 C, humidity 40 %%"`, i))}
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntries(buf[:0], es)
	}
	b.SetBytes(int64(len(buf)))
}

// countPub discards messages, counting the replies (topics ending /rpc).
type countPub struct {
	replies atomic.Int64
	signal  chan struct{} // cap 1: a reply was published
}

func (p *countPub) Publish(m Message) error {
	if strings.HasSuffix(m.Topic, "/rpc") {
		p.replies.Add(1)
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitReplies waits until n replies were published in all.
func (p *countPub) waitReplies(n int64) {
	for p.replies.Load() < n {
		<-p.signal
	}
}

// benchService is a service over a Pebble store in memory, publishing into
// a countPub.
func benchService(b *testing.B) (*Service, *countPub) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	pub := &countPub{signal: make(chan struct{}, 1)}
	svc := New(store, pub, Config{})
	b.Cleanup(func() {
		_ = svc.Shutdown(context.Background())
		_ = store.Close()
	})
	return svc, pub
}

// BenchmarkConn measures calls through Conn.Submit to the published reply.
// Serial: one call at a time (latency, fsync on an in-memory file system
// included). Pipelined: b.N calls queued, then all replies awaited
// (throughput of one connection; Log.Log entries share group commits).
func BenchmarkConn(b *testing.B) {
	frames := map[string]string{
		"Ping": `{"id":1,"src":"device_123","method":"RPC.Ping"}`,
		"Log":  logFrame,
	}
	for _, name := range []string{"Ping", "Log"} {
		payload := []byte(frames[name])
		b.Run(name+"/Serial", func(b *testing.B) {
			svc, pub := benchService(b)
			c := svc.Open("bench")
			b.ReportAllocs()
			n := int64(0)
			for b.Loop() {
				n++
				c.Submit(Call{Payload: payload, Service: DefaultID})
				pub.waitReplies(n)
			}
		})
		b.Run(name+"/Pipelined", func(b *testing.B) {
			svc, pub := benchService(b)
			c := svc.Open("bench")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.Submit(Call{Payload: payload, Service: DefaultID})
			}
			pub.waitReplies(int64(b.N)) // timed: b.Loop would stop the clock first
		})
	}
}
