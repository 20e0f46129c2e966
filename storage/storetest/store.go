// Package storetest is the conformance suite every storage backend must pass.
//
// A backend (Pebble today, a NATS JetStream cluster later) passes when
// Run(t, newStore) is green. The suite checks the selection rules of PROTOCOL
// §5, id ordering across reopen and Delete, durability-ordered notifications,
// and the invariants listed on Store.
package storetest

import (
	"context"

	"github.com/logbroker/logbroker/storage"
)

// Store is the contract a backend implements. rpc.LogStore is the subset the
// RPC layer calls.
type Store interface {
	// Append stores rec and returns its entry once it is durable.
	Append(ctx context.Context, rec storage.Record) (storage.Entry, error)
	// AppendAsync queues rec and returns at once; done runs exactly once, on
	// another goroutine, when the entry is durable or has failed. Records
	// queued by one goroutine (and Deletes it issues after them) take effect
	// in the order that goroutine queued them.
	AppendAsync(rec storage.Record, done func(storage.Entry, error))
	// List returns the entries q selects, only ever durable ones.
	List(ctx context.Context, q storage.Query) ([]storage.Entry, error)
	// Head returns the highest sequence ever made durable for src (0: none),
	// including entries since deleted.
	Head(ctx context.Context, src string) (uint64, error)
	// Delete removes every entry of src in stream, durably, and takes effect
	// after every AppendAsync the calling goroutine issued before it.
	Delete(ctx context.Context, src, stream string) error
	// Subscribe registers fn to be called with each group of entries once
	// they are durable and listable, in commit order, one call at a time.
	// fn may call List and Head. The returned func unregisters fn.
	Subscribe(fn func([]storage.Entry)) (cancel func())
	// Close flushes, and releases the backend. Each call queued before it
	// either completes or fails with storage.ErrClosed; calls after it fail
	// with storage.ErrClosed.
	Close() error
}
