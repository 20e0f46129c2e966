package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fleetRows lists the fleet table's rows as "src entries errors".
const fleetRows = `[...document.querySelectorAll('#fleet-rows tr')].map(tr =>
	tr.dataset.src + ' ' + tr.querySelector('.c-entries').textContent + ' ' + tr.querySelector('.c-errors').textContent)`

// seedFleet logs one entry on each of n sources fleet-0000.., and errors
// (level 0) on a few: fleet-0007 5, fleet-1500 3, fleet-0100 1. It
// returns once every entry is stored.
func seedFleet(c *client, n int) {
	c.t.Helper()
	for i := range n {
		c.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"src": fmt.Sprintf("fleet-%04d", i), "msg": "boot ok", "level": "info"}}, "")
	}
	for src, errs := range map[string]int{"fleet-0007": 5, "fleet-1500": 3, "fleet-0100": 1} {
		for i := range errs {
			c.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"src": src, "msg": fmt.Sprintf("sensor %d failed", i), "level": 0}}, "")
		}
	}
	c.log(map[string]any{"src": "fleet-0000", "msg": "last"}) // same connection: after all of the above
}

// TestDashboardFleet: the first page is the fleet, most errors first, one
// server-side page at a time, with 2,000 sources.
func TestDashboardFleet(t *testing.T) {
	b := newBrowser(t)
	s := start(t)
	dev := s.dial(t)
	const n = 2000
	seedFleet(dev, n)

	b.do("open the dashboard", chromedp.Navigate("http://"+s.HTTP+"/"))
	b.wait("connected", `document.getElementById('status').dataset.state === 'connected'`)

	t.Run("MostErrorsFirst", func(t *testing.T) {
		b.t = t
		b.wait("the first page", `text('fleet-page') === '1–50 of 2,000 sources'`)
		rows := eval[[]string](b, fleetRows)
		want := []string{"fleet-0007 6 5", "fleet-1500 4 3", "fleet-0100 2 1", "fleet-0000 2 0"}
		if len(rows) != 50 || strings.Join(rows[:4], "|") != strings.Join(want, "|") {
			t.Fatalf("first rows %q (of %d), want %q then 46 more", rows[:min(len(rows), 5)], len(rows), want)
		}
		if rows[4] != "fleet-0001 1 0" {
			t.Errorf("row 5 %q, want fleet-0001 1 0 (ties: most entries, then by name)", rows[4])
		}
		if !eval[bool](b, `document.querySelector('#fleet-rows tr[data-src="fleet-0007"] .pill').classList.contains('err')`) {
			t.Errorf("fleet-0007's errors are not marked")
		}
		if got := eval[string](b, `document.querySelector('#fleet-rows tr[data-src="fleet-0007"] .when').textContent`); !strings.HasSuffix(got, "s ago") {
			t.Errorf("fleet-0007's last entry %q, want seconds ago", got)
		}
	})

	t.Run("Pages", func(t *testing.T) {
		b.t = t
		first := eval[[]string](b, fleetRows)
		start := time.Now()
		b.do("next page", chromedp.Click(chromedp.ID("fleet-next")))
		b.wait("the second page", `text('fleet-page') === '51–100 of 2,000 sources'`)
		t.Logf("next page of %d sources shown in %v (headless chromium, broker on the same machine)", n, time.Since(start))
		second := eval[[]string](b, fleetRows)
		if len(second) != 50 || second[0] == first[0] {
			t.Errorf("second page %q..., want 50 other rows", second[:min(3, len(second))])
		}
		seen := map[string]bool{}
		for _, r := range append(first, second...) {
			src := strings.Fields(r)[0]
			if seen[src] {
				t.Errorf("%s on both pages", src)
			}
			seen[src] = true
		}
		b.do("previous page", chromedp.Click(chromedp.ID("fleet-prev")))
		b.wait("the first page again", `text('fleet-page') === '1–50 of 2,000 sources' && document.getElementById('fleet-prev').disabled`)
	})

	t.Run("PrefixAndSort", func(t *testing.T) {
		b.t = t
		b.do("type a prefix", chromedp.SendKeys(chromedp.ID("fleet-prefix"), "fleet-15"))
		b.wait("the sources with that prefix", `text('fleet-page') === '1–50 of 100 sources'`)
		if rows := eval[[]string](b, fleetRows); rows[0] != "fleet-1500 4 3" {
			t.Errorf("first row with prefix fleet-15: %q, want fleet-1500 4 3", rows[0])
		}
		b.do("sort by name", chromedp.SetValue(chromedp.ID("fleet-sort"), "src"),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('fleet-sort').dispatchEvent(new Event('change'))`))
		b.wait("by name", `(`+fleetRows+`)[1] === 'fleet-1501 1 0'`)
		b.do("clear the prefix", chromedp.Evaluate[chromedp.Void](`(() => {
			const f = document.getElementById('fleet-prefix'); f.value = ''; f.dispatchEvent(new Event('input')); })()`))
		b.wait("every source again", `text('fleet-page') === '1–50 of 2,000 sources' && (`+fleetRows+`)[0] === 'fleet-0000 2 0'`)
	})

	t.Run("OpenSource", func(t *testing.T) {
		b.t = t
		b.do("open a source from the fleet", chromedp.Click(chromedp.CSS(`#fleet-rows tr[data-src="fleet-0000"] .src-link`)))
		b.wait("its entries", `msgs().join('|') === 'boot ok|last' && !document.getElementById('tail').hidden && document.getElementById('fleet').hidden`)
		b.do("back to the fleet", chromedp.Click(chromedp.ID("to-fleet")))
		b.wait("the fleet again", `!document.getElementById('fleet').hidden && document.getElementById('tail').hidden && location.hash === ''`)
	})

	t.Run("Phone", func(t *testing.T) {
		b.t = t
		b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		defer b.do("desktop viewport", chromedp.EmulateViewport(1200, 760))
		b.wait("the fleet's rows", `document.querySelectorAll('#fleet-rows tr').length === 50`)
		if over := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); over {
			t.Errorf("the fleet scrolls the page sideways on a 390 px wide screen")
		}
	})

	t.Run("NoExceptions", func(t *testing.T) {
		b.t = t
		if ex := b.exceptions(); len(ex) > 0 {
			t.Errorf("uncaught exceptions on the page:\n%s", strings.Join(ex, "\n"))
		}
	})
}

// BenchmarkDashboardFleet measures turning a page of the fleet view with
// 10,000 sources: a click on Next (or Prev) until the page shows its 50
// rows, in headless chromium, the broker on the same machine.
// Run with: go test -run='^$' -bench=DashboardFleet -benchtime=50x ./integration/
func BenchmarkDashboardFleet(b *testing.B) {
	br := newBrowser(b)
	s := start(b)
	seedFleet(s.dial(b), 10_000)
	br.do("open the dashboard", chromedp.Navigate("http://"+s.HTTP+"/"))
	br.wait("the first page", `text('fleet-page') === '1–50 of 10,000 sources'`)
	next := true
	for b.Loop() {
		button, want := "fleet-next", "51–100 of 10,000 sources"
		if !next {
			button, want = "fleet-prev", "1–50 of 10,000 sources"
		}
		br.do("turn the page", chromedp.Click(chromedp.ID(button)))
		br.wait("the page shown", `text('fleet-page') === `+js(want)+` && document.querySelectorAll('#fleet-rows tr').length === 50`)
		next = !next
	}
}

// TestDashboardFleetOff: --fleet-sources 0 turns Log.Fleet off (404); the
// page says so and still lists the sources.
func TestDashboardFleetOff(t *testing.T) {
	s := start(t, "--fleet-sources", "0")
	dev := s.dial(t)
	dev.log(map[string]any{"src": "solo", "msg": "hi"})
	dev.call(map[string]any{"method": "Log.Fleet"}, "").fails(t, 404)

	b := newBrowser(t)
	b.do("open the dashboard", chromedp.Navigate("http://"+s.HTTP+"/"))
	b.wait("the 404 explained", `text('fleet-note').includes('no fleet view') && document.getElementById('fleet-table').hidden`)
	b.wait("the sources listed", `[...document.querySelectorAll('#sources .name')].some(n => n.textContent === 'solo')`)
}
