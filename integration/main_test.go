// Package integration runs the real logbroker binary against real MQTT
// clients (paho.mqtt.golang, mosquitto_pub and mosquitto_sub), as a user
// runs it. TestMain builds the binary once; start runs it on port 0 and a
// t.TempDir().
//
// Set LOGBROKER_TEST_RACE=1 to build the broker itself with -race (slower;
// a data race then fails the test through the exit code).
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binPath is the logbroker binary TestMain built.
var binPath string

// Deadlines. Generous: CI runs with -race on two cores.
const (
	startTimeout = 20 * time.Second // from exec to the "logbroker started" line
	stopTimeout  = 20 * time.Second // from SIGTERM to exit
	callTimeout  = 5 * time.Second  // from publish to response
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "logbroker-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: build logbroker:", err)
		return 1
	}
	binPath = bin
	return m.Run()
}

// buildBinary builds ./cmd/logbroker of the enclosing module into dir.
func buildBinary(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	root := filepath.Dir(gomod)
	bin := filepath.Join(dir, "logbroker")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	args := []string{"build", "-o", bin}
	if os.Getenv("LOGBROKER_TEST_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/logbroker")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// logBuffer collects a process's stderr and watches it line by line.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.partial = append(b.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
		added = true
	}
	if added {
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// find returns the first line containing substr, and a channel closed on
// the next new line.
func (b *logBuffer) find(substr string) (string, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, substr) {
			return l, true, nil
		}
	}
	return "", false, b.changed
}

// server is one running logbroker process.
type server struct {
	t     testing.TB
	data  string
	extra []string
	env   []string

	cmd    *exec.Cmd
	stderr *logBuffer
	exited chan struct{} // closed once the process has exited and stderr is drained
	state  *os.ProcessState
	killed atomic.Bool // the test SIGKILLed it: no exit-code check
	done   atomic.Bool // stopped or killed: the cleanup has nothing to do

	MQTT string // host:port of MQTT over TCP
	WS   string // host:port of MQTT over WebSocket ("" when disabled)
	HTTP string // host:port of /healthz ("" when disabled)
}

var startLine = regexp.MustCompile(`msg="logbroker started".* mqtt=(\S*) ws=(\S*) http=(\S*)`)

// start runs `logbroker serve` on loopback port 0 and a fresh t.TempDir(),
// with extra flags after the defaults (so they override them). It returns
// once the start line is logged.
func start(t testing.TB, extra ...string) *server {
	t.Helper()
	return startIn(t, t.TempDir(), extra...)
}

// startIn is start on a given data directory.
func startIn(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	return startEnvIn(t, nil, data, extra...)
}

// startEnvIn is startIn with extra environment variables (KEY=value), such
// as the LOGBROKER_* twins of flags.
func startEnvIn(t testing.TB, env []string, data string, extra ...string) *server {
	t.Helper()
	args := []string{"serve",
		"--mqtt", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--data", data,
	}
	args = append(args, extra...)
	s := &server{t: t, data: data, extra: extra, env: env, stderr: newLogBuffer(), exited: make(chan struct{})}
	s.cmd = exec.Command(binPath, args...)
	s.cmd.Dir = t.TempDir() // never the working directory
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binPath, err)
	}
	go func() {
		_ = s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.exited)
	}()
	t.Cleanup(s.cleanup)

	deadline := time.After(startTimeout)
	for {
		line, ok, changed := s.stderr.find(`msg="logbroker started"`)
		if ok {
			m := startLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("cannot parse the start line %q", line)
			}
			s.MQTT, s.WS, s.HTTP = unquote(m[1]), unquote(m[2]), unquote(m[3])
			if s.MQTT == "" {
				t.Fatalf("start line names no MQTT address: %q", line)
			}
			return s
		}
		select {
		case <-changed:
		case <-s.exited:
			// Drained: one last look before giving up.
			if _, ok, _ := s.stderr.find(`msg="logbroker started"`); ok {
				continue
			}
			t.Fatalf("logbroker exited before it started (%v); stderr:\n%s", s.state, s.stderr)
		case <-deadline:
			t.Fatalf("no start line within %v; stderr:\n%s", startTimeout, s.stderr)
		}
	}
}

// cleanEnv is the test's environment without LOGBROKER_* variables, which
// would override defaults the tests rely on.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOGBROKER_") {
			env = append(env, kv)
		}
	}
	return env
}

func unquote(s string) string { return strings.Trim(s, `"`) }

func (s *server) cleanup() {
	if s.t.Failed() {
		s.t.Logf("logbroker stderr (%s):\n%s", s.data, tail(s.stderr.String(), 8000))
	}
	if s.done.Load() {
		return
	}
	s.stop()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// terminate sends SIGTERM without waiting.
func (s *server) terminate() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && s.alive() {
		s.t.Fatalf("SIGTERM: %v", err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (s *server) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(d):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.done.Store(true)
		s.t.Fatalf("logbroker did not exit within %v; killed it; stderr:\n%s", d, tail(s.stderr.String(), 8000))
	}
	s.done.Store(true)
	return s.state.ExitCode()
}

// stop sends SIGTERM, waits for the exit and fails the test unless the
// exit code is 0 (or the test killed the process itself).
func (s *server) stop() {
	s.t.Helper()
	if s.done.Load() {
		return
	}
	if !s.alive() {
		// It ended on its own (a failed start reports that already).
		if code := s.wait(stopTimeout); code != 0 && !s.t.Failed() {
			s.t.Errorf("logbroker had exited by itself with %d; stderr:\n%s", code, tail(s.stderr.String(), 8000))
		}
		return
	}
	s.terminate()
	code := s.wait(stopTimeout)
	if !s.killed.Load() && code != 0 {
		s.t.Errorf("logbroker exited with %d after SIGTERM, want 0; stderr:\n%s", code, tail(s.stderr.String(), 8000))
	}
}

// kill9 SIGKILLs the process and waits for it to be gone.
func (s *server) kill9() {
	s.t.Helper()
	s.killed.Store(true)
	if err := s.cmd.Process.Kill(); err != nil && s.alive() {
		s.t.Fatalf("SIGKILL: %v", err)
	}
	s.wait(stopTimeout)
}

// restart stops s (unless it is already gone) and starts a new process on
// the same data directory with the same flags. Addresses change.
func (s *server) restart() *server {
	s.t.Helper()
	s.stop()
	return startEnvIn(s.t, s.env, s.data, s.extra...)
}

// logs returns what the process wrote so far.
func (s *server) logs() string { return s.stderr.String() }

// runBinary runs the binary with args to completion (deadline d) and
// returns its combined output and exit code.
func runBinary(t testing.TB, d time.Duration, args ...string) (string, int) {
	t.Helper()
	return runBinaryEnv(t, d, nil, args...)
}

// runBinaryEnv is runBinary with extra environment variables (KEY=value).
func runBinaryEnv(t testing.TB, d time.Duration, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("logbroker %s: still running after %v; output:\n%s", strings.Join(args, " "), d, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("logbroker %s: %v", strings.Join(args, " "), err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}
