// Command logbroker is an MQTT broker with a built-in durable log service.
//
// Usage:
//
//	logbroker serve [flags]   run the broker (logbroker serve -h lists the flags)
//	logbroker bench [flags]   measure a broker: calls/s, latency, errors
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logbroker:", err)
		os.Exit(1)
	}
}

// errUsage means the usage was printed; the exit code is 2.
var errUsage = errors.New("usage")

const usage = `logbroker: an MQTT broker with a built-in, durable log service.

Usage:
  logbroker serve [flags]    run the broker
  logbroker bench [flags]    load generator: calls/s, latency and errors of a broker
                             (--embedded starts one in-process)
  logbroker passwd           read a password on stdin, print its bcrypt hash
  logbroker call METHOD [ARGS_JSON]
                             call the log service, print the result
  logbroker log MSG...       log MSG (or each line of stdin) as --src
  logbroker tail [SRC]       print the last entries of SRC; -f follows;
                             --level, --match, --regex, --since, --until filter
  logbroker export SRC       write the entries of SRC as NDJSON (same filters);
                             --resume FILE continues an interrupted export
  logbroker simulate         run a demo fleet: --devices N --rate R
  logbroker help             show this text

Run 'logbroker COMMAND -h' for the flags of a command. Every flag also reads an
environment variable: --follow-timeout is LOGBROKER_FOLLOW_TIMEOUT.
`

// run dispatches the subcommand in args.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "bench":
		return bench(ctx, args[1:], stdout, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout, stderr)
	case "call":
		return call(ctx, args[1:], os.Stdin, stdout, stderr)
	case "log":
		return logCmd(ctx, args[1:], os.Stdin, stdout, stderr)
	case "tail":
		return tail(ctx, args[1:], stdout, stderr)
	case "export":
		return export(ctx, args[1:], stdout, stderr)
	case "simulate":
		return simulate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "logbroker: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
