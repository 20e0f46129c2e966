package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// browserTimeout bounds each wait on the page: generous, for -race on two
// busy cores.
const browserTimeout = 20 * time.Second

// chromiumPath finds Debian's chromium (or another Chromium build).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab, with what its console said.
type browser struct {
	t   testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newBrowser starts a headless Chromium with an empty profile and no
// network besides loopback; the test is skipped when none is installed.
func newBrowser(t testing.TB) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("no chromium binary on PATH: the dashboard browser test needs one (Debian: apt-get install chromium)")
	}
	profile := t.TempDir() // removed after the browser stops (cleanups run last-in first-out)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 760),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx) // starts the browser
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs actions, failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\n%s", what, err, b.state())
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](jsHelpers+expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v\n%s", expr, err, b.state())
	}
	return v
}

// wait polls a JavaScript condition until it holds.
func (b *browser) wait(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](jsHelpers+cond,
		chromedp.WithPollingTimeout(browserTimeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		b.t.Fatalf("%s: not within %v (%v)\n%s", what, browserTimeout, err, b.state())
	}
}

// jsHelpers is prepended to every expression: msgs() lists the messages of
// the entries shown, in order.
const jsHelpers = `(() => {
	window.msgs = () => [...document.querySelectorAll('#entries .entry .msg')].map(e => e.textContent);
	window.text = (id) => document.getElementById(id).textContent;
})(), `

// state describes the page and its console, for failure messages.
func (b *browser) state() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		status: document.getElementById('status').textContent,
		login: document.getElementById('login-error').textContent,
		sources: document.getElementById('sources-note').textContent,
		note: document.getElementById('tail-note').textContent,
		count: document.getElementById('count').textContent,
		rows: document.querySelectorAll('#entries .entry').length,
		last: [...document.querySelectorAll('#entries .entry .msg')].slice(-3).map(e => e.textContent),
	})`))
	if err != nil {
		page = "(page unreadable: " + err.Error() + ")"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var con strings.Builder
	for _, m := range b.console {
		fmt.Fprintf(&con, "  console %s\n", m)
	}
	return "page: " + page + "\n" + con.String()
}

// exceptions returns the uncaught exceptions the page threw.
func (b *browser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.IsException() {
			out = append(out, m.String())
		}
	}
	return out
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// logMany logs n entries "<prefix> 1".."<prefix> n" on src: fire-and-forget
// notifications, then one call, which (same connection, in order) returns
// once all of them are stored.
func logMany(c *client, src, prefix string, n int) {
	c.t.Helper()
	for i := 1; i < n; i++ {
		c.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"src": src, "msg": fmt.Sprintf("%s %d", prefix, i)}}, "")
	}
	c.log(map[string]any{"src": src, "msg": fmt.Sprintf("%s %d", prefix, n)})
}

func TestDashboard(t *testing.T) {
	b := newBrowser(t)
	s := start(t)
	dev := s.dial(t)
	const src = "dash-dev"
	dev.log(map[string]any{"src": src, "msg": "boot ok"})

	b.do("open the dashboard", chromedp.Navigate("http://"+s.HTTP+"/#src="+src))
	b.wait("connected", `document.getElementById('status').dataset.state === 'connected'`)
	b.wait("the stored entry shown", `msgs().includes('boot ok')`)

	t.Run("LiveEntry", func(t *testing.T) {
		b.t = t
		msg := `live <b>hello</b> & "quotes" <script>alert(1)</script>`
		dev.log(map[string]any{"src": src, "msg": msg})
		b.wait("the live entry shown", `msgs().includes(`+js(msg)+`)`)
		if n := eval[int](b, `document.querySelectorAll('#entries b, #entries script').length`); n != 0 {
			t.Errorf("%d elements made from entry text: msg must be shown as text", n)
		}
		if got := eval[[]string](b, `msgs()`); len(got) != 2 || got[0] != "boot ok" {
			t.Errorf("entries %q, want boot ok then the live one, once each", got)
		}
		b.wait("the console stream chip", `[...document.querySelectorAll('#streams .chip')].some(c => c.dataset.stream === 'console')`)
	})

	t.Run("SourceListed", func(t *testing.T) {
		b.t = t
		// From Log.Sources, or (a broker without it) learned from live entries.
		b.wait("the source in the list", `[...document.querySelectorAll('#sources .name')].some(n => n.textContent === `+js(src)+`)`)
	})

	t.Run("SourcesAndStreams", func(t *testing.T) {
		b.t = t
		// Log.Sources and Log.Streams may not be served (404): the page then
		// says so and learns from the entries; else it shows their numbers.
		if strings.Contains(s.logs(), "no such method: Log.Sources") {
			b.wait("the 404 explained", `text('sources-note').includes('cannot list sources')`)
		} else {
			b.wait("the source's last entry time", `[...document.querySelectorAll('#sources li')].some(li =>
				li.querySelector('.name').textContent === `+js(src)+` && /^\d{4}-\d\d-\d\dT/.test(li.querySelector('.when').textContent))`)
		}
		if strings.Contains(s.logs(), "no such method: Log.Streams") {
			b.wait("streams from the entries", `[...document.querySelectorAll('#streams .chip')].map(c => c.dataset.stream).join() === ',console'`)
		} else {
			// boot ok and the live entry; counts reload a few seconds after live entries.
			b.wait("the console stream's count", `document.querySelector('#streams .chip[data-stream="console"] .n')?.textContent === '2'`)
		}
	})

	t.Run("OtherSourceTime", func(t *testing.T) {
		b.t = t
		// A source not on show: its entries reach the page only through the
		// periodic Log.Sources refresh (every 15 s), not a live subscription.
		const other = "dash-other"
		dev.log(map[string]any{"src": other, "msg": "first", "timestamp": 1764000000000}) // 2025-11-24
		b.do("reload the sources", chromedp.Click(chromedp.ID("sources-refresh")))
		when := `([...document.querySelectorAll('#sources li')].find(li => li.querySelector('.name').textContent === ` + js(other) + `)?.querySelector('.when').textContent || '')`
		b.wait("the other source listed with its time", when+`.startsWith('2025-11-24')`)
		dev.log(map[string]any{"src": other, "msg": "later", "timestamp": 1893456000000}) // 2030-01-01
		b.wait("the other source's time refreshed", when+`.startsWith('2030-01-01')`)
	})

	t.Run("StructuredMsg", func(t *testing.T) {
		b.t = t
		dev.log(map[string]any{"src": src, "stream": "sensor", "msg": map[string]any{"temp": 21.5}})
		b.wait("a JSON msg shown as JSON", `msgs().includes('{"temp":21.5}')`)
	})

	t.Run("Search", func(t *testing.T) {
		b.t = t
		// The search asks the server (match): only matching entries come back.
		b.do("search", chromedp.SetValue(chromedp.ID("search"), "HELLO"), chromedp.Click(chromedp.ID("apply")))
		b.wait("only matching entries shown", `msgs().length === 1 && msgs()[0].includes('hello')`)
		b.wait("the count says so", `text('count') === '1 entry matching'`)
		b.do("clear the search", chromedp.Evaluate[chromedp.Void](`(() => {
			const f = document.getElementById('search'); f.value = ''; f.dispatchEvent(new Event('input')); })()`))
		b.wait("every entry shown again", `msgs().length === 3`)
	})

	t.Run("Pause", func(t *testing.T) {
		b.t = t
		b.do("pause", chromedp.Click(chromedp.ID("pause")))
		b.wait("paused", `document.getElementById('pause').getAttribute('aria-pressed') === 'true'`)
		dev.log(map[string]any{"src": src, "msg": "while paused"})
		b.wait("the held entry counted", `text('count').includes('1 new')`)
		if eval[bool](b, `msgs().includes('while paused')`) {
			t.Fatalf("an entry was shown while paused")
		}
		b.do("resume", chromedp.Click(chromedp.ID("pause")))
		b.wait("the held entry shown on resume", `msgs().at(-1) === 'while paused'`)
	})

	t.Run("Reconnect", func(t *testing.T) {
		b.t = t
		// Another connection with the page's client id takes its session
		// over: the page is disconnected, and reconnects by itself.
		id := eval[string](b, `document.getElementById('status').dataset.client`)
		newClientOpts(t, "tcp://"+s.MQTT, func(o *mqtt.ClientOptions) { o.SetClientID(id) })
		b.wait("disconnected", `document.getElementById('status').dataset.state === 'disconnected'`)
		dev.log(map[string]any{"src": src, "msg": "while away"})
		b.wait("reconnected", `document.getElementById('status').dataset.state === 'connected'`)
		b.wait("the entry logged while away", `msgs().at(-1) === 'while away'`)
		if got := eval[[]string](b, `msgs()`); len(got) != 5 {
			t.Errorf("entries after the reconnect %q, want 5, each once", got)
		}
	})

	t.Run("LoadOlder", func(t *testing.T) {
		b.t = t
		const older = "dash-older"
		logMany(dev, older, "line", 130)
		b.do("open another source",
			chromedp.SetValue(chromedp.ID("src-input"), older),
			chromedp.Click(chromedp.CSS("#open-src button")))
		b.wait("the last 100 entries", `msgs().length === 100 && msgs()[0] === 'line 31' && msgs()[99] === 'line 130'`)
		b.do("load older", chromedp.Click(chromedp.ID("older")))
		b.wait("the 30 older entries prepended", `msgs().length === 130 && msgs()[0] === 'line 1' && msgs()[129] === 'line 130'`)
		b.do("load older again", chromedp.Click(chromedp.ID("older")))
		b.wait("the start reached", `text('older') === 'No older entries' && document.getElementById('older').disabled`)
		if n := eval[int](b, `msgs().length`); n != 130 {
			t.Errorf("%d entries after reaching the start, want 130", n)
		}
		if h := eval[string](b, `location.hash`); h != "#src="+older {
			t.Errorf("location.hash = %q, want #src=%s (a link to this view)", h, older)
		}
	})

	t.Run("Phone", func(t *testing.T) {
		b.t = t
		b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		defer b.do("desktop viewport", chromedp.EmulateViewport(1200, 760))
		b.wait("one column", `(() => {
			const side = document.getElementById('side').getBoundingClientRect();
			const tail = document.getElementById('tail').getBoundingClientRect();
			return side.bottom <= tail.top + 1 && tail.width > 300;
		})()`)
		if over := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); over {
			t.Errorf("the page scrolls sideways on a 390 px wide screen")
		}
		shot := b.screenshot()
		if path := os.Getenv("LOGBROKER_SCREENSHOT_PHONE"); path != "" {
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("MQTTFraming", func(t *testing.T) {
		b.t = t
		// Two PUBLISH packets (QoS 0, then QoS 1 with a two-byte Remaining
		// Length), fed to the page's MQTT client whole, byte by byte and in
		// odd chunks: WebSocket messages need not match packets.
		big := strings.Repeat("x", 200)
		stream := append(mqttPublish("a/b", 0, 0, "hi"), mqttPublish("dev/log/console", 1, 7, big)...)
		want := []string{"a/b 0 hi", "dev/log/console 1 " + big}
		for _, chunk := range []int{len(stream), 1, 3, 130} {
			got := eval[[]string](b, `((bytes, chunk) => {
				const c = new MQTT.Client('ws://unused/');
				const got = [];
				c.onmessage = (topic, payload, qos) => got.push(topic + ' ' + qos + ' ' + new TextDecoder().decode(payload));
				c._send = () => {}; // no socket: the PUBACK goes nowhere
				for (let i = 0; i < bytes.length; i += chunk) c._feed(new Uint8Array(bytes.slice(i, i + chunk)));
				return got;
			})(`+jsBytes(stream)+`, `+fmt.Sprint(chunk)+`)`)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("chunks of %d: got %q, want %q", chunk, got, want)
			}
		}
	})

	t.Run("NoExceptions", func(t *testing.T) {
		b.t = t
		if ex := b.exceptions(); len(ex) > 0 {
			t.Errorf("uncaught exceptions on the page:\n%s", strings.Join(ex, "\n"))
		}
	})
}

// mqttPublish encodes an MQTT 3.1.1 PUBLISH packet, independently of the
// page's encoder.
func mqttPublish(topic string, qos byte, id uint16, payload string) []byte {
	body := mqttString(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, payload...)
	return mqttPacket(0x30|qos<<1, body)
}

// jsBytes is a JavaScript array literal of b.
func jsBytes(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// screenshot captures the viewport as PNG.
func (b *browser) screenshot() []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		b.t.Fatalf("screenshot is not a PNG")
	}
	return png
}

// TestDashboardSecured: the page signs in with the user's own MQTT
// credentials and sees what that user may see, no more.
func TestDashboardSecured(t *testing.T) {
	b := newBrowser(t)
	s := start(t, "--auth", writeUsers(t,
		account{"viewer", "reader"}, account{"dev1", "device"}, account{"dev2", "device"}))
	dev1 := dialAs(t, "tcp://"+s.MQTT, "dev1")
	dev1.log(map[string]any{"msg": "dev1 boot ok"})

	b.do("open the dashboard", chromedp.Navigate("http://"+s.HTTP+"/#src=dev1"))
	b.wait("the sign-in form", `!document.getElementById('login').hidden && document.getElementById('app').hidden`)

	signIn := func(user, pass string) {
		b.t.Helper()
		b.do("sign in as "+user,
			chromedp.SetValue(chromedp.ID("user"), user),
			chromedp.SetValue(chromedp.ID("password"), pass),
			chromedp.Click(chromedp.ID("login-btn")))
	}

	t.Run("BadPassword", func(t *testing.T) {
		b.t = t
		signIn("viewer", "wrong")
		b.wait("refused", `text('login-error').includes('refused') && document.getElementById('app').hidden`)
	})

	t.Run("Reader", func(t *testing.T) {
		b.t = t
		signIn("viewer", password("viewer"))
		b.wait("connected as viewer", `document.getElementById('status').dataset.state === 'connected' && text('status').includes('viewer')`)
		b.wait("dev1's stored entry", `msgs().includes('dev1 boot ok')`)
		dev1.log(map[string]any{"msg": "dev1 live"})
		b.wait("dev1's live entry", `msgs().at(-1) === 'dev1 live'`)
		// A reader sees the whole fleet (methodAccess: Log.Fleet is a read).
		b.do("to the fleet", chromedp.Click(chromedp.ID("to-fleet")))
		b.wait("dev1 in the fleet", `[...document.querySelectorAll('#fleet-rows tr')].map(tr => tr.dataset.src).includes('dev1')`)
	})

	t.Run("SignOutClears", func(t *testing.T) {
		b.t = t
		b.do("sign out", chromedp.Click(chromedp.ID("logout")))
		b.wait("the sign-in form, nothing left of the last user", `!document.getElementById('login').hidden && msgs().length === 0`)
	})

	t.Run("DeviceSeesOnlyItsOwn", func(t *testing.T) {
		b.t = t
		signIn("dev2", password("dev2"))
		b.wait("connected as dev2", `document.getElementById('status').dataset.state === 'connected'`)
		b.do("open dev1",
			chromedp.SetValue(chromedp.ID("src-input"), "dev1"),
			chromedp.Click(chromedp.CSS("#open-src button")))
		b.wait("refused with 403", `text('tail-note').includes('403')`)
		dev1.log(map[string]any{"msg": "dev1 private"})
		// The page's own entry, on its own source, shows what dev2 may read.
		dev2 := dialAs(t, "tcp://"+s.MQTT, "dev2")
		dev2.log(map[string]any{"msg": "dev2 own"})
		b.do("open dev2",
			chromedp.SetValue(chromedp.ID("src-input"), "dev2"),
			chromedp.Click(chromedp.CSS("#open-src button")))
		b.wait("dev2's own entry", `msgs().includes('dev2 own')`)
		if got := eval[[]string](b, `msgs()`); len(got) != 1 {
			t.Errorf("dev2 sees %q, want only its own entry", got)
		}
		// A device's fleet holds its own sources only.
		b.do("to the fleet", chromedp.Click(chromedp.ID("to-fleet")))
		b.wait("dev2's fleet", `text('fleet-page') === '1–1 of 1 source'`)
		if got := eval[[]string](b, `[...document.querySelectorAll('#fleet-rows tr')].map(tr => tr.dataset.src)`); len(got) != 1 || got[0] != "dev2" {
			t.Errorf("dev2's fleet %q, want only dev2", got)
		}
	})

	t.Run("ForeignWebSocketIgnored", func(t *testing.T) {
		b.t = t
		// A link must not make the page send the password to another host.
		b.do("open with a foreign ?ws=", chromedp.Navigate("http://"+s.HTTP+"/?ws=ws://evil.example:1883/"))
		b.wait("the override ignored", `text('login-error').includes('Ignored') && text('login-target') === `+js("ws://"+s.WS+"/"))
		// The same host with another path is a proxy: accepted.
		b.do("open with a same-host ?ws=", chromedp.Navigate("http://"+s.HTTP+"/?ws=ws://"+s.WS+"/mqtt"))
		b.wait("the override taken", `text('login-target') === `+js("ws://"+s.WS+"/mqtt")+` && text('login-error') === ''`)
		signIn("viewer", password("viewer"))
		b.wait("connected through the override", `document.getElementById('status').dataset.state === 'connected'`)
	})

	t.Run("NoExceptions", func(t *testing.T) {
		b.t = t
		if ex := b.exceptions(); len(ex) > 0 {
			t.Errorf("uncaught exceptions on the page:\n%s", strings.Join(ex, "\n"))
		}
	})
}

// TestDashboardScreenshot renders the pictures the README shows: the fleet
// and a source's view, with `logbroker simulate` data. They are written to
// $LOGBROKER_SCREENSHOT (the source's view) and $LOGBROKER_SCREENSHOT_FLEET
// when those are set (make them with
// LOGBROKER_SCREENSHOT=$PWD/docs/dashboard.png
// LOGBROKER_SCREENSHOT_FLEET=$PWD/docs/fleet.png); otherwise only checked,
// over a shorter simulation.
func TestDashboardScreenshot(t *testing.T) {
	b := newBrowser(t)
	s := start(t)
	shotSource, shotFleet := os.Getenv("LOGBROKER_SCREENSHOT"), os.Getenv("LOGBROKER_SCREENSHOT_FLEET")
	run := 3 * time.Second
	if shotSource != "" || shotFleet != "" {
		run = 40 * time.Second // enough for a histogram and every device's errors
	}
	// Devices that log with Log.Log and levels, and stock Mongoose OS
	// devices whose console is captured (lost lines and restarts).
	sims := []*cliProc{
		startCLI(t, "simulate", "--broker=tcp://"+s.MQTT, "--devices", "9", "--rate", "4", "--prefix", "greenhouse", "--duration", run.String()),
		startCLI(t, "simulate", "--broker=tcp://"+s.MQTT, "--devices", "4", "--rate", "4", "--prefix", "kiln", "--console", "--duration", run.String()),
	}
	for _, sim := range sims {
		select {
		case <-sim.exited:
		case <-time.After(run + cliTimeout):
			t.Fatalf("simulate did not stop after %v; stderr:\n%s", run, sim.stderr)
		}
	}

	b.do("open the dashboard", chromedp.EmulateViewport(1280, 880), chromedp.Navigate("http://"+s.HTTP+"/"))
	b.wait("the fleet", `text('fleet-page') === '1–13 of 13 sources'`)
	b.wait("the captured consoles' counts", `[...document.querySelectorAll('#fleet-rows tr')].filter(tr =>
		tr.dataset.src.startsWith('kiln') && /^[0-9,]+$/.test(tr.querySelector('.c-lost').textContent)).length === 4`)
	errs := eval[[]int](b, `[...document.querySelectorAll('#fleet-rows .c-errors')].map(td => Number(td.textContent))`)
	for i := 1; i < len(errs); i++ {
		if errs[i] > errs[i-1] {
			t.Fatalf("fleet errors %v: not most errors first", errs)
		}
	}
	if shotFleet != "" {
		write(t, shotFleet, b.screenshot())
	}

	b.do("open the source with most errors", chromedp.Click(chromedp.CSS(`#fleet-rows tr:first-child .src-link`)))
	b.wait("its entries and histogram", `msgs().length > 5 && !document.getElementById('histo').hidden`)
	b.wait("the histogram agrees", barsByLevel+` === `+rowsByLevel)
	if shotSource != "" {
		write(t, shotSource, b.screenshot())
	}
}

func write(t *testing.T, path string, png []byte) {
	t.Helper()
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
