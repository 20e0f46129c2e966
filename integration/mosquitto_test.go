package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestMQTT5ResponseTopic checks that an MQTT 5 request with a Response
// Topic is answered there, with its Correlation Data copied, and not on
// <src>/rpc (PROTOCOL §1), using mosquitto_pub, mosquitto_sub and
// mosquitto_rr.
func TestMQTT5ResponseTopic(t *testing.T) {
	t.Parallel()
	s := start(t)
	const src = "dev5"
	sub := s.mosquittoSub(t, "-V", "mqttv5", "-q", "1", "-t", "replies/dev5", "-t", src+"/rpc")

	s.mosquittoPub(t, "-V", "mqttv5", "-q", "1", "-t", "logbroker/rpc",
		"-D", "publish", "response-topic", "replies/dev5",
		"-D", "publish", "correlation-data", "corr-123",
		"-m", `{"id":"req-1","src":"dev5","method":"Log.Log","args":{"msg":"over MQTT 5"}}`)
	// A later request without a Response Topic: its answer on dev5/rpc is
	// the barrier after which the first answer's topic is known.
	s.mosquittoPub(t, "-V", "mqttv5", "-q", "1", "-t", "logbroker/rpc",
		"-m", `{"id":"req-2","src":"dev5","method":"Log.List"}`)
	got := sub.wait(callTimeout, 2, "responses", func(mosqMsg) bool { return true })
	if len(got) != 2 {
		t.Fatalf("%d responses, want 2: %+v", len(got), got)
	}
	first, second := got[0], got[1]
	if first.Topic != "replies/dev5" || first.Correlation != "corr-123" {
		t.Errorf("first response on %s with correlation %q, want replies/dev5 and corr-123", first.Topic, first.Correlation)
	}
	if first.QoS != 1 || first.Retained {
		t.Errorf("first response at QoS %d retained %v, want QoS 1, not retained", first.QoS, first.Retained)
	}
	r := response{Raw: first.Payload}
	if err := json.Unmarshal([]byte(first.Payload), &r); err != nil {
		t.Fatalf("response is not JSON: %s", first.Payload)
	}
	checkShape(t, r, "logbroker", src, json.RawMessage(`"req-1"`), nil)
	id := r.logID(t)
	if second.Topic != src+"/rpc" || second.Correlation != "" {
		t.Errorf("second response on %s with correlation %q, want %s/rpc and none", second.Topic, second.Correlation, src)
	}
	var list response
	if err := json.Unmarshal([]byte(second.Payload), &list); err != nil {
		t.Fatalf("response is not JSON: %s", second.Payload)
	}
	list.Raw = second.Payload
	if es := list.entries(t); len(es) != 1 || es[0].ID != id {
		t.Errorf("List after the MQTT 5 Log: %s", second.Payload)
	}

	t.Run("mosquitto_rr", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
		defer cancel()
		args := append(s.hostPort(), "-t", "logbroker/rpc/RPC.Ping", "-e", "replies/rr", "-W", "10",
			"-m", `{"id":7,"src":"rr-client","tag":"rr"}`)
		out, err := exec.CommandContext(ctx, "mosquitto_rr", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_rr: %v\n%s", err, out)
		}
		var r response
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &r); err != nil {
			t.Fatalf("mosquitto_rr printed %q", out)
		}
		r.Raw = strings.TrimSpace(string(out))
		checkShape(t, r, "logbroker", "rr-client", json.RawMessage(`7`), strp("rr"))
		r.ok(t)
	})
}

// TestMosquittoQoS checks with mosquitto_pub that requests at QoS 0, 1 and 2
// complete their flow (mosquitto_pub exits 0 only once it has) and are
// answered, retained or not, over MQTT 3.1.1 and 5.
func TestMosquittoQoS(t *testing.T) {
	t.Parallel()
	s := start(t)
	const src = "mosq-qos"
	sub := s.mosquittoSub(t, "-q", "1", "-t", src+"/rpc")
	n := 0
	for _, version := range []string{"mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			for _, retain := range []bool{false, true} {
				n++
				args := []string{"-V", version, "-q", qos, "-t", "logbroker/rpc",
					"-m", fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, n, src, n)}
				if retain {
					args = append(args, "-r")
				}
				out := s.mosquittoPub(t, args...)
				want := map[string][]string{"1": {"received PUBACK"}, "2": {"received PUBREC", "received PUBCOMP"}}[qos]
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("%s QoS %s: mosquitto_pub did not log %q:\n%s", version, qos, w, out)
					}
				}
			}
		}
	}
	got := sub.wait(callTimeout, n, "responses", func(m mosqMsg) bool { return m.Topic == src+"/rpc" })
	for i, m := range got {
		var r response
		if err := json.Unmarshal([]byte(m.Payload), &r); err != nil {
			t.Fatalf("response is not JSON: %s", m.Payload)
		}
		r.Raw = m.Payload
		checkShape(t, r, "logbroker", src, json.RawMessage(fmt.Sprint(i+1)), nil)
		r.logID(t)
	}
	for _, m := range s.retained(t, "#") {
		t.Errorf("retained after retained requests: %s %s", m.Topic, abbrev(m.Payload, 200))
	}
}

// TestReadmeSample runs the sample exchange of the README, as printed there.
func TestReadmeSample(t *testing.T) {
	t.Parallel()
	s := start(t)
	sub := s.mosquittoSub(t, "-v", "-t", "dev1/rpc", "-t", "dev1/log/#")
	s.mosquittoPub(t, "-t", "logbroker/rpc", "-m",
		`{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":"boot ok"}}`)
	s.mosquittoPub(t, "-t", "logbroker/rpc", "-m",
		`{"id":2,"src":"dev1","method":"Log.List","args":{"last":10}}`)
	got := sub.wait(callTimeout, 3, "the sample's messages", func(mosqMsg) bool { return true })
	var lines []string
	for _, m := range got {
		lines = append(lines, m.Topic+" "+m.Payload)
		t.Logf("%s %s", m.Topic, m.Payload)
	}
	var logResp, listResp, live string
	for _, m := range got {
		switch {
		case m.Topic == "dev1/rpc" && strings.Contains(m.Payload, `"id":1,`):
			logResp = m.Payload
		case m.Topic == "dev1/rpc" && strings.Contains(m.Payload, `"id":2,`):
			listResp = m.Payload
		case m.Topic == "dev1/log/console":
			live = m.Payload
		}
	}
	var e entry
	if err := json.Unmarshal([]byte(live), &e); err != nil {
		t.Fatalf("no live entry on dev1/log/console in:\n%s", strings.Join(lines, "\n"))
	}
	if want := fmt.Sprintf(`{"v":2,"id":1,"src":"logbroker","dst":"dev1","result":{"id":%q}}`, e.ID); logResp != want {
		t.Errorf("Log.Log response\n got %s\nwant %s", logResp, want)
	}
	if want := fmt.Sprintf(`{"v":2,"id":2,"src":"logbroker","dst":"dev1","result":[%s]}`, live); listResp != want {
		t.Errorf("Log.List response\n got %s\nwant %s", listResp, want)
	}
	if e.Src != "dev1" || e.Stream != "console" || string(e.Msg) != `"boot ok"` {
		t.Errorf("live entry %s", live)
	}
}
