package storage

import (
	"encoding/json"
	"testing"
	"unicode"
)

// TestFolder checks match's case folding on cases chosen for its shortcuts:
// the ASCII search, the Kelvin sign and long s, non-ASCII needles.
func TestFolder(t *testing.T) {
	for _, c := range []struct {
		needle, text string
		want         bool
	}{
		{"timeout", "connect TIMEOUT after 3s", true},
		{"timeout", "connect TIME OUT", false},
		{"aab", "aaab", true},
		{"aab", "aa", false},
		{"abc", "xyzab", false},
		{"tail", "detail", true},
		{"k", "5\u212a", true},          // Kelvin sign folds with k
		{"K", "\u212a", true},           //
		{"kelvin", "\u212aELVIN", true}, //
		{"\u212a", "k", true},           // and the other way round
		{"status", "\u017ftatus", true}, // long s folds with s
		{"ss", "\u017f\u017f", true},    //
		{"s", "\u00df", false},          // ß does not simply fold to s
		{"ärger", "GRÜSSE ÄRGER", true}, // non-ASCII needle
		{"σ", "ΣΟΦΙΑ", true},            // Greek sigma orbit σ ς Σ
		{"ς", "σ", true},                //
		{"日本", "日本語", true},             //
		{"i", "\u0130", false},          // İ has no simple folding to i
		{"😀", "x😀y", true},              //
		{"a", "", false},                //
		{"é", "e\u0301", false},         // no normalization: é is not e + combining acute
		{"x", "\xff\xfex", true},        // invalid UTF-8 around a match
		{"\ufffd", "\xff", true},        // an invalid byte reads as U+FFFD
		{"ab", "a\u212ab", false},       // a Kelvin sign is not a b
		{"1.5", "v1.5.0", true},         // non-letters
		{"-", "a-b", true},              //
	} {
		f := newFolder(c.needle)
		if got := f.contains([]byte(c.text)); got != c.want {
			t.Errorf("%q in %q: %v, want %v", c.needle, c.text, got, c.want)
		}
		if got := modelContains(c.text, c.needle); got != c.want && c.text != "\xff\xfex" && c.text != "\xff" {
			t.Errorf("model: %q in %q: %v, want %v (the case is wrong)", c.needle, c.text, got, c.want)
		}
	}
}

// TestText checks an entry's text: a JSON string decoded, anything else
// as stored.
func TestText(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{`"plain"`, "plain"},
		{`"a\nb \"q\" \\ \/ \t\r\b\f"`, "a\nb \"q\" \\ / \t\r\b\f"},
		{`"\u0041\u00e9\u212a"`, "Aé\u212a"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud83d x"`, "\ufffd x"},           // a lone high surrogate
		{`"\ude00"`, "\ufffd"},               // a lone low surrogate
		{`"\ud83d\u0041"`, "\ufffdA"},        // a high surrogate then no low one
		{`{"a":"\u0041"}`, `{"a":"\u0041"}`}, // not a string: as stored
		{`42`, `42`},
		{`""`, ``},
	} {
		var buf []byte
		if got := string(Text([]byte(c.msg), &buf)); got != c.want {
			t.Errorf("Text(%s) = %q, want %q", c.msg, got, c.want)
		}
		var s string
		if c.msg[0] == '"' && json.Unmarshal([]byte(c.msg), &s) == nil && s != c.want {
			t.Errorf("encoding/json decodes %s as %q, the case wants %q", c.msg, s, c.want)
		}
	}
}

// FuzzMatch checks folder.contains against a rune-by-rune model on
// arbitrary texts and needles.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"timeout", "TIMEOUT"}, {"k", "\u212a"}, {"s", "\u017f"}, {"σ", "ΣΑΣ"}, {"ab", "aab"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, needle, text string) {
		if needle == "" || len(needle) > 256 {
			return
		}
		text = string([]rune(text)) // valid UTF-8, as JSON texts are
		needle = string([]rune(needle))
		if got, want := newFolder(needle).contains([]byte(text)), modelContains(text, needle); got != want {
			t.Errorf("%q in %q: %v, model says %v", needle, text, got, want)
		}
	})
}

// modelContains: some run of text's runes equals needle's rune by rune
// under simple folding.
func modelContains(text, needle string) bool {
	tr, nr := []rune(text), []rune(needle)
	for i := 0; i+len(nr) <= len(tr); i++ {
		ok := true
		for j := range nr {
			if !sameOrbit(tr[i+j], nr[j]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func sameOrbit(a, b rune) bool {
	for o := unicode.SimpleFold(a); ; o = unicode.SimpleFold(o) {
		if o == b {
			return true
		}
		if o == a {
			return false
		}
	}
}
