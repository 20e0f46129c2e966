package rpc

import (
	"github.com/logbroker/logbroker/integration/await"
	"strings"
	"testing"
)

// TestLogList_Filters checks the Log.List filters of PROTOCOL §5 end to
// end through the service (the store's matching itself is checked against
// a model by storage/storetest): each filter alone and combined, with
// after, last and limit, bad values, the scan bound and follow.
func TestLogList_Filters(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	logs := []string{
		`{"msg":"boot ok","level":2,"timestamp":1000}`,
		`{"msg":"disk TIMEOUT","level":"error","timestamp":2000}`,
		`{"msg":{"err":"timeout"},"level":1,"timestamp":3000,"stream":"app"}`,
		`{"msg":"no level timeout","timestamp":4000}`,
		`{"msg":"Time\u004Fut again","level":"verbose","timestamp":5000}`,
		`{"msg":"warned","level":"WARN","timestamp":6000}`,
	}
	var ids []string
	for _, a := range logs {
		r := e.mustCall(c, "fd", "Log.Log", a)
		ids = append(ids, string(r.Result[7:23]))
	}
	tests := []struct {
		name, args string
		want       []int // indexes into logs
	}{
		{"LevelError", `{"level":0}`, []int{1}},
		{"LevelWarnName", `{"level":"warn"}`, []int{1, 2, 5}},
		{"LevelVerbose", `{"level":"Verbose"}`, []int{0, 1, 2, 4, 5}},
		{"LevelNull", `{"level":null}`, []int{0, 1, 2, 3, 4, 5}},
		{"Match", `{"match":"timeout"}`, []int{1, 2, 3, 4}},
		{"MatchRawJSON", `{"match":"\"err\""}`, []int{2}},
		{"MatchEscapedNeedle", `{"match":"TIME\u004fUT"}`, []int{1, 2, 3, 4}},
		{"Regex", `{"regex":"^[a-z]+ (ok|TIMEOUT)$"}`, []int{0, 1}},
		{"RegexCase", `{"regex":"(?i)^disk timeout"}`, []int{1}},
		{"Since", `{"since":3000}`, []int{2, 3, 4, 5}},
		{"Until", `{"until":3000}`, []int{0, 1}},
		{"SinceUntil", `{"since":2000,"until":5000}`, []int{1, 2, 3}},
		{"UntilZero", `{"until":0}`, []int{}},
		{"Combined", `{"level":"warn","match":"timeout","since":2500}`, []int{2}},
		{"CombinedStream", `{"stream":"console","level":4,"match":"TIMEOUT"}`, []int{1, 4}},
		{"Last", `{"match":"timeout","last":2}`, []int{3, 4}},
		{"LastLimit", `{"match":"timeout","last":3,"limit":1}`, []int{2}},
		{"After", `{"match":"timeout","after":"` + ids[2] + `"}`, []int{3, 4}},
		{"AfterLimit", `{"level":4,"after":"` + ids[0] + `","limit":2}`, []int{1, 2}},
		{"AfterLast", `{"level":4,"after":"` + ids[0] + `","last":1}`, []int{5}},
		{"LastZero", `{"match":"timeout","last":0}`, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			got := e.mustCall(c, "fd", "Log.List", tt.args).entries(t)
			var gotIDs, wantIDs []string
			for _, g := range got {
				gotIDs = append(gotIDs, g.ID)
			}
			for _, i := range tt.want {
				wantIDs = append(wantIDs, ids[i])
			}
			if strings.Join(gotIDs, ",") != strings.Join(wantIDs, ",") {
				t.Errorf("List %s = %v, want %v", tt.args, gotIDs, wantIDs)
			}
		})
	}
	t.Run("LevelOnEntries", func(t *testing.T) {
		e.t = t
		got := e.mustCall(c, "fd", "Log.List", `{"last":6}`).entries(t)
		want := []int{2, 0, 1, -1, 4, 1}
		for i, g := range got {
			if (g.Level == nil) != (want[i] < 0) || (g.Level != nil && *g.Level != want[i]) {
				t.Errorf("entry %d level %v, want %d (-1: none)", i, g.Level, want[i])
			}
		}
	})

	bad := []struct{ name, args, text string }{
		{"LevelFive", `{"level":5}`, "level must be an integer 0..4"},
		{"LevelName", `{"level":"fatal"}`, "level must be"},
		{"LevelFloat", `{"level":1.0}`, "level must be"},
		{"MatchEmpty", `{"match":""}`, "match must be 1 to 256 bytes"},
		{"MatchLong", `{"match":"` + strings.Repeat("a", 257) + `"}`, "match must be 1 to 256 bytes"},
		{"MatchNumber", `{"match":5}`, "match must be a string"},
		{"MatchNull", `{"match":null}`, "match must be a string"},
		{"RegexInvalid", `{"regex":"a("}`, "regex is not valid RE2"},
		{"RegexBackref", `{"regex":"(a)\\1"}`, "regex is not valid RE2"},
		{"RegexHugeRepeat", `{"regex":"((a{1000}){1000}){1000}"}`, "regex is not valid RE2"},
		{"RegexLong", `{"regex":"` + strings.Repeat("a", 257) + `"}`, "regex must be 1 to 256 bytes"},
		{"RegexObject", `{"regex":{}}`, "regex must be a string"},
		{"SinceNegative", `{"since":-1}`, "since must be an integer"},
		{"SinceFraction", `{"since":1.5}`, "since must be an integer"},
		{"SinceString", `{"since":"1h"}`, "since must be an integer"},
		{"UntilHuge", `{"until":253402300800001}`, "until must be an integer"},
		{"UntilNull", `{"until":null}`, "until must be an integer"},
	}
	for _, tt := range bad {
		t.Run("Bad"+tt.name, func(t *testing.T) {
			e.t = t
			r := e.call(c, "fd", "Log.List", tt.args)
			if r.code() != 400 || !strings.Contains(r.Error.Message, tt.text) {
				t.Errorf("List %.60s: reply %s, want 400 with %q", tt.args, r.raw, tt.text)
			}
		})
	}

	t.Run("ScanTimeout", func(t *testing.T) {
		e.t = t
		// A frame timeout of 0 leaves the scan no time at all: 504, not a
		// partial result. An unfiltered List ignores it.
		frame := `{"id":901,"src":"fd","method":"Log.List","timeout":0,"args":{"match":"x"}}`
		submit(c, frame)
		r := e.replyTo("fd", "901")
		if r.code() != 504 || !strings.Contains(r.Error.Message, "scan did not finish") {
			t.Errorf("reply %s, want 504 scan did not finish", r.raw)
		}
		submit(c, `{"id":902,"src":"fd","method":"Log.List","timeout":0,"args":{}}`)
		if r := e.replyTo("fd", "902"); r.Error != nil {
			t.Errorf("unfiltered List with timeout 0: %s", r.raw)
		}
	})

	t.Run("Follow", func(t *testing.T) {
		e.t = t
		// Waits for the next matching entry: a non-matching one logged
		// first does not answer it.
		submit(c, `{"id":903,"src":"fd","method":"Log.List","args":{"follow":true,"last":0,"level":"error","match":"fan"}}`)
		await.Until(t, waitFor, "follow waiting", func() bool { return e.svc.Stats().Waiting == 1 })
		e.mustCall(c, "fd", "Log.Log", `{"msg":"fan stopped","level":"warn"}`)
		e.mustCall(c, "fd", "Log.Log", `{"msg":"disk failed","level":"error"}`)
		id := string(e.mustCall(c, "fd", "Log.Log", `{"msg":"FAN failed","level":0}`).Result[7:23])
		got := e.replyTo("fd", "903").entries(t)
		if len(got) != 1 || got[0].ID != id {
			t.Errorf("follow answered %+v, want only %s", got, id)
		}
		// A follow from a position answers at once with what matches.
		got = e.mustCall(c, "fd", "Log.List", `{"follow":true,"after":"`+ids[0]+`","regex":"^warned$"}`).entries(t)
		if len(got) != 1 || got[0].ID != ids[5] {
			t.Errorf("follow from a position answered %+v, want %s", got, ids[5])
		}
		// Two followers at the same position with different filters get
		// their own entries.
		submit(c, `{"id":904,"src":"fd","method":"Log.List","args":{"follow":true,"last":0,"match":"alpha"}}`)
		submit(c, `{"id":905,"src":"fd","method":"Log.List","args":{"follow":true,"last":0,"match":"beta"}}`)
		await.Until(t, waitFor, "two follows waiting", func() bool { return e.svc.Stats().Waiting == 2 })
		submit(c, `{"src":"fd","method":"Log.Log","args":{"msg":"alpha"}}`)
		submit(c, `{"src":"fd","method":"Log.Log","args":{"msg":"beta"}}`)
		a, b := e.replyTo("fd", "904").entries(t), e.replyTo("fd", "905").entries(t)
		if len(a) != 1 || string(a[0].Msg) != `"alpha"` || len(b) != 1 || string(b[0].Msg) != `"beta"` {
			t.Errorf("followers answered %+v and %+v, want alpha and beta", a, b)
		}
	})

}
