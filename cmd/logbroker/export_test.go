package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want int64 // -1: an error
	}{
		{"1h", now.Add(-time.Hour).UnixMilli()},
		{"90m", now.Add(-90 * time.Minute).UnixMilli()},
		{"0s", now.UnixMilli()},
		{"2026-11-25T15:00:00Z", now.Add(-time.Hour).UnixMilli()},
		{"2026-11-25T17:00:00.250+02:00", now.Add(-time.Hour + 250*time.Millisecond).UnixMilli()},
		{"-1h", -1},
		{"yesterday", -1},
		{"2026-11-25", -1},
		{"1969-12-31T23:59:59Z", -1},
	} {
		got, err := parseTime(c.in, now)
		if c.want < 0 {
			if err == nil {
				t.Errorf("parseTime(%q) = %d, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestFilterFlags(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	f := filterFlags{level: "warn", match: "Timeout", regex: "^a", since: "1s", until: "1970-01-01T02:46:40Z"}
	got, err := f.args(now)
	if err != nil {
		t.Fatal(err)
	}
	if got["level"] != "warn" || got["match"] != "Timeout" || got["regex"] != "^a" || got["since"] != int64(9_999_000) || got["until"] != int64(10_000_000) {
		t.Errorf("args = %v", got)
	}
	if got, _ := (&filterFlags{level: "2"}).args(now); got["level"] != 2 {
		t.Errorf("--level 2 gave %v, want the integer 2", got["level"])
	}
	if got, _ := (&filterFlags{}).args(now); len(got) != 0 {
		t.Errorf("no flags gave %v", got)
	}
	if _, err := (&filterFlags{since: "soon"}).args(now); err == nil || !strings.Contains(err.Error(), "--since soon") {
		t.Errorf("--since soon: %v, want an error naming the flag", err)
	}
}

func TestOpenResume(t *testing.T) {
	const a = `{"id":"0000000000000001","src":"d","stream":"console","timestamp":1,"msg":"a"}`
	const b = `{"id":"0000000000000002","src":"d","stream":"console","timestamp":2,"msg":"b\nc"}`
	long := `{"id":"00000000000000ff","src":"d","stream":"console","timestamp":3,"msg":"` + strings.Repeat("x", 200<<10) + `"}`
	for _, c := range []struct {
		name, content, wantID, wantLeft string
		bad                             bool
	}{
		{"Missing", "", "", "", false},
		{"Empty", "", "", "", false},
		{"Complete", a + "\n" + b + "\n", "0000000000000002", a + "\n" + b + "\n", false},
		{"PartialLast", a + "\n" + b[:30], "0000000000000001", a + "\n", false},
		{"OnlyPartial", b[:30], "", "", false},
		{"LongLines", a + "\n" + long + "\n" + long[:70000], "00000000000000ff", a + "\n" + long + "\n", false},
		{"NotAnEntry", a + "\nhello\n", "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "out.ndjson")
			if c.name != "Missing" {
				if err := os.WriteFile(name, []byte(c.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, id, err := openResume(name)
			if c.bad {
				if err == nil {
					f.Close()
					t.Fatalf("openResume accepted %q", c.content)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("NEXT\n"); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if id != c.wantID {
				t.Errorf("after = %q, want %q", id, c.wantID)
			}
			got, _ := os.ReadFile(name)
			if string(got) != c.wantLeft+"NEXT\n" {
				t.Errorf("file holds %.100q..., want %.100q then NEXT", got, c.wantLeft)
			}
		})
	}
}
