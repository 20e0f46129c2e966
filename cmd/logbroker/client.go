package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/logbroker/logbroker/cmd/internal/rpcclient"
)

// clientConfig holds the flags every client command shares.
type clientConfig struct {
	broker   string
	user     string
	password string
	id       string
	src      string
	clientID string
	caFile   string
	timeout  time.Duration
}

// addClientFlags registers the shared client flags on fs.
func addClientFlags(fs *flag.FlagSet) *clientConfig {
	c := addConnFlags(fs)
	fs.StringVar(&c.src, "src", "", "this client's src: frames carry it, responses come on <src>/rpc, Log.Log logs as it.\nDefault: a random cli-<hex> (<user>/cli-<hex> with --user, which secured mode permits)")
	fs.StringVar(&c.clientID, "client-id", "", "MQTT client id; default the src with a random suffix")
	return c
}

// addConnFlags registers the flags of the connection itself on fs.
func addConnFlags(fs *flag.FlagSet) *clientConfig {
	c := &clientConfig{}
	fs.StringVar(&c.broker, "broker", rpcclient.DefaultBroker, "broker URL: tcp://, ssl:// (TLS), ws:// or wss:// (WebSocket) host:port")
	fs.StringVar(&c.user, "user", "", "MQTT username (secured mode)")
	fs.StringVar(&c.password, "password", "", "MQTT password; prefer the environment variable, which ps does not show")
	fs.StringVar(&c.id, "id", rpcclient.DefaultService, "service id of the broker: requests go to <id>/rpc")
	fs.StringVar(&c.caFile, "cafile", "", "PEM CA certificates to verify an ssl:// or wss:// broker; default the system roots")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the connection and for each response")
	return c
}

// dial connects with the shared flags. Connection events go to stderr.
func (c *clientConfig) dial(ctx context.Context, stderr io.Writer) (*rpcclient.Client, error) {
	src := c.src
	if src == "" && c.user != "" {
		src = rpcclient.NewSrc(c.user + "/cli")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return rpcclient.Dial(ctx, rpcclient.Options{
		Broker:   c.broker,
		Username: c.user,
		Password: c.password,
		Service:  c.id,
		Src:      src,
		ClientID: c.clientID,
		CAFile:   c.caFile,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// call runs `logbroker call`.
func call(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("call", "call [flags] METHOD [ARGS_JSON]\n\nCalls METHOD (Log.List, Log.Log, Log.Delete, ...) with ARGS_JSON, a JSON object\n(\"-\" reads it from stdin), and prints the result: indented on a terminal,\ncompact otherwise. An error response is printed on stderr; the exit code is 1.", stderr)
	c := addClientFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return helpIsNoError(err)
	}
	if len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintln(stderr, "logbroker call: want METHOD and at most one ARGS_JSON")
		fs.Usage()
		return errUsage
	}
	method := pos[0]
	var callArgs any
	var follow bool
	if len(pos) == 2 {
		raw := []byte(pos[1])
		if pos[1] == "-" {
			if raw, err = io.ReadAll(stdin); err != nil {
				return fmt.Errorf("read args: %w", err)
			}
		}
		raw = bytes.TrimSpace(raw)
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("ARGS_JSON must be a JSON object: %w", err)
		}
		callArgs = json.RawMessage(raw)
		follow = string(obj["follow"]) == "true"
	}
	cl, err := c.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var opts []rpcclient.CallOption
	if follow {
		// Let a follow wait most of --timeout, and still get its answer.
		opts = append(opts, rpcclient.Wait(followWait(c.timeout)))
	}
	res, err := cl.Call(cctx, method, callArgs, opts...)
	if err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	return printJSON(stdout, res, isTerminal(stdout))
}

// followWait is how long a follow may wait at the service so that its
// answer still arrives within timeout.
func followWait(timeout time.Duration) time.Duration {
	return max(timeout-min(timeout/4, 5*time.Second), time.Second)
}

// printJSON prints raw, indented or compact, and a newline.
func printJSON(w io.Writer, raw json.RawMessage, indent bool) error {
	var b bytes.Buffer
	var err error
	if indent {
		err = json.Indent(&b, raw, "", "  ")
	} else {
		err = json.Compact(&b, raw)
	}
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// logCmd runs `logbroker log`.
func logCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("log", "log [flags] [MSG...]\n\nLogs MSG, the words joined by spaces, as a JSON string (with --json: as a raw JSON\nvalue) on --src and --stream, and prints the entry id once it is durable.\nWithout MSG, logs each line of stdin (quietly) until EOF.", stderr)
	c := addClientFlags(fs)
	var stream string
	var raw bool
	fs.StringVar(&stream, "stream", "console", "stream to log to")
	fs.BoolVar(&raw, "json", false, "MSG is a JSON value (object, number, ...), not text")
	words, err := parseArgs(fs, args)
	if err != nil {
		return helpIsNoError(err)
	}
	msgOf := func(text string) (json.RawMessage, error) {
		if raw {
			text = strings.TrimSpace(text)
			if !json.Valid([]byte(text)) {
				return nil, fmt.Errorf("--json: %q is not a JSON value", text)
			}
			return json.RawMessage(text), nil
		}
		return json.Marshal(text)
	}
	cl, err := c.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	logOne := func(text string) (string, error) {
		msg, err := msgOf(text)
		if err != nil {
			return "", err
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		res, err := cl.Call(cctx, "Log.Log", map[string]any{"msg": msg, "stream": stream})
		if err != nil {
			return "", err
		}
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(res, &r); err != nil {
			return "", fmt.Errorf("log: result %s: %w", res, err)
		}
		return r.ID, nil
	}
	if len(words) > 0 {
		id, err := logOne(strings.Join(words, " "))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		return nil
	}
	if isTerminal(stdin) {
		fmt.Fprintln(stderr, "logbroker log: give MSG, or pipe lines into stdin")
		fs.Usage()
		return errUsage
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if _, err := logOne(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	return nil
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (`tail dev1 -f`), then fills the flags not given
// from the environment (parseFlags). Everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flag.ErrHelp
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if err := parseFlags(fs, nil); err != nil {
		return nil, err
	}
	return pos, nil
}

// helpIsNoError turns flag.ErrHelp (-h: the usage was printed) into nil.
func helpIsNoError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// isTerminal reports whether f, an io.Reader or io.Writer, is a terminal
// (a character device).
func isTerminal(rw any) bool {
	f, ok := rw.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
