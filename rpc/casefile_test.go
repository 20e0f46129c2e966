package rpc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A case file (testdata/*/*.txt) holds cases as data, one block per case,
// blocks separated by blank lines. Lines starting with '#' are comments.
// Every other line is "key: value", the value running byte for byte to the
// end of the line, so a frame may be any malformed JSON a line can hold. A
// key written "key.q" holds a Go-quoted string instead, for bytes a text line
// cannot show: NUL, invalid UTF-8, newlines, an empty or space-only value.
//
//	name: id-zero
//	frame: {"id":0,"src":"dev1"}
//	want: error 400 id must be
//	id: 0
type dataCase struct {
	pos  string            // file:line of the block, for failure messages
	vals map[string]string // keys without ".q", values unquoted
	keys []string          // in file order
}

// has reports whether the case sets key.
func (c dataCase) has(key string) bool {
	_, ok := c.vals[key]
	return ok
}

// get returns the value of key, failing the test when it is absent.
func (c dataCase) get(t testing.TB, key string) string {
	t.Helper()
	v, ok := c.vals[key]
	if !ok {
		t.Fatalf("%s: no %q", c.pos, key)
	}
	return v
}

// name is the case's name, for t.Run.
func (c dataCase) name() string { return c.vals["name"] }

// readCases parses every *.txt file under dir, in name order.
func readCases(t testing.TB, dir string) []dataCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in %s (%v)", dir, err)
	}
	var all []dataCase
	names := map[string]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cases, err := parseCases(filepath.Base(file), data)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if c.name() == "" {
				t.Fatalf("%s: case without a name", c.pos)
			}
			if prev, dup := names[c.name()]; dup {
				t.Fatalf("%s: name %q already used at %s", c.pos, c.name(), prev)
			}
			names[c.name()] = c.pos
		}
		all = append(all, cases...)
	}
	return all
}

// parseCases parses one case file; file names it in positions.
func parseCases(file string, data []byte) ([]dataCase, error) {
	var (
		out []dataCase
		cur *dataCase
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			cur = nil
			continue
		case strings.HasPrefix(line, "#"):
			continue
		}
		if cur == nil {
			out = append(out, dataCase{pos: fmt.Sprintf("%s:%d", file, n), vals: map[string]string{}})
			cur = &out[len(out)-1]
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"key: value\", got %q", file, n, line)
		}
		val = strings.TrimPrefix(val, " ")
		if k, quoted := strings.CutSuffix(key, ".q"); quoted {
			uq, err := strconv.Unquote(val)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %v", file, n, key, err)
			}
			key, val = k, uq
		}
		if _, dup := cur.vals[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s given twice", file, n, key)
		}
		cur.vals[key] = val
		cur.keys = append(cur.keys, key)
	}
	return out, sc.Err()
}

func TestParseCases(t *testing.T) {
	in := "# comment\nname: a\nframe: {\"x\": 1}  \n\nname: b\nframe.q: \"\\x00\\xff\"\nempty:\n"
	cases, err := parseCases("x.txt", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 {
		t.Fatalf("got %d cases, want 2", len(cases))
	}
	if got := cases[0].vals["frame"]; got != `{"x": 1}  ` {
		t.Errorf("raw value = %q, want it byte for byte", got)
	}
	if got := cases[1].vals["frame"]; got != "\x00\xff" {
		t.Errorf("quoted value = %q", got)
	}
	if got, ok := cases[1].vals["empty"]; !ok || got != "" {
		t.Errorf("empty value = %q, %v", got, ok)
	}
	if cases[1].pos != "x.txt:5" {
		t.Errorf("pos = %s", cases[1].pos)
	}
	for _, bad := range []string{"no colon here\n", "k.q: not quoted\n", "k: 1\nk: 2\n"} {
		if _, err := parseCases("x.txt", []byte(bad)); err == nil {
			t.Errorf("parseCases(%q) succeeded, want an error", bad)
		}
	}
}
