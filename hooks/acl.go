package hooks

import (
	"strings"

	"github.com/logbroker/logbroker/rpc"
)

// rule allows a role to publish to (write) or subscribe to (read) the topics
// of a filter. In filters, {id} stands for the client's identity, {svc} for
// each name of the service and {client} for the connection's MQTT client id
// (a row with {client} applies only when the id is one valid topic level).
type rule struct {
	role   rpc.Role
	write  bool
	filter string
}

// aclRules is the whole ACL of secured mode (PROTOCOL §6), one row a grant;
// what no row allows is denied. Request frames are consumed by RPC, so
// nobody receives them whatever they subscribe to.
var aclRules = []rule{
	{rpc.RoleDevice, true, "{svc}/rpc"},
	{rpc.RoleDevice, true, "{svc}/rpc/#"},
	{rpc.RoleDevice, true, "+/rpc"}, // calls to other devices
	{rpc.RoleDevice, false, "{id}/#"},
	{rpc.RoleDevice, false, "{svc}/rpc-resp/{client}/#"}, // mos's replies

	{rpc.RoleReader, true, "{svc}/rpc"},
	{rpc.RoleReader, true, "{svc}/rpc/#"},
	{rpc.RoleReader, true, "+/rpc"},
	{rpc.RoleReader, false, "+/log/#"},
	{rpc.RoleReader, false, "{id}/#"},
	{rpc.RoleReader, false, "{svc}/rpc-resp/{client}/#"},

	{rpc.RoleAdmin, true, "#"},
	{rpc.RoleAdmin, false, "#"},
}

// allowed reports whether a client with identity and role, connected with
// the MQTT client id client, may publish to topic (write) or subscribe to the
// filter topic (!write).
func allowed(role rpc.Role, identity, client string, services []string, topic string, write bool) bool {
	if !write {
		topic = stripShare(topic)
	}
	if !validMQTTTopic(topic, write) {
		return false
	}
	for _, r := range aclRules {
		if r.role != role || r.write != write {
			continue
		}
		f := strings.ReplaceAll(r.filter, "{id}", identity)
		if strings.Contains(f, "{client}") {
			if !oneLevel(client) {
				continue
			}
			f = strings.ReplaceAll(f, "{client}", client)
		}
		if !strings.Contains(f, "{svc}") {
			if covers(f, topic) {
				return true
			}
			continue
		}
		for _, s := range services {
			if covers(strings.ReplaceAll(f, "{svc}", s), topic) {
				return true
			}
		}
	}
	return false
}

// oneLevel reports whether a client id can stand for {client}: one topic
// level without wildcards, NUL or control characters, not starting with '$'.
// An id "a/b" or "+" would otherwise reach into another client's topics.
func oneLevel(client string) bool { return validUserName(client) == nil }

// validMQTTTopic reports whether topic is a valid topic name (write) or topic
// filter: not empty, wildcards only as whole levels, '#' only last, and none
// in a name. mochi checks this too, before asking the ACL.
func validMQTTTopic(topic string, name bool) bool {
	if topic == "" {
		return false
	}
	if name {
		return !strings.ContainsAny(topic, "+#")
	}
	levels := strings.Split(topic, "/")
	for i, l := range levels {
		if (l == "#" && i < len(levels)-1) || (l != "+" && l != "#" && strings.ContainsAny(l, "+#")) {
			return false
		}
	}
	return true
}

// stripShare removes a shared-subscription prefix: $share/<group>/<filter>.
func stripShare(filter string) string {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return filter
	}
	if _, f, ok := strings.Cut(rest, "/"); ok {
		return f
	}
	return filter
}

// covers reports whether every topic that filter matches is also matched by
// pattern, with exact MQTT semantics: '+' is one level, '#' is the rest
// (including the parent level), and wildcards in the first level never match
// topics starting with '$'. For a topic name (no wildcards) it is plain
// topic matching. Unlike a prefix match, "a/+" does not cover "a/b/c".
func covers(pattern, filter string) bool {
	p := strings.Split(pattern, "/")
	f := strings.Split(filter, "/")
	dollar := strings.HasPrefix(filter, "$")
	for i, pl := range p {
		if pl == "#" {
			return !(i == 0 && dollar)
		}
		if i >= len(f) {
			return false
		}
		switch {
		case pl == "+":
			if f[i] == "#" || (i == 0 && dollar) {
				return false
			}
		case f[i] == "+" || f[i] == "#" || pl != f[i]:
			return false
		}
	}
	return len(f) == len(p)
}
