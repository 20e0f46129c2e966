package main

import (
	"encoding/json"
	"testing"
)

func TestFormatEntry(t *testing.T) {
	const ts = 1795622400123 // 2026-11-25T16:00:00.123Z
	for _, c := range []struct {
		name, msg, stream string
		color             bool
		want              string
	}{
		{"Text", `"boot ok"`, "console", false, "2026-11-25T16:00:00.123Z dev1 console boot ok"},
		{"Object", `{ "temp" : 21.5, "ok": true }`, "sensors", false, `2026-11-25T16:00:00.123Z dev1 sensors {"temp":21.5,"ok":true}`},
		{"Number", `42`, "console", false, "2026-11-25T16:00:00.123Z dev1 console 42"},
		{"QuotedInside", `"say \"hi\""`, "console", false, `2026-11-25T16:00:00.123Z dev1 console say "hi"`},
		{"ControlEscaped", `"a\nb\u001b[2Jc\td"`, "console", false, "2026-11-25T16:00:00.123Z dev1 console a\\nb\\x1b[2Jc\td"},
		{"Unicode", `"température 21 °C ✓"`, "console", false, "2026-11-25T16:00:00.123Z dev1 console température 21 °C ✓"},
		{"Colour", `"boot ok"`, "console", true, "\x1b[2m2026-11-25T16:00:00.123Z\x1b[0m \x1b[36mdev1\x1b[0m \x1b[33mconsole\x1b[0m boot ok"},
		{"ColourErrors", `"i2c timeout"`, "errors", true, "\x1b[2m2026-11-25T16:00:00.123Z\x1b[0m \x1b[36mdev1\x1b[0m \x1b[33merrors\x1b[0m \x1b[31mi2c timeout\x1b[0m"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := entry{ID: "1", Src: "dev1", Stream: c.stream, Timestamp: ts, Msg: json.RawMessage(c.msg)}
			if got := formatEntry(e, c.color); got != c.want {
				t.Errorf("formatEntry =\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

func TestFollowWait(t *testing.T) {
	for _, c := range []struct{ timeout, want string }{
		{"10s", "7.5s"}, {"3s", "2.25s"}, {"60s", "55s"}, {"1s", "1s"},
	} {
		t.Run(c.timeout, func(t *testing.T) {
			if got := followWait(mustDuration(t, c.timeout)); got != mustDuration(t, c.want) {
				t.Errorf("followWait(%s) = %v, want %s", c.timeout, got, c.want)
			}
		})
	}
}
