package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cliTimeout bounds one run of a client command.
const cliTimeout = 20 * time.Second

// cliRun is a finished client command.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with args and stdin to completion, keeping stdout
// and stderr apart (runBinary combines them).
func runCLI(t *testing.T, stdin string, args ...string) cliRun {
	t.Helper()
	return runCLIEnv(t, nil, stdin, args...)
}

// runCLIEnv is runCLI with extra environment variables (KEY=value).
func runCLIEnv(t *testing.T, env []string, stdin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("logbroker %s: still running after %v; stderr:\n%s", strings.Join(args, " "), cliTimeout, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("logbroker %s: %v", strings.Join(args, " "), err)
	}
	return cliRun{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// ok fails the test unless the command exited 0.
func (r cliRun) ok(t *testing.T) cliRun {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// lines splits stdout into lines, without the final empty one.
func (r cliRun) lines() []string {
	s := strings.TrimSuffix(r.stdout, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// cliProc is a client command running in the background.
type cliProc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	stdout *logBuffer
	stderr *logBuffer
	exited chan struct{}
}

// startCLI starts the binary with args; the test's cleanup kills it if it
// is still running.
func startCLI(t *testing.T, args ...string) *cliProc {
	t.Helper()
	p := &cliProc{t: t, args: args, stdout: newLogBuffer(), stderr: newLogBuffer(), exited: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start logbroker %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("logbroker %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), tail(p.stdout.String(), 4000), tail(p.stderr.String(), 4000))
		}
	})
	return p
}

// lines is what the process printed on stdout so far, line by line.
func (p *cliProc) lines() []string {
	p.stdout.mu.Lock()
	defer p.stdout.mu.Unlock()
	return append([]string(nil), p.stdout.lines...)
}

// waitLines waits until stdout has at least n lines and returns them.
func (p *cliProc) waitLines(n int, d time.Duration) []string {
	p.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.stdout.mu.Lock()
		lines := append([]string(nil), p.stdout.lines...)
		changed := p.stdout.changed
		p.stdout.mu.Unlock()
		if len(lines) >= n {
			return lines
		}
		select {
		case <-changed:
		case <-p.exited:
			if len(p.lines()) >= n {
				continue
			}
			p.t.Fatalf("logbroker %s exited (%v) with %d of %d lines:\n%s\nstderr:\n%s",
				strings.Join(p.args, " "), p.cmd.ProcessState, len(lines), n, strings.Join(lines, "\n"), p.stderr)
		case <-deadline.C:
			p.t.Fatalf("logbroker %s: %d of %d lines within %v:\n%s\nstderr:\n%s",
				strings.Join(p.args, " "), len(lines), n, d, strings.Join(lines, "\n"), p.stderr)
		}
	}
}

// waitStderr waits until stderr has a line containing substr.
func (p *cliProc) waitStderr(substr string, d time.Duration) {
	p.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		_, ok, changed := p.stderr.find(substr)
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			p.t.Fatalf("logbroker %s: no %q on stderr within %v; stderr:\n%s", strings.Join(p.args, " "), substr, d, p.stderr)
		}
	}
}

// signal sends sig and waits for the exit code.
func (p *cliProc) signal(sig syscall.Signal, d time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-p.exited:
	case <-time.After(d):
		p.t.Fatalf("logbroker %s: still running %v after %v", strings.Join(p.args, " "), d, sig)
	}
	return p.cmd.ProcessState.ExitCode()
}

// humanLine is tail's line: UTC millisecond timestamp, src, stream, msg.
var humanLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (.*)$`)

// parseHuman checks the form of a human line and returns its parts.
func parseHuman(t *testing.T, line string) (ts time.Time, src, stream, msg string) {
	t.Helper()
	m := humanLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a tail line (time src stream msg): %q", line)
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000Z", m[1])
	if err != nil {
		t.Fatalf("timestamp of %q: %v", line, err)
	}
	return ts, m[2], m[3], m[4]
}

func TestCLI_Call(t *testing.T) {
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT

	t.Run("Result", func(t *testing.T) {
		id := strings.TrimSpace(runCLI(t, "", "log", broker, "--src", "calldev", "hello", "world").ok(t).stdout)
		r := runCLI(t, "", "call", broker, "Log.List", `{"src":"calldev"}`).ok(t)
		if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
			t.Errorf("not a terminal: want one line of compact JSON, got %q", r.stdout)
		}
		var es []entry
		if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
			t.Fatalf("stdout is not an array of entries: %v: %q", err, r.stdout)
		}
		if len(es) != 1 || es[0].ID != id || es[0].Src != "calldev" || es[0].Stream != "console" || string(es[0].Msg) != `"hello world"` {
			t.Errorf("Log.List = %s, want the one entry %s logged", r.stdout, id)
		}
		if r.stderr != "" {
			t.Errorf("stderr on success: %q", r.stderr)
		}
	})

	t.Run("ArgsFromStdin", func(t *testing.T) {
		runCLI(t, "", "log", broker, "--src", "stdindev", "one").ok(t)
		r := runCLI(t, `{"src": "stdindev", "last": 1}`, "call", broker, "Log.List", "-").ok(t)
		var es []entry
		if err := json.Unmarshal([]byte(r.stdout), &es); err != nil || len(es) != 1 || string(es[0].Msg) != `"one"` {
			t.Errorf("Log.List with args from stdin = %q (%v)", r.stdout, err)
		}
	})

	t.Run("NoResult", func(t *testing.T) {
		runCLI(t, "", "log", broker, "--src", "deldev", "gone soon").ok(t)
		r := runCLI(t, "", "call", broker, "Log.Delete", `{"src":"deldev"}`).ok(t)
		if r.stdout != "" {
			t.Errorf("Log.Delete printed %q, want nothing", r.stdout)
		}
		r = runCLI(t, "", "call", broker, "Log.List", `{"src":"deldev"}`).ok(t)
		if strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("after Log.Delete, Log.List = %q, want []", r.stdout)
		}
	})

	t.Run("NoSuchMethod", func(t *testing.T) {
		r := runCLI(t, "", "call", broker, "Log.Nope")
		if r.code == 0 {
			t.Fatalf("exit code 0 for an error response; stdout %q", r.stdout)
		}
		if !strings.Contains(r.stderr, "error 404: no such method: Log.Nope") {
			t.Errorf("stderr = %q, want it to say error 404: no such method: Log.Nope", r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q, want nothing", r.stdout)
		}
	})

	t.Run("BadArgument", func(t *testing.T) {
		r := runCLI(t, "", "call", broker, "Log.List", `{"after":"not an id"}`)
		if r.code == 0 || !strings.Contains(r.stderr, "error 400:") {
			t.Errorf("exit %d, stderr %q: want non-zero and error 400", r.code, r.stderr)
		}
	})

	t.Run("ArgsNotAnObject", func(t *testing.T) {
		r := runCLI(t, "", "call", broker, "Log.List", `[1,2]`)
		if r.code == 0 || !strings.Contains(r.stderr, "ARGS_JSON must be a JSON object") {
			t.Errorf("exit %d, stderr %q: want non-zero and a word on ARGS_JSON", r.code, r.stderr)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		if r := runCLI(t, "", "call", broker); r.code != 2 || !strings.Contains(r.stderr, "Usage: logbroker call") {
			t.Errorf("call without METHOD: exit %d, stderr %q; want 2 and the usage", r.code, r.stderr)
		}
		if r := runCLI(t, "", "call", "-h"); r.code != 0 || !strings.Contains(r.stderr, "LOGBROKER_BROKER") {
			t.Errorf("call -h: exit %d, stderr %q; want 0 and the flags with their environment twins", r.code, r.stderr)
		}
	})

	t.Run("NoBroker", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		r := runCLI(t, "", "call", "--broker", "tcp://"+addr, "--timeout", "5s", "Log.List")
		if r.code != 1 || !strings.Contains(r.stderr, addr) {
			t.Errorf("exit %d, stderr %q; want 1 and the address", r.code, r.stderr)
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		// A follow that waits longer than --timeout allows: the command
		// asks the service to answer in time, and prints [].
		r := runCLI(t, "", "call", broker, "--timeout", "3s", "Log.List", `{"src":"nobody","follow":true}`).ok(t)
		if strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("follow with nothing new = %q, want []", r.stdout)
		}
	})
}

func TestCLI_LogTail(t *testing.T) {
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT
	before := time.Now().Add(-time.Second)

	var ids []string
	for _, args := range [][]string{
		{"boot", "ok"},
		{"--stream", "sensors", "--json", `{"temp": 21.5, "ok": true}`},
		{"--json", "42"},
		{"line one\nline two\x1b[31m"},
	} {
		r := runCLI(t, "", append([]string{"log", broker, "--src", "dev1"}, args...)...).ok(t)
		id := strings.TrimSpace(r.stdout)
		if id == "" || strings.Contains(id, "\n") {
			t.Fatalf("log %q printed %q, want the entry id", args, r.stdout)
		}
		ids = append(ids, id)
	}
	after := time.Now().Add(time.Second)

	t.Run("Human", func(t *testing.T) {
		r := runCLI(t, "", "tail", broker, "dev1", "--last", "10").ok(t)
		want := []struct{ stream, msg string }{
			{"console", "boot ok"},
			{"sensors", `{"temp":21.5,"ok":true}`},
			{"console", "42"},
			{"console", `line one\nline two\x1b[31m`},
		}
		lines := r.lines()
		if len(lines) != len(want) {
			t.Fatalf("tail printed %d lines, want %d:\n%s", len(lines), len(want), r.stdout)
		}
		for i, line := range lines {
			ts, src, stream, msg := parseHuman(t, line)
			if ts.Before(before) || ts.After(after) {
				t.Errorf("line %d: timestamp %v not between %v and %v", i, ts, before, after)
			}
			if src != "dev1" || stream != want[i].stream || msg != want[i].msg {
				t.Errorf("line %d = %q, want src dev1, stream %s, msg %s", i, line, want[i].stream, want[i].msg)
			}
		}
		if strings.Contains(r.stdout, "\x1b") {
			t.Errorf("colour or raw escape on a pipe: %q", r.stdout)
		}
	})

	t.Run("LastAndStream", func(t *testing.T) {
		r := runCLI(t, "", "tail", broker, "--last", "2", "dev1").ok(t)
		if lines := r.lines(); len(lines) != 2 || !strings.HasSuffix(lines[0], " console 42") {
			t.Errorf("tail --last 2 = %q, want the final two entries", r.stdout)
		}
		r = runCLI(t, "", "tail", broker, "dev1", "--stream", "sensors").ok(t)
		if lines := r.lines(); len(lines) != 1 || !strings.Contains(lines[0], " dev1 sensors {") {
			t.Errorf("tail --stream sensors = %q, want the one sensors entry", r.stdout)
		}
		r = runCLI(t, "", "tail", broker, "--src", "dev1", "--last", "1").ok(t)
		if lines := r.lines(); len(lines) != 1 || !strings.Contains(lines[0], "line one") {
			t.Errorf("tail --src dev1 --last 1 = %q, want the last entry", r.stdout)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		r := runCLI(t, "", "tail", broker, "dev1", "--json").ok(t)
		lines := r.lines()
		if len(lines) != len(ids) {
			t.Fatalf("tail --json printed %d lines, want %d:\n%s", len(lines), len(ids), r.stdout)
		}
		msgs := []string{`"boot ok"`, `{"temp":21.5,"ok":true}`, `42`, `"line one\nline two\u001b[31m"`}
		for i, line := range lines {
			var e entry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("line %d is not an entry object: %v: %q", i, err, line)
			}
			if e.ID != ids[i] || e.Src != "dev1" || string(e.Msg) != msgs[i] {
				t.Errorf("line %d = %s, want id %s msg %s", i, line, ids[i], msgs[i])
			}
		}
	})

	t.Run("Stdin", func(t *testing.T) {
		r := runCLI(t, "first line\n\nsecond line\n", "log", broker, "--src", "piped", "--stream", "app").ok(t)
		if r.stdout != "" {
			t.Errorf("log from stdin printed %q, want nothing", r.stdout)
		}
		r = runCLI(t, "", "tail", broker, "piped").ok(t)
		lines := r.lines()
		if len(lines) != 2 || !strings.HasSuffix(lines[0], " piped app first line") || !strings.HasSuffix(lines[1], " piped app second line") {
			t.Errorf("tail piped = %q, want the two non-empty stdin lines", r.stdout)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		// More than one Log.List page (1000) in one tail.
		var in strings.Builder
		for i := range 1205 {
			fmt.Fprintf(&in, "n%d\n", i)
		}
		runCLI(t, in.String(), "log", broker, "--src", "many").ok(t)
		r := runCLI(t, "", "tail", broker, "many", "--last", "1100").ok(t)
		lines := r.lines()
		if len(lines) != 1100 {
			t.Fatalf("tail --last 1100 printed %d lines", len(lines))
		}
		for i, line := range lines {
			if want := fmt.Sprintf(" many console n%d", 105+i); !strings.HasSuffix(line, want) {
				t.Fatalf("line %d = %q, want it to end in %q", i, line, want)
			}
		}
	})

	t.Run("Usage", func(t *testing.T) {
		if r := runCLI(t, "", "tail", broker); r.code != 2 || !strings.Contains(r.stderr, "which source") {
			t.Errorf("tail without SRC: exit %d, stderr %q; want 2 and a hint", r.code, r.stderr)
		}
		if r := runCLI(t, "", "log", broker, "--json", "{nope"); r.code == 0 || !strings.Contains(r.stderr, "not a JSON value") {
			t.Errorf("log --json with bad JSON: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestCLI_TailFollow(t *testing.T) {
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT
	runCLI(t, "", "log", broker, "--src", "fdev", "before").ok(t)

	t.Run("NewEntry", func(t *testing.T) {
		p := startCLI(t, "tail", broker, "fdev", "-f", "--last", "1")
		// The old entry printed: the follow has its position.
		if lines := p.waitLines(1, cliTimeout); !strings.HasSuffix(lines[0], " fdev console before") {
			t.Fatalf("first line %q, want the entry logged before", lines[0])
		}
		runCLI(t, "", "log", broker, "--src", "fdev", "--stream", "other", "after", "start").ok(t)
		lines := p.waitLines(2, cliTimeout)
		if _, src, stream, msg := parseHuman(t, lines[1]); src != "fdev" || stream != "other" || msg != "after start" {
			t.Errorf("followed line %q, want fdev other after start", lines[1])
		}
		if code := p.signal(syscall.SIGINT, cliTimeout); code != 0 {
			t.Errorf("tail -f exit code after SIGINT = %d, want 0", code)
		}
		if got := p.lines(); len(got) != 2 {
			t.Errorf("tail -f printed %d lines, want 2:\n%s", len(got), strings.Join(got, "\n"))
		}
	})

	t.Run("StreamFromNow", func(t *testing.T) {
		// --last 0: only what comes after the start; the stream filter holds.
		p := startCLI(t, "tail", broker, "fdev", "-f", "--last", "0", "--stream", "s2", "--json")
		// No line marks "following": log until the first s2 entry shows,
		// then check that everything printed is s2 and in order.
		for i := 0; ; i++ {
			runCLI(t, "", "log", broker, "--src", "fdev", "--stream", "s1", fmt.Sprint("skip ", i)).ok(t)
			runCLI(t, "", "log", broker, "--src", "fdev", "--stream", "s2", fmt.Sprint("keep ", i)).ok(t)
			if len(p.lines()) > 0 || i == 50 {
				break
			}
		}
		lines := p.waitLines(1, cliTimeout)
		var prev string
		for _, line := range lines {
			var e entry
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Stream != "s2" || !strings.HasPrefix(string(e.Msg), `"keep `) {
				t.Errorf("tail -f --stream s2 --json printed %q", line)
			}
			if e.ID <= prev {
				t.Errorf("ids not increasing: %s after %s", e.ID, prev)
			}
			prev = e.ID
		}
	})

	t.Run("AcrossReconnects", func(t *testing.T) {
		px := newProxy(t, s.MQTT)
		runCLI(t, "", "log", broker, "--src", "rdev", "m0").ok(t)
		p := startCLI(t, "tail", "--broker=tcp://"+px.addr(), "rdev", "-f", "--last", "1")
		p.waitLines(1, cliTimeout) // m0: the follow has its position

		// Cut the connection and keep it down while entries are logged:
		// tail cannot see them until it reconnects and follows from m0.
		px.down()
		p.waitStderr("connection lost", cliTimeout)
		for i := 1; i <= 3; i++ {
			runCLI(t, "", "log", broker, "--src", "rdev", fmt.Sprint("m", i)).ok(t)
		}
		px.up()
		p.waitLines(4, cliTimeout)
		runCLI(t, "", "log", broker, "--src", "rdev", "m4").ok(t)
		p.waitLines(5, cliTimeout)
		if code := p.signal(syscall.SIGINT, cliTimeout); code != 0 {
			t.Errorf("exit code after SIGINT = %d, want 0", code)
		}
		lines := p.lines()
		if len(lines) != 5 {
			t.Fatalf("tail printed %d lines, want m0..m4 once each:\n%s", len(lines), strings.Join(lines, "\n"))
		}
		for i, line := range lines {
			if _, _, _, msg := parseHuman(t, line); msg != fmt.Sprint("m", i) {
				t.Errorf("line %d = %q, want m%d", i, line, i)
			}
		}
	})
}

// runOnTerminal runs the binary with args under script(1), whose pty makes
// its stdout a terminal, and returns what it printed (CRLF made LF).
func runOnTerminal(t *testing.T, env []string, args ...string) string {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script(1) (Debian's essential bsdutils) is needed to give the CLI a terminal: %v", err)
	}
	quoted := []string{shellQuote(binPath)}
	for _, a := range args {
		quoted = append(quoted, shellQuote(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qec", strings.Join(quoted, " "), "/dev/null")
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("script -qec logbroker %s: %v; output:\n%s", strings.Join(args, " "), err, out)
	}
	return strings.ReplaceAll(string(out), "\r\n", "\n")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func TestCLI_Terminal(t *testing.T) {
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT
	runCLI(t, "", "log", broker, "--src", "ttydev", "--stream", "errors", "disk full").ok(t)

	t.Run("CallIndents", func(t *testing.T) {
		out := runOnTerminal(t, nil, "call", broker, "Log.List", `{"src":"ttydev"}`)
		if !strings.HasPrefix(out, "[\n  {\n    \"id\": ") || !strings.Contains(out, `    "msg": "disk full"`) {
			t.Errorf("call on a terminal = %q, want indented JSON", out)
		}
	})
	t.Run("TailColours", func(t *testing.T) {
		out := runOnTerminal(t, nil, "tail", broker, "ttydev")
		if !strings.Contains(out, "\x1b[36mttydev\x1b[0m") || !strings.Contains(out, "\x1b[31mdisk full\x1b[0m") {
			t.Errorf("tail on a terminal = %q, want colours", out)
		}
	})
	t.Run("NoColor", func(t *testing.T) {
		out := runOnTerminal(t, []string{"NO_COLOR=1"}, "tail", broker, "ttydev")
		if strings.Contains(out, "\x1b") || !strings.HasSuffix(out, " ttydev errors disk full\n") {
			t.Errorf("tail on a terminal with NO_COLOR = %q, want a plain line", out)
		}
	})
}

func TestCLI_TailRestart(t *testing.T) {
	// tail -f through a proxy, so that its address survives a restart of
	// the broker (which binds a new port 0).
	s := start(t)
	px := newProxy(t, s.MQTT)
	runCLI(t, "", "log", "--broker=tcp://"+s.MQTT, "--src", "rsdev", "r0").ok(t)
	p := startCLI(t, "tail", "--broker=tcp://"+px.addr(), "rsdev", "-f", "--last", "1")
	p.waitLines(1, cliTimeout)

	s = s.restart() // answers the waiting follow (503 or []), closes the connection
	px.retarget(s.MQTT)
	runCLI(t, "", "log", "--broker=tcp://"+s.MQTT, "--src", "rsdev", "r1").ok(t)
	runCLI(t, "", "log", "--broker=tcp://"+s.MQTT, "--src", "rsdev", "r2").ok(t)
	p.waitLines(3, cliTimeout)
	if code := p.signal(syscall.SIGINT, cliTimeout); code != 0 {
		t.Errorf("exit code after SIGINT = %d, want 0", code)
	}
	lines := p.lines()
	if len(lines) != 3 {
		t.Fatalf("tail printed %d lines, want r0, r1, r2 once each:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, line := range lines {
		if _, _, _, msg := parseHuman(t, line); msg != fmt.Sprint("r", i) {
			t.Errorf("line %d = %q, want r%d", i, line, i)
		}
	}
}

func TestCLI_WebSocket(t *testing.T) {
	s := start(t)
	if s.WS == "" {
		t.Fatal("the server has no WebSocket listener")
	}
	ws := "--broker=ws://" + s.WS
	id := strings.TrimSpace(runCLI(t, "", "log", ws, "--src", "wsdev", "over", "websocket").ok(t).stdout)
	r := runCLI(t, "", "tail", ws, "wsdev", "--json").ok(t)
	var e entry
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.ID != id || string(e.Msg) != `"over websocket"` {
		t.Errorf("tail over ws:// = %q (%v), want the entry %s", r.stdout, err, id)
	}
	// And the same entry over TCP: one broker, two transports.
	r = runCLI(t, "", "call", "--broker=tcp://"+s.MQTT, "Log.List", `{"src":"wsdev"}`).ok(t)
	if !strings.Contains(r.stdout, id) {
		t.Errorf("over tcp:// Log.List = %q, want entry %s", r.stdout, id)
	}
}

func TestCLI_Secured(t *testing.T) {
	pki := newTestPKI(t)
	caFile, certFile, keyFile := pki.CAFile, pki.CertFile, pki.KeyFile
	users := writeUsers(t, account{"dev1", "device"}, account{"ops", "admin"})
	s := start(t, "--auth", users, "--tls-cert", certFile, "--tls-key", keyFile)
	ssl := []string{"--broker=ssl://" + s.MQTT, "--cafile", caFile}
	as := func(user string, args ...string) []string {
		return append(append([]string{args[0]}, ssl...), append([]string{"--user", user, "--password", password(user)}, args[1:]...)...)
	}

	t.Run("SSL", func(t *testing.T) {
		id := strings.TrimSpace(runCLI(t, "", as("dev1", "log", "--src", "dev1", "over", "tls")...).ok(t).stdout)
		r := runCLI(t, "", as("ops", "tail", "dev1", "--json")...).ok(t)
		var e entry
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.ID != id || string(e.Msg) != `"over tls"` {
			t.Errorf("admin tail over ssl:// = %q (%v), want entry %s", r.stdout, err, id)
		}
	})

	t.Run("WSS", func(t *testing.T) {
		r := runCLI(t, "", "call", "--broker=wss://"+s.WS, "--cafile", caFile, "--user", "ops", "--password", password("ops"),
			"Log.List", `{"src":"dev1","last":1}`).ok(t)
		if !strings.Contains(r.stdout, `"over tls"`) {
			t.Errorf("call over wss:// = %q, want the dev1 entry", r.stdout)
		}
	})

	t.Run("PasswordFromEnv", func(t *testing.T) {
		args := append([]string{"call"}, ssl...)
		args = append(args, "--user", "dev1", "Log.List", `{"src":"dev1","last":1}`)
		r := runCLIEnv(t, []string{"LOGBROKER_PASSWORD=" + password("dev1")}, "", args...).ok(t)
		if !strings.Contains(r.stdout, `"over tls"`) {
			t.Errorf("with LOGBROKER_PASSWORD: %q, want the dev1 entry", r.stdout)
		}
	})

	t.Run("DefaultSrcUnderUser", func(t *testing.T) {
		// Without --src a device's frames carry dev1/cli-<hex>: its own.
		r := runCLI(t, "", as("dev1", "call", "Log.List", `{"src":"dev1","last":1}`)...).ok(t)
		if !strings.Contains(r.stdout, `"over tls"`) {
			t.Errorf("device call without --src = %q, want the dev1 entry", r.stdout)
		}
	})

	t.Run("Forbidden", func(t *testing.T) {
		r := runCLI(t, "", as("dev1", "tail", "dev2")...)
		if r.code != 1 || !strings.Contains(r.stderr, "error 403:") {
			t.Errorf("device tail of another source: exit %d, stderr %q; want 1 and error 403", r.code, r.stderr)
		}
	})

	t.Run("BadPassword", func(t *testing.T) {
		args := append([]string{"call"}, ssl...)
		r := runCLI(t, "", append(args, "--user", "dev1", "--password", "wrong", "Log.List")...)
		if r.code != 1 || !strings.Contains(r.stderr, "dial ssl://"+s.MQTT) {
			t.Errorf("bad password: exit %d, stderr %q; want 1 and the failed dial", r.code, r.stderr)
		}
	})

	t.Run("UnknownCA", func(t *testing.T) {
		r := runCLI(t, "", "call", "--broker=ssl://"+s.MQTT, "--user", "ops", "--password", password("ops"), "Log.List")
		if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
			t.Errorf("without --cafile: exit %d, stderr %q; want 1 and a certificate error", r.code, r.stderr)
		}
	})
}

func TestCLI_Simulate(t *testing.T) {
	s := start(t)
	broker := "--broker=tcp://" + s.MQTT
	sim := startCLI(t, "simulate", broker, "--devices", "3", "--rate", "20", "--prefix", "sim")
	sim.waitStderr("simulate: 3 devices (sim-001 .. sim-003)", cliTimeout)

	// Watch one device until its boot lines and a few more have arrived.
	watch := startCLI(t, "tail", broker, "sim-002", "-f", "--last", "100")
	lines := watch.waitLines(8, cliTimeout)
	if _, _, stream, msg := parseHuman(t, lines[0]); stream != "console" || !strings.HasPrefix(msg, "boot: fw ") {
		t.Errorf("first line of sim-002 = %q, want its boot line", lines[0])
	}
	if code := sim.signal(syscall.SIGINT, cliTimeout); code != 0 {
		t.Fatalf("simulate exit code after SIGINT = %d, want 0; stderr:\n%s", code, sim.stderr)
	}
	watch.signal(syscall.SIGINT, cliTimeout)

	m := regexp.MustCompile(`simulate: 3 devices for [0-9.]+ s: (\d+) entries acknowledged \([0-9.]+/s\), (\d+) failed`).FindStringSubmatch(sim.stdout.String())
	if m == nil {
		t.Fatalf("no summary on stdout: %q", sim.stdout)
	}
	acked, _ := strconv.Atoi(m[1])
	if m[2] != "0" {
		t.Errorf("simulate: %s calls failed:\n%s", m[2], sim.stdout)
	}

	// Every acknowledged entry is stored, and nothing else.
	stored := 0
	streams := map[string]int{}
	for _, dev := range []string{"sim-001", "sim-002", "sim-003"} {
		r := runCLI(t, "", "tail", broker, dev, "--json", "--last", "100000").ok(t)
		for _, line := range r.lines() {
			var e entry
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Src != dev {
				t.Fatalf("%s: bad entry line %q (%v)", dev, line, err)
			}
			streams[e.Stream]++
			if e.Stream == "sensors" && !bytes.HasPrefix(e.Msg, []byte(`{"battery_v":`)) {
				t.Errorf("sensors entry is not a reading: %s", line)
			}
		}
		stored += len(r.lines())
	}
	if stored != acked || acked < 8 {
		t.Errorf("simulate acknowledged %d entries, the store holds %d (streams %v)", acked, stored, streams)
	}
	if streams["console"] < 3*4 || streams["sensors"] == 0 {
		t.Errorf("streams %v: want each device's 4 boot lines on console and some sensor readings", streams)
	}
}

// proxy forwards TCP connections to a broker; down cuts them all and
// refuses new ones until up, so that a client's reconnect is certain to
// take a while.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu    sync.Mutex
	isUp  bool
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{t: t, ln: ln, target: target, isUp: true, conns: map[net.Conn]struct{}{}}
	go px.serve()
	t.Cleanup(func() {
		ln.Close()
		px.down()
	})
	return px
}

func (px *proxy) addr() string { return px.ln.Addr().String() }

func (px *proxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		px.mu.Lock()
		up := px.isUp
		if up {
			px.conns[c] = struct{}{}
		}
		px.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		go px.pipe(c)
	}
}

// retarget sends new connections to target.
func (px *proxy) retarget(target string) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.target = target
}

func (px *proxy) pipe(c net.Conn) {
	px.mu.Lock()
	target := px.target
	px.mu.Unlock()
	b, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	px.mu.Lock()
	px.conns[b] = struct{}{}
	px.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
}

// down closes every connection and refuses new ones.
func (px *proxy) down() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.isUp = false
	for c := range px.conns {
		c.Close()
		delete(px.conns, c)
	}
}

// up accepts connections again.
func (px *proxy) up() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.isUp = true
}
