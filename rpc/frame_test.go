package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// frameKeys are the keys a case of testdata/frames may set. Every key but
// name, frame and want names a field of the decoded Frame (see frameField).
var frameKeys = map[string]bool{
	"name": true, "frame": true, "want": true, "reply": true,
	"id": true, "src": true, "dst": true, "method": true, "args": true,
	"tag": true, "timeout": true, "deadline": true, "nr": true, "notification": true,
}

// frameField renders one field of f as the case files write it: "absent"
// for a field the frame did not carry.
func frameField(f *Frame, key string) string {
	opt := func(has bool, v string) string {
		if !has {
			return "absent"
		}
		return v
	}
	switch key {
	case "id":
		return opt(f.ID != nil, string(f.ID))
	case "src":
		return f.Src
	case "dst":
		return opt(f.HasDst, f.Dst)
	case "method":
		return f.Method
	case "args":
		return opt(f.Args != nil, string(f.Args))
	case "tag":
		return opt(f.HasTag, f.Tag)
	case "timeout":
		return opt(f.HasTimeout, strconv.FormatFloat(f.Timeout, 'g', -1, 64))
	case "deadline":
		return opt(f.HasDeadline, strconv.FormatFloat(f.Deadline, 'g', -1, 64))
	case "nr":
		return strconv.FormatBool(f.NoResponse)
	case "notification":
		return strconv.FormatBool(f.Notification())
	}
	panic("unknown frame field " + key)
}

// TestDecodeFrame runs the cases of testdata/frames. Each case gives a frame
// and what DecodeFrame makes of it:
//
//	want: ok                        decoded without error
//	want: drop                      ErrDropped: nobody to answer
//	want: error 400 <text>          an *Error with that code, its message containing <text>
//
// Further keys name fields of the Frame and their expected values (see
// frameField); reply is the exact response appendResponse builds for it
// (service "logbroker"; for an ok frame with the result true).
func TestDecodeFrame(t *testing.T) {
	for _, c := range readCases(t, "testdata/frames") {
		t.Run(c.name(), func(t *testing.T) {
			for _, k := range c.keys {
				if !frameKeys[k] {
					t.Fatalf("%s: unknown key %q", c.pos, k)
				}
			}
			payload := []byte(c.get(t, "frame"))
			f, err := DecodeFrame(payload)
			want := c.get(t, "want")
			code, msg := 0, ""
			switch {
			case want == "ok":
				if err != nil {
					t.Fatalf("%s: DecodeFrame: %v, want no error", c.pos, err)
				}
			case want == "drop":
				if !errors.Is(err, ErrDropped) || f != nil {
					t.Fatalf("%s: DecodeFrame = %v, %v; want nil, ErrDropped", c.pos, f, err)
				}
				return
			case strings.HasPrefix(want, "error "):
				wantCode, text, _ := strings.Cut(strings.TrimPrefix(want, "error "), " ")
				var e *Error
				if !errors.As(err, &e) || errors.Is(err, ErrDropped) {
					t.Fatalf("%s: DecodeFrame error = %v, want an *Error %s", c.pos, err, wantCode)
				}
				if strconv.Itoa(e.Code) != wantCode || !strings.Contains(e.Message, text) {
					t.Fatalf("%s: error = %d %q, want %s containing %q", c.pos, e.Code, e.Message, wantCode, text)
				}
				if f == nil {
					t.Fatalf("%s: no frame with the error: nothing to address the answer", c.pos)
				}
				code, msg = e.Code, e.Message
			default:
				t.Fatalf("%s: bad want %q", c.pos, want)
			}
			for _, k := range c.keys {
				switch k {
				case "name", "frame", "want", "reply":
					continue
				}
				if got := frameField(f, k); got != c.vals[k] {
					t.Errorf("%s: %s = %q, want %q", c.pos, k, got, c.vals[k])
				}
			}
			var result []byte
			if code == 0 {
				result = []byte("true")
			}
			reply := appendResponse(nil, f, "logbroker", result, code, msg)
			checkResponse(t, f, reply, "logbroker", code)
			if c.has("reply") && string(reply) != c.vals["reply"] {
				t.Errorf("%s: reply\n got %s\nwant %s", c.pos, reply, c.vals["reply"])
			}
		})
	}
}

// checkResponse checks a response built for f: valid UTF-8 JSON, the id as
// sent byte for byte, src, dst, tag, and either a result or an error with
// code.
func checkResponse(t testing.TB, f *Frame, reply []byte, service string, code int) {
	t.Helper()
	if !utf8.Valid(reply) || !json.Valid(reply) {
		t.Fatalf("response is not valid UTF-8 JSON: %q", reply)
	}
	ms, err := members(reply, nil)
	if err != nil {
		t.Fatalf("response %s: %v", reply, err)
	}
	keys := map[string]int{}
	for _, m := range ms {
		keys[string(m.key)]++
		if keys[string(m.key)] > 1 {
			t.Fatalf("response %s repeats %q", reply, m.key)
		}
	}
	if got := lookup(ms, "id"); !bytes.Equal(got, f.ID) {
		t.Errorf("response id = %s, want %s as sent", got, f.ID)
	}
	if got, _ := decodeString(lookup(ms, "src")); got != service {
		t.Errorf("response src = %q, want %q", got, service)
	}
	var dst string
	if err := json.Unmarshal(lookup(ms, "dst"), &dst); err != nil || dst != f.Src {
		t.Errorf("response dst = %q (%v), want %q", dst, err, f.Src)
	}
	if raw := lookup(ms, "tag"); f.HasTag != (raw != nil) {
		t.Errorf("response tag = %s, frame has tag %v", raw, f.HasTag)
	} else if raw != nil && utf8.ValidString(f.Tag) {
		var tag string
		if err := json.Unmarshal(raw, &tag); err != nil || tag != f.Tag {
			t.Errorf("response tag = %s, want %q", raw, f.Tag)
		}
	}
	if keys["key"] > 0 {
		t.Errorf("response %s echoes key", reply)
	}
	if code == 0 {
		if keys["error"] > 0 {
			t.Errorf("response %s has an error", reply)
		}
		return
	}
	var e struct {
		Code    int     `json:"code"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(lookup(ms, "error"), &e); err != nil || e.Code != code || e.Message == nil {
		t.Errorf("response error = %s, want code %d and a message", lookup(ms, "error"), code)
	}
	if keys["result"] > 0 {
		t.Errorf("error response %s has a result", reply)
	}
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name   string
		f      Frame
		result string
		code   int
		msg    string
		want   string
	}{
		{"Result", Frame{ID: []byte("7"), Src: "dev1"}, `[1,2]`, 0, "",
			`{"v":2,"id":7,"src":"logbroker","dst":"dev1","result":[1,2]}`},
		{"NoResult", Frame{ID: []byte(`"a"`), Src: "dev1"}, ``, 0, "",
			`{"v":2,"id":"a","src":"logbroker","dst":"dev1"}`},
		{"Error", Frame{ID: []byte("7"), Src: "dev1"}, `ignored`, 404, "no such method: X",
			`{"v":2,"id":7,"src":"logbroker","dst":"dev1","error":{"code":404,"message":"no such method: X"}}`},
		{"Tag", Frame{ID: []byte("1"), Src: "d", Tag: "t1", HasTag: true}, `true`, 0, "",
			`{"v":2,"id":1,"src":"logbroker","dst":"d","tag":"t1","result":true}`},
		{"EmptyTag", Frame{ID: []byte("1"), Src: "d", HasTag: true}, `true`, 0, "",
			`{"v":2,"id":1,"src":"logbroker","dst":"d","tag":"","result":true}`},
		{"NoID", Frame{Src: "d"}, `true`, 0, "",
			`{"v":2,"src":"logbroker","dst":"d","result":true}`},
		{"Escapes", Frame{ID: []byte("1"), Src: "d\"\\/\u2028", Tag: "\x01\n\t\r\x7f<>&", HasTag: true}, ``, 400, "bad \"x\"",
			`{"v":2,"id":1,"src":"logbroker","dst":"d\"\\/\u2028","tag":"\u0001\n\t\r` + "\x7f" + `<>&","error":{"code":400,"message":"bad \"x\""}}`},
		{"InvalidUTF8", Frame{ID: []byte("1"), Src: "d", Tag: "a\xffb", HasTag: true}, `1`, 0, "",
			`{"v":2,"id":1,"src":"logbroker","dst":"d","tag":"a\ufffdb","result":1}`},
		{"RawID", Frame{ID: []byte(`{ "x" : [1.50] }`), Src: "d"}, ``, 400, "m",
			`{"v":2,"id":{ "x" : [1.50] },"src":"logbroker","dst":"d","error":{"code":400,"message":"m"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var result []byte
			if tt.result != "" {
				result = []byte(tt.result)
			}
			prefix := []byte("keep:")
			got := appendResponse(prefix, &tt.f, "logbroker", result, tt.code, tt.msg)
			if string(got) != "keep:"+tt.want {
				t.Errorf("got  %s\nwant keep:%s", got, tt.want)
			}
			if !json.Valid(got[len("keep:"):]) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// FuzzDecodeFrame checks DecodeFrame on any payload against encoding/json
// as an oracle: it never panics; it drops exactly the payloads that are not
// a JSON object or carry no usable src; every other failure is a 400; and
// any response built for a frame it returns is valid UTF-8 JSON with the id
// byte for byte as sent.
func FuzzDecodeFrame(f *testing.F) {
	for _, c := range readCases(f, "testdata/frames") {
		f.Add([]byte(c.vals["frame"]))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fr, err := DecodeFrame(payload)
		var m map[string]json.RawMessage
		isObject := json.Unmarshal(payload, &m) == nil && m != nil
		var src string
		usable := isObject && json.Unmarshal(m["src"], &src) == nil && m["src"][0] == '"' &&
			utf8.Valid(m["src"]) && ValidSrc(src) == nil
		if errors.Is(err, ErrDropped) {
			if fr != nil {
				t.Fatalf("dropped with a frame: %+v", fr)
			}
			if usable && utf8.Valid(payload) {
				t.Fatalf("dropped %q (%v), but it has src %q", payload, err, src)
			}
			return
		}
		if !isObject || !usable {
			t.Fatalf("not dropped: %q (object %v, src %q usable %v)", payload, isObject, src, usable)
		}
		if fr.Src != src {
			t.Fatalf("src = %q, encoding/json says %q", fr.Src, src)
		}
		if id, ok := m["id"]; ok != (fr.ID != nil) || (ok && !bytes.Equal(id, fr.ID)) {
			t.Fatalf("id = %q, encoding/json says %q", fr.ID, id)
		}
		code := 0
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadRequest {
				t.Fatalf("error %v is neither ErrDropped nor a 400", err)
			}
			code = e.Code
		} else {
			if len(fr.ID) > 0 && !validID(fr.ID) {
				t.Fatalf("accepted id %s", fr.ID)
			}
			if fr.Args != nil && fr.Args[0] != '{' {
				t.Fatalf("accepted args %s", fr.Args)
			}
			if !utf8.Valid(payload) {
				t.Fatalf("accepted invalid UTF-8 %q", payload)
			}
		}
		for _, c := range []int{code, 0, CodeInternal} {
			checkResponse(t, fr, appendResponse(nil, fr, "logbroker", []byte(`{"x":1}`), c, "m\x00\xff"), "logbroker", c)
		}
	})
}

func TestDecodeNumbers(t *testing.T) {
	tests := []struct {
		in          string
		intV        int64 // decodeInt(in, 1, 1000); -1: refused
		countV      int64 // decodeCount(in, 1, 1000); -1: refused
		numberValid bool  // decodeNumber accepts it
	}{
		{"1", 1, 1, true},
		{"1000", 1000, 1000, true},
		{"1001", -1, 1000, true},
		{"1e3", 1000, 1000, true},
		{"1E+3", 1000, 1000, true},
		{"10.00e2", 1000, 1000, true},
		{"100000e-2", 1000, 1000, true},
		{"1.5", -1, -1, true},
		{"15e-1", -1, -1, true},
		{"1.0000000000000001", -1, -1, true},
		{"0", -1, -1, true},
		{"-0", -1, -1, true},
		{"-1", -1, -1, true},
		{"-1e400", -1, -1, true}, // -Inf: the caller refuses it as negative
		{"1e400", -1, 1000, true},
		{"1e99999999999999999999", -1, 1000, true},
		{"1e-99999999999999999999", -1, -1, true},
		{"99999999999999999999", -1, 1000, true},
		{"99999999999999999999.5", -1, -1, true},
		{`"5"`, -1, -1, false},
		{"true", -1, -1, false},
		{"null", -1, -1, false},
		{"", -1, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, ok := decodeInt([]byte(tt.in), 1, 1000)
			if got := map[bool]int64{true: n, false: -1}[ok]; got != tt.intV {
				t.Errorf("decodeInt = %d, %v; want %d", n, ok, tt.intV)
			}
			n, ok = decodeCount([]byte(tt.in), 1, 1000)
			if got := map[bool]int64{true: n, false: -1}[ok]; got != tt.countV {
				t.Errorf("decodeCount = %d, %v; want %d", n, ok, tt.countV)
			}
			if _, ok := decodeNumber([]byte(tt.in)); ok != tt.numberValid {
				t.Errorf("decodeNumber ok = %v, want %v", ok, tt.numberValid)
			}
		})
	}
}
