package hooks

import (
	"strings"
	"testing"

	"github.com/logbroker/logbroker/rpc"
)

// refMatch is the reference MQTT matcher, written from the specification
// (MQTT 3.1.1 §4.7): does topic filter f match topic name t? '+' matches
// exactly one level (possibly empty), '#' only as the last level and matches
// the parent level too ("a/#" matches "a"), and a filter starting with a
// wildcard does not match a topic starting with '$'.
func refMatch(f, t string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(t, "/")
	if strings.HasPrefix(t, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i := 0; ; i++ {
		if i == len(fl) {
			return i == len(tl)
		}
		if fl[i] == "#" {
			return i == len(fl)-1
		}
		if i == len(tl) {
			return false
		}
		if fl[i] != "+" && fl[i] != tl[i] {
			return false
		}
	}
}

// refCovers reports whether every topic that filter f matches is matched by
// pattern p, by trying representative topics of f: each '+' replaced by a
// level that p does not name (z, zz, ...), and a final '#' replaced by
// nothing (the parent) or by 1 to len(p)+1 such levels.
func refCovers(p, f string) bool {
	z := "z"
	for strings.Contains("/"+p+"/", "/"+z+"/") {
		z += "z"
	}
	fl := strings.Split(f, "/")
	var reps [][]string
	base := make([]string, 0, len(fl))
	hash := false
	for _, l := range fl {
		switch l {
		case "+":
			base = append(base, z)
		case "#":
			hash = true
		default:
			base = append(base, l)
		}
	}
	if !hash {
		reps = append(reps, base)
	} else {
		if len(base) > 0 {
			reps = append(reps, base)
		}
		for j := 1; j <= strings.Count(p, "/")+2; j++ {
			r := append([]string(nil), base...)
			for range j {
				r = append(r, z)
			}
			reps = append(reps, r)
		}
	}
	for _, r := range reps {
		if !refMatch(p, strings.Join(r, "/")) {
			return false
		}
	}
	return true
}

// validFilter: non-empty, '+' and '#' only as whole levels, '#' last.
func validFilter(f string) bool {
	if f == "" {
		return false
	}
	ls := strings.Split(f, "/")
	for i, l := range ls {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" {
			return false
		}
		if l == "#" && i != len(ls)-1 {
			return false
		}
	}
	return true
}

// validTopic: non-empty, no wildcards.
func validTopic(t string) bool { return t != "" && !strings.ContainsAny(t, "+#") }

func TestRefMatch(t *testing.T) {
	// The reference itself, against the examples of the MQTT specification.
	cases := []struct {
		f, t string
		want bool
	}{
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true},
		{"#", "a/b", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"#", "$SYS/x", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"a/+", "a/b/c", false},
	}
	for _, c := range cases {
		if got := refMatch(c.f, c.t); got != c.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", c.f, c.t, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		name       string
		pattern, f string
		want       bool
	}{
		{"PlusOneLevel", "a/+", "a/b", true},
		{"PlusNotTwoLevels", "a/+", "a/b/c", false},
		{"PlusNotParent", "a/+", "a", false},
		{"PlusNotHash", "a/+", "a/#", false},
		{"PlusCoversPlus", "a/+", "a/+", true},
		{"HashCoversParent", "a/#", "a", true},
		{"HashCoversDeep", "a/#", "a/b/c/d", true},
		{"HashCoversHash", "a/#", "a/#", true},
		{"HashCoversPlusHash", "a/#", "a/+/#", true},
		{"HashNotSibling", "a/#", "ab/c", false},
		{"NotPrefix", "dev1/#", "dev10/log/console", false},
		{"LiteralNotPlus", "a/b", "a/+", false},
		{"LiteralNotHash", "a/b", "#", false},
		{"PlusLogNotHash", "+/log/#", "#", false},
		{"PlusLogNotPlusRPC", "+/log/#", "+/rpc", false},
		{"PlusLogDevice", "+/log/#", "dev1/log/console", true},
		{"PlusLogAll", "+/log/#", "+/log/#", true},
		{"PlusLogParent", "+/log/#", "dev1/log", true},
		{"PlusLogNotSub", "+/log/#", "dev1/x/log/console", false},
		{"HashNotDollar", "#", "$SYS/broker/uptime", false},
		{"PlusNotDollar", "+/log/#", "$SYS/log/x", false},
		{"DollarLiteral", "$SYS/#", "$SYS/broker", true},
		{"EmptyLevel", "+/rpc", "/rpc", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := covers(c.pattern, c.f); got != c.want {
				t.Errorf("covers(%q, %q) = %v, want %v", c.pattern, c.f, got, c.want)
			}
			if got := refCovers(c.pattern, c.f); got != c.want {
				t.Errorf("reference refCovers(%q, %q) = %v, want %v", c.pattern, c.f, got, c.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	svcs := []string{"logbroker", "lb"}
	type op struct {
		topic string
		write bool // publish; false: subscribe
	}
	pub := func(t string) op { return op{t, true} }
	sub := func(t string) op { return op{t, false} }
	cases := []struct {
		role     rpc.Role
		id       string
		allow    []op
		deny     []op
		describe string
	}{
		{rpc.RoleDevice, "dev1",
			[]op{
				pub("logbroker/rpc"), pub("logbroker/rpc/Log.Log"), pub("lb/rpc"), pub("lb/rpc/x/y"),
				pub("dev2/rpc"), pub("dash/rpc"),
				sub("dev1/#"), sub("dev1/rpc"), sub("dev1/log/console"), sub("dev1/x/rpc"), sub("dev1/+/rpc"),
				sub("$share/g/dev1/#"),
			},
			[]op{
				pub("dev1/log/console"), pub("dev2/log/console"), pub("logbroker/x"), pub("dev2/x/rpc"),
				pub("logbroker/rpcx"), pub("a/b/rpc"),
				sub("#"), sub("+/rpc"), sub("dev2/rpc"), sub("+/log/#"), sub("dev2/#"), sub("logbroker/rpc"),
				sub("dev10/#"), sub("dev/#"), sub("$SYS/#"), sub("+/#"), sub("$share/g/#"), sub("$share/g/dev2/rpc"),
			}, "device"},
		{rpc.RoleReader, "dash",
			[]op{
				pub("logbroker/rpc"), pub("logbroker/rpc/Log.List"), pub("dev1/rpc"),
				sub("+/log/#"), sub("dev1/log/console"), sub("+/log/console"), sub("dash/#"), sub("dash/rpc"),
			},
			[]op{
				pub("dev1/log/console"), pub("dash/log/x"),
				sub("#"), sub("+/rpc"), sub("dev1/rpc"), sub("dev1/#"), sub("+/+/#"), sub("dev1/x/log/console"),
				sub("logbroker/rpc"), sub("+/log/#/x"),
			}, "reader"},
		{rpc.RoleAdmin, "ops",
			[]op{
				pub("logbroker/rpc"), pub("dev1/rpc"), pub("dev1/log/console"), pub("any/thing"),
				sub("#"), sub("+/rpc"), sub("dev1/rpc"), sub("+/log/#"),
			},
			[]op{sub("$SYS/#")}, "admin"},
		{rpc.RoleNone, "gone",
			nil,
			[]op{pub("logbroker/rpc"), sub("gone/#"), sub("gone/rpc")}, "none"},
	}
	for _, c := range cases {
		t.Run(c.describe, func(t *testing.T) {
			for _, o := range c.allow {
				if !allowed(c.role, c.id, "", svcs, o.topic, o.write) {
					t.Errorf("%s %s: %s %q denied, want allowed", c.describe, c.id, verb(o.write), o.topic)
				}
			}
			for _, o := range c.deny {
				if allowed(c.role, c.id, "", svcs, o.topic, o.write) {
					t.Errorf("%s %s: %s %q allowed, want denied", c.describe, c.id, verb(o.write), o.topic)
				}
			}
		})
	}
}

func verb(write bool) string {
	if write {
		return "publish"
	}
	return "subscribe"
}

// norm maps fuzz bytes onto a small topic alphabet so that most inputs are
// interesting: two literal letters, '$', separators and wildcards.
func norm(s string) string {
	const alphabet = "ab$/+#/"
	if len(s) > 24 {
		s = s[:24]
	}
	b := make([]byte, len(s))
	for i := range len(s) {
		b[i] = alphabet[int(s[i])%len(alphabet)]
	}
	return string(b)
}

// FuzzCovers checks the ACL matcher against the reference: covers of a topic
// name is refMatch, covers of a filter is refCovers, and allowed agrees with
// the rule table read through refMatch.
func FuzzCovers(f *testing.F) {
	seeds := [][2]string{
		{"a/+", "a/b/c"}, {"a/#", "a"}, {"#", "$a"}, {"+/a", "$a/a"}, {"a/+/#", "a/#"},
		{"+/+", "/"}, {"a//b", "a/+/b"}, {"$a/#", "$a"}, {"#", "#"}, {"+", "+/#"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], false)
	}
	f.Add("z/#", "#", true) // the reference's fresh level must not be one of the pattern's
	f.Fuzz(func(t *testing.T, rawPattern, rawOther string, raw bool) {
		p, x := rawPattern, rawOther
		if !raw {
			p, x = norm(p), norm(x)
		}
		if !validFilter(p) {
			return
		}
		if validTopic(x) {
			if got, want := covers(p, x), refMatch(p, x); got != want {
				t.Fatalf("covers(%q, topic %q) = %v, reference %v", p, x, got, want)
			}
		}
		if validFilter(x) {
			if got, want := covers(p, x), refCovers(p, x); got != want {
				t.Fatalf("covers(%q, filter %q) = %v, reference %v", p, x, got, want)
			}
		}
		if !validTopic(x) {
			return
		}
		// allowed for a publish to topic name x, for every role, against
		// the rule table expanded by hand and matched by the reference.
		svcs := []string{"a", "b$"}
		for _, role := range []rpc.Role{rpc.RoleAdmin, rpc.RoleDevice, rpc.RoleReader, rpc.RoleNone} {
			for _, write := range []bool{true, false} {
				want := false
				for _, r := range aclRules {
					if r.role != role || r.write != write {
						continue
					}
					for _, s := range svcs {
						fl := strings.ReplaceAll(strings.ReplaceAll(r.filter, "{id}", "a"), "{svc}", s)
						want = want || refMatch(fl, x)
					}
				}
				if got := allowed(role, "a", "", svcs, x, write); got != want {
					t.Fatalf("allowed(%v, id a, %s %q) = %v, reference %v", role, verb(write), x, got, want)
				}
			}
		}
	})
}
