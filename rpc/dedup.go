package rpc

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/logbroker/logbroker/storage"
)

// DedupKey names a Log.Log call for the store's de-duplication: the first
// 128 bits of the SHA-256 of its frame's src, its id as sent and the whole
// payload, each length-prefixed. A device that resends the same frame
// (after a lost answer, from a new connection, with the DUP flag) gets the
// same key, and so the first entry's id; the same id with other bytes (a
// device that rebooted and counts its ids again) is another call. The
// collision odds are in storage's doc.go (De-duplication).
func DedupKey(src string, id, payload []byte) storage.DedupKey {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(src)))])
	h.Write([]byte(src))
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
	h.Write(id)
	h.Write(payload)
	var sum [sha256.Size]byte
	var k storage.DedupKey
	copy(k[:], h.Sum(sum[:0]))
	return k
}
