// mqtt.js: a minimal MQTT 3.1.1 client over WebSocket, enough for the
// dashboard: CONNECT (optional username and password), SUBSCRIBE,
// UNSUBSCRIBE, PUBLISH at QoS 0 and 1 both ways (incoming QoS 1 is
// acknowledged with PUBACK, incoming QoS 2 completes its PUBREC/PUBREL/PUBCOMP
// flow), PINGREQ keepalive and DISCONNECT. One MQTT packet may span several
// WebSocket messages and one message may hold several packets, so incoming
// bytes are buffered and cut into packets by their length.
"use strict";

(function (global) {
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5, PUBREL = 6,
    PUBCOMP = 7, SUBSCRIBE = 8, SUBACK = 9, UNSUBSCRIBE = 10, UNSUBACK = 11,
    PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;

  const connackErrors = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad username or password",
    5: "not authorized",
  };

  // Remaining Length: 7 bits a byte, high bit set on all but the last.
  function encodeLength(n) {
    const out = [];
    do {
      let b = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      out.push(b);
    } while (n > 0);
    return out;
  }

  // A UTF-8 string with its two-byte length.
  function str(s) {
    const b = enc.encode(s);
    if (b.length > 65535) throw new Error("mqtt: string over 65535 bytes");
    const out = new Uint8Array(2 + b.length);
    out[0] = b.length >> 8;
    out[1] = b.length & 0xff;
    out.set(b, 2);
    return out;
  }

  function u16(n) {
    return new Uint8Array([n >> 8, n & 0xff]);
  }

  // packet builds one packet from its first byte and the parts of its body.
  function packet(first, parts) {
    let len = 0;
    for (const p of parts) len += p.length;
    const head = [first, ...encodeLength(len)];
    const out = new Uint8Array(head.length + len);
    out.set(head, 0);
    let off = head.length;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  class Client {
    // url: ws:// or wss://. opts: clientId, username, password, keepalive
    // (seconds, default 30), connectTimeout (ms, default 10000).
    constructor(url, opts) {
      this.url = url;
      this.opts = Object.assign({ keepalive: 30, connectTimeout: 10000 }, opts || {});
      this.onmessage = null; // (topic string, payload Uint8Array, qos)
      this.onclose = null; // (reason string), once, after a connect succeeded
      this.ws = null;
      this.buf = new Uint8Array(0);
      this.nextId = 1;
      this.pending = new Map(); // packet id -> {resolve, reject, kind}
      this.connected = false;
      this.closed = false;
      this.pinger = null;
      this.lastSent = 0;
      this.pingOut = 0; // when the unanswered PINGREQ was sent; 0: none
    }

    // connect resolves once the broker accepted the connection (CONNACK 0).
    connect() {
      return new Promise((resolve, reject) => {
        let settled = false;
        const fail = (why) => {
          if (!settled) {
            settled = true;
            reject(new Error(why));
          }
          this._shutdown(why);
        };
        let ws;
        try {
          ws = new WebSocket(this.url, ["mqtt"]);
        } catch (e) {
          reject(e);
          return;
        }
        ws.binaryType = "arraybuffer";
        this.ws = ws;
        const timer = setTimeout(() => fail("connect: no answer within " + this.opts.connectTimeout + " ms"), this.opts.connectTimeout);
        this._connack = (code) => {
          clearTimeout(timer);
          if (code !== 0) {
            fail("connect refused: " + (connackErrors[code] || "code " + code));
            return;
          }
          settled = true;
          this.connected = true;
          this._startPing();
          resolve();
        };
        ws.onopen = () => this._sendConnect();
        ws.onmessage = (ev) => {
          if (!(ev.data instanceof ArrayBuffer)) {
            fail("mqtt: text frame from server");
            return;
          }
          try {
            this._feed(new Uint8Array(ev.data));
          } catch (e) {
            fail(String(e && e.message || e));
          }
        };
        ws.onerror = () => {}; // onclose follows with the details
        ws.onclose = (ev) => {
          clearTimeout(timer);
          fail("connection closed" + (ev.code ? " (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")" : ""));
        };
      });
    }

    _sendConnect() {
      const o = this.opts;
      let flags = 0x02; // clean session
      const payload = [str(o.clientId || "")];
      if (o.username) {
        flags |= 0x80;
        payload.push(str(o.username));
        if (o.password) {
          flags |= 0x40;
          payload.push(str(o.password));
        }
      }
      const vh = [str("MQTT"), new Uint8Array([4, flags]), u16(o.keepalive)];
      this._send(packet(CONNECT << 4, vh.concat(payload)));
    }

    _send(bytes) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("mqtt: not connected");
      this.ws.send(bytes);
      this.lastSent = Date.now();
    }

    // _startPing sends PINGREQ when nothing was sent for most of the
    // keepalive, and gives up on a broker that did not answer the last one.
    _startPing() {
      const ka = this.opts.keepalive * 1000;
      if (!ka) return;
      this.pinger = setInterval(() => {
        if (this.pingOut) {
          if (Date.now() - this.pingOut > ka) this._shutdown("keepalive: no PINGRESP");
          return;
        }
        if (Date.now() - this.lastSent >= ka * 0.75) {
          this.pingOut = Date.now();
          try {
            this._send(new Uint8Array([PINGREQ << 4, 0]));
          } catch (e) {
            this._shutdown("keepalive: " + e.message);
          }
        }
      }, Math.max(1000, ka / 4));
    }

    // _feed appends bytes and handles every whole packet in the buffer.
    _feed(bytes) {
      const b = new Uint8Array(this.buf.length + bytes.length);
      b.set(this.buf, 0);
      b.set(bytes, this.buf.length);
      let off = 0;
      for (;;) {
        if (b.length - off < 2) break;
        let len = 0, mul = 1, i = off + 1, done = false;
        for (let k = 0; k < 4 && i < b.length; k++, i++) {
          len += (b[i] & 0x7f) * mul;
          mul *= 128;
          if ((b[i] & 0x80) === 0) {
            done = true;
            i++;
            break;
          }
        }
        if (!done) {
          if (i - off - 1 >= 4) throw new Error("mqtt: malformed remaining length");
          break; // the length itself is not all here yet
        }
        if (b.length - i < len) break;
        this._handle(b[off], b.subarray(i, i + len));
        off = i + len;
      }
      this.buf = b.slice(off);
    }

    _handle(first, body) {
      const type = first >> 4;
      switch (type) {
        case CONNACK:
          if (this._connack) this._connack(body[1]);
          this._connack = null;
          break;
        case PUBLISH: {
          const qos = (first >> 1) & 3;
          const tlen = (body[0] << 8) | body[1];
          const topic = dec.decode(body.subarray(2, 2 + tlen));
          let off = 2 + tlen;
          let id = 0;
          if (qos > 0) {
            id = (body[off] << 8) | body[off + 1];
            off += 2;
          }
          const payload = body.slice(off);
          if (qos === 1) this._send(packet(PUBACK << 4, [u16(id)]));
          if (qos === 2) this._send(packet(PUBREC << 4, [u16(id)]));
          if (this.onmessage) {
            try {
              this.onmessage(topic, payload, qos);
            } catch (e) {
              console.error("mqtt onmessage:", e);
            }
          }
          break;
        }
        case PUBREL: // QoS 2 from the broker: complete the flow
          this._send(packet(PUBCOMP << 4, [body.subarray(0, 2)]));
          break;
        case PUBACK:
        case UNSUBACK:
          this._settle((body[0] << 8) | body[1], null);
          break;
        case SUBACK:
          this._settle((body[0] << 8) | body[1], Array.from(body.subarray(2)));
          break;
        case PINGRESP:
          this.pingOut = 0;
          break;
        default:
          throw new Error("mqtt: unexpected packet type " + type);
      }
    }

    _settle(id, value) {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (p.kind === "sub" && value && value.some((c) => c >= 0x80)) {
        p.reject(new Error("subscription refused"));
        return;
      }
      p.resolve(p.kind === "sub" ? value : undefined);
    }

    _id() {
      for (let n = 0; n < 65535; n++) {
        const id = this.nextId;
        this.nextId = id === 65535 ? 1 : id + 1;
        if (!this.pending.has(id)) return id;
      }
      throw new Error("mqtt: no free packet id");
    }

    _await(id, kind) {
      return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, kind }));
    }

    // subscribe resolves with the granted QoS of each filter, or rejects
    // if the broker refused any (SUBACK 0x80).
    subscribe(filters, qos) {
      if (!Array.isArray(filters)) filters = [filters];
      const id = this._id();
      const parts = [u16(id)];
      for (const f of filters) parts.push(str(f), new Uint8Array([qos || 0]));
      const p = this._await(id, "sub");
      this._send(packet((SUBSCRIBE << 4) | 0x02, parts));
      return p;
    }

    unsubscribe(filters) {
      if (!Array.isArray(filters)) filters = [filters];
      const id = this._id();
      const parts = [u16(id)];
      for (const f of filters) parts.push(str(f));
      const p = this._await(id, "unsub");
      this._send(packet((UNSUBSCRIBE << 4) | 0x02, parts));
      return p;
    }

    // publish sends payload (a string or Uint8Array) at QoS 0 (resolves at
    // once) or 1 (resolves on PUBACK).
    publish(topic, payload, qos) {
      qos = qos || 0;
      const body = typeof payload === "string" ? enc.encode(payload) : payload;
      const parts = [str(topic)];
      let p = Promise.resolve();
      if (qos > 0) {
        const id = this._id();
        parts.push(u16(id));
        p = this._await(id, "pub");
      }
      parts.push(body);
      this._send(packet((PUBLISH << 4) | (qos << 1), parts));
      return p;
    }

    // close sends DISCONNECT and closes the socket.
    close() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        try {
          this._send(new Uint8Array([DISCONNECT << 4, 0]));
        } catch (e) {
          // closing anyway
        }
      }
      this._shutdown("closed by the page", true);
    }

    _shutdown(why, quiet) {
      if (this.closed) return;
      this.closed = true;
      clearInterval(this.pinger);
      for (const p of this.pending.values()) p.reject(new Error(why));
      this.pending.clear();
      if (this.ws) {
        this.ws.onclose = null;
        this.ws.onmessage = null;
        try {
          this.ws.close();
        } catch (e) {
          // already closed
        }
      }
      const was = this.connected;
      this.connected = false;
      if (was && !quiet && this.onclose) this.onclose(why);
    }
  }

  global.MQTT = { Client: Client };
})(window);
