package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/logbroker/logbroker/cmd/internal/rpcclient"
)

// maxPage is the most entries one Log.List returns (PROTOCOL §5).
const maxPage = 1000

// tailFollowWait is how long each follow call of tail -f waits at the
// service before it answers [] and is issued again.
const tailFollowWait = 25 * time.Second

// entry is an entry object (PROTOCOL §4).
type entry struct {
	ID        string          `json:"id"`
	Src       string          `json:"src"`
	Stream    string          `json:"stream"`
	Timestamp int64           `json:"timestamp"`
	Msg       json.RawMessage `json:"msg"`
}

// tail runs `logbroker tail`.
func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", "tail [flags] [SRC]\n\nPrints the last entries of SRC (default: --src), one line each:\n  2026-11-25T16:00:00.123Z dev1 console boot ok\n(UTC time, src, stream, msg: text as is with control characters escaped, other\nJSON compact). Colour only on a terminal, and never with NO_COLOR set.\nWith -f, keeps printing new entries as they become durable until interrupted,\nwithout gaps or repeats, also across reconnects.", stderr)
	c := addClientFlags(fs)
	var stream string
	var follow, asJSON bool
	var last int
	fs.StringVar(&stream, "stream", "", "only this stream; default all streams of SRC, merged in id order")
	fs.BoolVar(&follow, "f", false, "follow: wait for new entries (same as --follow)")
	fs.BoolVar(&follow, "follow", false, "follow: wait for new entries")
	fs.IntVar(&last, "last", 10, "print the last N entries first (0: none, only new ones with -f)")
	fs.BoolVar(&asJSON, "json", false, "print each entry as its JSON object, one a line")
	ff := addFilterFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return helpIsNoError(err)
	}
	if len(pos) > 1 {
		fmt.Fprintln(stderr, "logbroker tail: at most one SRC")
		fs.Usage()
		return errUsage
	}
	src := ""
	if len(pos) == 1 {
		src = pos[0]
	} else if c.src == "" {
		fmt.Fprintln(stderr, "logbroker tail: which source? Give SRC (or --src)")
		fs.Usage()
		return errUsage
	}
	if last < 0 {
		return fmt.Errorf("--last %d: must be 0 or more", last)
	}
	filters, err := ff.args(time.Now())
	if err != nil {
		return err
	}

	cl, err := c.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	t := &tailer{
		cl:      cl,
		timeout: c.timeout,
		base:    map[string]any{},
		filters: filters,
		out:     bufio.NewWriter(stdout),
		json:    asJSON,
		color:   !asJSON && isTerminal(stdout) && os.Getenv("NO_COLOR") == "",
	}
	if src != "" {
		t.base["src"] = src
	}
	if stream != "" {
		t.base["stream"] = stream
	}
	if err := t.initial(ctx, last, follow); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	err = t.follow(ctx)
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of tail -f
	}
	return err
}

// tailer prints the entries of one selection, remembering the id of the
// last one it printed.
type tailer struct {
	cl      *rpcclient.Client
	timeout time.Duration
	base    map[string]any // src and stream of every Log.List
	filters map[string]any // the filters of every Log.List but the one that finds the position
	pos     string         // id of the last entry seen; "" before the first
	out     *bufio.Writer
	json    bool
	color   bool
}

// list calls Log.List with the base selection and the filters plus extra.
func (t *tailer) list(ctx context.Context, extra map[string]any, opts ...rpcclient.CallOption) ([]json.RawMessage, error) {
	args := make(map[string]any, len(t.base)+len(t.filters)+len(extra))
	for k, v := range t.base {
		args[k] = v
	}
	for k, v := range t.filters {
		args[k] = v
	}
	if len(t.filters) > 0 && extra["follow"] == nil {
		// The scan of a filtered List ends (504) before the call times out.
		opts = append(opts, rpcclient.Wait(followWait(t.timeout)))
	}
	for k, v := range extra {
		args[k] = v
	}
	res, err := t.cl.Call(ctx, "Log.List", args, opts...)
	if err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(res, &raws); err != nil {
		return nil, fmt.Errorf("list: result is not an array: %w", err)
	}
	return raws, nil
}

// initial prints the last n entries. With n == 0 it only finds the
// position (the id of the newest entry) a follow starts after.
func (t *tailer) initial(ctx context.Context, n int, follow bool) error {
	if n == 0 {
		if !follow {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, t.timeout)
		defer cancel()
		// The newest entry of the selection, whether or not it passes the
		// filters: the follow waits for what comes after it.
		filters := t.filters
		t.filters = nil
		raws, err := t.list(cctx, map[string]any{"last": 1})
		t.filters = filters
		if err != nil {
			return err
		}
		for _, raw := range raws {
			var e entry
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("entry %s: %w", raw, err)
			}
			t.pos = e.ID
		}
		return nil
	}
	extra := map[string]any{"last": n, "limit": min(n, maxPage)}
	for n > 0 {
		cctx, cancel := context.WithTimeout(ctx, t.timeout)
		raws, err := t.list(cctx, extra)
		cancel()
		if err != nil {
			return err
		}
		if err := t.print(raws); err != nil {
			return err
		}
		asked := extra["limit"].(int)
		n -= len(raws)
		if len(raws) < asked || t.pos == "" {
			return nil
		}
		extra = map[string]any{"after": t.pos, "limit": min(n, maxPage)}
	}
	return nil
}

// follow loops Log.List follow calls, each after the last entry seen, until
// ctx ends or the service refuses the selection.
func (t *tailer) follow(ctx context.Context) error {
	for ctx.Err() == nil {
		extra := map[string]any{"follow": true, "limit": maxPage}
		if t.pos != "" {
			extra["after"] = t.pos
		}
		cctx, cancel := context.WithTimeout(ctx, tailFollowWait+t.timeout)
		raws, err := t.list(cctx, extra, rpcclient.Wait(tailFollowWait))
		cancel()
		var ce *rpcclient.CallError
		switch {
		case err == nil:
			if err := t.print(raws); err != nil {
				return err
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, rpcclient.ErrConnectionLost), errors.Is(err, context.DeadlineExceeded):
			// Issued again (after the reconnect) from the same position.
		case errors.As(err, &ce) && (ce.Code == 429 || ce.Code >= 500):
			// Busy or restarting: try again shortly.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		default:
			return err
		}
	}
	return nil
}

// print writes entries and remembers the last id.
func (t *tailer) print(raws []json.RawMessage) error {
	for _, raw := range raws {
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("entry %s: %w", raw, err)
		}
		t.pos = e.ID
		if t.json {
			if err := printJSON(t.out, raw, false); err != nil {
				return err
			}
			continue
		}
		t.out.WriteString(formatEntry(e, t.color))
		t.out.WriteByte('\n')
	}
	return t.out.Flush()
}

// ANSI colours of formatEntry.
const (
	ansiReset  = "\x1b[0m"
	ansiDim    = "\x1b[2m"
	ansiCyan   = "\x1b[36m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
)

// formatEntry is the human line of an entry, without a newline:
// "2026-11-25T16:00:00.123Z dev1 console boot ok".
func formatEntry(e entry, color bool) string {
	ts := time.UnixMilli(e.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z")
	msg := msgText(e.Msg)
	if !color {
		return ts + " " + e.Src + " " + e.Stream + " " + msg
	}
	msgColor := ""
	switch e.Stream {
	case "errors", "error", "stderr":
		msgColor = ansiRed
	}
	var b strings.Builder
	b.WriteString(ansiDim + ts + ansiReset + " ")
	b.WriteString(ansiCyan + e.Src + ansiReset + " ")
	b.WriteString(ansiYellow + e.Stream + ansiReset + " ")
	if msgColor != "" {
		b.WriteString(msgColor + msg + ansiReset)
	} else {
		b.WriteString(msg)
	}
	return b.String()
}

// msgText is a msg for a human: a JSON string as its text, any other value
// as compact JSON; control characters escaped (\n, \x1b) so that an entry
// is one line and cannot drive the terminal.
func msgText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return escapeControl(string(raw))
		}
		s = b.String()
	}
	return escapeControl(s)
}

// escapeControl escapes the control characters of s except tab.
func escapeControl(s string) string {
	clean := true
	for _, r := range s {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !isControl(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

func isControl(r rune) bool {
	return r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0))
}
