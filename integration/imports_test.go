package integration

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/logbroker/logbroker/"

// allowed lists, for each package of ours, the packages of ours it may
// import directly (a top-level folder, or a package path below it): the one
// direction of imports of STYLE.md. integration/await, the tests' one
// wait-for-condition helper, imports nothing of ours, so any may import it
// (storage/storetest does).
var allowed = map[string][]string{
	"storage":           {"storage", awaitPkg},
	"rpc":               {"rpc", "storage", awaitPkg},
	"hooks":             {"hooks", "rpc", awaitPkg},
	"broker":            {"broker", awaitPkg},
	"integration/await": {},
}

const awaitPkg = "integration/await"

// unreachable lists outside modules a package must not reach, even through
// others: storage and rpc know nothing of MQTT, broker nothing of storage.
// (hooks reaches Pebble through rpc -> storage, which STYLE.md allows.)
var unreachable = map[string][]string{
	"storage": {"github.com/mochi-mqtt/server/v2", "github.com/eclipse/paho.mqtt.golang"},
	"rpc":     {"github.com/mochi-mqtt/server/v2", "github.com/eclipse/paho.mqtt.golang"},
	"broker":  {"github.com/cockroachdb/pebble/v2", "github.com/eclipse/paho.mqtt.golang"},
}

// packages lists the non-test packages under ../pkg with their imports.
func packages(t *testing.T, pkg string) []struct {
	ImportPath    string
	Imports, Deps []string
} {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "../"+pkg+"/...").Output()
	if err != nil {
		t.Fatalf("go list ../%s/...: %v", pkg, err)
	}
	var ps []struct {
		ImportPath    string
		Imports, Deps []string
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath    string
			Imports, Deps []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestForbiddenImports(t *testing.T) {
	for pkg, ok := range allowed {
		t.Run(pkg, func(t *testing.T) {
			for _, p := range packages(t, pkg) {
				for _, imp := range p.Imports {
					rest, ours := strings.CutPrefix(imp, module)
					if !ours {
						continue
					}
					top, _, _ := strings.Cut(rest, "/")
					allowedEdge := false
					for _, a := range ok {
						allowedEdge = allowedEdge || top == a || rest == a
					}
					if !allowedEdge {
						t.Errorf("%s imports %s: not allowed by the import direction of STYLE.md", p.ImportPath, imp)
					}
				}
				for _, d := range p.Deps {
					for _, bad := range unreachable[pkg] {
						if d == bad || strings.HasPrefix(d, bad+"/") {
							t.Errorf("%s depends on %s", p.ImportPath, d)
						}
					}
				}
			}
		})
	}
}
