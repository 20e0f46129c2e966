package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/logbroker/logbroker/storage"
)

// Wire error codes (PROTOCOL §3).
const (
	CodeBadRequest    = 400
	CodeForbidden     = 403
	CodeNotFound      = 404
	CodeTooLarge      = 413
	CodeTooMany       = 429
	CodeInternal      = 500
	CodeUnavailable   = 503
	CodeScanTimeout   = 504
	internalMessage   = "internal error"
	unavailableReason = "service is shutting down"
)

var (
	// ErrDropped is returned by DecodeFrame for a payload that cannot be
	// answered: not a JSON object, or without a usable src.
	ErrDropped = errors.New("frame dropped")
	// ErrShuttingDown is returned for calls that arrive after Shutdown began.
	ErrShuttingDown = errors.New("shutting down")
)

// Error is an error with a wire code. Its Message is sent to the caller as is.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// errorf makes an *Error with a formatted message.
func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// wireErrors maps sentinel errors of lower layers to wire errors: the one
// table from error to code. Anything not here and not an *Error is 500.
var wireErrors = []struct {
	err  error
	code int
	msg  string
}{
	{ErrShuttingDown, CodeUnavailable, unavailableReason},
	{storage.ErrClosed, CodeUnavailable, unavailableReason},
	{storage.ErrBadID, CodeBadRequest, "after is not a valid entry id"},
	{context.DeadlineExceeded, CodeUnavailable, "call timed out"},
	{context.Canceled, CodeUnavailable, unavailableReason},
}

// toWire converts any error to the code and message the caller sees.
// internal reports whether the detail was hidden (the caller logs it).
func toWire(err error) (code int, msg string, internal bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Message, false
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return w.code, w.msg, false
		}
	}
	return CodeInternal, internalMessage, true
}
