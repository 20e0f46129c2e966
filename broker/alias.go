package broker

import mqtt "github.com/mochi-mqtt/server/v2"

// aliasCapabilities turns inbound topic aliases off.
//
// mochi (v2.7.9) accepts topic aliases up to its TopicAliasMaximum
// (65535 by default) but never advertises one in the CONNACK, so a client
// that follows MQTT 5 sends none, and one that sends them anyway has them
// half honoured: a PUBLISH with an empty topic and a known alias reaches
// the ACL check (server.go processPublish) before the alias is resolved,
// so it is checked, and usually dropped, as the empty topic. Advertising
// none and holding mochi to it makes aliases what MQTT 5 says they are
// when the server's Topic Alias Maximum is 0 (absent from the CONNACK): a
// PUBLISH carrying one is a protocol error, answered with DISCONNECT 0x94
// Topic Alias invalid ([MQTT-3.3.2-9], mochi PublishValidate).
// TestTopicAlias/MochiBug shows the default; outbound aliases (to clients
// that advertise a maximum) are mochi's and unaffected.
func aliasCapabilities(caps *mqtt.Capabilities) {
	caps.TopicAliasMaximum = 0
}
