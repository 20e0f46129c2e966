package hooks

import (
	"testing"

	"github.com/logbroker/logbroker/rpc"
)

func TestCaptureFilters(t *testing.T) {
	fs, err := ParseCaptureFilters([]string{"+/log", "fleet/+/+/console", "x/+/#"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		topic, src string
		ok         bool
	}{
		{"dev1/log", "dev1", true},
		{"dev1/log/console", "", false},
		{"fleet/a/b/console", "a", true},
		{"x/d/y/z", "d", true},
		{"x/d", "d", true},
		{"$SYS/log", "", false},
		{"log", "", false},
	}
	for _, c := range cases {
		src, ok := fs.Source(c.topic)
		if src != c.src || ok != c.ok {
			t.Errorf("Source(%q) = %q, %v; want %q, %v", c.topic, src, ok, c.src, c.ok)
		}
	}
	for _, bad := range []string{"log/#", "", "a/+x", "$SYS/+", "a/#/+"} {
		if _, err := ParseCaptureFilters([]string{bad}); err == nil {
			t.Errorf("ParseCaptureFilters(%q) accepted", bad)
		}
	}
}

// TestAuth_MayCapture: a device publishes its console under its own
// identity only; readers do not publish consoles; without filters nobody.
func TestAuth_MayCapture(t *testing.T) {
	a, _ := testAuth(t)
	dev1 := User{Name: "dev1", Role: rpc.RoleDevice}
	dash := User{Name: "dash", Role: rpc.RoleReader}
	if a.mayCapture(dev1, "dev1/log") {
		t.Error("dev1/log allowed with capture off")
	}
	fs, _ := ParseCaptureFilters([]string{"+/log"})
	a.AllowCapture(fs)
	for _, c := range []struct {
		u     User
		topic string
		want  bool
	}{
		{dev1, "dev1/log", true}, {dev1, "dev2/log", false}, {dev1, "dev1/log/console", false},
		{dev1, "dev1/log/+", false}, {dash, "dash/log", false},
	} {
		if got := a.mayCapture(c.u, c.topic); got != c.want {
			t.Errorf("%s publishing %q: %v, want %v", c.u.Name, c.topic, got, c.want)
		}
	}
	// A filter that covers live topics does not let a device forge them.
	fs, _ = ParseCaptureFilters([]string{"+/log/#"})
	a.AllowCapture(fs)
	for _, c := range []struct {
		u     User
		topic string
		want  bool
	}{
		{dev1, "dev1/log", true}, {dev1, "dev1/log/console", false}, {dev1, "dev1/log/a/b", true},
	} {
		if got := a.mayCapture(c.u, c.topic); got != c.want {
			t.Errorf("%s publishing %q: %v, want %v", c.u.Name, c.topic, got, c.want)
		}
	}
}
