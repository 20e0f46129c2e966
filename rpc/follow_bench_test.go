package rpc

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkFollowers measures one entry reaching 1,000 followers of its
// source, per op: each follower's next Log.List follow call (decode, Head,
// register), the Log.Log, the wake and the 1,000 answers published. It is
// the service's part of issue 5's target 4b, without MQTT.
func BenchmarkFollowers(b *testing.B) {
	const n = 1000
	svc, pub := benchService(b)
	svc.cfg.MaxFollows = 2
	conns := make([]*Conn, n)
	frames := make([][]byte, n)
	for i := range conns {
		conns[i] = svc.Open(fmt.Sprint("f", i))
		frames[i] = fmt.Appendf(nil, `{"id":%d,"src":"f%d","method":"Log.List","args":{"src":"dev","follow":true,"last":0},"timeout":60}`, i+1, i)
	}
	logger := svc.Open("logger")
	logFrame := []byte(`{"id":1,"src":"dev","method":"Log.Log","args":{"msg":"boot ok: fw 1.2.3, heap 41234, uptime 12.5 s"}}`)
	b.ReportAllocs()
	replies := int64(0)
	for b.Loop() {
		for i, c := range conns {
			c.Submit(Call{Payload: frames[i], Service: DefaultID})
		}
		for svc.Stats().Waiting < n {
			runtime.Gosched()
		}
		logger.Submit(Call{Payload: logFrame, Service: DefaultID})
		replies += n + 1
		pub.waitReplies(replies)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/follower")
}
