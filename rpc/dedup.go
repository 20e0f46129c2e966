package rpc

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/logbroker/logbroker/storage"
)

// DedupKey names a Log.Log call for the store's de-duplication: the first
// 128 bits of the SHA-256 of its frame's src, its id as sent and the whole
// payload, each but the last length-prefixed. A device that resends the
// same frame (after a lost answer, from a new connection, with the DUP
// flag) gets the same key, and so the first entry's id; the same id with
// other bytes (a device that rebooted and counts its ids again) is another
// call. The collision odds are in storage's doc.go (De-duplication).
func DedupKey(src string, id, payload []byte) storage.DedupKey {
	var stack [1024]byte // most frames: no allocation
	b := binary.AppendUvarint(stack[:0], uint64(len(src)))
	b = append(b, src...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = append(b, payload...)
	sum := sha256.Sum256(b)
	return storage.DedupKey(sum[:len(storage.DedupKey{})])
}
