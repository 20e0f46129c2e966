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
	"time"

	"github.com/logbroker/logbroker/cmd/internal/rpcclient"
)

// export runs `logbroker export`.
func export(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "export [flags] SRC > FILE.ndjson\n\nWrites the entries of SRC that pass the filters, as entry objects (PROTOCOL §4),\none a line, in id order; on a terminal, a progress line on stderr.\nWith --resume FILE, appends to FILE the entries after the last complete line in\nit (a partial last line is cut off first): run it again after an interruption.\nGive --since/--until as RFC 3339 times for a resume to select the same range.", stderr)
	c := addClientFlags(fs)
	var stream, resume string
	fs.StringVar(&stream, "stream", "", "only this stream; default all streams of SRC, merged in id order")
	fs.StringVar(&resume, "resume", "", "append to this file, after its last complete entry, instead of writing to stdout")
	ff := addFilterFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return helpIsNoError(err)
	}
	if len(pos) > 1 {
		fmt.Fprintln(stderr, "logbroker export: at most one SRC")
		fs.Usage()
		return errUsage
	}
	src := c.src
	if len(pos) == 1 {
		src = pos[0]
	}
	if src == "" {
		fmt.Fprintln(stderr, "logbroker export: which source? Give SRC (or --src)")
		fs.Usage()
		return errUsage
	}
	sel, err := ff.args(time.Now())
	if err != nil {
		return err
	}
	sel["src"] = src
	if stream != "" {
		sel["stream"] = stream
	}
	x := &exporter{timeout: c.timeout, sel: sel, out: stdout}
	if resume != "" {
		f, after, err := openResume(resume)
		if err != nil {
			return err
		}
		defer f.Close()
		x.out, x.after = f, after
	}
	if isTerminal(stderr) {
		x.progress = stderr
	}
	cl, err := c.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	x.cl = cl
	return x.run(ctx)
}

// exporter pages through a selection with after, writing each entry.
type exporter struct {
	cl       *rpcclient.Client
	timeout  time.Duration
	sel      map[string]any // src, stream, filters
	after    string         // the id of the last entry written; "" for none
	out      io.Writer
	progress io.Writer // nil: no progress line
	n        int
}

func (x *exporter) run(ctx context.Context) error {
	w := bufio.NewWriterSize(x.out, 64<<10)
	defer x.endProgress()
	for {
		args := make(map[string]any, len(x.sel)+2)
		for k, v := range x.sel {
			args[k] = v
		}
		args["limit"] = maxPage
		if x.after != "" {
			args["after"] = x.after
		}
		cctx, cancel := context.WithTimeout(ctx, x.timeout)
		// The service's scan of a filtered page ends (504) before the
		// call times out here.
		res, err := x.cl.Call(cctx, "Log.List", args, rpcclient.Wait(followWait(x.timeout)))
		cancel()
		if err != nil {
			return errors.Join(fmt.Errorf("export after %q: %w", x.after, err), w.Flush())
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(res, &raws); err != nil {
			return errors.Join(fmt.Errorf("export: result is not an array: %w", err), w.Flush())
		}
		for _, raw := range raws {
			line, id, err := entryLine(raw)
			if err != nil {
				return errors.Join(err, w.Flush())
			}
			w.Write(line)
			w.WriteByte('\n')
			x.after = id
			x.n++
		}
		// Whole pages only reach the file: an interrupted export leaves
		// complete lines (but for the very last write), which --resume
		// continues after.
		if err := w.Flush(); err != nil {
			return fmt.Errorf("export: write: %w", err)
		}
		x.showProgress()
		if len(raws) < maxPage {
			return nil
		}
	}
}

// entryLine returns an entry object as one line (compacted if its msg
// spans lines) and its id.
func entryLine(raw json.RawMessage) ([]byte, string, error) {
	var e struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" {
		return nil, "", fmt.Errorf("export: entry %.80s has no id: %v", raw, err)
	}
	if bytes.ContainsAny(raw, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, "", fmt.Errorf("export: entry %s: %w", e.ID, err)
		}
		raw = b.Bytes()
	}
	return raw, e.ID, nil
}

func (x *exporter) showProgress() {
	if x.progress != nil {
		fmt.Fprintf(x.progress, "\r%d entries exported, last id %s", x.n, x.after)
	}
}

func (x *exporter) endProgress() {
	if x.progress != nil && x.n > 0 {
		fmt.Fprintln(x.progress)
	}
}

// openResume opens FILE for --resume: it cuts off a partial last line and
// returns the file, positioned at its end, and the id of its last entry
// ("" if it has none). A missing file is created.
func openResume(name string) (*os.File, string, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("resume: %w", err)
	}
	end, id, err := lastLine(f)
	if err == nil {
		err = f.Truncate(end)
	}
	if err == nil {
		_, err = f.Seek(end, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("resume %s: %w", name, err)
	}
	return f, id, nil
}

// lastLine finds the end of the last complete line of f (just after its
// newline; 0 if none) and the id of the entry on that line, reading f
// backwards a block at a time.
func lastLine(f *os.File) (end int64, id string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	size := fi.Size()
	const block = 64 << 10
	var tail []byte // the bytes from some offset to size
	end = -1
	for off := size; off > 0; {
		n := min(int64(block), off)
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, "", err
		}
		tail = append(buf, tail...)
		if end < 0 {
			if i := bytes.LastIndexByte(tail, '\n'); i >= 0 {
				end = off + int64(i) + 1
			}
		}
		if end >= 0 {
			// The complete last line lies between the newline before it
			// (or the start) and end.
			line := tail[:end-off-1]
			if i := bytes.LastIndexByte(line, '\n'); i >= 0 || off == 0 {
				line = line[i+1:]
				var e struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(line, &e); err != nil || e.ID == "" {
					return 0, "", fmt.Errorf("last complete line %.80q is not an entry with an id", line)
				}
				return end, e.ID, nil
			}
		}
	}
	return 0, "", nil // no complete line: start from the beginning
}
