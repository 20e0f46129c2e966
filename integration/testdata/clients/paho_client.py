#!/usr/bin/env python3
"""Drives logbroker with paho-python (Debian's python3-paho-mqtt, 1.6.x).

Usage: paho_client.py HOST PORT VERSION(4|5) TAG

Runs the checks below against the broker and prints one line per check:
"ok <name>" or "FAIL <name>: <why>". Exits 1 if any check failed. The Go
test (integration/clients_test.go) runs it and requires every "ok" line.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT, VERSION, TAG = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
WAIT = 10.0
failed = False

# paho's network thread dies on a PUBACK it cannot parse (issue 13): say so
# in one line rather than a traceback; the check waiting for it reports.
threading.excepthook = lambda a: print("paho network thread died: %s: %s" % (a.exc_type.__name__, a.exc_value), file=sys.stderr)


def report(name, ok, why=""):
    global failed
    if ok:
        print("ok", name, flush=True)
    else:
        failed = True
        print("FAIL %s: %s" % (name, why), flush=True)


class Client(mqtt.Client):
    """A paho client that records messages and the raw PUBACKs it reads."""

    def __init__(self, cid):
        proto = mqtt.MQTTv5 if VERSION == 5 else mqtt.MQTTv311
        kw = {} if VERSION == 5 else {"clean_session": True}
        super().__init__(client_id=cid, protocol=proto, **kw)
        self.cid = cid
        self.cond = threading.Condition()
        self.msgs = []
        self.pubacks = []  # the bytes after the fixed header of each PUBACK
        self.acked = set()  # mids whose publish completed (on_publish)
        self.subacked = set()
        self.connected = threading.Event()
        self.on_connect = self._connected
        self.on_message = self._message
        self.on_publish = self._published
        self.on_subscribe = self._subscribed

    def _handle_pubackcomp(self, cmd):
        # Record the PUBACK as it came off the wire, then let paho handle it.
        if cmd == "PUBACK":
            with self.cond:
                self.pubacks.append(bytes(self._in_packet["packet"]))
        return super()._handle_pubackcomp(cmd)

    def _connected(self, c, userdata, flags, rc, properties=None):
        self.connected.set()

    def _message(self, c, userdata, m):
        with self.cond:
            self.msgs.append(m)
            self.cond.notify_all()

    def _published(self, c, userdata, mid):
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def _subscribed(self, c, userdata, mid, *rest):
        with self.cond:
            self.subacked.add(mid)
            self.cond.notify_all()

    def start(self):
        self.connect(HOST, PORT, keepalive=30)
        self.loop_start()
        if not self.connected.wait(WAIT):
            raise SystemExit("FAIL connect: no CONNACK")
        return self

    def wait_for(self, what, pred, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = pred()
                if got:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what)
                self.cond.wait(left)

    def sub(self, topic):
        _, mid = self.subscribe(topic, 1)
        self.wait_for("SUBACK", lambda: mid in self.subacked)

    def pub(self, topic, payload, props=None):
        info = self.publish(topic, payload, qos=1, properties=props)
        self.wait_for("PUBACK of mid %d" % info.mid, lambda: info.mid in self.acked)
        return info.mid

    def reply(self, topic, rid, start=0, timeout=WAIT):
        def find():
            for m in self.msgs[start:]:
                if m.topic == topic:
                    try:
                        r = json.loads(m.payload)
                    except ValueError:
                        continue
                    if r.get("id") == rid:
                        return (m, r)
            return None
        return self.wait_for("reply %s on %s" % (rid, topic), find, timeout)

    def call(self, frame, props=None):
        start = len(self.msgs)
        self.pub("logbroker/rpc", json.dumps(frame), props)
        return self.reply(frame["src"] + "/rpc", frame["id"], start)[1]


def check(name, fn):
    try:
        fn()
    except Exception as e:  # a check that raises has failed
        report(name, False, "%s: %s" % (type(e).__name__, e))


def main():
    src = "py%d-%s" % (VERSION, TAG)
    a = Client(src).start()
    a.sub(src + "/rpc")
    b = Client(src + "-b").start()
    b.sub(src + "-b/rpc")

    def log_log():
        r = a.call({"id": 1, "src": src, "method": "Log.Log", "params": {"msg": "from paho"}})
        report("Log.Log", "result" in r and isinstance(r["result"].get("id"), str), json.dumps(r))
    check("Log.Log", log_log)

    def follow():
        # A waits for the next entry of src; B logs until A is answered.
        start = len(a.msgs)
        a.pub("logbroker/rpc", json.dumps({"id": 2, "src": src, "method": "Log.List",
                                           "args": {"last": 0, "follow": True}, "timeout": 20}))
        deadline = time.monotonic() + WAIT
        n = 0
        while time.monotonic() < deadline:
            n += 1
            b.call({"id": 100 + n, "src": src + "-b", "method": "Log.Log", "args": {"src": src, "msg": "wake %d" % n}})
            try:
                _, r = a.reply(src + "/rpc", 2, start, timeout=0.2)
                es = r.get("result")
                report("Log.List follow woken by another client",
                       isinstance(es, list) and len(es) >= 1 and es[0]["msg"].startswith("wake"), json.dumps(r))
                return
            except TimeoutError:
                continue
        report("Log.List follow woken by another client", False, "no answer within %ss" % WAIT)
    check("Log.List follow woken by another client", follow)

    def delete():
        r = a.call({"id": 3, "src": src, "method": "Log.Delete", "params": {}})
        l = a.call({"id": 4, "src": src, "method": "Log.List", "params": {"stream": "console"}})
        report("Log.Delete", "error" not in r and "result" not in r and l.get("result") == [], json.dumps([r, l]))
    check("Log.Delete", delete)

    def qos1_properties():
        # Its own client: a broken PUBACK kills paho's network thread.
        p = Client(src + "-p").start()
        p.sub(src + "-p/rpc")
        props = None
        if VERSION == 5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("origin", "paho-python")
            props.UserProperty = ("run", TAG)
        frame = {"id": 5, "src": src + "-p", "method": "Log.Log", "args": {"src": src + "-p", "msg": "with user properties"}}
        for topic, payload in (("logbroker/rpc", json.dumps(frame)), (src + "-p/plain", b"plain message")):
            before = len(p.pubacks)
            start = len(p.msgs)
            info = p.publish(topic, payload, qos=1, properties=props)
            # A PUBACK is the packet id, then (MQTT 5) an optional reason
            # code (0x00 success) and optional properties, none of which
            # the broker has reason to send back.
            ack = p.wait_for("PUBACK for %s" % topic, lambda: p.pubacks[before:])[0]
            if not (len(ack) == 2 or (ack[2] == 0 and ack[3:] in (b"", b"\x00"))):
                report("QoS 1 publish with User Properties", False,
                       "PUBACK for %s: %s (want the packet id, then nothing, 00 or 0000)" % (topic, ack.hex()))
                p.loop_stop()
                return
            p.wait_for("publish to %s completed" % topic, lambda: info.mid in p.acked)
            if topic == "logbroker/rpc":
                _, r = p.reply(src + "-p/rpc", 5, start)
                if "result" not in r:
                    report("QoS 1 publish with User Properties", False, json.dumps(r))
                    return
        p.disconnect()
        p.loop_stop()
        report("QoS 1 publish with User Properties", True)
    check("QoS 1 publish with User Properties", qos1_properties)

    if VERSION == 5:
        def response_topic():
            a.sub(src + "/answers")
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = src + "/answers"
            props.CorrelationData = b"corr-\x00\xff-1"
            start = len(a.msgs)
            a.pub("logbroker/rpc", json.dumps({"id": 6, "src": src, "method": "RPC.Ping"}), props)
            m, r = a.reply(src + "/answers", 6, start)
            corr = getattr(m.properties, "CorrelationData", None)
            report("Response Topic with Correlation Data", corr == b"corr-\x00\xff-1" and "result" in r,
                   "correlation %r, reply %s" % (corr, json.dumps(r)))
        check("Response Topic with Correlation Data", response_topic)

    for c in (a, b):
        c.disconnect()
        c.loop_stop()
    sys.exit(1 if failed else 0)


main()
