package rpc

import (
	"strings"
	"sync"
	"time"
)

// Role is what a caller may do (PROTOCOL §6).
type Role int

// Roles. The zero Role is RoleAdmin: open mode lets every call through.
const (
	RoleAdmin  Role = iota // anything, on behalf of any source
	RoleDevice             // its own sources only
	RoleReader             // List any source; no Log, no Delete
	RoleNone               // nothing: a client whose account a reload removed
)

// String names the role as the users file does.
func (r Role) String() string {
	switch r {
	case RoleAdmin:
		return "admin"
	case RoleDevice:
		return "device"
	case RoleReader:
		return "reader"
	case RoleNone:
		return "none"
	}
	return "unknown"
}

// ParseRole is the inverse of Role.String for the roles a users file may
// name (not "none").
func ParseRole(s string) (Role, bool) {
	switch s {
	case "admin":
		return RoleAdmin, true
	case "device":
		return RoleDevice, true
	case "reader":
		return RoleReader, true
	}
	return 0, false
}

// Caller is who is calling: in secured mode the MQTT username and its role.
// The zero Caller is open mode's anonymous admin.
type Caller struct {
	Identity string
	Role     Role
	Secured  bool // false: open mode, every call allowed
	// Replies are further roots the caller owns, besides Identity: the
	// sources "<service>/rpc-resp/<client id>" of the connection's own
	// client id, which is where the mos tool wants its replies (hooks.Auth
	// sets them).
	Replies []string
}

// Owns reports whether src is one of the caller's own sources: its identity
// or a path under it, or one of its Replies roots or a path under one. It
// is the one rule for who may speak as src: the service's 403 (PROTOCOL
// §6) and the broker's check of frames published to other clients' <x>/rpc
// topics (hooks) both use it, so that a source added here counts for both.
func (c Caller) Owns(src string) bool {
	if under(src, c.Identity) {
		return true
	}
	for _, r := range c.Replies {
		if under(src, r) {
			return true
		}
	}
	return false
}

// under reports whether src is root or a path below it; nothing is under "".
func under(src, root string) bool {
	return root != "" && strings.HasPrefix(src, root) && (len(src) == len(root) || src[len(root)] == '/')
}

// access is what a method does to the source it names.
type access int

const (
	accessNone  access = iota // touches no source (RPC.Ping, RPC.List)
	accessRead                // Log.List
	accessWrite               // Log.Log, Log.Delete
)

// methodAccess is the permission table of the methods: one row each.
var methodAccess = map[string]access{
	"Log.Log":     accessWrite,
	"Log.Delete":  accessWrite,
	"Log.List":    accessRead,
	"Log.Sources": accessRead, // a device sees only its own sources
	"Log.Streams": accessRead,
	"Log.Fleet":   accessRead, // a device sees only its own sources
	"RPC.Ping":    accessNone,
	"RPC.List":    accessNone,
}

// mayFrame reports whether the caller may send a frame with this src (where
// the reply goes): its own sources, or any for an admin.
func (c Caller) mayFrame(src string) bool {
	return !c.Secured || c.Role == RoleAdmin || (c.Role != RoleNone && c.Owns(src))
}

// may reports whether the caller may do a to src.
func (c Caller) may(a access, src string) bool {
	if !c.Secured || c.Role == RoleAdmin || a == accessNone {
		return true
	}
	switch c.Role {
	case RoleDevice:
		return c.Owns(src)
	case RoleReader:
		return a == accessRead
	}
	return false
}

// bucket is a token bucket: rate tokens a second, up to burst.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	if burst < 1 {
		burst = 1
	}
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take reports whether a token was available at now, and takes it.
func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
