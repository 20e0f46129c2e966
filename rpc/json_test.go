package rpc

import (
	"encoding/json"
	"strings"
	"testing"
)

// validJSONCases are documents at the edges of the JSON grammar; validJSON
// must judge each as encoding/json.Valid does.
var validJSONCases = []struct{ name, doc string }{
	{"Empty", ""},
	{"Space", " \t\r\n"},
	{"Object", `{"id":1,"src":"d","args":{"msg":"x","n":[1,2,{"a":null}]}}`},
	{"EmptyObject", `{}`},
	{"EmptyObjectSpaced", " { } "},
	{"EmptyArray", `[ ]`},
	{"NestedEmpty", `[[],{},[{}]]`},
	{"Scalars", `[true,false,null,"s",0,-0,1.5,-2e10,3E+2,4e-1]`},
	{"TopString", `"top"`},
	{"TopNumber", ` 12 `},
	{"TopLiteral", `null`},
	{"TrailingComma", `{"a":1,}`},
	{"TrailingCommaArray", `[1,]`},
	{"LeadingComma", `[,1]`},
	{"MissingColon", `{"a" 1}`},
	{"MissingValue", `{"a":}`},
	{"KeyNotString", `{a:1}`},
	{"NumberKey", `{1:1}`},
	{"Unclosed", `{"a":1`},
	{"UnclosedArray", `[1,2`},
	{"Mismatched", `{"a":1]`},
	{"MismatchedArray", `[1}`},
	{"ExtraClose", `{}}`},
	{"TwoValues", `{} {}`},
	{"TrailingGarbage", `{"a":1}x`},
	{"LeadingZero", `01`},
	{"NegativeLeadingZero", `-01`},
	{"BareMinus", `-`},
	{"MinusSpace", `- 1`},
	{"Plus", `+1`},
	{"DotFirst", `.5`},
	{"DotLast", `5.`},
	{"ExpEmpty", `1e`},
	{"ExpSign", `1e+`},
	{"ExpOK", `1e+0`},
	{"Hex", `0x10`},
	{"NaN", `NaN`},
	{"Tru", `tru`},
	{"Truex", `truex`},
	{"Nul", `nul`},
	{"NullCase", `Null`},
	{"Escapes", `"\" \\ \/ \b \f \n \r \t \u00e9 \uABCD"`},
	{"BadEscape", `"\x"`},
	{"BadUnicode", `"\u12G4"`},
	{"ShortUnicode", `"\u12"`},
	{"ShortUnicodeEnd", `"\u123`},
	{"EscapeAtEnd", `"\`},
	{"Unterminated", `"abc`},
	{"ControlInString", "\"a\x01b\""},
	{"NewlineInString", "\"a\nb\""},
	{"TabInString", "\"a\tb\""},
	{"DelInString", "\"a\x7fb\""},
	{"InvalidUTF8InString", "\"a\xffb\""},
	{"InvalidUTF8Outside", "\xff"},
	{"NULOutside", "{}\x00"},
	{"ObjectInArrayInObject", `{"a":[{"b":[1,{"c":"d"}]}],"e":{}}`},
	{"SpacesEverywhere", " { \"a\" : [ 1 , 2 ] , \"b\" : { } } "},
	{"CommaAfterKey", `{"a",1}`},
	{"ColonInArray", `[1:2]`},
	{"Deep", strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)},
	{"TooDeep", strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)},
	{"DeepObjects", strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth)},
	{"TooDeepObjects", strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1)},
	{"DeepMixedUnclosed", strings.Repeat(`[{"a":`, 70) + "1"},
	{"DeepMixed", strings.Repeat(`[{"a":`, 70) + "1" + strings.Repeat("}]", 70)},
	{"DeepMixedWrongClose", strings.Repeat(`[{"a":`, 70) + "1" + strings.Repeat("]}", 70)},
}

// TestValidJSON checks that validJSON agrees with encoding/json.Valid on
// the edge cases above and on every frame of testdata/frames.
func TestValidJSON(t *testing.T) {
	for _, c := range validJSONCases {
		t.Run(c.name, func(t *testing.T) {
			if got, want := validJSON([]byte(c.doc)), json.Valid([]byte(c.doc)); got != want {
				t.Errorf("validJSON(%.80q) = %v, encoding/json.Valid says %v", c.doc, got, want)
			}
		})
	}
	t.Run("Frames", func(t *testing.T) {
		for _, c := range readCases(t, "testdata/frames") {
			doc := []byte(c.vals["frame"])
			if got, want := validJSON(doc), json.Valid(doc); got != want {
				t.Errorf("%s: validJSON(%.80q) = %v, encoding/json.Valid says %v", c.pos, doc, got, want)
			}
		}
	})
}

// FuzzValidJSON compares validJSON with encoding/json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c.doc))
	}
	for _, c := range readCases(f, "testdata/frames") {
		f.Add([]byte(c.vals["frame"]))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if got, want := validJSON(doc), json.Valid(doc); got != want {
			t.Errorf("validJSON(%q) = %v, encoding/json.Valid says %v", doc, got, want)
		}
	})
}

// BenchmarkValidJSON measures validating a typical Log.Log frame, against
// encoding/json.Valid.
func BenchmarkValidJSON(b *testing.B) {
	doc := []byte(logFrame)
	for _, bc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"validJSON", validJSON}, {"encoding-json", json.Valid}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if !bc.valid(doc) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
