// app.js: the logbroker dashboard. It talks to the broker only as an MQTT
// client over WebSocket (mqtt.js), with the user's own credentials in
// secured mode, so it can see exactly what that user may see:
//   - RPC calls are frames published to <service>/rpc with src
//     "dash-<random>" (open mode) or "<user>/dash-<random>" (secured: a
//     user may use and subscribe to sources under its own identity);
//     replies arrive on <src>/rpc.
//   - The first page is the fleet: Log.Fleet, one server-side page of
//     sources at a time, most errors first.
//   - A source's view is a selection: stream, and the Log.List filters of
//     PROTOCOL §5 (match, or regex for a search written /.../; level;
//     since/until from the time range). It shows Log.List {last: 100} of
//     the selection, then follows it with Log.List {after, follow: true}:
//     the server waits for the next *matching* entry, so the live tail
//     keeps the filters exactly.
//   - "Load older": the protocol has no "before", so the page asks for
//     Log.List {last: held + 100, limit: 100}: the first 100 of the final
//     held+100 matching entries, which are the 100 just before the oldest
//     shown; entries it already holds are skipped, and it stops when the
//     answer brings nothing older.
//   - "Download" pages through the whole selection with after, 1000 at a
//     time, and saves it as NDJSON.
//   - The histogram counts the entries shown per time bucket and level.
// Every string from the broker is shown with textContent, never as HTML.
"use strict";

(function () {
  const PAGE = 100; // entries per List
  const BULK = 1000; // entries per List when catching up or downloading
  const MAX_ROWS = 5000; // rows kept; the oldest go first
  const MAX_PENDING = 5000; // entries held while paused
  const CALL_TIMEOUT = 15000;
  const FOLLOW_WAIT = 20; // s a follow waits on the server
  const STREAMS_REFRESH = 5000; // ms between reloads of the stream counts
  const FLEET_PAGE = 50;
  const FLEET_REFRESH = 10000; // ms
  const LEVELS = ["error", "warn", "info", "debug", "verbose"];
  const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3 };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const st = {
    cfg: null,
    wsURL: "",
    user: "",
    password: "",
    client: null,
    src: "", // the page's own rpc source
    calls: new Map(), // rpc id -> {resolve, reject, timer}
    nextCall: 1,
    retry: 0,
    retryTimer: null,

    sel: null, // {src, stream} on show; null: the fleet
    pendingSel: null, // from the URL's #src=, opened once connected
    query: { search: "", level: "", range: "", from: "", to: "" }, // the form as applied
    filters: {}, // Log.List filter args of the selection
    gen: 0, // bumped on every selection: late answers of an old one are dropped
    after: "", // the follow's position: id of the newest entry received
    following: null, // token of the running follow loop
    rows: [], // {e, li}, ascending id
    ids: new Set(),
    paused: false,
    pending: [],
    olderDone: false,
    download: null, // {cancel} while a download runs

    sourcesAfter: "",
    discover: false, // Log.Sources is missing: learn sources from +/log/#
    known: new Map(), // src -> li in the sources list
    streams: new Map(), // stream -> count (or null when unknown)
    streamsFromServer: false,
    streamsTimer: null,

    fleet: { offset: 0, sort: "errors", prefix: "", total: 0, gen: 0, missing: false },
    histoTimer: null,
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

  // levelOf returns the entry's level 0..4, or -1 when it has none.
  function levelOf(e) {
    return Number.isInteger(e.level) && e.level >= 0 && e.level <= 4 ? e.level : -1;
  }

  function msgText(msg) {
    return typeof msg === "string" ? msg : JSON.stringify(msg);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return isNaN(d.getTime()) ? String(ms) : d.toISOString();
  }

  function fmtAgo(ms) {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return "in the future";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function makeRow(e) {
    const lv = levelOf(e);
    const li = el("li", "entry" + (lv >= 0 ? " lvl-" + lv : ""));
    li.dataset.id = e.id;
    if (lv >= 0) li.dataset.level = String(lv);
    const t = el("time", "ts", fmtTime(e.timestamp));
    t.dateTime = fmtTime(e.timestamp);
    t.title = new Date(e.timestamp).toString();
    const badge = el("span", "lvl", lv >= 0 ? LEVELS[lv] : "");
    li.append(t, badge, el("span", "stream", e.stream), el("span", "msg", msgText(e.msg)));
    return { e, li };
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
    if (added) histoSoon();
    return added;
  }

  function clearRows() {
    $("entries").replaceChildren();
    st.rows = [];
    st.ids = new Set();
    st.pending = [];
    st.olderDone = false;
    updateCount();
    histoSoon();
  }

  function updateCount() {
    let s = st.rows.length + (st.rows.length === 1 ? " entry" : " entries");
    if (Object.keys(st.filters).length) s += " matching";
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

  // call sends a request; wait (s) sets the frame's timeout, for follows.
  function call(method, args, wait) {
    const c = st.client;
    if (!c || !c.connected) return Promise.reject(new RPCError(0, "not connected"));
    const id = st.nextCall++;
    const f = { id: id, src: st.src, dst: st.cfg.service, method: method, args: args || {} };
    if (wait) f.timeout = wait;
    const frame = JSON.stringify(f);
    const limit = CALL_TIMEOUT + (wait || 0) * 1000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        st.calls.delete(id);
        reject(new RPCError(0, method + ": no answer within " + limit / 1000 + " s"));
      }, limit);
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
    // Live entries: only subscribed when the broker cannot list sources.
    if (!st.discover || !topic.includes("/log/")) return;
    let e;
    try {
      e = JSON.parse(new TextDecoder().decode(payload));
    } catch (err) {
      return;
    }
    if (validEntry(e)) addSource({ src: e.src, last_timestamp: e.timestamp }, true);
  }

  // refreshStreamsSoon reloads the stream counts a few seconds after new
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
    } else {
      showFleet();
    }
  }

  function scheduleRetry(why) {
    st.client = null;
    st.following = null;
    for (const p of st.calls.values()) {
      clearTimeout(p.timer);
      p.reject(new RPCError(0, "disconnected"));
    }
    st.calls.clear();
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

  // The times in the list come from Log.Sources; entries shown move only
  // the time of the source on show. So the listed sources' times are
  // asked again now and then.
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

  // ---- the fleet ----

  function showFleet() {
    st.gen++;
    st.sel = null;
    st.following = null;
    cancelDownload();
    clearRows();
    for (const li of st.known.values()) li.classList.remove("active");
    $("tail").hidden = true;
    $("fleet").hidden = false;
    $("to-fleet").hidden = true;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    loadFleet();
  }

  async function loadFleet() {
    const f = st.fleet;
    const gen = ++f.gen;
    const args = { sort: f.sort, offset: f.offset, limit: FLEET_PAGE };
    if (f.prefix) args.prefix = f.prefix;
    let res;
    try {
      res = await call("Log.Fleet", args);
    } catch (err) {
      if (gen !== f.gen) return;
      if (err.code === 404) {
        f.missing = true;
        $("fleet-note").textContent = "This broker has no fleet view (Log.Fleet: no such method; --fleet-sources 0?). Pick a source on the left.";
        $("fleet-table").hidden = true;
      } else {
        $("fleet-note").textContent = "Fleet: " + err.message;
      }
      return;
    }
    if (gen !== f.gen || !res || !Array.isArray(res.sources)) return;
    f.missing = false;
    $("fleet-table").hidden = false;
    f.total = typeof res.total === "number" ? res.total : res.sources.length;
    if (f.offset > 0 && f.offset >= f.total) {
      // the page emptied (fewer sources now): back to the last one
      f.offset = Math.max(0, Math.floor((f.total - 1) / FLEET_PAGE) * FLEET_PAGE);
      loadFleet();
      return;
    }
    renderFleet(res);
  }

  function num(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : "–";
  }

  function renderFleet(res) {
    const f = st.fleet;
    const body = $("fleet-rows");
    const rows = [];
    for (const s of res.sources) {
      if (!s || typeof s.src !== "string") continue;
      const tr = el("tr", s.errors > 0 ? "has-errors" : "");
      tr.dataset.src = s.src;
      const name = el("button", "src-link", s.src);
      name.type = "button";
      name.addEventListener("click", () => select(s.src, ""));
      const td = (cls, text) => {
        const c = el("td", cls, text);
        tr.append(c);
        return c;
      };
      td("src").append(name);
      const last = td("when", typeof s.last_timestamp === "number" ? fmtAgo(s.last_timestamp) : "none left");
      if (typeof s.last_timestamp === "number") last.title = fmtTime(s.last_timestamp);
      td("num c-entries", num(s.entries));
      const errs = td("num c-errors", "");
      errs.append(el("span", s.errors > 0 ? "pill err" : "pill", num(s.errors)));
      td("num c-lost" + (s.captured_lost > 0 ? " some" : ""), num(s.captured_lost));
      td("num c-restarts" + (s.restarts > 0 ? " some" : ""), num(s.restarts));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    const first = f.total === 0 ? 0 : f.offset + 1;
    $("fleet-page").textContent = first + "–" + (f.offset + rows.length) + " of " + num(f.total) + (f.total === 1 ? " source" : " sources");
    $("fleet-prev").disabled = f.offset === 0;
    $("fleet-next").disabled = f.offset + FLEET_PAGE >= f.total;
    let note = "";
    if (f.total === 0) note = f.prefix ? "No source starts with " + f.prefix + "." : "No sources yet.";
    if (res.complete === false) note += (note ? " " : "") + "Not every source is counted (the broker's --fleet-sources bound).";
    $("fleet-note").textContent = note;
    if (typeof res.counted_since === "number" && typeof res.window_ms === "number") {
      const young = Date.now() - res.counted_since < res.window_ms - 60e3;
      $("fleet-since").textContent = young
        ? "entries and errors counted since " + fmtTime(res.counted_since).slice(11, 19) + "Z (broker start)"
        : "entries and errors of the last hour";
    }
  }

  function refreshFleet() {
    if (st.sel || st.fleet.missing || !st.client || !st.client.connected || document.hidden || $("app").hidden) return;
    loadFleet();
  }

  // ---- streams ----

  function noteStream(name) {
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

  // ---- the selection ----

  function validName(s) {
    return typeof s === "string" && s !== "" && !/[+#\u0000]/.test(s);
  }

  // toLocalInput renders ms for a datetime-local input.
  function toLocalInput(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  // readQuery takes the form's values.
  function readQuery() {
    return {
      search: $("search").value,
      level: $("level").value,
      range: $("range").value,
      from: $("range").value === "custom" ? $("from").value : "",
      to: $("range").value === "custom" ? $("to").value : "",
    };
  }

  function writeQuery(q) {
    $("search").value = q.search;
    $("level").value = q.level;
    $("range").value = q.range;
    $("from").value = q.from;
    $("to").value = q.to;
    $("custom").hidden = q.range !== "custom";
  }

  // filtersOf turns the form into Log.List filter args (PROTOCOL §5),
  // relative ranges counted back from now; it throws on a bad value.
  function filtersOf(q) {
    const f = {};
    const s = q.search;
    if (s.length > 2 && s.startsWith("/") && s.endsWith("/")) f.regex = s.slice(1, -1);
    else if (s !== "") f.match = s;
    if (q.level !== "") f.level = Number(q.level);
    if (RANGES[q.range]) f.since = Date.now() - RANGES[q.range];
    if (q.range === "custom") {
      const from = q.from ? new Date(q.from).getTime() : NaN;
      const to = q.to ? new Date(q.to).getTime() : NaN;
      if (q.from && isNaN(from)) throw new Error("the start of the range is not a time");
      if (q.to && isNaN(to)) throw new Error("the end of the range is not a time");
      if (!isNaN(from)) f.since = Math.max(0, from);
      if (!isNaN(to)) f.until = Math.max(0, to);
      if (!isNaN(from) && !isNaN(to) && to <= from) throw new Error("the range ends before it starts");
    }
    return f;
  }

  function setHash() {
    const h = { src: st.sel.src };
    if (st.sel.stream) h.stream = st.sel.stream;
    const q = st.query;
    if (q.search) h.q = q.search;
    if (q.level) h.level = q.level;
    if (q.range) h.range = q.range;
    if (q.from) h.from = q.from;
    if (q.to) h.to = q.to;
    history.replaceState(null, "", "#" + new URLSearchParams(h).toString());
  }

  // selArgs are Log.List args for the selection, with extra.
  function selArgs(extra, unfiltered) {
    const args = Object.assign({ src: st.sel.src }, unfiltered ? {} : st.filters, extra);
    if (st.sel.stream) args.stream = st.sel.stream;
    return args;
  }

  // live reports whether the selection can still gain entries: its range
  // does not end in the past.
  function live() {
    return st.filters.until === undefined || st.filters.until > Date.now();
  }

  async function select(src, stream) {
    src = src.trim();
    if (!validName(src) || (stream && (!validName(stream) || stream.includes("/")))) {
      $("tail-note").textContent = "Not a valid source or stream name.";
      return;
    }
    let filters;
    try {
      filters = filtersOf(st.query);
    } catch (err) {
      $("tail-note").textContent = "Time range: " + err.message + ".";
      return;
    }
    const gen = ++st.gen;
    st.following = null;
    cancelDownload();
    if (!st.sel || st.sel.src !== src) {
      st.streams = new Map();
      st.streamsFromServer = false;
    }
    st.sel = { src, stream: stream || "" };
    st.filters = filters;
    st.after = "";
    setHash();
    $("fleet").hidden = true;
    $("tail").hidden = false;
    $("to-fleet").hidden = false;
    for (const [name, li] of st.known) li.classList.toggle("active", name === src);
    $("tail-title").textContent = src + (stream ? " / " + stream : "");
    $("tail-note").textContent = "";
    $("pause").disabled = false;
    $("older").disabled = false;
    $("download").disabled = false;
    $("older").textContent = "Load older";
    setPaused(false);
    clearRows();
    renderStreams();
    // Where the log ends now, unfiltered: the follow starts there when
    // nothing matches yet, and scans no further back.
    const head = await fetchTail(gen, { last: 1 }, true);
    if (gen !== st.gen || !head) return;
    const list = await fetchTail(gen, { last: PAGE });
    if (gen !== st.gen || !list) return;
    insert(list);
    st.after = list.length ? list[list.length - 1].id : head.length ? head[0].id : "0000000000000000";
    scrollBottom();
    loadStreams(gen);
    startFollow(gen);
  }

  async function fetchTail(gen, extra, unfiltered) {
    try {
      const list = await call("Log.List", selArgs(extra, unfiltered));
      if (gen !== st.gen) return null;
      if (!Array.isArray(list)) throw new RPCError(0, "Log.List: unexpected answer");
      return list;
    } catch (err) {
      if (gen === st.gen) $("tail-note").textContent = "Log.List: " + err.message;
      return null;
    }
  }

  // received takes entries of the follow: shown, or held while paused.
  function received(list) {
    if (!list.length) return;
    st.after = list[list.length - 1].id;
    const last = list[list.length - 1];
    if (validEntry(last) && st.known.has(last.src)) addSource({ src: last.src, last_timestamp: last.timestamp }, false);
    if (st.paused) {
      for (const e of list) if (!st.ids.has(e.id)) st.pending.push(e);
      while (st.pending.length > MAX_PENDING) st.pending.shift();
      updateCount();
      return;
    }
    const stick = nearBottom();
    insert(list);
    if (stick) scrollBottom();
    refreshStreamsSoon();
  }

  // startFollow runs the follow loop of the selection: Log.List {after,
  // follow} again and again; the server answers with the next matching
  // entries, or [] when its wait ends. One loop at a time: a newer one, a
  // new selection or a disconnect ends it.
  async function startFollow(gen) {
    const token = {};
    st.following = token;
    let failures = 0;
    while (st.following === token && gen === st.gen && live()) {
      if (!st.client || !st.client.connected) return;
      let list;
      try {
        list = await call("Log.List", selArgs({ after: st.after, follow: true, limit: BULK }), FOLLOW_WAIT);
      } catch (err) {
        if (st.following !== token || gen !== st.gen || err.code === 0) return; // resume() starts again
        $("tail-note").textContent = "Follow: " + err.message;
        if (err.code === 400 || err.code === 403) return;
        await sleep(Math.min(30, 2 ** failures++) * 1000);
        continue;
      }
      if (st.following !== token || gen !== st.gen) return;
      if (!Array.isArray(list)) return;
      failures = 0;
      received(list);
    }
  }

  // resume starts the follow again after a reconnect: it catches up from
  // the newest entry received.
  function resume() {
    if (!st.after) {
      select(st.sel.src, st.sel.stream);
      return;
    }
    startFollow(st.gen);
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
          // count, the answer starts at the selection's very first entry).
          st.olderDone = true;
          break;
        }
        // The answer held only entries shown already: newer entries
        // this page holds back (paused) shifted the window; widen it.
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

  // ---- download ----

  function cancelDownload() {
    if (st.download) st.download.cancelled = true;
    st.download = null;
    const b = $("download");
    b.textContent = "Download NDJSON";
    b.classList.remove("on");
  }

  // download pages through the whole selection (not only what is shown)
  // with after, and saves it as NDJSON: one entry object a line, in id
  // order. A second click cancels.
  async function download() {
    if (st.download) {
      cancelDownload();
      $("tail-note").textContent = "Download cancelled.";
      return;
    }
    const job = { cancelled: false };
    st.download = job;
    const gen = st.gen;
    const sel = st.sel;
    const btn = $("download");
    btn.classList.add("on");
    const parts = [];
    let n = 0;
    let after = "";
    try {
      for (;;) {
        const extra = { limit: BULK };
        if (after) extra.after = after;
        const list = await call("Log.List", selArgs(extra));
        if (job.cancelled || gen !== st.gen) return;
        if (!Array.isArray(list)) throw new RPCError(0, "Log.List: unexpected answer");
        for (const e of list) parts.push(JSON.stringify(e) + "\n");
        n += list.length;
        btn.textContent = "Downloading… " + n.toLocaleString("en-US") + " (cancel)";
        if (list.length < BULK) break;
        after = list[list.length - 1].id;
      }
    } catch (err) {
      if (!job.cancelled && gen === st.gen) $("tail-note").textContent = "Download: " + err.message;
      if (st.download === job) cancelDownload();
      return;
    }
    if (st.download === job) cancelDownload();
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
    const name = (sel.src + (sel.stream ? "-" + sel.stream : "") + "-" + stamp).replace(/[^A-Za-z0-9._-]+/g, "_") + ".ndjson";
    const url = URL.createObjectURL(new Blob(parts, { type: "application/x-ndjson" }));
    const a = el("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    $("tail-note").textContent = "Downloaded " + n.toLocaleString("en-US") + (n === 1 ? " entry" : " entries") + " as " + name + ".";
  }

  // ---- the histogram ----

  const SVGNS = "http://www.w3.org/2000/svg";
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

  function histoSoon() {
    if (st.histoTimer) return;
    st.histoTimer = setTimeout(() => {
      st.histoTimer = null;
      renderHisto();
    }, 150);
  }

  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVGNS, tag);
    for (const k in attrs) n.setAttribute(k, attrs[k]);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function fmtSpan(ms) {
    if (ms < 60e3) return ms / 1000 + " s";
    if (ms < 3600e3) return ms / 60e3 + " min";
    if (ms < 86400e3) return ms / 3600e3 + " h";
    return ms / 86400e3 + " d";
  }

  // renderHisto draws the entries shown per time bucket, stacked by level
  // (error at the bottom, entries without a level on top). Each bar is a
  // rect with data-level ("0".."4", "none"), data-count and data-start.
  function renderHisto() {
    const fig = $("histo");
    const box = $("histo-svg");
    if (!st.sel || st.rows.length === 0) {
      fig.hidden = true;
      box.replaceChildren();
      return;
    }
    fig.hidden = false;
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of st.rows) {
      lo = Math.min(lo, r.e.timestamp);
      hi = Math.max(hi, r.e.timestamp);
    }
    if (st.filters.since !== undefined) lo = Math.min(lo, st.filters.since);
    if (st.filters.until !== undefined) hi = Math.max(hi, st.filters.until - 1);
    else if (st.filters.since !== undefined) hi = Math.max(hi, Date.now());
    const span = Math.max(1, hi - lo + 1);
    const step = STEPS.find((s) => span / s <= 60) || Math.ceil(span / 60 / 86400e3) * 86400e3;
    const start = Math.floor(lo / step) * step;
    const n = Math.floor((hi - start) / step) + 1;
    const keys = ["0", "1", "2", "3", "4", "none"];
    const counts = keys.map(() => new Array(n).fill(0));
    for (const r of st.rows) {
      const b = Math.floor((r.e.timestamp - start) / step);
      const lv = levelOf(r.e);
      counts[lv >= 0 ? lv : 5][b]++;
    }
    const totals = new Array(n).fill(0);
    for (const c of counts) c.forEach((v, i) => (totals[i] += v));
    const peak = Math.max(1, ...totals);
    const W = Math.max(200, box.clientWidth || box.parentNode.clientWidth || 600);
    const H = 96;
    const top = 14;
    const bottom = 16;
    const plot = H - top - bottom;
    const bw = W / n;
    box.setAttribute("viewBox", "0 0 " + W + " " + H);
    box.setAttribute("width", W);
    box.setAttribute("height", H);
    const parts = [svg("line", { x1: 0, x2: W, y1: H - bottom + 0.5, y2: H - bottom + 0.5, class: "axis" })];
    for (let i = 0; i < n; i++) {
      let y = H - bottom;
      const tip = [];
      for (let k = 0; k < keys.length; k++) {
        const v = counts[k][i];
        if (!v) continue;
        const h = Math.max(1, (v / peak) * plot);
        y -= h;
        const rect = svg("rect", {
          x: (i * bw + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: h.toFixed(1),
          class: "bar lv-" + keys[k],
        });
        rect.dataset.level = keys[k];
        rect.dataset.count = String(v);
        rect.dataset.start = String(start + i * step);
        tip.push(v + " " + (k < 5 ? LEVELS[k] : "no level"));
        parts.push(rect);
      }
      if (tip.length) {
        // One hover title for the whole bar.
        const hit = svg("rect", { x: (i * bw).toFixed(1), y: top, width: bw.toFixed(1), height: plot, class: "hit" });
        hit.append(svg("title", {}, fmtTime(start + i * step) + " +" + fmtSpan(step) + ": " + tip.join(", ")));
        parts.push(hit);
      }
    }
    parts.push(svg("text", { x: 2, y: 10, class: "lbl" }, String(peak)));
    parts.push(svg("text", { x: 2, y: H - 3, class: "lbl" }, fmtTime(start).replace(".000Z", "Z")));
    parts.push(svg("text", { x: W - 2, y: H - 3, class: "lbl end" }, fmtTime(start + n * step).replace(".000Z", "Z")));
    box.replaceChildren(...parts);
    // The caption is the legend: a colour key and a count per level.
    const byLevel = counts.map((c) => c.reduce((a, b) => a + b, 0));
    const caption = [document.createTextNode(st.rows.length + " entries shown, per " + fmtSpan(step) + ": ")];
    keys.forEach((k, i) => {
      if (!byLevel[i]) return;
      const item = el("span", "key", byLevel[i] + " " + (i < 5 ? LEVELS[i] : "no level"));
      item.prepend(el("i", "swatch lv-" + k));
      caption.push(item);
    });
    $("histo-caption").replaceChildren(...caption);
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
      st.discover = false;
      // Nothing the last user could read stays on the page.
      st.gen++;
      st.sel = null;
      st.following = null;
      cancelDownload();
      clearRows();
      st.known.clear();
      st.streams = new Map();
      $("sources").replaceChildren();
      $("fleet-rows").replaceChildren();
      $("fleet-page").textContent = "";
      $("sources-note").textContent = "";
      $("tail-note").textContent = "";
      $("tail-title").textContent = "Pick a source";
      $("src-input").value = "";
      $("pause").disabled = $("older").disabled = $("download").disabled = true;
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
    $("to-fleet").addEventListener("click", showFleet);
    $("sources-refresh").addEventListener("click", () => loadSources(true));
    $("sources-more").addEventListener("click", () => loadSources(false));
    $("pause").addEventListener("click", () => setPaused(!st.paused));
    $("older").addEventListener("click", loadOlder);
    $("download").addEventListener("click", download);
    $("range").addEventListener("change", () => {
      const custom = $("range").value === "custom";
      $("custom").hidden = !custom;
      if (custom && !$("from").value) {
        $("from").value = toLocalInput(Date.now() - 3600e3);
        $("to").value = toLocalInput(Date.now());
      }
      if (!custom) applyQuery();
    });
    $("level").addEventListener("change", applyQuery);
    $("query").addEventListener("submit", (ev) => {
      ev.preventDefault();
      applyQuery();
    });
    // An emptied search box (its clear button) applies at once.
    $("search").addEventListener("input", () => {
      if ($("search").value === "" && st.query.search !== "") applyQuery();
    });
    const fleet = st.fleet;
    $("fleet-sort").addEventListener("change", () => {
      fleet.sort = $("fleet-sort").value;
      fleet.offset = 0;
      loadFleet();
    });
    let prefixTimer = null;
    $("fleet-prefix").addEventListener("input", () => {
      clearTimeout(prefixTimer);
      prefixTimer = setTimeout(() => {
        fleet.prefix = $("fleet-prefix").value.trim();
        fleet.offset = 0;
        loadFleet();
      }, 250);
    });
    $("fleet-prev").addEventListener("click", () => {
      fleet.offset = Math.max(0, fleet.offset - FLEET_PAGE);
      loadFleet();
    });
    $("fleet-next").addEventListener("click", () => {
      if (fleet.offset + FLEET_PAGE < fleet.total) fleet.offset += FLEET_PAGE;
      loadFleet();
    });
    window.addEventListener("resize", histoSoon);
  }

  // applyQuery makes the form the selection's filters and reloads it.
  function applyQuery() {
    st.query = readQuery();
    if (st.sel) select(st.sel.src, st.sel.stream);
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
      const q = { search: h.get("q") || "", level: h.get("level") || "", range: h.get("range") || "", from: h.get("from") || "", to: h.get("to") || "" };
      if (!["", "0", "1", "2", "3", "4"].includes(q.level)) q.level = "";
      if (!["", "15m", "1h", "24h", "custom"].includes(q.range)) q.range = "";
      st.query = q;
      writeQuery(q);
    }
    setInterval(refreshSourceTimes, SOURCE_REFRESH);
    setInterval(refreshFleet, FLEET_REFRESH);
    if (st.cfg.secured) {
      setStatus("disconnected", "not signed in");
      showLogin(warn);
      return;
    }
    $("tail-note").textContent = warn;
    $("fleet-note").textContent = warn;
    await connect();
  }

  start();
})();
