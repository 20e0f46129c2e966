package loadgen

import (
	"testing"
	"time"
)

func TestScanReply(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		want   reply
		result string
		bad    bool
	}{
		{name: "Ping", in: `{"v":2,"id":7,"src":"logbroker","dst":"bench-0","result":{"pong":true}}`,
			want: reply{id: 7}, result: `{"pong":true}`},
		{name: "NoResult", in: `{"v":2,"id":8,"src":"logbroker","dst":"bench-0"}`, want: reply{id: 8}},
		{name: "Error", in: `{"v":2,"id":9,"src":"logbroker","error":{"code":413,"message":"msg is 100 bytes"}}`,
			want: reply{id: 9, code: 413}},
		{name: "ErrorWithoutCode", in: `{"id":9,"error":{"message":"x"}}`, want: reply{id: 9, code: -1}},
		{name: "Entries", in: `{"id":1,"result":[{"id":"a","msg":"x,y]"},{"id":"b","msg":{"k":[1,2]}},{"id":"c","msg":"q\"}"}]}`,
			want: reply{id: 1, elems: 3}, result: `[{"id":"a","msg":"x,y]"},{"id":"b","msg":{"k":[1,2]}},{"id":"c","msg":"q\"}"}]`},
		{name: "EmptyArray", in: `{"id":2,"result":[ ]}`, want: reply{id: 2}, result: `[ ]`},
		{name: "ScalarArray", in: `{"id":3,"result":[1, 2 ,"3"]}`, want: reply{id: 3, elems: 3}, result: `[1, 2 ,"3"]`},
		{name: "EscapedBackslash", in: `{"tag":"a\\","id":4}`, want: reply{id: 4}},
		{name: "Spaces", in: " {\n \"id\" : 5 , \"result\" : null }", want: reply{id: 5}, result: `null`},
		{name: "StringID", in: `{"id":"x1"}`, want: reply{}},
		{name: "NotObject", in: `[1]`, bad: true},
		{name: "Truncated", in: `{"id":1,"result":[{"a":"b`, bad: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := scanReply([]byte(c.in))
			if c.bad {
				if err == nil {
					t.Fatalf("scanReply(%s) = %+v, want an error", c.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("scanReply(%s): %v", c.in, err)
			}
			if got.id != c.want.id || got.code != c.want.code || got.elems != c.want.elems || string(got.result) != c.result {
				t.Errorf("scanReply(%s) = {id %d code %d elems %d result %q}, want {id %d code %d elems %d result %q}",
					c.in, got.id, got.code, got.elems, got.result, c.want.id, c.want.code, c.want.elems, c.result)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		if l := summarize(nil); l.Count != 0 || l.P99 != 0 {
			t.Errorf("summarize(nil) = %+v, want zero", l)
		}
	})
	t.Run("Ranks", func(t *testing.T) {
		ds := make([]time.Duration, 1000)
		for i := range ds {
			ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // 1..1000 ms, reversed
		}
		l := summarize(ds)
		if l.Count != 1000 || l.P50 != 500 || l.P99 != 990 || l.P999 != 999 || l.Max != 1000 || l.Mean != 500.5 {
			t.Errorf("summarize(1..1000 ms) = %+v, want p50 500, p99 990, p99.9 999, max 1000, mean 500.5", l)
		}
	})
}

func TestAppendFrame(t *testing.T) {
	r := &run{cfg: Config{Broker: "tcp://x", Method: MethodLog, MsgSize: 40, Source: "dev", Streams: 3}}
	if err := r.cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	r.pad = []byte("0123456789012345678901234567890123456789")
	c := &caller{r: r, src: "bench-1", logTo: "dev"}
	t.Run("LogLog", func(t *testing.T) {
		got := string(c.appendFrame(nil, 5))
		want := `{"id":5,"src":"bench-1","method":"Log.Log","args":{"msg":"bench-1 #5 01234567890123456789012345678","src":"dev","stream":"s2"}}`
		if got != want {
			t.Errorf("frame\n got %s\nwant %s", got, want)
		}
	})
	t.Run("LogList", func(t *testing.T) {
		r.cfg.Method, r.cfg.ListStream, r.cfg.ListLast = MethodList, "s0", 100
		got := string(c.appendFrame(nil, 6))
		want := `{"id":6,"src":"bench-1","method":"Log.List","args":{"src":"dev","stream":"s0","last":100}}`
		if got != want {
			t.Errorf("frame\n got %s\nwant %s", got, want)
		}
	})
}
