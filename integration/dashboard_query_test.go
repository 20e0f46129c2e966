package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// levelled is an entry object with its level (PROTOCOL §4).
type levelled struct {
	entry
	Level *int `json:"level"`
}

// rowsByLevel and barsByLevel count the entries shown and the histogram's
// bars per level ("0".."4", "none"), as JSON objects.
const (
	rowsByLevel = `JSON.stringify([...document.querySelectorAll('#entries .entry')].reduce((m, li) => {
		const k = li.dataset.level ?? 'none'; m[k] = (m[k] || 0) + 1; return m; }, {}))`
	barsByLevel = `JSON.stringify([...document.querySelectorAll('#histo-svg rect.bar')].reduce((m, r) => {
		m[r.dataset.level] = (m[r.dataset.level] || 0) + Number(r.dataset.count); return m; }, {}))`
)

// TestDashboardQuery: a source's view asks the server for what the search,
// level and time range select, colours entries by their level, draws the
// histogram of what it shows, follows with the filters and downloads the
// whole selection.
func TestDashboardQuery(t *testing.T) {
	b := newBrowser(t)
	s := start(t)
	dev := s.dial(t)
	const src = "q-dev"
	now := time.Now().Truncate(time.Second)
	at := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	logAt := func(msg string, level any, ts int64) {
		args := map[string]any{"src": src, "msg": msg, "timestamp": ts}
		if level != nil {
			args["level"] = level
		}
		dev.notify(map[string]any{"method": "Log.Log", "args": args}, "")
	}
	logAt("boot ok fw 2.4.1", "info", at(-3*time.Hour))
	for i := range 1500 { // -50 min .. -25 min
		logAt(fmt.Sprintf("tick %d", i), 4, at(-50*time.Minute+time.Duration(i)*time.Second))
	}
	logAt("wifi timeout, retrying", "warn", at(-40*time.Minute))
	logAt("sensor 3 timeout", 0, at(-10*time.Minute))
	logAt("sensor 4 TIMEOUT", "error", at(-5*time.Minute))
	logAt("no level here: timeout", nil, at(-2*time.Minute))
	dev.log(map[string]any{"src": src, "msg": "heartbeat 42", "level": 2, "timestamp": at(-time.Minute)})

	b.do("open the source", chromedp.Navigate("http://"+s.HTTP+"/#src="+src))
	b.wait("the last 100 entries", `msgs().length === 100 && msgs().at(-1) === 'heartbeat 42'`)

	// apply sets the query form and applies it, as a user does.
	apply := func(search, level, rng string) {
		b.t.Helper()
		b.do("query "+search+" "+level+" "+rng, chromedp.Evaluate[chromedp.Void](`(() => {
			document.getElementById('search').value = `+js(search)+`;
			document.getElementById('level').value = `+js(level)+`;
			const r = document.getElementById('range');
			r.value = `+js(rng)+`;
			r.dispatchEvent(new Event('change'));
			document.getElementById('apply').click();
		})()`))
	}
	shows := func(what string, want ...string) {
		b.t.Helper()
		b.wait(what, `msgs().join('\n') === `+js(strings.Join(want, "\n")))
	}
	histogramAgrees := func() {
		b.t.Helper()
		b.wait("the histogram drawn", `!document.getElementById('histo').hidden && `+barsByLevel+` === `+rowsByLevel)
		if caption := eval[string](b, `text('histo-caption')`); !strings.HasPrefix(caption, fmt.Sprint(eval[int](b, `msgs().length`))+" entries shown") {
			t.Errorf("histogram caption %q does not count the entries shown", caption)
		}
	}

	t.Run("Colours", func(t *testing.T) {
		b.t = t
		cls := func(msg string) string {
			return eval[string](b, `(() => { const li = [...document.querySelectorAll('#entries .entry')].find(li => li.querySelector('.msg').textContent === `+js(msg)+`);
				return li.className + '|' + li.querySelector('.lvl').textContent + '|' + getComputedStyle(li.querySelector('.msg')).color; })()`)
		}
		errRow, warnRow, plainRow, infoRow := cls("sensor 3 timeout"), cls("wifi timeout, retrying"), cls("no level here: timeout"), cls("heartbeat 42")
		if !strings.HasPrefix(errRow, "entry lvl-0|error|") || !strings.HasPrefix(warnRow, "entry lvl-1|warn|") || !strings.HasPrefix(infoRow, "entry lvl-2|info|") {
			t.Errorf("levelled rows: %q %q %q, want classes lvl-0, lvl-1, lvl-2 and their names", errRow, warnRow, infoRow)
		}
		// Coloured by level, not by the text: "timeout" without a level stays plain.
		if !strings.HasPrefix(plainRow, "entry||") {
			t.Errorf("a row without a level: %q, want no level class and no badge", plainRow)
		}
		colour := func(row string) string { return row[strings.LastIndex(row, "|")+1:] }
		if colour(errRow) == colour(plainRow) || colour(warnRow) == colour(plainRow) || colour(errRow) == colour(warnRow) {
			t.Errorf("text colours: error %s, warn %s, none %s: want three different", colour(errRow), colour(warnRow), colour(plainRow))
		}
		histogramAgrees()
	})

	t.Run("Level", func(t *testing.T) {
		b.t = t
		apply("", "0", "")
		shows("errors only", "sensor 3 timeout", "sensor 4 TIMEOUT")
		apply("", "1", "")
		shows("warnings and worse", "wifi timeout, retrying", "sensor 3 timeout", "sensor 4 TIMEOUT")
		if h := eval[string](b, `location.hash`); !strings.Contains(h, "level=1") {
			t.Errorf("location.hash %q does not keep the level", h)
		}
		histogramAgrees()
	})

	t.Run("Search", func(t *testing.T) {
		b.t = t
		apply("timeout", "", "")
		shows("match, ignoring case", "wifi timeout, retrying", "sensor 3 timeout", "sensor 4 TIMEOUT", "no level here: timeout")
		apply("/TIMEOUT|heartbeat/", "", "")
		shows("regex, case-sensitive", "sensor 4 TIMEOUT", "heartbeat 42")
		apply("timeout", "0", "")
		shows("match and level together", "sensor 3 timeout", "sensor 4 TIMEOUT")
		apply("/[/", "", "")
		b.wait("a bad regex refused by the server", `text('tail-note').includes('regex') && text('tail-note').includes('400')`)
	})

	t.Run("TimeRange", func(t *testing.T) {
		b.t = t
		apply("", "", "15m")
		shows("the last 15 minutes", "sensor 3 timeout", "sensor 4 TIMEOUT", "no level here: timeout", "heartbeat 42")
		histogramAgrees()
		// The bars span the range: the first starts at or before its start.
		if first := eval[int64](b, `Math.min(...[...document.querySelectorAll('#histo-svg rect.bar')].map(r => Number(r.dataset.start)))`); first > at(-10*time.Minute) {
			t.Errorf("first bar at %d, after the first entry shown (%d)", first, at(-10*time.Minute))
		}
		apply("", "", "1h")
		b.wait("the last hour: its last 100", `msgs().length === 100 && msgs()[0] === 'tick 1405' && msgs().at(-1) === 'heartbeat 42'`)
		histogramAgrees()
		custom(b, at(-41*time.Minute), at(-39*time.Minute))
		b.wait("a custom range", `msgs().length === 100 && msgs().includes('wifi timeout, retrying') && !msgs().includes('heartbeat 42')`)
		if got := eval[[]string](b, `msgs().filter(m => m.startsWith('tick'))`); got[len(got)-1] != "tick 659" {
			t.Errorf("the custom range's last tick is %q, want tick 659 (until is exclusive)", got[len(got)-1])
		}
		histogramAgrees()
	})

	t.Run("Download", func(t *testing.T) {
		b.t = t
		// A selection of 1,501 entries: more than one page of the server's.
		since, until := at(-50*time.Minute), at(-20*time.Minute)
		custom(b, since, until)
		b.wait("the range applied", `msgs().at(-1) === 'wifi timeout, retrying' && msgs().at(-2) === 'tick 1499'`)
		got := b.download("download", chromedp.Click(chromedp.ID("download")))
		want := listAllArgs(dev, map[string]any{"src": src, "since": since, "until": until})
		if len(want) != 1501 {
			t.Fatalf("the selection holds %d entries, want 1501", len(want))
		}
		lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("downloaded %d lines, want %d", len(lines), len(want))
		}
		for i, line := range lines {
			var e levelled
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("line %d %q: %v", i+1, line, err)
			}
			w := want[i]
			if e.ID != w.ID || e.Src != w.Src || e.Stream != w.Stream || e.Timestamp != w.Timestamp || !bytes.Equal(e.Msg, w.Msg) || (e.Level == nil) != (w.Level == nil) {
				t.Fatalf("line %d: %s, want %+v", i+1, line, w)
			}
			if e.Level != nil && *e.Level != *w.Level {
				t.Fatalf("line %d: level %d, want %d", i+1, *e.Level, *w.Level)
			}
		}
		b.wait("the note says so", `text('tail-note').startsWith('Downloaded 1,501 entries as q-dev-')`)
	})

	t.Run("FollowWithFilters", func(t *testing.T) {
		b.t = t
		apply("alarm", "", "")
		b.wait("nothing matches yet", `text('count') === '0 entries matching'`)
		dev.log(map[string]any{"src": src, "msg": "ping", "level": 0})
		dev.log(map[string]any{"src": src, "msg": "alarm: door open", "level": "warn"})
		shows("only the matching live entry", "alarm: door open")
		b.wait("coloured by its level", `document.querySelector('#entries .entry').classList.contains('lvl-1')`)
		dev.log(map[string]any{"src": src, "msg": "fire ALARM", "level": 0})
		shows("the next matching one", "alarm: door open", "fire ALARM")
	})

	t.Run("NoExceptions", func(t *testing.T) {
		b.t = t
		if ex := b.exceptions(); len(ex) > 0 {
			t.Errorf("uncaught exceptions on the page:\n%s", strings.Join(ex, "\n"))
		}
	})
}

// custom selects the custom time range [since, until) (ms, whole seconds)
// in the page's time zone and applies it.
func custom(b *browser, since, until int64) {
	b.t.Helper()
	b.do("custom range", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const local = (ms) => { const d = new Date(ms), p = (n) => String(n).padStart(2, '0');
			return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()); };
		document.getElementById('search').value = '';
		document.getElementById('level').value = '';
		const r = document.getElementById('range');
		r.value = 'custom';
		r.dispatchEvent(new Event('change'));
		document.getElementById('from').value = local(%d);
		document.getElementById('to').value = local(%d);
		document.getElementById('apply').click();
	})()`, since, until)))
}

// listAllArgs pages through the entries args select (after = last id).
func listAllArgs(c *client, args map[string]any) []levelled {
	c.t.Helper()
	var out []levelled
	after := ""
	for {
		a := map[string]any{"limit": 1000}
		for k, v := range args {
			a[k] = v
		}
		if after != "" {
			a["after"] = after
		}
		r := c.call(map[string]any{"method": "Log.List", "args": a}, "").ok(c.t)
		var page []levelled
		if err := json.Unmarshal(r.Result, &page); err != nil {
			c.t.Fatalf("Log.List: %v: %s", err, r.Raw)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
		after = page[len(page)-1].ID
	}
}

// download runs actions that make the page download a file and returns the
// file's bytes.
func (b *browser) download(what string, actions ...chromedp.Action[chromedp.Void]) []byte {
	b.t.Helper()
	dir := b.t.TempDir()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	progress := chromedp.Events(ctx, cdpbrowser.DownloadProgress)
	on := true
	b.do("allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &on,
		})
		return err
	}))
	b.do(what, actions...)
	for ev, err := range progress {
		if err != nil {
			b.t.Fatalf("%s: %v\n%s", what, err, b.state())
		}
		switch ev.State {
		case cdpbrowser.DownloadProgressStateCompleted:
			data, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				b.t.Fatal(err)
			}
			return data
		case cdpbrowser.DownloadProgressStateCanceled:
			b.t.Fatalf("%s: the download was cancelled", what)
		}
	}
	b.t.Fatalf("%s: no download within %v\n%s", what, browserTimeout, b.state())
	return nil
}
