package storage

import (
	"bytes"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// Filter selects entries by what they hold (PROTOCOL §5, the Log.List
// filters): an entry passes when it passes every part that is set. The
// store applies it while it scans, so the entries it skips are never
// copied out (see doc.go, Filters). Make one with NewFilter; the zero
// value, or a nil *Filter, passes every entry.
type Filter struct {
	// Level keeps entries that have a level at most this (as severe or
	// more: LevelWarn keeps errors and warnings). NoLevel: any entry.
	Level Level
	// Match keeps entries whose text contains it, ignoring case (Unicode
	// simple case folding). "": no such filter.
	Match string
	// Regex keeps entries whose text it matches. nil: no such filter.
	Regex *regexp.Regexp
	// Since and Until keep entries with Since <= timestamp < Until; Until
	// applies only when HasUntil.
	Since    int64
	Until    int64
	HasUntil bool

	m *folder // Match, prepared by NewFilter
}

// NewFilter returns f ready to use: its Match prepared once, for every
// List and every follower that uses it.
func NewFilter(f Filter) *Filter {
	if f.Match != "" {
		f.m = newFolder(f.Match)
	}
	return &f
}

// Empty reports whether f passes every entry.
func (f *Filter) Empty() bool {
	return f == nil || (f.Level == NoLevel && f.Match == "" && f.Regex == nil && f.Since <= 0 && !f.HasUntil)
}

// none reports whether f can pass no entry at all (until <= since).
func (f *Filter) none() bool { return f.HasUntil && f.Until <= f.Since }

// timed reports whether f bounds timestamps.
func (f *Filter) timed() bool { return f.Since > 0 || f.HasUntil }

// Prepared returns f, or a prepared copy of it if it was not made by
// NewFilter; nil if it passes everything. A backend calls it once per List.
func (f *Filter) Prepared() *Filter {
	if f.Empty() {
		return nil
	}
	if f.Match != "" && f.m == nil {
		return NewFilter(*f)
	}
	return f
}

// Keep reports whether e passes f.
func (f *Filter) Keep(e *Entry) bool {
	if f == nil {
		return true
	}
	var buf []byte
	return f.keep(e.Timestamp, e.Level, e.Msg, &buf)
}

// keep reports whether an entry passes f; *buf is scratch space for
// decoding a JSON string msg with escapes, reused from entry to entry.
func (f *Filter) keep(ts int64, level Level, msg []byte, buf *[]byte) bool {
	if ts < f.Since || (f.HasUntil && ts >= f.Until) {
		return false
	}
	if f.Level != NoLevel && (level == NoLevel || level > f.Level) {
		return false
	}
	if f.Match == "" && f.Regex == nil {
		return true
	}
	text := Text(msg, buf)
	if f.Match != "" {
		m := f.m
		if m == nil {
			m = newFolder(f.Match) // a Filter not made by NewFilter: List prepares its own
		}
		if !m.contains(text) {
			return false
		}
	}
	return f.Regex == nil || f.Regex.Match(text)
}

// Text returns an entry's text, what match and regex filters read: msg
// decoded if it is a JSON string (escapes resolved), else msg as stored.
// The result aliases msg when msg is a string without escapes (the usual
// case: nothing is copied) or not a string; else it is decoded into *buf,
// which is reused.
func Text(msg []byte, buf *[]byte) []byte {
	if len(msg) < 2 || msg[0] != '"' || msg[len(msg)-1] != '"' {
		return msg
	}
	body := msg[1 : len(msg)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body
	}
	*buf = unescape((*buf)[:0], body)
	return *buf
}

// unescape appends the JSON string body s (without its quotes) with its
// escapes resolved. A \u escape of a lone surrogate, or a malformed
// escape, becomes U+FFFD, as encoding/json does.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := bytes.IndexByte(s[i:], '\\')
			if j < 0 {
				return append(dst, s[i:]...)
			}
			dst = append(dst, s[i:i+j]...)
			i += j
			continue
		}
		if i+1 >= len(s) {
			return utf8.AppendRune(dst, utf8.RuneError)
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				i += 2
				continue
			}
			i += 6
			if utf16IsSurrogate(r) {
				if r < 0xdc00 && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2, ok := hex4(s[i+2:]); ok && r2 >= 0xdc00 && r2 < 0xe000 {
						dst = utf8.AppendRune(dst, 0x10000+(r-0xd800)<<10+(r2-0xdc00))
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			dst = utf8.AppendRune(dst, utf8.RuneError)
		}
		i += 2
	}
	return dst
}

func utf16IsSurrogate(r rune) bool { return r >= 0xd800 && r < 0xe000 }

// hex4 decodes the 4 hex digits at the start of s.
func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// folder finds a needle in texts, ignoring case by Unicode simple case
// folding: a text contains the needle when some run of its runes folds,
// rune by rune, to the needle's runes (unicode.SimpleFold orbits: 'k',
// 'K' and the Kelvin sign U+212A are one; 's', 'S' and 'ſ' U+017F too).
//
// An ASCII needle is searched without decoding the text: candidates are
// the places where the needle's rarest byte occurs in either case (found
// with bytes.IndexByte), each then compared byte by byte. Non-ASCII text
// cannot fold to an ASCII needle except through U+212A and U+017F, the only
// non-ASCII members of ASCII letters' orbits: a needle with k or s whose
// fast search failed looks again, rune by rune, when the text holds the
// lead byte of either. A non-ASCII needle is always searched rune by rune.
type folder struct {
	ascii  bool
	needle []byte // ASCII: lowercased
	rare   int    // ASCII: index of the needle's rarest byte
	lo, up byte   // that byte in lower and upper case (equal if no letter)
	k, s   bool   // ASCII needle with k (folds with U+212A), with s (U+017F)
	runes  []rune // the needle's runes, each folded (foldRune)
}

func newFolder(needle string) *folder {
	f := &folder{ascii: true}
	for _, r := range needle {
		f.runes = append(f.runes, foldRune(r))
		if r >= utf8.RuneSelf {
			f.ascii = false
		}
	}
	if !f.ascii {
		return f
	}
	f.needle = []byte(needle)
	best := -1
	for i, c := range f.needle {
		c = lower(c)
		f.needle[i] = c
		f.k = f.k || c == 'k'
		f.s = f.s || c == 's'
		if best < 0 || byteRank(c) < byteRank(f.needle[best]) {
			best = i
		}
	}
	f.rare = best
	f.lo, f.up = f.needle[best], upper(f.needle[best])
	return f
}

// contains reports whether text contains the needle, ignoring case.
func (f *folder) contains(text []byte) bool {
	if !f.ascii {
		return f.containsRunes(text)
	}
	if f.containsASCII(text) {
		return true
	}
	// U+212A is e2 84 aa, U+017F c5 bf in UTF-8.
	return ((f.k && bytes.IndexByte(text, 0xe2) >= 0) || (f.s && bytes.IndexByte(text, 0xc5) >= 0)) && f.containsRunes(text)
}

// containsASCII searches an ASCII needle byte by byte.
func (f *folder) containsASCII(h []byte) bool {
	n, k := len(f.needle), f.rare
	if len(h) < n {
		return false
	}
	// Candidates: where the rare byte could sit, h[k : len(h)-n+k+1].
	s := h[k : len(h)-n+k+1]
	off := 0
	nlo, nup := -2, -2 // next index in s of lo and of up at or after off; -1: none, -2: not looked
	for off < len(s) {
		if nlo != -1 && nlo < off {
			nlo = indexFrom(s, off, f.lo)
		}
		if f.up == f.lo {
			nup = nlo
		} else if nup != -1 && nup < off {
			nup = indexFrom(s, off, f.up)
		}
		p := nlo
		if p < 0 || (nup >= 0 && nup < p) {
			p = nup
		}
		if p < 0 {
			return false
		}
		if equalFoldASCII(h[p:p+n], f.needle) {
			return true
		}
		off = p + 1
	}
	return false
}

// indexFrom is the index of c in s at or after off, or -1.
func indexFrom(s []byte, off int, c byte) int {
	i := bytes.IndexByte(s[off:], c)
	if i < 0 {
		return -1
	}
	return off + i
}

// equalFoldASCII reports whether h equals needle (lowercase) ignoring
// ASCII case.
func equalFoldASCII(h, needle []byte) bool {
	for i, c := range needle {
		if lower(h[i]) != c {
			return false
		}
	}
	return true
}

// containsRunes searches rune by rune, folding each.
func (f *folder) containsRunes(text []byte) bool {
	if len(f.runes) == 0 {
		return true
	}
	first := f.runes[0]
	for i := 0; i < len(text); {
		r, size := decodeRune(text[i:])
		if foldRune(r) == first && f.matchAt(text[i+size:]) {
			return true
		}
		i += size
	}
	return false
}

// matchAt reports whether text starts with the needle's runes after the first.
func (f *folder) matchAt(text []byte) bool {
	for _, want := range f.runes[1:] {
		if len(text) == 0 {
			return false
		}
		r, size := decodeRune(text)
		if foldRune(r) != want {
			return false
		}
		text = text[size:]
	}
	return true
}

func decodeRune(b []byte) (rune, int) {
	if b[0] < utf8.RuneSelf {
		return rune(b[0]), 1
	}
	return utf8.DecodeRune(b)
}

// foldRune maps r to one member of its simple case folding orbit, the
// same for every member: the smallest.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	m := r
	for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
		m = min(m, o)
	}
	return m
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// byteRank ranks how common a (lowercase) byte is in log text: lower is
// rarer. Letters by their frequency in English, then digits and the
// punctuation logs are full of; the rest (rare symbols) first.
func byteRank(c byte) int {
	const common = " etaoinsrhldcumfpgwybvkxjqz" // most common first
	if i := bytes.IndexByte([]byte(common), c); i >= 0 {
		return 200 - i*4
	}
	switch {
	case c >= '0' && c <= '9':
		return 120
	case bytes.IndexByte([]byte(`.:,="'-_/()[]{}`), c) >= 0:
		return 110
	}
	return 0
}
