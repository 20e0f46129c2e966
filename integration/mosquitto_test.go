package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
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
	// Each mosquitto_pub is its own connection, and calls of different
	// connections are concurrent: wait for the first answer. Then a later
	// request without a Response Topic: its answer on dev5/rpc is the
	// barrier after which no copy of the first answer can still come.
	sub.wait(callTimeout, 1, "the first response", func(mosqMsg) bool { return true })
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
	// One response per request (each mosquitto_pub is its own connection,
	// so they may come in any order).
	got := sub.wait(callTimeout, n, "responses", func(m mosqMsg) bool { return m.Topic == src+"/rpc" })
	seen := map[int]bool{}
	for _, m := range got {
		var r response
		var id int
		if err := json.Unmarshal([]byte(m.Payload), &r); err != nil || json.Unmarshal(r.ID, &id) != nil {
			t.Fatalf("response is not JSON with a numeric id: %s", m.Payload)
		}
		r.Raw = m.Payload
		checkShape(t, r, "logbroker", src, r.ID, nil)
		r.logID(t)
		if seen[id] || id < 1 || id > n {
			t.Errorf("response id %d unexpected or repeated", id)
		}
		seen[id] = true
	}
	for _, m := range s.retained(t, "#") {
		t.Errorf("retained after retained requests: %s %s", m.Topic, abbrev(m.Payload, 200))
	}
}

// TestReadmeSample runs the sample exchange of README.md ("A sample
// exchange") with the same commands, and checks that the watcher prints
// what the README shows (timestamps aside).
func TestReadmeSample(t *testing.T) {
	t.Parallel()
	s := start(t)
	sub := s.mosquittoSub(t, "-t", "dev1/rpc", "-t", "+/log/#", "-v")
	// Each mosquitto_pub is its own connection, and calls from different
	// connections are concurrent: like a reader at the keyboard, wait for
	// each answer before the next command.
	steps := []struct {
		args  []string
		total int // messages the watcher has printed once it is answered
	}{
		{[]string{"-q", "1", "-t", "logbroker/rpc", "-m", `{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":"boot ok"}}`}, 2},
		{[]string{"-q", "1", "-t", "logbroker/rpc", "-m", `{"id":2,"src":"dev1","method":"Log.List","args":{"last":10}}`}, 3},
		{[]string{"-q", "1", "-t", "logbroker/rpc/Log.Delete", "-m", `{"id":3,"src":"dev1","tag":"t"}`}, 4},
		{[]string{"-q", "1", "-t", "logbroker/rpc", "-m", `{"id":4,"src":"dev1","method":"Nope"}`}, 5},
	}
	for _, st := range steps {
		s.mosquittoPub(t, st.args...)
		sub.wait(callTimeout, st.total, "the answer", func(mosqMsg) bool { return true })
	}
	got := sub.wait(callTimeout, 5, "the sample's messages", func(mosqMsg) bool { return true })
	var live entry
	for _, m := range got {
		if m.Topic == "dev1/log/console" {
			if err := json.Unmarshal([]byte(m.Payload), &live); err != nil {
				t.Fatalf("live entry %s", m.Payload)
			}
		}
	}
	entryJSON := fmt.Sprintf(`{"id":"0000000000000001","src":"dev1","stream":"console","timestamp":%d,"msg":"boot ok"}`, live.Timestamp)
	want := []string{
		`dev1/rpc {"v":2,"id":1,"src":"logbroker","dst":"dev1","result":{"id":"0000000000000001"}}`,
		`dev1/log/console ` + entryJSON,
		`dev1/rpc {"v":2,"id":2,"src":"logbroker","dst":"dev1","result":[` + entryJSON + `]}`,
		`dev1/rpc {"v":2,"id":3,"src":"logbroker","dst":"dev1","tag":"t"}`,
		`dev1/rpc {"v":2,"id":4,"src":"logbroker","dst":"dev1","error":{"code":404,"message":"no such method: Nope"}}`,
	}
	// The live entry and the Log.Log response are published independently:
	// either may come first. The rest is in order.
	var lines []string
	for _, m := range got {
		lines = append(lines, m.Topic+" "+m.Payload)
	}
	if len(lines) == 5 && lines[0] == want[1] && lines[1] == want[0] {
		lines[0], lines[1] = lines[1], lines[0]
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("mosquitto_sub printed:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// In a script, mosquitto_rr waits for each answer and prints it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	for _, tc := range []struct{ frame, want string }{
		{`{"id":5,"src":"dev1","method":"Log.Log","args":{"msg":"scripted","stream":"rr"}}`, `{"v":2,"id":5,"src":"logbroker","dst":"dev1","result":{"id":"0000000000000002"}}`},
		{`{"id":6,"src":"dev1","method":"Log.List","args":{"stream":"rr"}}`, `"id":"0000000000000002","src":"dev1","stream":"rr"`},
	} {
		args := append(s.hostPort(), "-t", "logbroker/rpc", "-e", "dev1/rpc", "-m", tc.frame)
		out, err := exec.CommandContext(ctx, "mosquitto_rr", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("mosquitto_rr %s: %v: printed %s, want %s", tc.frame, err, out, tc.want)
		}
	}

	// tail -f: a follow waits on its own response topic (mosquitto_rr
	// prints the first message there) until the next entry.
	args := append(s.hostPort(), "-t", "logbroker/rpc", "-e", "dev1/tail", "-W", "20",
		"-m", `{"id":7,"src":"dev1","method":"Log.List","args":{"last":0,"follow":true},"timeout":15}`)
	follow := exec.CommandContext(ctx, "mosquitto_rr", args...)
	var out strings.Builder
	follow.Stdout, follow.Stderr = &out, &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	// Nothing tells when mosquitto_rr's follow has reached the broker
	// (calls of different connections are concurrent), so log an entry
	// every 200 ms until the follow answers with one of them; ctx bounds it.
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	c := s.dial(t)
	for {
		c.log(map[string]any{"msg": "tail me", "src": "dev1"})
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), `"id":7,`) || !strings.Contains(out.String(), `"msg":"tail me"`) {
				t.Errorf("mosquitto_rr follow: %v: printed %s", err, out.String())
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestMQTT5BadResponseTopic checks that a Response Topic the broker must
// not publish to (under '$', or a request topic of the service) is ignored:
// the response goes to <src>/rpc.
func TestMQTT5BadResponseTopic(t *testing.T) {
	t.Parallel()
	s := start(t)
	const src = "dev-rt"
	sub := s.mosquittoSub(t, "-V", "mqttv5", "-q", "1", "-t", src+"/rpc", "-t", "logbroker/#", "-t", "$SYS/broker/fake")
	topics := []string{"$SYS/broker/fake", "logbroker/rpc", "logbroker/rpc/RPC.Ping"}
	for i, rt := range topics {
		s.mosquittoPub(t, "-V", "mqttv5", "-q", "1", "-t", "logbroker/rpc",
			"-D", "publish", "response-topic", rt, "-D", "publish", "correlation-data", "c"+fmt.Sprint(i),
			"-m", fmt.Sprintf(`{"id":%d,"src":%q,"method":"RPC.Ping"}`, i+1, src))
	}
	got := sub.wait(callTimeout, len(topics), "responses", func(m mosqMsg) bool { return true })
	for _, m := range got {
		var r response
		var id int
		if err := json.Unmarshal([]byte(m.Payload), &r); err != nil || json.Unmarshal(r.ID, &id) != nil {
			t.Fatalf("response is not JSON with a numeric id: %s", m.Payload)
		}
		if m.Topic != src+"/rpc" {
			t.Errorf("response %d on %s, want %s/rpc", id, m.Topic, src)
		}
		if want := "c" + fmt.Sprint(id-1); m.Correlation != want {
			t.Errorf("response %d: correlation %q, want %q", id, m.Correlation, want)
		}
	}
}
