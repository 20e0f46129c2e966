package storage

import (
	"fmt"
	"log/slog"
)

// pebbleLogger adapts slog to pebble.Logger: Infof is dropped (Pebble is
// chatty), Errorf is logged at error level, and Fatalf is logged and then
// panics. Pebble expects Fatalf not to return; a panic (unlike the default
// os.Exit) can be recovered where the store calls into Pebble, and leaves a
// stack trace where it cannot (Pebble's background goroutines).
type pebbleLogger struct{ log *slog.Logger }

func (pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble", "err", fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble fatal", "err", msg)
	panic(fatalError(msg))
}

// fatalError is the panic value of pebbleLogger.Fatalf.
type fatalError string

func (e fatalError) Error() string { return "pebble fatal: " + string(e) }
