package integration

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// console is one console message as a stock Mongoose OS device publishes
// it (mongoose-os-libs/mqtt: "%s %u %.3lf %d|%.*s").
func console(dev string, seq int, secs float64, fd int, text string) []byte {
	return fmt.Appendf(nil, "%s %d %.3f %d|%s", dev, seq, secs, fd, text)
}

// waitLive waits until watch, subscribed to <src>/log/#, has received the
// live entry of each msg on stream, in that order, and returns the entries.
func (c *client) waitLive(from int, src, stream string, msgs ...string) []entry {
	c.t.Helper()
	var out []entry
	for _, want := range msgs {
		m, i := c.waitMsg(from, 2*callTimeout, fmt.Sprintf("live entry %q on %s/log/%s", want, src, stream), func(m message) bool {
			var e entry
			var msg string
			return m.Topic == src+"/log/"+stream && json.Unmarshal(m.Payload, &e) == nil &&
				json.Unmarshal(e.Msg, &msg) == nil && msg == want
		})
		var e entry
		_ = json.Unmarshal(m.Payload, &e)
		out = append(out, e)
		from = i + 1
	}
	return out
}

// sourcesOf calls Log.Sources and returns each source's object.
func (c *client) sourcesOf() map[string]map[string]any {
	c.t.Helper()
	r := c.call(map[string]any{"method": "Log.Sources"}, "").ok(c.t)
	var list []map[string]any
	if err := json.Unmarshal(r.Result, &list); err != nil {
		c.t.Fatalf("Log.Sources: %v: %s", err, r.Raw)
	}
	out := map[string]map[string]any{}
	for _, s := range list {
		out[s["src"].(string)] = s
	}
	return out
}

// msgsOf lists src and returns stream:msg of each entry.
func (c *client) msgsOf(src string) []string {
	c.t.Helper()
	var out []string
	for _, e := range c.list(map[string]any{"src": src, "limit": 1000}) {
		var s string
		if err := json.Unmarshal(e.Msg, &s); err != nil {
			c.t.Fatalf("msg %s is not a string", e.Msg)
		}
		out = append(out, e.Stream+":"+s)
	}
	return out
}

// captureScenario publishes, as one stock device at QoS 0, a line split
// over two writes, a stderr line, a skipped seq, a restart and a partial
// line that only the 1 s flush stores, and checks what s stored.
func captureScenario(t *testing.T, s *server) {
	url := "tcp://" + s.MQTT
	watch := s.dial(t)
	watch.subscribe("esp1/log/#", 0)
	dev := newClient(t, url)
	from := watch.mark()
	const t0 = 1764080000.0
	writes := [][]byte{
		console("esp1", 0, t0+0.1, 1, "boot: hel"),
		console("esp1", 1, t0+0.2, 1, "lo\r\n"),
		console("esp1", 2, t0+0.3, 2, "E: oops\n"),
		console("esp1", 5, t0+0.4, 1, "after a gap\n"), // 3 and 4 lost
		console("esp1", 0, 3.5, 1, "rebooted\n"),       // a restart, clock not set yet
		console("esp1", 1, t0+9, 1, "prompt> "),        // no continuation: stored after 1 s
	}
	for _, w := range writes {
		dev.publish("esp1/log", 0, false, w)
	}
	got := watch.waitLive(from, "esp1", "console", "boot: hello", "after a gap", "rebooted", "prompt> ")
	watch.waitLive(from, "esp1", "stderr", "E: oops")
	if got[0].Timestamp != 1764080000100 || got[3].Timestamp != 1764080009000 {
		t.Errorf("timestamps %d, %d: want the device's time of the first write, 1764080000100, 1764080009000", got[0].Timestamp, got[3].Timestamp)
	}
	// The console messages reached their subscriber as they were sent.
	var raw int
	for _, m := range watch.messages(from) {
		if m.Topic == "esp1/log" {
			if string(m.Payload) != string(writes[raw]) {
				t.Errorf("subscriber got %q, want %q", m.Payload, writes[raw])
			}
			raw++
		}
	}
	if raw != len(writes) {
		t.Errorf("subscriber of esp1/log got %d messages, want %d", raw, len(writes))
	}
	want := []string{"console:boot: hello", "stderr:E: oops", "console:after a gap", "console:rebooted", "console:prompt> "}
	if got := watch.msgsOf("esp1"); !slices.Equal(got, want) {
		t.Errorf("Log.List esp1: %q, want %q", got, want)
	}
	src := watch.sourcesOf()["esp1"]
	if src["captured_lost"] != 2.0 || src["restarts"] != 1.0 {
		t.Errorf("Log.Sources esp1: %v, want captured_lost 2, restarts 1", src)
	}
}

// TestCapture runs the stock-device scenario against the Pebble store,
// checks the totals on /metrics, and stores mosquitto_pub's payloads: one
// in the console format, one not (stored whole).
func TestCapture(t *testing.T) {
	t.Parallel()
	s := start(t)
	captureScenario(t, s)
	sc := s.scrape(t)
	for name, want := range map[string]float64{
		"logbroker_capture_lines_total": 5, "logbroker_capture_lost_total": 2, "logbroker_capture_restarts_total": 1,
	} {
		if got := sc.value(name); got != want {
			t.Errorf("/metrics %s = %v, want %v", name, got, want)
		}
	}

	watch := s.dial(t)
	watch.subscribe("+/log/console", 0)
	from := watch.mark()
	s.mosquittoPub(t, "-t", "esp2/log", "-m", "esp2 0 1764080000.000 1|from mosquitto_pub\n")
	s.mosquittoPub(t, "-t", "esp3/log", "-m", "not the console format")
	watch.waitLive(from, "esp2", "console", "from mosquitto_pub")
	watch.waitLive(from, "esp3", "console", "not the console format")
	if got := s.scrape(t).value("logbroker_capture_unparsed_total"); got != 1 {
		t.Errorf("logbroker_capture_unparsed_total = %v, want 1", got)
	}
}

// TestCapture_JetStream: the same scenario over JetStream.
func TestCapture_JetStream(t *testing.T) {
	t.Parallel()
	c := jstest.NewCluster(t, 3)
	s := start(t, "--nats", c.URLs(), "--nats-replicas", "3")
	captureScenario(t, s)
}

// TestCapture_Flags: --capture replaces the default filter and names the
// source by its first '+'; the broker's own live publishes, which such a
// filter matches, are not captured again; an empty --capture turns capture
// off; --capture-levels reads <n> as a level.
func TestCapture_Flags(t *testing.T) {
	t.Parallel()
	t.Run("FilterAndOwnPublishes", func(t *testing.T) {
		s := start(t, "--capture", "+/log/#", "--capture", "fleet/+/console")
		watch := s.dial(t)
		watch.subscribe("+/log/#", 0)
		dev := s.dial(t)
		from := watch.mark()
		dev.publish("d1/log/x", 0, false, console("d1", 0, 1, 1, "one\n"))
		dev.publish("fleet/d2/console", 0, false, console("d2", 0, 1, 1, "two\n"))
		dev.publish("d1/log", 0, false, []byte("not captured by the default: replaced"))
		watch.waitLive(from, "d1", "console", "one")
		watch.waitLive(from, "d2", "console", "two")
		// "d1/log" is matched by "+/log/#" too (# includes the parent).
		watch.waitLive(from, "d1", "console", "not captured by the default: replaced")
		// A Log.Log after them on one connection: once it is listed, any
		// capture of the live publishes before it would be too.
		dev.log(map[string]any{"src": "d1", "msg": "barrier"})
		want := []string{"console:one", "console:not captured by the default: replaced", "console:barrier"}
		if got := watch.msgsOf("d1"); !slices.Equal(got, want) {
			t.Errorf("d1: %q, want %q (a live publish captured again?)", got, want)
		}
	})
	t.Run("Off", func(t *testing.T) {
		s := start(t, "--capture", "")
		dev := s.dial(t)
		dev.publish("d1/log", 0, false, console("d1", 0, 1, 1, "not stored\n"))
		dev.log(map[string]any{"src": "d1", "msg": "barrier"})
		if got := dev.msgsOf("d1"); !slices.Equal(got, []string{"console:barrier"}) {
			t.Errorf("d1 with capture off: %q", got)
		}
	})
	t.Run("Levels", func(t *testing.T) {
		s := start(t, "--capture-levels")
		watch := s.dial(t)
		watch.subscribe("+/log/#", 0)
		from := watch.mark()
		s.mosquittoPub(t, "-t", "d1/log", "-m", "d1 0 1.000 2|level 2, not stderr\n")
		watch.waitLive(from, "d1", "console", "level 2, not stderr")
	})
	t.Run("BadFilter", func(t *testing.T) {
		for _, f := range []string{"log/#", "a/+x", "$SYS/+"} {
			out, code := runBinary(t, callTimeout, "serve", "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "", "--data", t.TempDir(), "--capture", f)
			if code == 0 || !strings.Contains(out, "--capture") {
				t.Errorf("--capture %q: exit %d: %s", f, code, out)
			}
		}
	})
}

// TestSecured_Capture: a device may publish its console to <identity>/log,
// not to another identity's; a reader sees it as mos console does.
func TestSecured_Capture(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...))
	url := "tcp://" + s.MQTT
	dev1 := dialAs(t, url, "dev1")
	ops := dialAs(t, url, "ops")
	dash := dialAs(t, url, "dash")
	if code := dash.trySubscribe("dev1/log", 0); code != 0 {
		t.Fatalf("reader subscribing dev1/log (mos console): SUBACK %#x", code)
	}
	dash.subscribe("+/log/#", 0)
	from := dash.mark()
	dev1.publish("dev2/log", 0, false, console("dev2", 0, 1, 1, "forged\n")) // refused: dropped
	dev1.publish("dev1/log", 1, false, console("dev1", 0, 1, 1, "mine\n"))   // PUBACK: allowed
	dash.waitMsg(from, callTimeout, "dev1's console on dev1/log", func(m message) bool { return m.Topic == "dev1/log" })
	dash.waitLive(from, "dev1", "console", "mine")
	// One connection's publishes are captured in order: by the time dev1's
	// line is durable, the forged one would be too.
	if got := ops.msgsOf("dev2"); len(got) != 0 {
		t.Errorf("dev1 stored on dev2's console: %q", got)
	}
	if got := ops.msgsOf("dev1"); !slices.Equal(got, []string{"console:mine"}) {
		t.Errorf("dev1: %q", got)
	}
	if line := s.waitLogLines("topic=dev2/log", 1, callTimeout); !strings.Contains(line, "acl denied") {
		t.Errorf("log line for the refused publish: %q", line)
	}
}

// TestCLI_SimulateConsole: `logbroker simulate --console` devices publish
// their consoles as stock Mongoose OS devices do, and the broker's default
// capture stores them: each device's boot line that came in two writes is
// one entry, and Log.Sources counts no more losses and restarts than the
// fleet made.
func TestCLI_SimulateConsole(t *testing.T) {
	t.Parallel()
	s := start(t)
	watch := s.dial(t)
	watch.subscribe("+/log/console", 0)
	from := watch.mark()
	r := runCLI(t, "", "simulate", "--broker=tcp://"+s.MQTT, "--console", "--devices", "2", "--rate", "50",
		"--duration", "3s", "--prefix", "con").ok(t)
	m := regexp.MustCompile(`console: (\d+) messages published on <dev>/log \((\d+) lines split in two\), (\d+) skipped \(seq gaps\), (\d+) reboots`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no console summary on stdout: %q", r.stdout)
	}
	published, _ := strconv.Atoi(m[1])
	split, _ := strconv.Atoi(m[2])
	skipped, _ := strconv.Atoi(m[3])
	reboots, _ := strconv.Atoi(m[4])
	if published < 2*5 || split < 2 {
		t.Errorf("summary %q: want each device's boot lines, its boot ok line split", m[0])
	}
	for _, dev := range []string{"con-001", "con-002"} {
		watch.waitMsg(from, callTimeout, dev+"'s joined boot ok line", func(m message) bool {
			var e entry
			var msg string
			return m.Topic == dev+"/log/console" && json.Unmarshal(m.Payload, &e) == nil &&
				json.Unmarshal(e.Msg, &msg) == nil && regexp.MustCompile(`^boot ok in \d+ ms$`).MatchString(msg)
		})
	}
	srcs := watch.sourcesOf()
	var lost, restarts float64
	for _, dev := range []string{"con-001", "con-002"} {
		l, ok1 := srcs[dev]["captured_lost"].(float64)
		rs, ok2 := srcs[dev]["restarts"].(float64)
		if !ok1 || !ok2 {
			t.Errorf("Log.Sources %s: %v, want captured_lost and restarts", dev, srcs[dev])
		}
		lost += l
		restarts += rs
	}
	if lost > float64(skipped) || restarts > float64(reboots) {
		t.Errorf("Log.Sources counts %v lost, %v restarts; the fleet skipped %d and rebooted %d", lost, restarts, skipped, reboots)
	}
}
