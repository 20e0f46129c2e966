package rpc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

func TestLogLog(t *testing.T) {
	t.Run("ResultAndLivePublishAfterDurable", func(t *testing.T) {
		e := newEnv(t, Config{})
		c := e.svc.Open("c1")
		before := time.Now().UnixMilli()
		r := e.call(c, "dev1", "Log.Log", `{"msg":"boot ok"}`)
		after := time.Now().UnixMilli()
		if r.Error != nil || r.topic != "dev1/rpc" || r.Src != DefaultID || r.Dst != "dev1" || string(r.ID) != fmt.Sprint(callIDs+1) {
			t.Fatalf("reply %s on %s", r.raw, r.topic)
		}
		var res map[string]string
		if err := json.Unmarshal(r.Result, &res); err != nil || len(res) != 1 {
			t.Fatalf("result %s, want {\"id\": ...}", r.Result)
		}
		// Durable when answered: the store lists it.
		stored, err := e.store.List(context.Background(), storage.Query{Src: "dev1", Last: -1, Limit: 10})
		if err != nil || len(stored) != 1 || stored[0].ID() != res["id"] {
			t.Fatalf("store has %v (%v), want the entry %s", stored, err, res["id"])
		}
		live := e.pub.wait(t, "live publish", func(m Message) bool { return m.Topic == "dev1/log/console" })
		if live.QoS != 0 {
			t.Errorf("live publish at QoS %d, want 0", live.QoS)
		}
		var le entry
		if err := json.Unmarshal(live.Payload, &le); err != nil {
			t.Fatalf("live payload %s: %v", live.Payload, err)
		}
		if le.ID != res["id"] || le.Src != "dev1" || le.Stream != "console" || string(le.Msg) != `"boot ok"` ||
			le.Timestamp < before || le.Timestamp > after {
			t.Errorf("live entry %s, want id %s stamped in [%d, %d]", live.Payload, res["id"], before, after)
		}
		listed := e.mustCall(c, "dev1", "Log.List", "").entries(t)
		if len(listed) != 1 || fmt.Sprint(listed[0]) != fmt.Sprint(le) {
			t.Errorf("List = %+v, want the live entry %+v", listed, le)
		}
		if got := e.svc.Stats().LivePublish; got != 1 {
			t.Errorf("Stats.LivePublish = %d, want 1", got)
		}
	})

	t.Run("Args", func(t *testing.T) {
		e := newEnv(t, Config{MaxMsg: 64})
		c := e.svc.Open("c1")
		long := func(n int) string { return strings.Repeat("x", n) }
		tests := []struct {
			name   string
			args   string // the args object
			code   int    // 0: stored
			text   string // in the error message
			src    string // where it is stored (default dev1)
			stream string // default console
			msg    string // stored msg (default: the args' msg as sent)
			ts     int64  // stored timestamp; 0: the server's clock
			level  string // the stored entry's "level" member ("": none)
		}{
			{name: "MsgMissing", args: `{}`, code: 400, text: "msg is required"},
			{name: "NoArgs", args: ``, code: 400, text: "msg is required"},
			{name: "MsgNull", args: `{"msg":null}`, code: 400, text: "msg is required"},
			{name: "MsgString", args: `{"msg":"hello \"w\" \u00e9"}`, msg: `"hello \"w\" \u00e9"`},
			{name: "MsgEmptyString", args: `{"msg":""}`, msg: `""`},
			{name: "MsgNumber", args: `{"msg":1.50e2}`, msg: `1.50e2`},
			{name: "MsgFalse", args: `{"msg":false}`, msg: `false`},
			{name: "MsgObject", args: `{"msg": { "b" : [ 1, 2 ] , "a":null } }`, msg: `{ "b" : [ 1, 2 ] , "a":null }`},
			{name: "MsgArray", args: `{"msg":[]}`, msg: `[]`},
			{name: "MsgDuplicateLastWins", args: `{"msg":"a","msg":"b"}`, msg: `"b"`},
			{name: "MsgAtLimit", args: `{"msg":"` + long(62) + `"}`, msg: `"` + long(62) + `"`},
			{name: "MsgOverLimit", args: `{"msg":"` + long(63) + `"}`, code: 413, text: "over the limit of 64"},
			{name: "MsgObjectOverLimit", args: `{"msg":{"k":"` + long(60) + `"}}`, code: 413, text: "over the limit"},
			{name: "Stream", args: `{"msg":1,"stream":"app.err-1 é"}`, stream: "app.err-1 é"},
			{name: "Stream128", args: `{"msg":1,"stream":"` + long(128) + `"}`, stream: long(128)},
			{name: "Stream128Multibyte", args: `{"msg":1,"stream":"` + strings.Repeat("é", 64) + `"}`, stream: strings.Repeat("é", 64)},
			{name: "Stream129", args: `{"msg":1,"stream":"` + long(129) + `"}`, code: 400, text: "1 to 128 bytes"},
			{name: "StreamEmpty", args: `{"msg":1,"stream":""}`, code: 400, text: "1 to 128 bytes"},
			{name: "StreamSlash", args: `{"msg":1,"stream":"a/b"}`, code: 400, text: "contains '/'"},
			{name: "StreamPlus", args: `{"msg":1,"stream":"a+"}`, code: 400, text: "contains '/', '+'"},
			{name: "StreamHash", args: `{"msg":1,"stream":"#"}`, code: 400, text: "contains '/', '+', '#'"},
			{name: "StreamNUL", args: `{"msg":1,"stream":"a\u0000"}`, code: 400, text: "control character"},
			{name: "StreamNewline", args: `{"msg":1,"stream":"a\n"}`, code: 400, text: "control character"},
			{name: "StreamDEL", args: `{"msg":1,"stream":"a` + "\x7f" + `"}`, code: 400, text: "control character"},
			{name: "StreamC1", args: `{"msg":1,"stream":"a\u0085"}`, code: 400, text: "control character"},
			{name: "StreamNumber", args: `{"msg":1,"stream":5}`, code: 400, text: "stream must be a string, not a number"},
			{name: "StreamNull", args: `{"msg":1,"stream":null}`, code: 400, text: "stream must be a string, not null"},
			{name: "Timestamp", args: `{"msg":1,"timestamp":1764080000123}`, ts: 1764080000123},
			{name: "TimestampZero", args: `{"msg":1,"timestamp":0}`, ts: -1},
			{name: "TimestampMax", args: `{"msg":1,"timestamp":253402300799999}`, ts: 253402300799999},
			{name: "TimestampExponent", args: `{"msg":1,"timestamp":1.5e3}`, ts: 1500},
			{name: "TimestampYear10000", args: `{"msg":1,"timestamp":253402300800000}`, code: 400, text: "timestamp must be an integer"},
			{name: "TimestampNegative", args: `{"msg":1,"timestamp":-1}`, code: 400, text: "timestamp must be an integer"},
			{name: "TimestampFraction", args: `{"msg":1,"timestamp":1764080000123.5}`, code: 400, text: "timestamp must be an integer"},
			{name: "TimestampString", args: `{"msg":1,"timestamp":"1764080000123"}`, code: 400, text: "timestamp must be an integer"},
			{name: "TimestampNull", args: `{"msg":1,"timestamp":null}`, code: 400, text: "timestamp must be an integer"},
			{name: "TimestampHuge", args: `{"msg":1,"timestamp":1e400}`, code: 400, text: "timestamp must be an integer"},
			{name: "LevelNumber", args: `{"msg":1,"level":0}`, level: `"level":0`},
			{name: "LevelNumber4", args: `{"msg":1,"level":4}`, level: `"level":4`},
			{name: "LevelName", args: `{"msg":1,"level":"warn"}`, level: `"level":1`},
			{name: "LevelNameCase", args: `{"msg":1,"level":"VeRbOsE"}`, level: `"level":4`},
			{name: "LevelNameInfo", args: `{"msg":1,"level":"info"}`, level: `"level":2`},
			{name: "LevelNameDebug", args: `{"msg":1,"level":"DEBUG"}`, level: `"level":3`},
			{name: "LevelNameError", args: `{"msg":1,"level":"Error"}`, level: `"level":0`},
			{name: "LevelNull", args: `{"msg":1,"level":null}`},
			{name: "LevelFive", args: `{"msg":1,"level":5}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelNegative", args: `{"msg":1,"level":-1}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelFloat", args: `{"msg":1,"level":2.0}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelExponent", args: `{"msg":1,"level":2e0}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelNumberString", args: `{"msg":1,"level":"2"}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelUnknownName", args: `{"msg":1,"level":"fatal"}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelBool", args: `{"msg":1,"level":true}`, code: 400, text: "level must be an integer 0..4"},
			{name: "LevelObject", args: `{"msg":1,"level":{}}`, code: 400, text: "level must be an integer 0..4"},
			{name: "SrcOverride", args: `{"msg":1,"src":"dev2/sub"}`, src: "dev2/sub"},
			{name: "SrcEmpty", args: `{"msg":1,"src":""}`, code: 400, text: "src is empty"},
			{name: "SrcPlus", args: `{"msg":1,"src":"a+b"}`, code: 400, text: "contains NUL, '+' or '#'"},
			{name: "SrcControl", args: `{"msg":1,"src":"a\tb"}`, code: 400, text: "control character"},
			{name: "SrcDollar", args: `{"msg":1,"src":"$SYS"}`, code: 400, text: "starts with '$'"},
			{name: "SrcNumber", args: `{"msg":1,"src":7}`, code: 400, text: "src must be a string, not a number"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.t = t
				before := time.Now().UnixMilli()
				r := e.call(c, "dev1", "Log.Log", tt.args)
				after := time.Now().UnixMilli()
				if r.topic != "dev1/rpc" {
					t.Errorf("reply on %s, want dev1/rpc", r.topic)
				}
				if tt.code != 0 {
					if r.code() != tt.code || !strings.Contains(r.Error.Message, tt.text) {
						t.Fatalf("reply %s, want error %d with %q", r.raw, tt.code, tt.text)
					}
					return
				}
				if r.Error != nil {
					t.Fatalf("reply %s, want a result", r.raw)
				}
				var res struct{ ID string }
				_ = json.Unmarshal(r.Result, &res)
				src, stream, msg := cmp.Or(tt.src, "dev1"), cmp.Or(tt.stream, "console"), tt.msg
				if msg == "" {
					msg = "1"
				}
				list := e.mustCall(c, src, "Log.List", `{"stream":`+quote(stream)+`,"last":1}`).entries(t)
				if len(list) != 1 {
					t.Fatalf("List = %+v, want the new entry", list)
				}
				got := list[0]
				if got.ID != res.ID || got.Src != src || got.Stream != stream || string(got.Msg) != msg {
					t.Errorf("stored %+v (msg %s), want id %s in %s/%s with msg %s byte for byte", got, got.Msg, res.ID, src, stream, msg)
				}
				var level string
				if got.Level != nil {
					level = fmt.Sprintf(`"level":%d`, *got.Level)
				}
				if level != tt.level {
					t.Errorf("stored level %q, want %q", level, tt.level)
				}
				switch {
				case tt.ts == -1 && got.Timestamp != 0,
					tt.ts > 0 && got.Timestamp != tt.ts,
					tt.ts == 0 && (got.Timestamp < before || got.Timestamp > after):
					t.Errorf("timestamp %d, want %d (0: the clock, in [%d, %d])", got.Timestamp, tt.ts, before, after)
				}
				live := e.pub.wait(t, "live "+res.ID, func(m Message) bool {
					return m.Topic == src+"/log/"+stream && bytes.Contains(m.Payload, []byte(res.ID))
				})
				if !bytes.Contains(live.Payload, []byte(`"msg":`+msg+`}`)) {
					t.Errorf("live payload %s, want msg %s byte for byte", live.Payload, msg)
				}
				if tt.level != "" && !bytes.Contains(live.Payload, []byte(tt.level+`,"msg":`)) {
					t.Errorf("live payload %s, want %s", live.Payload, tt.level)
				}
			})
		}
	})
}

func TestLogList(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	// dev1: ten entries alternating streams a (odd) and b (even); dev2 one.
	var ids []string
	for i := 1; i <= 10; i++ {
		ids = append(ids, e.log(c, "dev1", []string{"b", "a"}[i%2], fmt.Sprint(i)))
	}
	e.log(c, "dev2", "a", `"other"`)
	// bulk: 1005 entries, to see the limit clamped to 1000.
	for i := 0; i < 1005; i++ {
		submit(c, fmt.Sprintf(`{"src":"bulk","method":"Log.Log","args":{"msg":%d}}`, i))
	}
	// seq is the position of id n (1-based) in dev1.
	unknown := storage.FormatID(1 << 40)
	tests := []struct {
		name string
		src  string
		args string
		want []int // msgs (= sequence numbers of dev1)
		code int
		text string
	}{
		{name: "All", args: `{}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "NoArgs", args: ``, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "Stream", args: `{"stream":"a"}`, want: []int{1, 3, 5, 7, 9}},
		{name: "UnknownStream", args: `{"stream":"zz"}`, want: []int{}},
		{name: "After", args: `{"after":"` + ids[3] + `"}`, want: []int{5, 6, 7, 8, 9, 10}},
		{name: "AfterStream", args: `{"after":"` + ids[3] + `","stream":"a"}`, want: []int{5, 7, 9}},
		{name: "AfterOtherStreamsID", args: `{"after":"` + ids[2] + `","stream":"b"}`, want: []int{4, 6, 8, 10}},
		{name: "AfterZero", args: `{"after":"0000000000000000"}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "AfterLast", args: `{"after":"` + ids[9] + `"}`, want: []int{}},
		{name: "AfterUnknown", args: `{"after":"` + unknown + `"}`, want: []int{}},
		{name: "Last", args: `{"last":3}`, want: []int{8, 9, 10}},
		{name: "LastStream", args: `{"last":3,"stream":"b"}`, want: []int{6, 8, 10}},
		{name: "LastZero", args: `{"last":0}`, want: []int{}},
		{name: "LastMore", args: `{"last":100}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "AfterLast2", args: `{"after":"` + ids[3] + `","last":2}`, want: []int{9, 10}},
		{name: "Limit", args: `{"limit":3}`, want: []int{1, 2, 3}},
		{name: "LimitOne", args: `{"limit":1,"stream":"b"}`, want: []int{2}},
		{name: "LastLimit", args: `{"last":5,"limit":2}`, want: []int{6, 7}},
		{name: "AfterLastLimitStream", args: `{"after":"` + ids[1] + `","last":5,"limit":2,"stream":"a"}`, want: []int{3, 5}},
		{name: "AfterLimit", args: `{"after":"` + ids[6] + `","limit":2}`, want: []int{8, 9}},
		{name: "LimitExponent", args: `{"limit":2e0}`, want: []int{1, 2}},
		{name: "LimitHuge", args: `{"limit":1e300}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "LimitBeyondFloat64", args: `{"limit":1e400}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "LimitBeyondInt64", args: `{"limit":99999999999999999999}`, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "LastHuge", args: `{"last":1e12,"limit":2}`, want: []int{1, 2}},
		{name: "LastBeyondInt64", args: `{"last":99999999999999999999,"limit":2}`, want: []int{1, 2}},
		{name: "LimitTinyFraction", args: `{"limit":1e-400}`, code: 400, text: "limit must be a positive integer"},
		{name: "LimitHugeNegative", args: `{"limit":-1e400}`, code: 400, text: "limit must be a positive integer"},
		{name: "LastHugeFraction", args: `{"last":10000000000000.5}`, code: 400, text: "last must be a non-negative integer"},
		{name: "FollowFalse", args: `{"follow":false,"last":1}`, want: []int{10}},
		{name: "OtherSrc", args: `{"src":"dev2"}`, want: []int{-1}},
		{name: "UnknownSrc", args: `{"src":"nobody"}`, want: []int{}},
		{name: "AfterMalformed", args: `{"after":"xyz"}`, code: 400, text: `after "xyz" is not a valid entry id`},
		{name: "AfterEmpty", args: `{"after":""}`, code: 400, text: "not a valid entry id"},
		{name: "AfterUppercase", args: `{"after":"000000000000000A"}`, code: 400, text: "not a valid entry id"},
		{name: "AfterShort", args: `{"after":"0a"}`, code: 400, text: "not a valid entry id"},
		{name: "AfterNumber", args: `{"after":5}`, code: 400, text: "after must be an entry id string, not a number"},
		{name: "AfterNull", args: `{"after":null}`, code: 400, text: "after must be an entry id string"},
		{name: "LastNegative", args: `{"last":-1}`, code: 400, text: "last must be a non-negative integer"},
		{name: "LastFraction", args: `{"last":1.5}`, code: 400, text: "last must be a non-negative integer"},
		{name: "LastString", args: `{"last":"3"}`, code: 400, text: "last must be a non-negative integer"},
		{name: "LimitZero", args: `{"limit":0}`, code: 400, text: "limit must be a positive integer"},
		{name: "LimitNegative", args: `{"limit":-5}`, code: 400, text: "limit must be a positive integer"},
		{name: "LimitFraction", args: `{"limit":2.5}`, code: 400, text: "limit must be a positive integer"},
		{name: "LimitNull", args: `{"limit":null}`, code: 400, text: "limit must be a positive integer"},
		{name: "StreamBad", args: `{"stream":"a/b"}`, code: 400, text: "contains '/'"},
		{name: "StreamEmpty", args: `{"stream":""}`, code: 400, text: "1 to 128 bytes"},
		{name: "SrcBad", args: `{"src":"+"}`, code: 400, text: "contains NUL, '+' or '#'"},
		{name: "FollowString", args: `{"follow":"yes"}`, code: 400, text: "follow must be a bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := e.call(c, "dev1", "Log.List", tt.args)
			if tt.code != 0 {
				if r.code() != tt.code || !strings.Contains(r.Error.Message, tt.text) {
					t.Fatalf("reply %s, want error %d with %q", r.raw, tt.code, tt.text)
				}
				return
			}
			got := []int{}
			for _, en := range r.entries(t) {
				n := -1
				_ = json.Unmarshal(en.Msg, &n)
				got = append(got, n)
				if n > 0 && (en.ID != ids[n-1] || en.Src != "dev1") {
					t.Errorf("entry %+v, want id %s of dev1", en, ids[n-1])
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("List %s = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
	t.Run("LimitDefaultAndClamp", func(t *testing.T) {
		e.t = t
		for _, tt := range []struct {
			args      string
			n, first  int
			lastEntry int
		}{
			{`{"src":"bulk"}`, 100, 0, 99},
			{`{"src":"bulk","limit":5000}`, 1000, 0, 999},
			{`{"src":"bulk","limit":1000000000000000}`, 1000, 0, 999},
			{`{"src":"bulk","last":1005,"limit":5000}`, 1000, 0, 999},
			{`{"src":"bulk","last":1001,"limit":5000}`, 1000, 4, 1003},
			{`{"src":"bulk","last":2000}`, 100, 0, 99},
		} {
			es := e.mustCall(c, "dev1", "Log.List", tt.args).entries(t)
			if len(es) != tt.n || string(es[0].Msg) != fmt.Sprint(tt.first) || string(es[len(es)-1].Msg) != fmt.Sprint(tt.lastEntry) {
				t.Errorf("List %s: %d entries %s..%s, want %d: %d..%d", tt.args, len(es), es[0].Msg, es[len(es)-1].Msg, tt.n, tt.first, tt.lastEntry)
			}
		}
	})
	t.Run("Paging", func(t *testing.T) {
		e.t = t
		var all []string
		after := ""
		for range 20 {
			args := `{"src":"bulk","limit":300`
			if after != "" {
				args += `,"after":"` + after + `"`
			}
			es := e.mustCall(c, "dev1", "Log.List", args+"}").entries(t)
			if len(es) == 0 {
				break
			}
			for _, en := range es {
				all = append(all, string(en.Msg))
			}
			after = es[len(es)-1].ID
		}
		if len(all) != 1005 {
			t.Fatalf("paged %d entries, want 1005", len(all))
		}
		for i, m := range all {
			if m != fmt.Sprint(i) {
				t.Fatalf("paged entry %d is %s: not in order", i, m)
			}
		}
	})
}

func TestLogDelete(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	e.log(c, "dev1", "console", `"c1"`)
	e.log(c, "dev1", "app", `"a1"`)
	last := e.log(c, "dev1", "console", `"c2"`)
	e.log(c, "dev2", "console", `"other source"`)

	r := e.call(c, "dev1", "Log.Delete", "")
	if r.Error != nil || r.Result != nil {
		t.Fatalf("Delete reply %s, want no result and no error", r.raw)
	}
	if want := `{"v":2,"id":` + string(r.ID) + `,"src":"logbroker","dst":"dev1"}`; string(r.raw) != want {
		t.Errorf("Delete reply %s, want %s", r.raw, want)
	}
	if es := e.mustCall(c, "dev1", "Log.List", `{"stream":"console"}`).entries(t); len(es) != 0 {
		t.Errorf("console after Delete: %+v, want nothing", es)
	}
	if es := e.mustCall(c, "dev1", "Log.List", "").entries(t); len(es) != 1 || string(es[0].Msg) != `"a1"` {
		t.Errorf("dev1 after Delete: %+v, want only app's entry", es)
	}
	if es := e.mustCall(c, "dev1", "Log.List", `{"src":"dev2"}`).entries(t); len(es) != 1 {
		t.Errorf("dev2 after Delete: %+v, want its entry untouched", es)
	}
	next := e.log(c, "dev1", "console", `"c3"`)
	if next <= last {
		t.Errorf("id after Delete %s, want above %s (never reused)", next, last)
	}
	if r := e.call(c, "dev1", "Log.Delete", `{"stream":"app"}`); r.Error != nil {
		t.Fatalf("Delete app: %s", r.raw)
	}
	if es := e.mustCall(c, "dev1", "Log.List", "").entries(t); len(es) != 1 || es[0].ID != next {
		t.Errorf("dev1 after deleting app: %+v, want only %s", es, next)
	}
	if r := e.call(c, "dev1", "Log.Delete", `{"src":"dev2"}`); r.Error != nil {
		t.Fatalf("Delete for dev2: %s", r.raw)
	}
	if es := e.mustCall(c, "dev1", "Log.List", `{"src":"dev2"}`).entries(t); len(es) != 0 {
		t.Errorf("dev2 after its Delete: %+v", es)
	}
	for _, tt := range []struct{ args, text string }{
		{`{"stream":"a/b"}`, "contains '/'"},
		{`{"stream":7}`, "stream must be a string"},
		{`{"src":""}`, "src is empty"},
	} {
		if r := e.call(c, "dev1", "Log.Delete", tt.args); r.code() != 400 || !strings.Contains(r.Error.Message, tt.text) {
			t.Errorf("Delete %s: %s, want 400 with %q", tt.args, r.raw, tt.text)
		}
	}
	// A delete waits for the connection's earlier notifications.
	submit(c, `{"src":"dev3","method":"Log.Log","args":{"msg":1}}`)
	submit(c, `{"src":"dev3","method":"Log.Delete"}`)
	if es := e.mustCall(c, "dev3", "Log.List", "").entries(t); len(es) != 0 {
		t.Errorf("dev3 after Log then Delete: %+v, want nothing", es)
	}
}

func TestRPCMethods(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	r := e.mustCall(c, "dev1", "RPC.List", "")
	if string(r.Result) != `["Log.Delete","Log.Fleet","Log.List","Log.Log","Log.Sources","Log.Streams","RPC.List","RPC.Ping"]` {
		t.Errorf("RPC.List = %s", r.Result)
	}
	r = e.mustCall(c, "dev1", "RPC.Ping", `{"ignored":true}`)
	if string(r.Result) != `{"channel_info":"MQTT"}` {
		t.Errorf("RPC.Ping = %s", r.Result)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, Config{Aliases: []string{"logs"}, MaxFrame: 256})
	c := e.svc.Open("c1")
	tests := []struct {
		name   string
		call   Call
		code   int
		text   string
		result string // exact result, when code is 0
		topic  string // where the reply goes; default dev1/rpc
		src    string // src of the reply; default logbroker
	}{
		{name: "Ping", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`},
		{name: "V1Prefix", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"/v1/RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`},
		{name: "V1NoSlash", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"v1/RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`},
		{name: "V1List", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"/v1/Log.List","params":{"last":0}}`)}, result: `[]`},
		{name: "UnknownMethod", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Nope"}`)}, code: 404, text: "no such method: Log.Nope"},
		{name: "MethodCaseMatters", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"rpc.ping"}`)}, code: 404, text: "no such method"},
		{name: "NoMethod", call: Call{Payload: []byte(`{"id":1,"src":"dev1"}`)}, code: 400, text: "method is required"},
		{name: "EmptyMethod", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":""}`)}, code: 400, text: "method is required"},
		{name: "EmptyTopicSuffix", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), HasMethod: true}, code: 400, text: "method is required"},
		{name: "TopicMethod", call: Call{Payload: []byte(`{"id":1,"src":"dev1"}`), Method: "RPC.Ping", HasMethod: true}, result: `{"channel_info":"MQTT"}`},
		{name: "TopicMethodOverrides", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Nope"}`), Method: "RPC.Ping", HasMethod: true}, result: `{"channel_info":"MQTT"}`},
		{name: "TopicMethodV1", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Nope"}`), Method: "v1/RPC.Ping", HasMethod: true}, result: `{"channel_info":"MQTT"}`},
		{name: "TopicMethodUnknown", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), Method: "Nope", HasMethod: true}, code: 404, text: "no such method: Nope"},
		{name: "DstService", call: Call{Payload: []byte(`{"id":1,"src":"dev1","dst":"logbroker","method":"RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`},
		{name: "DstAlias", call: Call{Payload: []byte(`{"id":1,"src":"dev1","dst":"logs","method":"RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`},
		{name: "DstWrong", call: Call{Payload: []byte(`{"id":1,"src":"dev1","dst":"dev9","method":"RPC.Ping"}`)}, code: 400, text: `dst "dev9" is not this service`},
		{name: "DstEmpty", call: Call{Payload: []byte(`{"id":1,"src":"dev1","dst":"","method":"RPC.Ping"}`)}, code: 400, text: `dst "" is not this service`},
		{name: "DstNumber", call: Call{Payload: []byte(`{"id":1,"src":"dev1","dst":1,"method":"RPC.Ping"}`)}, code: 400, text: "dst must be a string"},
		{name: "AliasTopic", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), Service: "logs"}, result: `{"channel_info":"MQTT"}`, src: "logs"},
		{name: "FrameTooLarge", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping","pad":"` + strings.Repeat("x", 256) + `"}`)}, code: 413, text: "over the limit of 256"},
		{name: "ResponseTopic", call: Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), ResponseTopic: "dev1/replies/x", Correlation: []byte{0, 1, 2}}, result: `{"channel_info":"MQTT"}`, topic: "dev1/replies/x"},
		{name: "SrcWithSlashes", call: Call{Payload: []byte(`{"id":1,"src":"dev1/rpc-resp/mos-7","method":"RPC.Ping"}`)}, result: `{"channel_info":"MQTT"}`, topic: "dev1/rpc-resp/mos-7/rpc"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh id per case: the recorder keeps every reply.
			id := fmt.Sprint(1000 + i)
			tt.call.Payload = bytes.Replace(tt.call.Payload, []byte(`"id":1,`), []byte(`"id":`+id+`,`), 1)
			tt.call.Service = cmp.Or(tt.call.Service, DefaultID)
			topic := cmp.Or(tt.topic, "dev1/rpc")
			c.Submit(tt.call)
			m := e.pub.wait(t, "reply "+id, func(m Message) bool {
				return m.Topic == topic && bytes.Contains(m.Payload, []byte(`"id":`+id+`,`))
			})
			r := decodeReply(t, m)
			if r.Src != cmp.Or(tt.src, DefaultID) {
				t.Errorf("reply src %q, want %q", r.Src, cmp.Or(tt.src, DefaultID))
			}
			if !bytes.Equal(m.Correlation, tt.call.Correlation) {
				t.Errorf("correlation %v, want %v", m.Correlation, tt.call.Correlation)
			}
			if tt.code != 0 {
				if r.code() != tt.code || !strings.Contains(r.Error.Message, tt.text) {
					t.Fatalf("reply %s, want error %d with %q", r.raw, tt.code, tt.text)
				}
				return
			}
			if r.Error != nil || string(r.Result) != tt.result {
				t.Fatalf("reply %s, want result %s", r.raw, tt.result)
			}
		})
	}
	t.Run("DroppedCounted", func(t *testing.T) {
		before := e.svc.Stats()
		for _, p := range []string{``, `[]`, `{"id":1}`, `{"id":1,"src":""}`, `{"id":1,"src":"$x"}`, "\xff"} {
			c.Submit(Call{Payload: []byte(p), Service: DefaultID})
		}
		e.t = t
		e.mustCall(c, "dev1", "RPC.Ping", "") // ordered after the drops
		st := e.svc.Stats()
		if st.Dropped-before.Dropped != 6 || st.Calls-before.Calls != 1 {
			t.Errorf("stats %+v after %+v: want 6 more dropped and 1 more call", st, before)
		}
	})
}

// TestNotifications checks that a call without id, or with nr: true, runs
// and is never answered, not even with an error.
func TestNotifications(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	frames := []string{
		`{"src":"dev1","method":"Log.Log","args":{"msg":"no id"}}`,
		`{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":"nr"},"nr":true}`,
		`{"id":"s","src":"dev1","method":"Log.Log","params":{"msg":"nr string id"},"nr":true}`,
		`{"src":"dev1","method":"Log.Nope"}`,
		`{"src":"dev1"}`,
		`{"src":"dev1","method":"Log.Log","args":{}}`,
		`{"src":"dev1","method":"Log.Log","args":{"msg":1,"stream":"a/b"}}`,
		`{"src":"dev1","method":"Log.List","args":{"after":"bad"}}`,
		`{"src":"dev1","method":"Log.Log","args":[]}`,
		`{"src":"dev1","dst":"elsewhere","method":"RPC.Ping"}`,
		`{"id":0,"src":"dev1","method":"RPC.Ping","nr":true}`,
		`{"id":1,"src":"dev1","method":"RPC.Ping","nr":true}`,
		`{"id":2,"src":"dev1","method":"Log.Delete","args":{"stream":"none"},"nr":true}`,
		`{"src":"dev1","method":"Log.List","args":{"follow":true,"timeout":0}}`,
	}
	before := e.svc.Stats()
	for _, f := range frames {
		submit(c, f)
	}
	// List waits for this connection's earlier Log.Log calls.
	r := e.call(c, "dev1", "Log.List", "")
	var msgs []string
	for _, en := range r.entries(t) {
		msgs = append(msgs, string(en.Msg))
	}
	if want := []string{`"no id"`, `"nr"`, `"nr string id"`}; !slices.Equal(msgs, want) {
		t.Errorf("stored %v, want %v", msgs, want)
	}
	// The follow's timer (0 s) has fired once Waiting is back to 0.
	await.Until(t, waitFor, "follow notification released", func() bool { return e.svc.Stats().Waiting == 0 })
	if got := e.pub.on("dev1/rpc"); len(got) != 1 || !bytes.Equal(got[0].Payload, r.raw) {
		t.Errorf("replies on dev1/rpc: %s\nwant only the List's", e.pub)
	}
	st := e.svc.Stats()
	if st.Calls-before.Calls != int64(len(frames)+1) || st.Failed-before.Failed != 8 {
		t.Errorf("stats %+v after %+v: want %d more calls, 8 more failed", st, before, len(frames)+1)
	}
}

// TestOrdering checks PROTOCOL §5: a connection's calls take effect in
// order, a List sees the notifications before it, a waiting follow does not
// hold up later calls.
func TestOrdering(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c1")
	t.Run("ListSeesNotification", func(t *testing.T) {
		e.t = t
		for i := range 30 {
			submit(c, fmt.Sprintf(`{"src":"dev1","method":"Log.Log","args":{"msg":%d,"stream":"n"}}`, i))
			es := e.mustCall(c, "dev1", "Log.List", `{"stream":"n","last":1}`).entries(t)
			if len(es) != 1 || string(es[0].Msg) != fmt.Sprint(i) {
				t.Fatalf("List after notification %d: %+v", i, es)
			}
		}
	})
	t.Run("StoredInPublishOrder", func(t *testing.T) {
		e.t = t
		for i := range 200 {
			submit(c, fmt.Sprintf(`{"id":%d,"src":"dev1","method":"Log.Log","args":{"msg":%d,"stream":"o"}}`, 100000+i, i))
		}
		es := e.mustCall(c, "dev1", "Log.List", `{"stream":"o","limit":1000}`).entries(t)
		if len(es) != 200 {
			t.Fatalf("%d entries, want 200", len(es))
		}
		for i, en := range es {
			if string(en.Msg) != fmt.Sprint(i) {
				t.Fatalf("entry %d is msg %s: not in publish order", i, en.Msg)
			}
		}
	})
	t.Run("FollowDoesNotHoldUpLaterCalls", func(t *testing.T) {
		e.t = t
		submit(c, `{"id":"f","src":"dev1","method":"Log.List","args":{"follow":true,"last":0},"timeout":60}`)
		e.mustCall(c, "dev1", "RPC.Ping", "")
		if got := e.svc.Stats().Waiting; got != 1 {
			t.Errorf("Waiting = %d, want the follow still waiting", got)
		}
		for _, m := range e.pub.on("dev1/rpc") {
			if bytes.Contains(m.Payload, []byte(`"id":"f"`)) {
				t.Fatalf("follow answered before any entry: %s", m.Payload)
			}
		}
		id := e.log(c, "dev1", "console", `"after follow"`)
		// The follow is then woken by the Log.Log that came after it.
		m := e.pub.wait(t, "follow reply", func(m Message) bool { return bytes.Contains(m.Payload, []byte(`"id":"f"`)) })
		r := decodeReply(t, m)
		if es := r.entries(t); len(es) != 1 || es[0].ID != id {
			t.Errorf("follow answered %s, want the entry %s", r.Result, id)
		}
	})
}

// lockedWriter serializes writes to w (a log handler writes from many
// goroutines).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestFailingStore checks that a storage failure is a 500 with a generic
// message, the detail staying in the server log, and that nothing is
// published live for an entry that is not durable.
func TestFailingStore(t *testing.T) {
	var on atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if on.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errorfs.ErrInjected
		}
		return nil
	})
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	e := newEnvFS(t, Config{Logger: logger}, errorfs.Wrap(vfs.NewMem(), inj))
	c := e.svc.Open("c1")
	e.log(c, "dev1", "console", `"before"`)
	on.Store(true)
	for i, method := range []string{"Log.Log", "Log.Log", "Log.Delete"} {
		r := e.call(c, "dev1", method, `{"msg":"lost"}`)
		if r.code() != 500 || r.Error.Message != "internal error" {
			t.Errorf("%s %d on a failing store: %s, want 500 internal error", method, i, r.raw)
		}
	}
	submit(c, `{"src":"dev1","method":"Log.Log","args":{"msg":"lost notification"}}`)
	on.Store(false)
	// Reads still work; the failed entries are not there and were not
	// published.
	es := e.mustCall(c, "dev1", "Log.List", "").entries(t)
	if len(es) != 1 || string(es[0].Msg) != `"before"` {
		t.Errorf("List after failures: %+v, want only the first entry", es)
	}
	for _, m := range e.pub.all() {
		if bytes.Contains(m.Payload, []byte("lost")) {
			t.Errorf("published %s %s for a failed entry", m.Topic, m.Payload)
		}
	}
	if n := len(e.pub.on("dev1/rpc")); n != 5 {
		t.Errorf("%d replies, want 5 (the notification's failure unanswered):%s", n, e.pub)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "injected error") {
		t.Errorf("server log lacks the cause:\n%s", logs.String())
	}
}

// TestSecuredCaller checks the service's side of PROTOCOL §6: a frame
// whose src is not the caller's is refused with 403 at <identity>/rpc, and
// each method checks the src it acts on.
func TestSecuredCaller(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.svc.OpenAs("admin", Caller{Identity: "ops", Role: RoleAdmin, Secured: true})
	dev := e.svc.OpenAs("dev", Caller{Identity: "dev1", Role: RoleDevice, Secured: true})
	reader := e.svc.OpenAs("dash", Caller{Identity: "dash", Role: RoleReader, Secured: true})
	e.log(admin, "dev2", "console", `"dev2's"`)

	tests := []struct {
		name   string
		c      *Conn
		call   Call
		topic  string // where the reply goes
		code   int
		result string // a prefix of the result, when code is 0
	}{
		{"DeviceOwnSrc", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":1}}`)}, "dev1/rpc", 0, `{"id":`},
		{"DeviceSubSrc", dev, Call{Payload: []byte(`{"id":1,"src":"dev1/rpc-resp/mos-1","method":"RPC.Ping"}`)}, "dev1/rpc-resp/mos-1/rpc", 0, `{"channel_info"`},
		{"DeviceForeignFrameSrc", dev, Call{Payload: []byte(`{"id":1,"src":"dev2","method":"RPC.Ping"}`)}, "dev1/rpc", 403, ""},
		{"DeviceLookalikeSrc", dev, Call{Payload: []byte(`{"id":1,"src":"dev10","method":"RPC.Ping"}`)}, "dev1/rpc", 403, ""},
		{"DeviceForeignFrameSrcNotification", dev, Call{Payload: []byte(`{"src":"dev2","method":"Log.Log","args":{"msg":1}}`)}, "", 0, ""},
		{"DeviceForeignResponseTopicIgnored", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), ResponseTopic: "dev2/inbox"}, "dev1/rpc", 0, `{"channel_info"`},
		{"DeviceOwnResponseTopic", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"RPC.Ping"}`), ResponseTopic: "dev1/inbox"}, "dev1/inbox", 0, `{"channel_info"`},
		{"DeviceLogsForOther", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":1,"src":"dev2"}}`)}, "dev1/rpc", 403, ""},
		{"DeviceLogsForOwnSub", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Log","args":{"msg":1,"src":"dev1/sensor"}}`)}, "dev1/rpc", 0, `{"id":`},
		{"DeviceListsOther", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.List","args":{"src":"dev2"}}`)}, "dev1/rpc", 403, ""},
		{"DeviceDeletesOther", dev, Call{Payload: []byte(`{"id":1,"src":"dev1","method":"Log.Delete","args":{"src":"dev2"}}`)}, "dev1/rpc", 403, ""},
		{"ReaderListsAny", reader, Call{Payload: []byte(`{"id":1,"src":"dash","method":"Log.List","args":{"src":"dev2"}}`)}, "dash/rpc", 0, `[{"id":`},
		{"ReaderCannotLog", reader, Call{Payload: []byte(`{"id":1,"src":"dash","method":"Log.Log","args":{"msg":1}}`)}, "dash/rpc", 403, ""},
		{"ReaderCannotDelete", reader, Call{Payload: []byte(`{"id":1,"src":"dash","method":"Log.Delete","args":{"src":"dev2"}}`)}, "dash/rpc", 403, ""},
		{"ReaderForeignFrameSrc", reader, Call{Payload: []byte(`{"id":1,"src":"dev2","method":"Log.List"}`)}, "dash/rpc", 403, ""},
		{"AdminAnything", admin, Call{Payload: []byte(`{"id":1,"src":"dev9","method":"Log.Log","args":{"msg":1,"src":"dev2"}}`)}, "dev9/rpc", 0, `{"id":`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprint(2000 + i)
			tt.call.Payload = bytes.Replace(tt.call.Payload, []byte(`"id":1,`), []byte(`"id":`+id+`,`), 1)
			tt.call.Service = DefaultID
			before := len(e.pub.all())
			tt.c.Submit(tt.call)
			if tt.topic == "" { // a notification: a Ping after it is the only reply
				e.t = t
				e.mustCall(tt.c, "dev1", "RPC.Ping", "")
				if got := e.pub.all()[before:]; len(got) != 1 {
					t.Errorf("notification answered:%s", e.pub)
				}
				return
			}
			m := e.pub.wait(t, "reply "+id, func(m Message) bool { return bytes.Contains(m.Payload, []byte(`"id":`+id+`,`)) })
			r := decodeReply(t, m)
			if m.Topic != tt.topic {
				t.Errorf("reply on %s, want %s", m.Topic, tt.topic)
			}
			if r.code() != tt.code || (tt.code == 0 && !strings.HasPrefix(string(r.Result), tt.result)) {
				t.Errorf("reply %s, want code %d, result %s...", r.raw, tt.code, tt.result)
			}
		})
	}
	// Nothing reached dev2's log but the admin's entries.
	es, err := e.store.List(context.Background(), storageQuery("dev2"))
	if err != nil || len(es) != 2 {
		t.Errorf("dev2 has %d entries (%v), want the admin's 2", len(es), err)
	}
}

func TestRateLimit(t *testing.T) {
	// One token per 1000 s: the burst is all there is during the test.
	e := newEnv(t, Config{Rate: 0.001, RateBurst: 2})
	a, b := e.svc.Open("a"), e.svc.Open("b")
	submit(a, `{"src":"dev1","method":"RPC.Ping"}`) // a notification takes a token too
	if r := e.call(a, "dev1", "RPC.Ping", ""); r.Error != nil {
		t.Fatalf("second call: %s", r.raw)
	}
	r := e.call(a, "dev1", "RPC.Ping", "")
	if r.code() != 429 || !strings.Contains(r.Error.Message, "rate limit") {
		t.Errorf("third call: %s, want 429", r.raw)
	}
	// Per connection.
	if r := e.call(b, "dev1", "RPC.Ping", ""); r.Error != nil {
		t.Errorf("other connection: %s", r.raw)
	}
}

// TestClosedStore: calls that reach a closed store are answered 503.
func TestClosedStore(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c")
	e.log(c, "dev1", "console", "1")
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, args string }{
		{"Log.Log", `{"msg":2}`},
		{"Log.List", ``},
		{"Log.List", `{"follow":true,"last":0}`},
		{"Log.Delete", ``},
	} {
		if r := e.call(c, "dev1", tt.method, tt.args); r.code() != 503 || r.Error.Message != unavailableReason {
			t.Errorf("%s %s on a closed store: %s, want 503", tt.method, tt.args, r.raw)
		}
	}
	if r := e.call(c, "dev1", "RPC.Ping", ""); r.Error != nil {
		t.Errorf("Ping on a closed store: %s, want an answer", r.raw)
	}
}
