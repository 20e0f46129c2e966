package integration

import "testing"

// TestQoS2Requests: callers that send requests at QoS 2 with several in
// flight stay connected and get every answer. mochi v2.7.9 alone
// disconnected them ("receive maximum exceeded") within a second or two,
// when a PUBACK of a response carried the id of a request still awaiting
// its PUBREL (broker/mochi.go, strayAck).
func TestQoS2Requests(t *testing.T) {
	for _, method := range []string{"RPC.Ping", "Log.Log"} {
		t.Run(method, func(t *testing.T) {
			runBench(t, "--embedded", "--qos", "2", "--clients", "2", "--inflight", "4", "--duration", "3s", "--method", method)
		})
	}
}
