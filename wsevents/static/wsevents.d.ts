// Types for the wsevents browser client served at /wsevents.js.

/** One frame: a push (id null), a reply, or an error frame. */
export interface Message<T = unknown> {
  event: string;
  data: T;
  id?: string | number | null;
  /** On a server request (conn.request): the key the answer carries back. */
  ask?: string;
  /** On a push through a history topic: the topic and the push's position in it. */
  topic?: string;
  epoch?: string;
  offset?: number;
}

/** A position in a history topic. */
export interface Position {
  epoch: string;
  offset: number;
}

/** The data of wsevents.subscribed: a history topic's position; recovered says whether what was missed came. */
export interface Subscribed {
  topic: string;
  epoch: string;
  offset: number;
  recovered: boolean | null;
}

/** The data of wsevents.presence: a topic's members that joined and left in one window, id to info; the first lists every member. */
export interface PresenceDiff<Info = Record<string, unknown>> {
  topic: string;
  joined: Record<string, Info>;
  left: Record<string, Info>;
}

/** The data of an error frame. */
export interface ErrorData {
  code: string;
  message: string;
  details: unknown;
}

/** A request that failed: an error frame (code from the server), "timeout", "connection_lost", "closed", "queue_full". */
export class WSEventsError extends Error {
  constructor(code: string, message?: string, details?: unknown);
  readonly code: string;
  readonly details: unknown;
}

export interface ConnectOptions {
  /** "json" (text frames, the default) or "msgpack" (binary frames). */
  codec?: "json" | "msgpack";
  /** Default request timeout in milliseconds (10000). */
  timeout?: number;
  /** Reconnect when the connection drops (true). */
  reconnect?: boolean;
  /** First and longest wait between reconnect attempts, in milliseconds ([100, 5000]). */
  backoff?: [number, number];
  /** Give up after this many failed attempts in a row (Infinity). */
  maxAttempts?: number;
  /** Frames kept while disconnected (1000); past it send and request throw "queue_full". */
  maxQueue?: number;
  /** Called after every connection, the first and each reconnect: rejoin here. */
  onConnect?: (client: Client) => void | Promise<void>;
  /** Called when a connection closes, with its close code and reason (4403: ended by the app; 4401: credentials expired). */
  onDisconnect?: (code: number, reason: string) => void;
  /**
   * A bearer token, or a function giving one (or a promise of one): offered at every handshake and
   * given to answer wsevents.refresh. After a 4401 close the client reconnects only with a function,
   * which it calls first; after 4403 it never does.
   */
  token?: string | (() => string | Promise<string>);
  /** How the token travels: as the subprotocol "bearer.TOKEN" (the default) or as the query parameter ?token=. */
  tokenIn?: "subprotocol" | "query";
  /** The subprotocol prefix ("bearer.") or query parameter ("token") BearerAuth reads the token from. */
  tokenName?: string;
  /** Positions held already, topic to [epoch, offset]: named in wsevents-resume from the first connection. */
  resume?: Record<string, [string, number]>;
  /** Keep positions in sessionStorage across a page reload (true). */
  persist?: boolean;
}

/** W3C Trace Context for one frame: the trace it belongs to, in its traceparent and tracestate keys. */
export interface TraceContext {
  traceparent?: string;
  tracestate?: string;
}

export class Client {
  constructor(url: string, options?: ConnectOptions);
  readonly url: string;
  readonly connected: boolean;
  readonly closed: boolean;
  /** How many times the connection was made again. */
  readonly reconnects: number;
  /** The code of the last close, once one came (4403 and 4401 without a token function end the client). */
  readonly closeCode: number | null;
  /** The position held in each history topic, sent in wsevents-resume on every reconnect. */
  readonly positions: Record<string, Position>;
  /** Pushes dropped because their position was held already. */
  readonly duplicates: number;
  /** The page's session, sent as wsevents-session (kept in sessionStorage with the request counter). */
  readonly session: string;
  open(): Promise<Client>;
  /** Send an event without an id; traceparent and tracestate (W3C Trace Context) go in the frame. */
  send(event: string, data?: unknown, options?: TraceContext): void;
  /** Send an event with an id; resolves with the reply's data, rejects with a WSEventsError; sent again after a reconnect. */
  request<T = unknown>(event: string, data?: unknown, options?: { timeout?: number } & TraceContext): Promise<T>;
  /** Answer the server's requests of an event; throw an error with a code to refuse. Returns a function that stops it. */
  answer<T = unknown, R = unknown>(event: string, answerer: (data: T, message: Message<T>) => R | Promise<R>): () => void;
  /** Listen to pushes of an event ("error" for error frames no request waits for); returns a function that stops it. */
  on<T = unknown>(event: string, listener: (data: T, message: Message<T>) => void): () => void;
  off(event: string, listener: (data: any, message: Message) => void): void;
  close(code?: number, reason?: string): void;
}

/**
 * A channel's events, for a typed client: `wsevents client MODULE:APP --lang typescript`
 * writes one per channel (`ChatRoomApi`), from the registry that validates the server.
 */
export interface EventMap {
  /** Client events: the data sent, the reply's data (null: none), the handler's own error codes. */
  requests: { [event: string]: { data: unknown; reply: unknown; errors?: string } };
  /** Server requests (channel.asks): the data the server sends, the answer the client gives. */
  asks?: { [event: string]: { data: unknown; answer: unknown } };
  /** Server events (error frames included): their data. */
  pushes: { [event: string]: unknown };
  /** The error codes a request may be rejected with (WSEventsError.code). */
  errors: string;
  /** The channel's path parameters. */
  params: { [name: string]: string | number };
}

type RequestEvent<Api extends EventMap> = keyof Api["requests"] & string;
type AsksOf<Api extends EventMap> = Api extends { asks: infer A } ? A : {};
type AskEvent<Api extends EventMap> = keyof AsksOf<Api> & string;
type AskData<Api extends EventMap, E extends AskEvent<Api>> =
  AsksOf<Api>[E] extends { data: infer D } ? D : unknown;
type AskAnswer<Api extends EventMap, E extends AskEvent<Api>> =
  AsksOf<Api>[E] extends { answer: infer R } ? R : unknown;
type PushEvent<Api extends EventMap> = keyof Api["pushes"] & string;
type DataOf<Api extends EventMap, E extends RequestEvent<Api>> = Api["requests"][E]["data"];
/** Data may be left out where the event takes none, or takes undefined. */
type DataArgs<Api extends EventMap, E extends RequestEvent<Api>> =
  undefined extends DataOf<Api, E> ? [data?: DataOf<Api, E>] : [data: DataOf<Api, E>];
type RequestArgs<Api extends EventMap, E extends RequestEvent<Api>> =
  undefined extends DataOf<Api, E>
    ? [data?: DataOf<Api, E>, options?: { timeout?: number } & TraceContext]
    : [data: DataOf<Api, E>, options?: { timeout?: number } & TraceContext];

/** A client typed by a channel's event map: `await connect<ChatRoomApi>(url)`. */
export interface TypedClient<Api extends EventMap>
  extends Omit<Client, "open" | "send" | "request" | "answer" | "on" | "off"> {
  /** Send an event without an id. */
  send<E extends RequestEvent<Api>>(event: E, ...data: DataArgs<Api, E>): void;
  /** Send an event with an id; resolves with the reply's data, rejects with a WSEventsError. */
  request<E extends RequestEvent<Api>>(event: E, ...args: RequestArgs<Api, E>): Promise<Api["requests"][E]["reply"]>;
  /** Answer the server's requests of an event with the answer's type; throw an error with a code to refuse. */
  answer<E extends AskEvent<Api>>(
    event: E,
    answerer: (data: AskData<Api, E>, message: Message<AskData<Api, E>>) => AskAnswer<Api, E> | Promise<AskAnswer<Api, E>>,
  ): () => void;
  /** Listen to pushes of an event ("error" for error frames no request waits for). */
  on<E extends PushEvent<Api>>(event: E, listener: (data: Api["pushes"][E], message: Message<Api["pushes"][E]>) => void): () => void;
  off<E extends PushEvent<Api>>(event: E, listener: (data: Api["pushes"][E], message: Message<Api["pushes"][E]>) => void): void;
}

/** Connect to a channel; resolves once the first connection is open. */
export function connect(url: string, options?: ConnectOptions): Promise<Client>;
/** Connect to a channel with typed events: `connect<ChatRoomApi>(url)`. */
export function connect<Api extends EventMap>(url: string, options?: ConnectOptions): Promise<TypedClient<Api>>;

export function encodeMsgpack(value: unknown): Uint8Array;
export function decodeMsgpack(buffer: ArrayBuffer | Uint8Array): unknown;
