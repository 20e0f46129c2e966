package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logbroker/logbroker/cmd/internal/rpcclient"
)

// simulate runs `logbroker simulate`: a demo fleet, one MQTT connection
// per device, each logging with Log.Log calls until interrupted.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", "simulate [flags]\n\nRuns a demo fleet: --devices MQTT connections with srcs <prefix>-001, ...,\neach logging a boot sequence, then sensor readings (JSON objects on stream\nsensors), housekeeping lines (console) and the odd warning and error (errors),\neach with a level (some devices err more often than others), with\nLog.Log calls, until interrupted or --duration passes. Prints a summary.\n\nWith --console the devices publish their console lines (boot, housekeeping,\nerrors) as a stock Mongoose OS device does with debug.stdout_topic=<dev>/log\nand debug.stderr_topic=<dev>/log: QoS 0 messages \"<dev> <seq> <time> <fd>|<text>\"\non <dev>/log, some lines split over two writes, the odd message skipped (a\nseq gap, as a device with a full send buffer does), seq from 0 again after a\nreboot. logbroker serve stores them with --capture (on by default).", stderr)
	c := addConnFlags(fs)
	var devices int
	var rate float64
	var prefix string
	var duration time.Duration
	var console bool
	fs.IntVar(&devices, "devices", 5, "number of simulated devices (one connection each)")
	fs.Float64Var(&rate, "rate", 1, "entries per second per device, after its boot lines")
	fs.StringVar(&prefix, "prefix", "dev", "device srcs are <prefix>-001, <prefix>-002, ...")
	fs.DurationVar(&duration, "duration", 0, "stop after this long; 0: run until interrupted")
	fs.BoolVar(&console, "console", false, "publish console lines as stock Mongoose OS devices do (QoS 0 on <dev>/log), not with Log.Log")
	if _, err := parseArgs(fs, args); err != nil {
		return helpIsNoError(err)
	}
	if devices < 1 || devices > 10000 {
		return fmt.Errorf("--devices %d: want 1..10000", devices)
	}
	if !(rate > 0) || math.IsInf(rate, 0) {
		return fmt.Errorf("--rate %v: want a positive number", rate)
	}
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	// Connect the whole fleet first, so a wrong --broker fails at once.
	fleet := make([]*device, devices)
	var wg sync.WaitGroup
	errs := make([]error, devices)
	for i := range fleet {
		wg.Go(func() {
			dc := *c
			dc.src = fmt.Sprintf("%s-%03d", prefix, i+1)
			cl, err := dc.dial(ctx, stderr)
			if err != nil {
				errs[i] = fmt.Errorf("device %s: %w", dc.src, err)
				return
			}
			fleet[i] = newDevice(cl, uint64(i+1), c.broker)
			fleet[i].console = console
		})
	}
	wg.Wait()
	defer func() {
		for _, d := range fleet {
			if d != nil {
				d.cl.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "simulate: %d devices (%s .. %s) logging %g entries/s each to %s; Ctrl-C stops\n",
		devices, fleet[0].cl.Src(), fleet[devices-1].cl.Src(), rate, c.broker)

	var st simStats
	began := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for _, d := range fleet {
		wg.Go(func() { d.run(ctx, interval, c.timeout, &st) })
	}
	wg.Wait()
	elapsed := time.Since(began)
	acked, failed := st.acked.Load(), st.failed.Load()
	fmt.Fprintf(stdout, "simulate: %d devices for %.1f s: %d entries acknowledged (%.1f/s), %d failed\n",
		devices, elapsed.Seconds(), acked, float64(acked)/elapsed.Seconds(), failed)
	if console {
		fmt.Fprintf(stdout, "simulate: console: %d messages published on <dev>/log (%d lines split in two), %d skipped (seq gaps), %d reboots\n",
			st.published.Load(), st.split.Load(), st.skipped.Load(), st.reboots.Load())
	}
	if failed > 0 {
		st.mu.Lock()
		fmt.Fprintf(stdout, "simulate: first failure: %v\n", st.firstErr)
		st.mu.Unlock()
	}
	return nil
}

// simStats counts the fleet's calls.
type simStats struct {
	acked, failed atomic.Int64
	// --console: messages published, lines split, messages skipped, reboots.
	published, split, skipped, reboots atomic.Int64
	mu                                 sync.Mutex
	firstErr                           error
}

func (s *simStats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	if s.firstErr == nil {
		s.firstErr = err
	}
	s.mu.Unlock()
}

// device is one simulated device: a connection and some drifting state.
type device struct {
	cl     *rpcclient.Client
	rnd    *rand.Rand
	broker string
	booted time.Time
	temp   float64 // °C
	hum    float64 // %
	batt   float64 // V
	errPct int     // percent of regular lines that are errors

	// --console: publish console lines as a stock Mongoose OS device.
	console  bool
	seq      uint64 // the next message's seq; 0 after each boot
	clockSet bool   // mg_time() is Unix time (after wifi and SNTP), else since boot
	booting  bool   // in the boot sequence: no message skipped
}

func newDevice(cl *rpcclient.Client, n uint64, broker string) *device {
	rnd := rand.New(rand.NewPCG(n, uint64(time.Now().UnixNano())))
	return &device{
		cl:     cl,
		rnd:    rnd,
		broker: broker,
		temp:   18 + rnd.Float64()*6,
		hum:    35 + rnd.Float64()*20,
		batt:   3.6 + rnd.Float64()*0.5,
		errPct: []int{1, 1, 1, 2, 2, 4, 8, 15}[rnd.IntN(8)], // a few troubled devices
	}
}

// run logs the boot lines, then one line per interval (with jitter) until
// ctx ends.
func (d *device) run(ctx context.Context, interval, timeout time.Duration, st *simStats) {
	// Once interrupted, a device starts no new call but lets the one in
	// flight finish, so that the summary counts every entry stored.
	send := func(stream, level string, msg any) {
		if ctx.Err() != nil {
			return
		}
		if text, ok := msg.(string); ok && d.console && stream != "sensors" {
			d.consoleLine(ctx, timeout, stream == "errors", text, st)
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if _, err := d.cl.Call(cctx, "Log.Log", map[string]any{"stream": stream, "level": level, "msg": msg}); err != nil {
			st.fail(err)
			return
		}
		st.acked.Add(1)
	}
	d.boot(send)
	// Spread the devices over the first interval.
	next := time.Now().Add(time.Duration(d.rnd.Float64() * float64(interval)))
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		stream, level, msg := d.line()
		send(stream, level, msg)
		if level == "error" && d.rnd.IntN(20) == 0 {
			send("console", "warn", "watchdog: task sensors stuck for 8000 ms, rebooting")
			st.reboots.Add(1)
			d.boot(send)
		}
		// Jitter of ±20% keeps the fleet from logging in lockstep.
		next = next.Add(time.Duration(float64(interval) * (0.8 + 0.4*d.rnd.Float64())))
		if now := time.Now(); next.Before(now) {
			next = now // behind (slow acks): do not burst to catch up
		}
	}
}

// boot logs a boot sequence on console.
func (d *device) boot(send func(stream, level string, msg any)) {
	d.booted = time.Now()
	d.seq, d.clockSet, d.booting = 0, false, true // a new boot: seq from 0, clock not set
	defer func() { d.booting = false }()
	reasons := []string{"power-on", "software reset", "watchdog"}
	send("console", "info", fmt.Sprintf("boot: fw 1.4.%d (build 20261102-0915), reset reason: %s", d.rnd.IntN(3), reasons[d.rnd.IntN(len(reasons))]))
	send("console", "info", fmt.Sprintf("wifi: connected to \"plant-%d\", rssi %d dBm, ip 10.0.%d.%d",
		1+d.rnd.IntN(4), -45-d.rnd.IntN(40), d.rnd.IntN(8), 10+d.rnd.IntN(200)))
	d.clockSet = true // SNTP answers right after wifi
	send("console", "info", "mqtt: connected to "+d.broker)
	send("console", "info", fmt.Sprintf("boot ok in %d ms", 600+d.rnd.IntN(1800)))
}

// line makes the next regular line and its level: mostly sensor readings
// (debug), some housekeeping (info), the odd warning, and errors at the
// device's rate.
func (d *device) line() (stream, level string, msg any) {
	if d.rnd.IntN(100) < d.errPct {
		errs := []string{
			"i2c: sensor 0x44 read timeout, retry 1/3",
			"wifi: beacon timeout, reconnecting",
			"ota: checksum mismatch, download aborted",
			fmt.Sprintf("adc: battery reading out of range: %.2f V", d.rnd.Float64()*0.1),
		}
		return "errors", "error", errs[d.rnd.IntN(len(errs))]
	}
	switch p := d.rnd.IntN(100); {
	case p < 65:
		d.temp += (d.rnd.Float64() - 0.5) * 0.4
		d.hum = min(max(d.hum+(d.rnd.Float64()-0.5), 5), 95)
		d.batt = max(d.batt-0.0005*d.rnd.Float64(), 3.0)
		return "sensors", "debug", map[string]any{
			"temp_c":       math.Round(d.temp*10) / 10,
			"humidity_pct": math.Round(d.hum*10) / 10,
			"battery_v":    math.Round(d.batt*1000) / 1000,
		}
	case p < 95:
		switch d.rnd.IntN(3) {
		case 0:
			return "console", "info", fmt.Sprintf("heap free %d bytes, uptime %d s", 28000+d.rnd.IntN(6000), int(time.Since(d.booted).Seconds()))
		case 1:
			return "console", "info", fmt.Sprintf("wifi: rssi %d dBm", -45-d.rnd.IntN(40))
		default:
			return "console", "info", "ota: no update available"
		}
	default:
		warns := []string{
			fmt.Sprintf("heap low: %d bytes free", 4000+d.rnd.IntN(3000)),
			fmt.Sprintf("wifi: weak signal, rssi %d dBm", -86-d.rnd.IntN(8)),
			"sensors: reading took 812 ms (budget 500 ms)",
		}
		return "console", "warn", warns[d.rnd.IntN(len(warns))]
	}
}

// consoleLine publishes one console line as a stock Mongoose OS device
// does (mongoose-os-libs/mqtt): each write of the console is one QoS 0
// message "<device id> <seq> <mg_time()> <fd>|<text>" on <dev>/log, fd 1
// for stdout and 2 for stderr. Boot's last line, and one line in ten,
// comes in two writes; one message in 25 after the boot sequence is
// skipped, as a device whose send buffer is full skips it, leaving a seq
// gap.
func (d *device) consoleLine(ctx context.Context, timeout time.Duration, stderr bool, text string, st *simStats) {
	fd := 1
	if stderr {
		fd = 2
	}
	line := text + "\n"
	writes := []string{line}
	if len(text) > 10 && (strings.HasPrefix(text, "boot ok") || d.rnd.IntN(10) == 0) {
		k := 4 + d.rnd.IntN(len(text)-8)
		writes = []string{line[:k], line[k:]}
		st.split.Add(1)
	}
	for _, w := range writes {
		seq := d.seq
		d.seq++
		if !d.booting && d.rnd.IntN(25) == 0 {
			st.skipped.Add(1)
			continue
		}
		secs := time.Since(d.booted).Seconds()
		if d.clockSet {
			secs = float64(time.Now().UnixMilli()) / 1000
		}
		payload := fmt.Appendf(nil, "%s %d %.3f %d|%s", d.cl.Src(), seq, secs, fd, w)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		err := d.cl.Publish(cctx, d.cl.Src()+"/log", 0, payload)
		cancel()
		if err != nil {
			st.fail(err)
			return
		}
		st.published.Add(1)
	}
}
