package integration

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mosqFormat is the mosquitto_sub -F format the helpers parse: every
// message on one line, fields separated by tabs, the payload last.
const mosqFormat = `MSG\t%q\t%r\t%t\t%D\t%p`

// mosqMsg is one message mosquitto_sub printed.
type mosqMsg struct {
	QoS         int
	Retained    bool
	Topic       string
	Correlation string // MQTT 5 Correlation Data (%D), printed as is
	Payload     string
}

// mosqSub is a running mosquitto_sub.
type mosqSub struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *logBuffer
	exited chan struct{}
}

// hostPort splits s.MQTT into the -h and -p arguments of the mosquitto tools.
func (s *server) hostPort() []string {
	s.t.Helper()
	host, port, err := net.SplitHostPort(s.MQTT)
	if err != nil {
		s.t.Fatalf("split %q: %v", s.MQTT, err)
	}
	return []string{"-h", host, "-p", port}
}

// mosquittoSub starts mosquitto_sub against s with args (topics, -V, -q...)
// and returns once the broker has acknowledged the subscription.
func (s *server) mosquittoSub(t testing.TB, args ...string) *mosqSub {
	t.Helper()
	all := append(s.hostPort(), "-d", "-F", mosqFormat)
	all = append(all, args...)
	m := &mosqSub{t: t, out: newLogBuffer(), exited: make(chan struct{})}
	// Line-buffered: mosquitto_sub's stdio buffers a pipe otherwise.
	m.cmd = exec.Command("stdbuf", append([]string{"-oL", "-eL", "mosquitto_sub"}, all...)...)
	m.cmd.Stdout = m.out
	m.cmd.Stderr = m.out
	m.cmd.WaitDelay = 2 * time.Second
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto_sub: %v", err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		if m.alive() {
			_ = m.cmd.Process.Kill()
		}
		<-m.exited
		if t.Failed() {
			t.Logf("mosquitto_sub %s output:\n%s", strings.Join(args, " "), tail(m.out.String(), 4000))
		}
	})
	deadline := time.After(callTimeout)
	for {
		_, ok, changed := m.out.find("Subscribed (mid:")
		if ok {
			return m
		}
		select {
		case <-changed:
		case <-m.exited:
			t.Fatalf("mosquitto_sub exited before subscribing (%v):\n%s", m.cmd.ProcessState, m.out)
		case <-deadline:
			t.Fatalf("mosquitto_sub: no SUBACK within %v:\n%s", callTimeout, m.out)
		}
	}
}

func (m *mosqSub) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// messages returns every message printed so far, and a channel closed on
// the next output line.
func (m *mosqSub) messages() ([]mosqMsg, <-chan struct{}) {
	m.out.mu.Lock()
	defer m.out.mu.Unlock()
	var out []mosqMsg
	for _, l := range m.out.lines {
		rest, ok := strings.CutPrefix(l, "MSG\t")
		if !ok {
			continue
		}
		f := strings.SplitN(rest, "\t", 5)
		if len(f) != 5 {
			continue
		}
		qos, _ := strconv.Atoi(f[0])
		out = append(out, mosqMsg{QoS: qos, Retained: f[1] == "1", Topic: f[2], Correlation: f[3], Payload: f[4]})
	}
	return out, m.out.changed
}

// wait waits until n messages satisfy match and returns them.
func (m *mosqSub) wait(d time.Duration, n int, what string, match func(mosqMsg) bool) []mosqMsg {
	m.t.Helper()
	deadline := time.After(d)
	for {
		all, changed := m.messages()
		var got []mosqMsg
		for _, x := range all {
			if match(x) {
				got = append(got, x)
			}
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			m.t.Fatalf("mosquitto_sub: %d of %d %s within %v; output:\n%s", len(got), n, what, d, tail(m.out.String(), 4000))
		}
	}
}

// mosquittoPub runs mosquitto_pub against s with args to completion and
// fails the test unless it exits 0 (which it does only once the QoS flow of
// its publish has completed). It returns the debug output.
func (s *server) mosquittoPub(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	all := append(s.hostPort(), "-d")
	all = append(all, args...)
	cmd := exec.CommandContext(ctx, "mosquitto_pub", all...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
