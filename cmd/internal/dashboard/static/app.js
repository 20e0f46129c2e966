// app.js: the logbroker dashboard. It talks to the broker only as an MQTT
// client over WebSocket (mqtt.js), with the user's own credentials in
// secured mode, so it can see exactly what that user may see:
//   - RPC calls are frames published to <service>/rpc with src
//     "dash-<random>" (open mode) or "<user>/dash-<random>" (secured: a
//     user may use and subscribe to sources under its own identity);
//     replies arrive on <src>/rpc.
//   - The tail is Log.List {last: 100} and then live entries from
//     <src>/log/<stream> (or <src>/log/+ for every stream), merged and
//     de-duplicated by id.
//   - "Load older": the protocol has no "before", so the page asks for
//     Log.List {last: held + 100, limit: 100}: the first 100 of the final
//     held+100 entries, which are the 100 just before the oldest shown when
//     none were missed; entries it already holds are skipped, and it stops
//     when the answer brings nothing older.
// Every string from the broker is shown with textContent, never as HTML.
"use strict";

(function () {
  const PAGE = 100; // entries per List
  const MAX_ROWS = 5000; // rows kept; the oldest go first
  const MAX_PENDING = 5000; // live entries held while paused
  const CALL_TIMEOUT = 15000;
  const STREAMS_REFRESH = 5000; // ms between reloads of the stream counts

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  };

  const st = {
    cfg: null,
    wsURL: "",
    user: "",
    password: "",
    client: null,
    src: "", // the page's own rpc source
    rpc: null,
    calls: new Map(), // rpc id -> {resolve, reject, timer}
    nextCall: 1,
    retry: 0,
    retryTimer: null,

    sel: null, // {src, stream} being tailed; stream "" = all
    pendingSel: null, // from the URL's #src=, opened once connected
    gen: 0, // bumped on every selection: late answers of an old one are dropped
    liveFilter: "", // the subscribed <src>/log/... filter
    rows: [], // {e, li, text}, ascending id
    ids: new Set(),
    paused: false,
    pending: [],
    filter: "",
    olderDone: false,

    sourcesAfter: "",
    discover: false, // Log.Sources is missing: learn sources from +/log/#
    known: new Map(), // src -> li in the sources list
    streams: new Map(), // stream -> count (or null when unknown)
    streamsFromServer: false,
    streamsTimer: null,
  };

  // ---- ids and entries ----

  // Ids are opaque but strictly increasing per source; the store's are
  // fixed-width tokens, so a shorter one is older, then lexical order.
  function cmpID(a, b) {
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function validEntry(e) {
    return e && typeof e === "object" && typeof e.id === "string" && typeof e.src === "string" &&
      typeof e.stream === "string" && typeof e.timestamp === "number" && "msg" in e;
  }

  function msgText(msg) {
    return typeof msg === "string" ? msg : JSON.stringify(msg);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return isNaN(d.getTime()) ? String(ms) : d.toISOString();
  }

  function level(stream, text) {
    if (/^(errors?|stderr)$/i.test(stream)) return "lvl-error";
    if (/\b(error|err|fatal|panic|fail(ed|ure)?)\b/i.test(text)) return "lvl-error";
    if (/\b(warn|warning)\b/i.test(text)) return "lvl-warn";
    return "";
  }

  function makeRow(e) {
    const text = msgText(e.msg);
    const li = el("li", "entry " + level(e.stream, text));
    li.dataset.id = e.id;
    const t = el("time", "ts", fmtTime(e.timestamp));
    t.dateTime = fmtTime(e.timestamp);
    t.title = new Date(e.timestamp).toString();
    li.append(t, el("span", "stream", e.stream), el("span", "msg", text));
    const row = { e, li, text: (e.stream + " " + text).toLowerCase() };
    applyFilter(row);
    return row;
  }

  function applyFilter(row) {
    row.li.hidden = st.filter !== "" && !row.text.includes(st.filter);
  }

  function nearBottom() {
    const box = $("entries");
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  function scrollBottom() {
    const box = $("entries");
    box.scrollTop = box.scrollHeight;
  }

  // insert adds entries not held yet, in id order; it returns how many.
  function insert(entries) {
    const box = $("entries");
    let added = 0;
    for (const e of entries) {
      if (!validEntry(e) || st.ids.has(e.id)) continue;
      if (!st.sel || e.src !== st.sel.src || (st.sel.stream && e.stream !== st.sel.stream)) continue;
      let i = st.rows.length;
      while (i > 0 && cmpID(st.rows[i - 1].e.id, e.id) > 0) i--;
      const row = makeRow(e);
      box.insertBefore(row.li, i < st.rows.length ? st.rows[i].li : null);
      st.rows.splice(i, 0, row);
      st.ids.add(e.id);
      added++;
      noteStream(e.stream);
    }
    while (st.rows.length > MAX_ROWS) {
      const old = st.rows.shift();
      old.li.remove();
      st.ids.delete(old.e.id);
      st.olderDone = false;
    }
    updateCount();
    return added;
  }

  function clearRows() {
    $("entries").replaceChildren();
    st.rows = [];
    st.ids = new Set();
    st.pending = [];
    st.olderDone = false;
    updateCount();
  }

  function updateCount() {
    let shown = 0;
    for (const r of st.rows) if (!r.li.hidden) shown++;
    const total = st.rows.length + (st.rows.length === 1 ? " entry" : " entries");
    let s = st.rows.length === shown ? total : shown + " of " + total;
    if (st.paused) s += " · paused, " + st.pending.length + " new";
    $("count").textContent = st.sel ? s : "";
  }

  // ---- RPC over MQTT ----

  class RPCError extends Error {
    constructor(code, message) {
      super(message + " (" + code + ")");
      this.code = code;
    }
  }

  function call(method, args) {
    const c = st.client;
    if (!c || !c.connected) return Promise.reject(new RPCError(0, "not connected"));
    const id = st.nextCall++;
    const frame = JSON.stringify({ id: id, src: st.src, dst: st.cfg.service, method: method, args: args || {} });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        st.calls.delete(id);
        reject(new RPCError(0, method + ": no answer within " + CALL_TIMEOUT / 1000 + " s"));
      }, CALL_TIMEOUT);
      st.calls.set(id, { resolve, reject, timer });
      c.publish(st.cfg.service + "/rpc", frame, 1).catch((err) => {
        if (st.calls.delete(id)) {
          clearTimeout(timer);
          reject(new RPCError(0, err.message));
        }
      });
    });
  }

  function onReply(payload) {
    let f;
    try {
      f = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      return;
    }
    const p = f && st.calls.get(f.id);
    if (!p) return;
    st.calls.delete(f.id);
    clearTimeout(p.timer);
    if (f.error) p.reject(new RPCError(f.error.code, String(f.error.message)));
    else p.resolve(f.result);
  }

  function onMessage(topic, payload) {
    if (topic === st.src + "/rpc") {
      onReply(payload);
      return;
    }
    if (!topic.includes("/log/")) return;
    let e;
    try {
      e = JSON.parse(new TextDecoder().decode(payload));
    } catch (err) {
      return;
    }
    if (!validEntry(e)) return;
    if (st.discover || st.known.has(e.src)) addSource({ src: e.src, last_timestamp: e.timestamp }, true);
    if (!st.sel || e.src !== st.sel.src || (st.sel.stream && e.stream !== st.sel.stream)) return;
    if (st.paused) {
      if (!st.ids.has(e.id)) st.pending.push(e);
      if (st.pending.length > MAX_PENDING) st.pending.shift();
      updateCount();
      return;
    }
    const stick = nearBottom();
    insert([e]);
    if (stick) scrollBottom();
    refreshStreamsSoon();
  }

  // refreshStreamsSoon reloads the stream counts a few seconds after live
  // entries arrived, at most that often.
  function refreshStreamsSoon() {
    if (!st.streamsFromServer || st.streamsTimer) return;
    const gen = st.gen;
    st.streamsTimer = setTimeout(() => {
      st.streamsTimer = null;
      if (gen === st.gen && st.client && st.client.connected) loadStreams(gen);
    }, STREAMS_REFRESH);
  }

  // ---- connection ----

  function setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  function randomID() {
    const b = new Uint8Array(4);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function connect() {
    clearTimeout(st.retryTimer);
    const tag = "dash-" + randomID();
    st.src = st.user ? st.user + "/" + tag : tag;
    const c = new MQTT.Client(st.wsURL, { clientId: tag, username: st.user, password: st.password, keepalive: 30 });
    c.onmessage = onMessage;
    st.client = c;
    $("status").dataset.client = tag;
    setStatus("connecting", "connecting to " + st.wsURL);
    try {
      await c.connect();
      await c.subscribe(st.src + "/rpc", 1);
    } catch (err) {
      c.close();
      if (st.client !== c) return; // signed out meanwhile
      if (st.cfg.secured && /username or password|not authorized/.test(err.message)) {
        showLogin(err.message);
        setStatus("disconnected", "not signed in");
        return;
      }
      scheduleRetry(err.message);
      return;
    }
    if (st.client !== c) {
      c.close(); // signed out meanwhile
      return;
    }
    st.retry = 0;
    c.onclose = (why) => scheduleRetry(why);
    setStatus("connected", "connected" + (st.user ? " as " + st.user : ""));
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !st.cfg.secured;
    loadSources(true);
    if (st.sel) {
      resume();
    } else if (st.pendingSel) {
      // the first connection opens the source named in the URL's #src=
      const s = st.pendingSel;
      st.pendingSel = null;
      select(s.src, s.stream);
    }
  }

  function scheduleRetry(why) {
    st.client = null;
    for (const p of st.calls.values()) {
      clearTimeout(p.timer);
      p.reject(new RPCError(0, "disconnected"));
    }
    st.calls.clear();
    st.liveFilter = "";
    st.discover = false;
    const wait = Math.min(30, 2 ** st.retry++);
    setStatus("disconnected", why + "; retrying in " + wait + " s");
    st.retryTimer = setTimeout(connect, wait * 1000);
  }

  function showLogin(error) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("login-error").textContent = error || "";
    $("password").value = "";
    $("user").focus();
  }

  // ---- sources ----

  function addSource(s, live) {
    let li = st.known.get(s.src);
    if (!li) {
      li = el("li");
      const b = el("button", "source", "");
      b.type = "button";
      b.append(el("span", "name", s.src), el("span", "when", ""));
      b.addEventListener("click", () => select(s.src, ""));
      li.append(b);
      st.known.set(s.src, li);
      if (live) {
        // keep the list sorted by name
        const names = Array.from(st.known.keys()).sort();
        const next = names[names.indexOf(s.src) + 1];
        $("sources").insertBefore(li, next ? st.known.get(next) : null);
      } else {
        $("sources").append(li);
      }
    }
    if (typeof s.last_timestamp === "number") li.querySelector(".when").textContent = fmtTime(s.last_timestamp);
    li.classList.toggle("active", !!st.sel && st.sel.src === s.src);
  }

  async function loadSources(reset) {
    const note = $("sources-note");
    if (reset) {
      st.sourcesAfter = "";
      st.known.clear();
      $("sources").replaceChildren();
    }
    const args = { limit: PAGE };
    if (st.sourcesAfter) args.after = st.sourcesAfter;
    try {
      const list = await call("Log.Sources", args);
      note.textContent = "";
      if (!Array.isArray(list)) throw new RPCError(0, "Log.Sources: unexpected answer");
      for (const s of list) if (s && typeof s.src === "string") addSource(s, false);
      if (list.length > 0) st.sourcesAfter = list[list.length - 1].src;
      $("sources-more").hidden = list.length < PAGE;
      if (!reset || list.length > 0 || st.known.size > 0) return;
      note.textContent = "No sources yet: log an entry and reload.";
    } catch (err) {
      $("sources-more").hidden = true;
      if (err.code === 404) {
        note.textContent = "This broker cannot list sources (Log.Sources: no such method). Type a source above; sources that log while this page is open appear here.";
        startDiscovery();
      } else {
        note.textContent = "Sources: " + err.message;
      }
    }
  }

  // The times in the list come from Log.Sources; a live entry moves only
  // the time of the source on show (the page subscribes to that one alone).
  // So the listed sources' times are asked again now and then.
  const SOURCE_REFRESH = 15000; // ms
  async function refreshSourceTimes() {
    if (!st.client || !st.client.connected || st.discover || st.known.size === 0 || document.hidden) return;
    try {
      const list = await call("Log.Sources", { limit: Math.min(st.known.size, 1000) });
      if (!Array.isArray(list)) return;
      for (const s of list) if (s && typeof s.src === "string" && st.known.has(s.src)) addSource(s, false);
    } catch (err) {
      // the next refresh tries again
    }
  }

  async function startDiscovery() {
    if (st.discover || !st.client) return;
    st.discover = true;
    try {
      await st.client.subscribe("+/log/#", 0);
    } catch (err) {
      st.discover = false;
      $("sources-note").textContent += " (Live discovery refused: " + err.message + ".)";
    }
  }

  // ---- streams ----

  function noteStream(name) {
    if (st.streamsFromServer) {
      const n = st.streams.get(name);
      if (n === undefined) {
        st.streams.set(name, null);
        renderStreams();
      }
      return;
    }
    if (!st.streams.has(name)) {
      st.streams.set(name, null);
      renderStreams();
    }
  }

  function renderStreams() {
    const box = $("streams");
    box.replaceChildren();
    if (!st.sel) return;
    const chip = (label, stream, count) => {
      const b = el("button", "chip" + (st.sel.stream === stream ? " on" : ""), label);
      b.type = "button";
      b.dataset.stream = stream;
      b.setAttribute("aria-pressed", String(st.sel.stream === stream));
      if (count !== null && count !== undefined) b.append(el("span", "n", String(count)));
      b.addEventListener("click", () => select(st.sel.src, stream));
      box.append(b);
    };
    chip("all streams", "", null);
    for (const name of Array.from(st.streams.keys()).sort()) chip(name, name, st.streams.get(name));
  }

  async function loadStreams(gen) {
    try {
      const list = await call("Log.Streams", { src: st.sel.src });
      if (gen !== st.gen || !Array.isArray(list)) return;
      st.streamsFromServer = true;
      for (const s of list) if (s && typeof s.stream === "string") st.streams.set(s.stream, typeof s.count === "number" ? s.count : null);
      renderStreams();
    } catch (err) {
      if (gen !== st.gen) return;
      if (err.code !== 404) $("tail-note").textContent = "Streams: " + err.message;
      renderStreams(); // from the entries seen
    }
  }

  // ---- the tail ----

  function validName(s) {
    return typeof s === "string" && s !== "" && !/[+#\u0000]/.test(s);
  }

  async function select(src, stream) {
    src = src.trim();
    if (!validName(src) || (stream && (!validName(stream) || stream.includes("/")))) {
      $("tail-note").textContent = "Not a valid source or stream name.";
      return;
    }
    const gen = ++st.gen;
    if (!st.sel || st.sel.src !== src) {
      st.streams = new Map();
      st.streamsFromServer = false;
    }
    st.sel = { src, stream: stream || "" };
    history.replaceState(null, "", "#" + new URLSearchParams(stream ? { src, stream } : { src }).toString());
    for (const [name, li] of st.known) li.classList.toggle("active", name === src);
    $("tail-title").textContent = src + (stream ? " / " + stream : "");
    $("tail-note").textContent = "";
    $("pause").disabled = false;
    $("older").disabled = false;
    $("older").textContent = "Load older";
    setPaused(false);
    clearRows();
    renderStreams();
    await resubscribe(gen);
    if (gen !== st.gen) return;
    const list = await fetchTail(gen, { last: PAGE });
    if (gen !== st.gen) return;
    if (list) insert(list);
    scrollBottom();
    loadStreams(gen);
  }

  // resubscribe moves the live subscription to the selection.
  async function resubscribe(gen) {
    const c = st.client;
    if (!c || !c.connected) return;
    const filter = st.sel.src + "/log/" + (st.sel.stream || "+");
    if (filter === st.liveFilter) return;
    const old = st.liveFilter;
    st.liveFilter = filter;
    if (old) c.unsubscribe(old).catch(() => {});
    try {
      await c.subscribe(filter, 0);
    } catch (err) {
      if (gen === st.gen) $("tail-note").textContent = "Live updates refused (" + err.message + "): showing stored entries only.";
    }
  }

  async function fetchTail(gen, extra) {
    const args = Object.assign({ src: st.sel.src }, extra);
    if (st.sel.stream) args.stream = st.sel.stream;
    try {
      const list = await call("Log.List", args);
      if (gen !== st.gen) return null;
      if (!Array.isArray(list)) throw new RPCError(0, "Log.List: unexpected answer");
      return list;
    } catch (err) {
      if (gen === st.gen) $("tail-note").textContent = "Log.List: " + err.message;
      return null;
    }
  }

  // resume re-subscribes after a reconnect and fetches what was missed.
  async function resume() {
    const gen = st.gen;
    await resubscribe(gen);
    if (gen !== st.gen) return;
    const last = st.rows.length ? st.rows[st.rows.length - 1].e.id : "";
    const stick = nearBottom();
    // Page forward from the newest held entry until caught up.
    for (let after = last, i = 0; i < 20; i++) {
      const list = await fetchTail(gen, after ? { after, limit: 1000 } : { last: PAGE });
      if (!list || gen !== st.gen) return;
      if (st.paused) st.pending.push(...list);
      else insert(list);
      if (!after || list.length < 1000) break;
      after = list[list.length - 1].id;
    }
    if (stick) scrollBottom();
  }

  // loadOlder: see the file's comment. The window is last = held + extra
  // entries, of which the first PAGE come back.
  async function loadOlder() {
    if (!st.sel || st.olderDone) return;
    const gen = st.gen;
    const btn = $("older");
    btn.disabled = true;
    const box = $("entries");
    const before = box.scrollHeight - box.scrollTop;
    let added = 0;
    try {
      for (let extra = PAGE, i = 0; i < 5; i++, extra += PAGE) {
        const oldest = st.rows.length ? st.rows[0].e.id : null;
        const list = await fetchTail(gen, { last: st.rows.length + extra, limit: PAGE });
        if (!list || gen !== st.gen) return;
        const older = oldest === null ? list : list.filter((e) => validEntry(e) && cmpID(e.id, oldest) < 0);
        added += insert(older);
        if (older.length > 0) break;
        if (list.length === 0 || oldest === null || list[0].id === oldest) {
          // The window reached past the first entry (with last > the
          // count, the answer starts at the source's very first entry).
          st.olderDone = true;
          break;
        }
        // The answer held only entries shown already: newer entries this
        // page never saw (dropped QoS 0) shifted the window; widen it.
      }
    } finally {
      if (gen === st.gen) {
        box.scrollTop = box.scrollHeight - before; // keep the view still
        btn.disabled = st.olderDone;
        btn.textContent = st.olderDone ? "No older entries" : "Load older";
        if (added === 0 && st.olderDone) $("tail-note").textContent = "";
      }
    }
  }

  function setPaused(p) {
    st.paused = p;
    const b = $("pause");
    b.textContent = p ? "Resume" : "Pause";
    b.setAttribute("aria-pressed", String(p));
    b.classList.toggle("on", p);
    if (!p && st.pending.length) {
      const stick = nearBottom();
      const held = st.pending;
      st.pending = [];
      insert(held);
      if (stick) scrollBottom();
    }
    updateCount();
  }

  // ---- start ----

  function wire() {
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      st.user = $("user").value.trim();
      st.password = $("password").value;
      $("login-error").textContent = "";
      connect();
    });
    $("logout").addEventListener("click", () => {
      if (st.client) {
        st.client.onclose = null;
        st.client.close();
      }
      clearTimeout(st.retryTimer);
      st.client = null;
      st.user = st.password = "";
      st.liveFilter = "";
      st.discover = false;
      // Nothing the last user could read stays on the page.
      st.gen++;
      st.sel = null;
      clearRows();
      st.known.clear();
      st.streams = new Map();
      $("sources").replaceChildren();
      $("sources-note").textContent = "";
      $("tail-note").textContent = "";
      $("tail-title").textContent = "Pick a source";
      $("src-input").value = "";
      $("pause").disabled = $("older").disabled = true;
      renderStreams();
      history.replaceState(null, "", location.pathname + location.search);
      setStatus("disconnected", "signed out");
      showLogin("");
    });
    $("open-src").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("src-input").value;
      if (v.trim()) select(v, "");
    });
    $("sources-refresh").addEventListener("click", () => loadSources(true));
    $("sources-more").addEventListener("click", () => loadSources(false));
    $("pause").addEventListener("click", () => setPaused(!st.paused));
    $("older").addEventListener("click", loadOlder);
    $("filter").addEventListener("input", (ev) => {
      st.filter = ev.target.value.trim().toLowerCase();
      for (const r of st.rows) applyFilter(r);
      updateCount();
    });
  }

  async function start() {
    wire();
    try {
      const r = await fetch("/dashboard/config.json", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      st.cfg = await r.json();
    } catch (err) {
      setStatus("disconnected", "cannot load /dashboard/config.json: " + err.message);
      return;
    }
    st.wsURL = st.cfg.ws_url;
    let warn = "";
    const override = new URLSearchParams(location.search).get("ws");
    if (override) {
      // Only to this page's own host (a proxy path such as wss://host/mqtt):
      // a link must not make the page send a password elsewhere.
      let u = null;
      try {
        u = new URL(override);
      } catch (e) {
        // not a URL
      }
      if (u && (u.protocol === "ws:" || u.protocol === "wss:") && u.hostname === location.hostname) {
        st.wsURL = u.href;
      } else {
        warn = "Ignored ?ws=" + override + ": it must be a ws:// or wss:// URL on " + location.hostname + ".";
      }
    }
    $("login-target").textContent = st.wsURL;
    $("service").textContent = st.cfg.service;
    if (!st.wsURL) {
      setStatus("disconnected", "the broker has no WebSocket listener (--ws): the dashboard needs one");
      return;
    }
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.get("src")) {
      st.pendingSel = { src: h.get("src"), stream: h.get("stream") || "" };
      $("src-input").value = st.pendingSel.src;
    }
    setInterval(refreshSourceTimes, SOURCE_REFRESH);
    if (st.cfg.secured) {
      setStatus("disconnected", "not signed in");
      showLogin(warn);
      return;
    }
    $("tail-note").textContent = warn;
    await connect();
  }

  start();
})();
