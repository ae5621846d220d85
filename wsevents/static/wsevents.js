// wsevents browser client: a dependency-free ES module, served by the app at /wsevents.js.
//
//   import { connect } from "/ws/wsevents.js";
//   const client = await connect("/ws/chat/lobby?user=ann");
//   client.on("said", (data) => console.log(data.user, data.text));
//   client.send("say", { text: "hello" });
//   const pong = await client.request("ping", { n: 1 }, { timeout: 5000 });
//
// Frames are {"event", "data", "id"} envelopes in JSON text frames, or in
// MessagePack binary frames with { codec: "msgpack" }. A request gets an id and
// resolves with the data of the frame that answers it, or rejects with a
// WSEventsError carrying the error frame's code, message and details. When the
// connection drops the client reconnects with exponential backoff, keeps what
// is sent meanwhile, and calls onConnect again so the page can rejoin.
//
// A request outlives a dropped connection: it is kept until its answer comes or
// its own timeout passes, and sent again (same id, same data, in the order
// first sent) as soon as the client has reconnected, before anything new. The
// page's session (wsevents-session) and its request counter are kept in
// sessionStorage, so that a reloaded page never reuses an id and the server
// runs a once handler once. client.answer(event, fn) answers the server's
// requests (conn.request): fn's value, or the error it throws (its code).
//
// { token } (a string, or a function returning one or a promise of one) is
// offered at every handshake as the subprotocol "bearer.TOKEN" (BearerAuth's;
// { tokenIn: "query" } sends ?token= instead) and answers wsevents.refresh. The
// client never reconnects after 4403 (the app ended the connection), nor after
// 4401 (credentials expired) unless its token is a function, called first.
//
// On history topics it keeps client.positions (topic to {epoch, offset}),
// updated by every push that carries a position and by wsevents.subscribed;
// drops a push it holds already; names its positions in wsevents-resume on
// every reconnect; and keeps them in sessionStorage, so that a reloaded page
// gets what it missed.

export class WSEventsError extends Error {
  constructor(code, message, details = null) {
    super(message ? `${code}: ${message}` : code);
    this.name = "WSEventsError";
    this.code = code;
    this.details = details;
  }
}

// -- MessagePack: the subset the protocol carries (no extension types) -----------

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export function encodeMsgpack(value) {
  const out = [];
  const view = new DataView(new ArrayBuffer(9));
  const push = (bytes) => { for (const b of bytes) out.push(b); };
  const head = (type, size, bytes) => {
    out.push(type);
    if (bytes === 1) out.push(size);
    else if (bytes === 2) out.push(size >> 8, size & 0xff);
    else out.push(size >>> 24, (size >> 16) & 0xff, (size >> 8) & 0xff, size & 0xff);
  };
  const sized = (size, fix, fixLimit, t8, t16, t32) => {
    if (size < fixLimit) out.push(fix | size);
    else if (t8 !== null && size < 0x100) head(t8, size, 1);
    else if (size < 0x10000) head(t16, size, 2);
    else head(t32, size, 4);
  };
  const write = (v) => {
    if (v === null || v === undefined) out.push(0xc0);
    else if (v === false) out.push(0xc2);
    else if (v === true) out.push(0xc3);
    else if (typeof v === "number") {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
        if (v >= 0 && v < 0x80) out.push(v);
        else if (v < 0 && v >= -32) out.push(v & 0xff);
        else if (v >= 0 && v < 0x100) out.push(0xcc, v);
        else if (v >= 0 && v < 0x10000) head(0xcd, v, 2);
        else if (v >= 0 && v < 0x100000000) head(0xce, v, 4);
        else if (v >= -0x80 && v < 0) out.push(0xd0, v & 0xff);
        else if (v >= -0x8000 && v < 0) { view.setInt16(0, v); out.push(0xd1, view.getUint8(0), view.getUint8(1)); }
        else if (v >= -0x80000000 && v < 0) { view.setInt32(0, v); out.push(0xd2, ...new Uint8Array(view.buffer, 0, 4)); }
        else { view.setBigInt64(0, BigInt(v)); out.push(v < 0 ? 0xd3 : 0xcf, ...new Uint8Array(view.buffer, 0, 8)); }
      } else {
        if (!Number.isFinite(v)) throw new TypeError("MessagePack frames carry finite numbers only");
        view.setFloat64(0, v);
        out.push(0xcb, ...new Uint8Array(view.buffer, 0, 8));
      }
    } else if (typeof v === "bigint") {
      view.setBigInt64(0, v);
      out.push(v < 0n ? 0xd3 : 0xcf, ...new Uint8Array(view.buffer, 0, 8));
    } else if (typeof v === "string") {
      const bytes = textEncoder.encode(v);
      sized(bytes.length, 0xa0, 32, 0xd9, 0xda, 0xdb);
      push(bytes);
    } else if (v instanceof Uint8Array) {
      sized(v.length, 0, 0, 0xc4, 0xc5, 0xc6);
      push(v);
    } else if (Array.isArray(v)) {
      sized(v.length, 0x90, 16, null, 0xdc, 0xdd);
      for (const item of v) write(item);
    } else if (typeof v === "object") {
      const entries = Object.entries(typeof v.toJSON === "function" ? v.toJSON() : v)
        .filter(([, item]) => item !== undefined);
      sized(entries.length, 0x80, 16, null, 0xde, 0xdf);
      for (const [key, item] of entries) { write(key); write(item); }
    } else throw new TypeError(`cannot encode a ${typeof v} in MessagePack`);
  };
  write(value);
  return new Uint8Array(out);
}

export function decodeMsgpack(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n) => { if (at + n > bytes.length) throw new TypeError("MessagePack frame is truncated"); };
  const u8 = () => { need(1); return bytes[at++]; };
  const take = (n, read) => { need(n); const v = read(at); at += n; return v; };
  const str = (n) => { need(n); const s = textDecoder.decode(bytes.subarray(at, at + n)); at += n; return s; };
  const bin = (n) => { need(n); const b = bytes.slice(at, at + n); at += n; return b; };
  const int64 = (big) => (big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big);
  const array = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(read()); return a; };
  const map = (n) => {
    const o = {};
    for (let i = 0; i < n; i++) {
      const key = read();
      if (typeof key !== "string") throw new TypeError("MessagePack map keys must be strings");
      o[key] = read();
    }
    return o;
  };
  const read = () => {
    const t = u8();
    if (t < 0x80) return t;
    if (t < 0x90) return map(t & 0x0f);
    if (t < 0xa0) return array(t & 0x0f);
    if (t < 0xc0) return str(t & 0x1f);
    if (t >= 0xe0) return t - 0x100;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u8());
      case 0xc5: return bin(take(2, (i) => view.getUint16(i)));
      case 0xc6: return bin(take(4, (i) => view.getUint32(i)));
      case 0xca: return take(4, (i) => view.getFloat32(i));
      case 0xcb: return take(8, (i) => view.getFloat64(i));
      case 0xcc: return u8();
      case 0xcd: return take(2, (i) => view.getUint16(i));
      case 0xce: return take(4, (i) => view.getUint32(i));
      case 0xcf: return int64(take(8, (i) => view.getBigUint64(i)));
      case 0xd0: return take(1, (i) => view.getInt8(i));
      case 0xd1: return take(2, (i) => view.getInt16(i));
      case 0xd2: return take(4, (i) => view.getInt32(i));
      case 0xd3: return int64(take(8, (i) => view.getBigInt64(i)));
      case 0xd9: return str(u8());
      case 0xda: return str(take(2, (i) => view.getUint16(i)));
      case 0xdb: return str(take(4, (i) => view.getUint32(i)));
      case 0xdc: return array(take(2, (i) => view.getUint16(i)));
      case 0xdd: return array(take(4, (i) => view.getUint32(i)));
      case 0xde: return map(take(2, (i) => view.getUint16(i)));
      case 0xdf: return map(take(4, (i) => view.getUint32(i)));
      default: throw new TypeError(`MessagePack type 0x${t.toString(16)} is not allowed`);
    }
  };
  const value = read();
  if (at !== bytes.length) throw new TypeError("MessagePack frame has trailing bytes");
  return value;
}

const CODECS = {
  json: {
    subprotocol: "wsevents.json",
    encode: (message) => JSON.stringify(message),
    decode: (payload) => JSON.parse(typeof payload === "string" ? payload : textDecoder.decode(payload)),
  },
  msgpack: {
    subprotocol: "wsevents.msgpack",
    encode: (message) => encodeMsgpack(message),
    decode: (payload) => (typeof payload === "string" ? JSON.parse(payload) : decodeMsgpack(payload)),
  },
};

// -- the client ----------------------------------------------------------------

function resolveUrl(url) {
  const base = typeof location !== "undefined" ? location.href : "http://localhost/";
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

const RESUME = "wsevents-resume";
const SESSION = "wsevents-session";
const SESSION_KEY = "wsevents:session";
const COUNTER_KEY = "wsevents:next-id";

function randomSession() {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

// The page's session and request counter, shared by its clients: sessionStorage
// keeps them across a reload, so an id is never used twice within the session.
const page = { session: null, next: 1 };

function pageSession() {
  if (page.session === null) {
    const store = storage();
    const kept = store?.getItem(SESSION_KEY);
    page.session = kept && /^[A-Za-z0-9_-]{16,128}$/.test(kept) ? kept : randomSession();
    page.next = Math.max(1, Number(store?.getItem(COUNTER_KEY)) || 1);
    try {
      store?.setItem(SESSION_KEY, page.session);
    } catch {
      // storage full or disabled: the session lasts as long as the page
    }
  }
  return page.session;
}

function nextRequestId() {
  pageSession();
  const id = page.next++;
  try {
    storage()?.setItem(COUNTER_KEY, String(page.next));
  } catch {
    // as above
  }
  return id;
}

function storage() {
  try {
    return typeof sessionStorage !== "undefined" ? sessionStorage : null;
  } catch {
    return null; // storage disabled by the browser
  }
}

// A frame with the W3C Trace Context the caller gave, if any.
function traced(message, traceparent, tracestate) {
  if (traceparent) message.traceparent = traceparent;
  if (tracestate) message.tracestate = tracestate;
  return message;
}

export class Client {
  constructor(url, options = {}) {
    const codec = options.codec ?? "json";
    if (!(codec in CODECS)) throw new TypeError(`codec must be "json" or "msgpack", got ${codec}`);
    this.url = resolveUrl(url);
    this.storageKey = options.persist === false ? null : `wsevents:positions:${this.url}`;
    this.positions = {};
    this.duplicates = 0;
    const saved = this.storageKey && storage()?.getItem(this.storageKey);
    if (saved) {
      try {
        Object.assign(this.positions, JSON.parse(saved));
      } catch {
        // not ours, or damaged: start without
      }
    }
    for (const [topic, [epoch, offset]] of Object.entries(options.resume ?? {})) {
      this.positions[topic] = { epoch, offset };
    }
    this._saving = null;
    this.codec = CODECS[codec];
    this.timeout = options.timeout ?? 10000;
    this.reconnect = options.reconnect ?? true;
    this.backoff = options.backoff ?? [100, 5000];
    this.maxAttempts = options.maxAttempts ?? Infinity;
    this.maxQueue = options.maxQueue ?? 1000;
    this.onConnect = options.onConnect ?? null;
    this.onDisconnect = options.onDisconnect ?? null;
    this.token = options.token ?? null;
    if (this.token !== null && typeof this.token !== "string" && typeof this.token !== "function") {
      throw new TypeError("token must be a string or a function");
    }
    this.tokenIn = options.tokenIn ?? "subprotocol";
    if (this.tokenIn !== "subprotocol" && this.tokenIn !== "query") throw new TypeError('tokenIn must be "subprotocol" or "query"');
    this.tokenName = options.tokenName ?? (this.tokenIn === "query" ? "token" : "bearer.");
    this.closeCode = null; // the last close's code, once one came
    this.reconnects = 0;
    this.socket = null;
    this.closed = false;
    this.session = pageSession();
    this._generation = 0;
    this._pending = new Map(); // id -> {resolve, reject, timer, payload, sent}, in the order sent
    this._listeners = new Map();
    this._answerers = new Map();
    if (this.token !== null) this._answerers.set("wsevents.refresh", async () => ({ token: await this._freshToken() }));
    this._ended = null; // the close that ended the client for good (4403, or 4401 without a token function)
    this._outbox = [];
  }

  // The token to offer now: the string, or what the function gives.
  async _freshToken() {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (typeof token !== "string" || token === "") throw new TypeError("the token function must give a non-empty string");
    return token;
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Open the first connection; rejects if the server cannot be reached or refuses. */
  open() {
    return this._open().then(() => this);
  }

  async _open() {
    const token = this.token === null ? null : await this._freshToken();
    const url = new URL(this._resumeUrl());
    const protocols = [this.codec.subprotocol];
    if (token !== null) {
      if (this.tokenIn === "query") url.searchParams.set(this.tokenName, token);
      else protocols.push(this.tokenName + token);
    }
    return this._connectSocket(url.href, protocols);
  }

  _connectSocket(url, protocols) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, protocols);
      socket.binaryType = "arraybuffer";
      let opened = false;
      socket.onopen = async () => {
        opened = true;
        this.socket = socket;
        const generation = ++this._generation;
        // The requests still unanswered first, in the order first sent.
        for (const pending of this._pending.values()) {
          if (pending.sent !== generation) {
            pending.sent = generation;
            socket.send(pending.payload);
          }
        }
        try {
          if (this.onConnect) await this.onConnect(this);
        } catch (error) {
          console.error("wsevents: onConnect failed", error);
        }
        const waiting = this._outbox.splice(0);
        for (const payload of waiting) socket.send(payload);
        resolve();
      };
      socket.onmessage = (event) => this._receive(event.data);
      socket.onclose = (event) => {
        if (!opened) {
          reject(new WSEventsError("connection_failed", `cannot connect to ${this.url}`, { code: event.code }));
          return;
        }
        this.socket = null;
        this.closeCode = event.code;
        if (this.onDisconnect) this.onDisconnect(event.code, event.reason);
        // 4403: the app ended it; 4401: credentials expired, and no function for a fresh token.
        if (event.code === 4403 || (event.code === 4401 && typeof this.token !== "function")) {
          this._end(event.code, event.reason);
        } else if (!this.closed && this.reconnect) this._retry(1); // requests wait to be sent again
        else this._failPending("connection_lost", `the connection closed with ${event.code}`);
      };
    });
  }

  async _retry(attempt) {
    if (this.closed) return;
    if (attempt > this.maxAttempts) {
      const text = `no connection after ${this.maxAttempts} attempts`;
      this._failPending("connection_lost", text);
      this._emit("error", { code: "connection_lost", message: text, details: null });
      return;
    }
    const [low, high] = this.backoff;
    const delay = Math.min(high, low * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
    await new Promise((done) => setTimeout(done, delay));
    if (this.closed) return;
    try {
      await this._open();
      this.reconnects += 1;
    } catch (error) {
      if (error instanceof WSEventsError && error.code === "connection_failed") this._retry(attempt + 1);
      else {
        // The token function failed: no token, no connection, and no loop.
        const text = `no token to reconnect with: ${error}`;
        this._failPending("connection_lost", text);
        this._emit("error", { code: "connection_lost", message: text, details: null });
      }
    }
  }

  // The server ended the connection for good: nothing waits for a reconnect that will not come.
  _end(code, reason) {
    this._ended = { code, reason };
    const text = `the server ended the connection with ${code}${reason ? ": " + reason : ""}`;
    this._failPending("connection_lost", text, { code, reason });
    this._outbox.length = 0;
  }

  _resumeUrl() {
    const url = new URL(this.url);
    url.searchParams.set(SESSION, this.session);
    const topics = Object.entries(this.positions);
    if (topics.length > 0) {
      url.searchParams.set(RESUME, JSON.stringify(Object.fromEntries(topics.map(([t, p]) => [t, [p.epoch, p.offset]]))));
    }
    return url.href;
  }

  // Track a position; false for a push held already (a duplicate).
  _positioned(message) {
    if (message.event === "wsevents.subscribed") {
      const data = message.data ?? {};
      if (typeof data.topic === "string") this._hold(data.topic, String(data.epoch), Number(data.offset));
      return true;
    }
    const { topic, epoch, offset } = message;
    if (typeof topic !== "string" || typeof offset !== "number") return true;
    const held = this.positions[topic];
    if (held && held.epoch === String(epoch) && offset <= held.offset) {
      this.duplicates += 1;
      return false;
    }
    this._hold(topic, String(epoch), offset);
    return true;
  }

  _hold(topic, epoch, offset) {
    this.positions[topic] = { epoch, offset };
    const store = this.storageKey && storage();
    if (store && this._saving === null) {
      // At most one write per turn of the event loop, however many pushes came.
      this._saving = setTimeout(() => {
        this._saving = null;
        try {
          store.setItem(this.storageKey, JSON.stringify(this.positions));
        } catch (error) {
          console.warn("wsevents: cannot keep positions in sessionStorage", error);
        }
      }, 0);
    }
  }

  _endedError() {
    const { code, reason } = this._ended;
    return new WSEventsError("connection_lost", `the server ended the connection with ${code}`, { code, reason });
  }

  _transmit(message) {
    const payload = this.codec.encode(message);
    if (this.connected) this.socket.send(payload);
    else if (this._ended) throw this._endedError();
    else if (this.closed) throw new WSEventsError("closed", "the client is closed");
    else if (this._outbox.length >= this.maxQueue) throw new WSEventsError("queue_full", "too many frames wait for the connection");
    else this._outbox.push(payload);
  }

  /**
   * Send an event without an id; kept until the connection is back if it is down.
   * { traceparent, tracestate } (W3C Trace Context) go in the frame: the trace it belongs to.
   */
  send(event, data = null, { traceparent, tracestate } = {}) {
    this._transmit(traced({ event, data }, traceparent, tracestate));
  }

  /**
   * Send an event with an id; resolves with the reply's data, rejects with a WSEventsError.
   * A dropped connection does not fail it: it is sent again after the reconnect, until timeout.
   */
  request(event, data = null, { timeout, traceparent, tracestate } = {}) {
    if (this.closed) return Promise.reject(new WSEventsError("closed", "the client is closed"));
    if (this._ended) return Promise.reject(this._endedError());
    if (!this.connected && this._pending.size >= this.maxQueue) {
      return Promise.reject(new WSEventsError("queue_full", "too many requests wait for the connection"));
    }
    const id = nextRequestId();
    const limit = timeout ?? this.timeout;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new WSEventsError("timeout", `no answer to "${event}" within ${limit} ms`));
      }, limit);
      let payload;
      try {
        payload = this.codec.encode(traced({ event, data, id }, traceparent, tracestate));
      } catch (error) {
        clearTimeout(timer);
        reject(error);
        return;
      }
      const pending = { resolve, reject, timer, payload, sent: 0 };
      this._pending.set(id, pending);
      if (this.connected) {
        pending.sent = this._generation;
        this.socket.send(payload);
      } // else the reconnect sends it
    });
  }

  /**
   * Answer the server's requests of event (conn.request) with fn(data), which may return a
   * promise; an error it throws with a code answers with that code, any other internal_error.
   * A request of an event nobody answers gets unknown_event. Returns a function that stops it.
   */
  answer(event, fn) {
    this._answerers.set(event, fn);
    return () => {
      if (this._answerers.get(event) === fn) this._answerers.delete(event);
    };
  }

  async _answer(message, socket) {
    const fn = this._answerers.get(message.event);
    let reply;
    if (!fn) {
      reply = { event: "error", data: { code: "unknown_event", message: `this client answers no request "${message.event}"`, details: null }, ask: message.ask };
    } else {
      try {
        reply = { event: message.event, data: (await fn(message.data, message)) ?? null, ask: message.ask };
      } catch (error) {
        const coded = error && typeof error.code === "string" && error.code;
        if (!coded) console.error(`wsevents: the answerer of "${message.event}" failed`, error);
        reply = {
          event: "error",
          data: coded
            ? { code: error.code, message: String(error.message ?? ""), details: error.details ?? null }
            : { code: "internal_error", message: "internal error", details: null },
          ask: message.ask,
        };
      }
    }
    if (socket.readyState === WebSocket.OPEN) socket.send(this.codec.encode(reply));
  }

  /** Call fn(data, message) for every push of event ("error" for uncorrelated errors); returns a function that stops it. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  close(code = 1000, reason = "") {
    this.closed = true;
    this._failPending("closed", "the client was closed");
    if (this.socket) this.socket.close(code, reason);
  }

  _receive(payload) {
    let message;
    try {
      message = this.codec.decode(payload);
    } catch (error) {
      console.warn("wsevents: a frame that cannot be decoded", error);
      return;
    }
    if (message === null || typeof message !== "object" || typeof message.event !== "string") return;
    if (typeof message.ask === "string") {
      this._answer(message, this.socket);
      return;
    }
    if (message.id !== undefined && message.id !== null) {
      // An answer (pushes carry no id); one whose request gave up is dropped.
      const pending = this._pending.get(message.id);
      if (!pending) return;
      this._pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.event === "error") {
        const { code, message: text, details } = message.data ?? {};
        pending.reject(new WSEventsError(code ?? "bad_frame", text ?? "", details ?? null));
      } else pending.resolve(message.data);
      return;
    }
    if (!this._positioned(message)) return;
    this._emit(message.event, message.data, message);
  }

  _emit(event, data, message = { event, data, id: null }) {
    for (const fn of this._listeners.get(event) ?? []) {
      try {
        fn(data, message);
      } catch (error) {
        console.error(`wsevents: a listener of "${event}" failed`, error);
      }
    }
  }

  _failPending(code, text, details = null) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new WSEventsError(code, text, details));
      this._pending.delete(id);
    }
  }
}

/** Connect to a channel: resolves to a Client once the first connection is open. */
export function connect(url, options = {}) {
  return new Client(url, options).open();
}
