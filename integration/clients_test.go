package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Third-party clients, unchanged (issue 13): paho-python (Debian's
// python3-paho-mqtt) and MQTT.js (the mqtt package pinned in
// testdata/clients/package.json, installed there by `npm ci`), each over
// MQTT 3.1.1 and 5. Each runs a script under testdata/clients that prints
// "ok <check>" or "FAIL <check>: <why>" per check; the test requires every
// check it expects to be ok. .ci/run installs both; in CI (CI set) a
// missing client fails the test, elsewhere it skips it.

// clientChecks are the checks every script reports, by protocol version.
var clientChecks = map[int][]string{
	4: {"Log.Log", "Log.List follow woken by another client", "Log.Delete", "QoS 1 publish with User Properties"},
	5: {"Log.Log", "Log.List follow woken by another client", "Log.Delete", "QoS 1 publish with User Properties",
		"Response Topic with Correlation Data"},
}

// needClient skips (or in CI fails) t when a client is missing.
func needClient(t *testing.T, what, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing in CI (.ci/run installs it): %s", what, why)
	}
	t.Skipf("%s is missing (.ci/run installs it): %s", what, why)
}

// pahoPython returns a python3 that can import paho.mqtt: the one on PATH,
// else Debian's (a pyenv python on PATH does not see Debian's packages).
func pahoPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import paho.mqtt.client").Run() == nil {
			return path
		}
	}
	needClient(t, "paho-python", "no python3 imports paho.mqtt (apt-get install python3-paho-mqtt)")
	return ""
}

// mqttJS returns node, once the pinned mqtt package is installed.
func mqttJS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		needClient(t, "node", "apt-get install nodejs npm")
	}
	if _, err := os.Stat(filepath.Join("testdata", "clients", "node_modules", "mqtt", "package.json")); err != nil {
		needClient(t, "MQTT.js", "run npm ci in integration/testdata/clients")
	}
	return node
}

func TestThirdPartyClients(t *testing.T) {
	t.Parallel()
	s := start(t)
	host, port := s.hostPort()[1], s.hostPort()[3]
	clients := []struct {
		name   string
		runner func(*testing.T) string
		script string
	}{
		{"PahoPython", pahoPython, "paho_client.py"},
		{"MQTTjs", mqttJS, "mqttjs_client.js"},
	}
	for _, c := range clients {
		for _, v := range []int{4, 5} {
			name := c.name + "/MQTT311"
			if v == 5 {
				name = c.name + "/MQTT5"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runner := c.runner(t)
				ctx, cancel := context.WithTimeout(context.Background(), 90*callTimeout/5)
				defer cancel()
				tag := strings.ReplaceAll(strings.ToLower(name), "/", "-")
				cmd := exec.CommandContext(ctx, runner, filepath.Join("testdata", "clients", c.script), host, port, string(rune('0'+v)), tag)
				out, err := cmd.CombinedOutput()
				var oks []string
				for _, l := range strings.Split(string(out), "\n") {
					if ok, found := strings.CutPrefix(l, "ok "); found {
						oks = append(oks, ok)
					}
				}
				for _, check := range clientChecks[v] {
					if !slices.Contains(oks, check) {
						t.Errorf("%s: check %q not ok", name, check)
					}
				}
				if err != nil || t.Failed() {
					t.Errorf("%s %s: %v; output:\n%s", runner, c.script, err, out)
				}
			})
		}
	}
}
