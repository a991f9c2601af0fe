// The hotswap wire protocol (version 1) in TypeScript: every request, result and event, with
// codecs that read and write them exactly as the Rust reference types in `protocol/src/` do.
// `protocol/README.md` documents it; `protocol/vectors/*.jsonl` pin it, and the unit tests check
// this module against every vector. No `vscode` import.

import {
  type Codec,
  CodecError,
  type Decoded,
  array,
  boolean,
  defaulted,
  integer,
  isPlainObject,
  number,
  object,
  omittedWhenEmpty,
  oneOf,
  optional,
  required,
  string,
  tagged,
  unsigned,
} from "./codec";

/** The protocol version this extension speaks, sent in `initialize`. */
export const PROTOCOL_VERSION = 1;

/** Largest line either side accepts, newline excluded: 1 MiB. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** JSON-RPC error codes used by hotswap (the first five are the standard ones). */
export const ErrorCode = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  unsupportedProtocolVersion: -32001,
  notInitialized: -32002,
  alreadyInitialized: -32003,
  noPreviousGeneration: -32010,
  shuttingDown: -32011,
} as const;

// ---- Shared data ---------------------------------------------------------------------------

const position = object({ line: required(unsigned), character: required(unsigned) });
const range = object({ start: required(position), end: required(position) });
export type Position = Decoded<typeof position>;
export type Range = Decoded<typeof range>;

const severity = oneOf(["error", "warning", "note", "help"]);
export type Severity = Decoded<typeof severity>;

const relatedInformation = object({
  file: required(string),
  range: required(range),
  message: required(string),
});
export type RelatedInformation = Decoded<typeof relatedInformation>;

const diagnostic = object({
  severity: required(severity),
  code: optional(string),
  message: required(string),
  file: optional(string),
  range: optional(range),
  rendered: optional(string),
  related: omittedWhenEmpty(array(relatedInformation)),
});
/** A compiler message; ranges count lines from 0 and characters in UTF-16 code units. */
export type Diagnostic = Decoded<typeof diagnostic>;

const swapStages = object({
  copyMs: required(number),
  loadMs: required(number),
  verifyMs: required(number),
  initMs: required(number),
  stateMs: required(number),
  smokeMs: required(number),
  publishMs: required(number),
  /** How long requests that can write waited while the state moved (reads never wait). */
  writesHeldMs: optional(number),
});
export type SwapStages = Decoded<typeof swapStages>;

export const SWAP_STAGES = ["copy", "load", "verify", "init", "state", "smoke", "publish"] as const;
const swapStage = oneOf(SWAP_STAGES);
export type SwapStage = Decoded<typeof swapStage>;

const buildOutcome = oneOf(["succeeded", "unchanged", "failed", "cancelled"]);
export type BuildOutcome = Decoded<typeof buildOutcome>;
/**
 * What compiled a build: cargo, or the rustc cargo last ran for the handler, run directly
 * (linking its dependencies in, or on the shared library of them the daemon built once).
 */
const builtWith = oneOf(["cargo", "rustc", "rustcSharedDeps"]);

// ---- Requests --------------------------------------------------------------------------------

/** Params of methods that take none: `{}`, `null` or absent on the wire; left out when sending. */
const noParams: Codec<Record<string, never>> = {
  expected: "an object",
  decode(value, path) {
    if (value !== undefined && value !== null && !isPlainObject(value)) throw new CodecError(path, "an object", value);
    return {};
  },
  encode: () => ({}),
};

const initializeParams = object({
  protocolVersion: required(unsigned),
  clientName: required(string),
  clientVersion: optional(string),
});
const initializeResult = object({
  protocolVersion: required(unsigned),
  daemonVersion: required(string),
  pid: required(unsigned),
  workspaceRoot: required(string),
  package: required(string),
  listenAddress: required(string),
  generation: optional(unsigned),
});
const didSaveParams = object({ paths: required(array(string)) });
const didSaveResult = object({
  accepted: required(array(string)),
  ignored: required(array(object({ path: required(string), reason: required(string) }))),
});

const reloadOutcome = tagged("outcome", {
  swapped: {
    generation: required(unsigned),
    previousGeneration: optional(unsigned),
    buildMs: optional(number),
    swapMs: required(number),
    totalMs: required(number),
    stages: required(swapStages),
    warnings: omittedWhenEmpty(array(string)),
  },
  unchanged: {
    generation: optional(unsigned),
    buildMs: required(number),
  },
  buildFailed: {
    buildMs: required(number),
    diagnostics: required(array(diagnostic)),
    rendered: required(string),
  },
  swapFailed: {
    generation: required(unsigned),
    stage: required(swapStage),
    message: required(string),
    diagnostics: omittedWhenEmpty(array(diagnostic)),
  },
  cancelled: {
    reason: required(string),
  },
});

const crashRecovery = tagged("kind", {
  restart: { snapshotAgeMs: optional(unsigned) },
  previousBuild: { generation: required(unsigned) },
  none: {},
});

const generationCrashed = object({
  generation: required(unsigned),
  pid: required(unsigned),
  cause: required(string),
  signal: optional(string),
  exitCode: optional(integer),
  lastWords: omittedWhenEmpty(array(string)),
  request: optional(string),
  recovery: required(crashRecovery),
  message: required(string),
});

const statusResult = object({
  daemonVersion: required(string),
  pid: required(unsigned),
  workspaceRoot: required(string),
  package: required(string),
  endpoint: required(string),
  listenAddress: required(string),
  uptimeMs: required(unsigned),
  currentGeneration: optional(unsigned),
  generations: required(
    array(
      object({
        generation: required(unsigned),
        state: required(oneOf(["current", "draining"])),
        connections: required(unsigned),
        inFlight: required(unsigned),
        requests: required(unsigned),
        ageMs: required(unsigned),
        pid: defaulted(unsigned, () => 0),
        rssBytes: defaulted(unsigned, () => 0),
        streams: defaulted(unsigned, () => 0),
      }),
    ),
  ),
  building: required(boolean),
  lastBuild: optional(
    object({
      build: required(unsigned),
      outcome: required(buildOutcome),
      durationMs: required(number),
      errors: required(unsigned),
      warnings: required(unsigned),
      finishedAgoMs: required(unsigned),
      builtWith: optional(builtWith),
    }),
  ),
  lastSwap: optional(
    object({
      generation: required(unsigned),
      swapMs: required(number),
      totalMs: optional(number),
      rollback: required(boolean),
      agoMs: required(unsigned),
    }),
  ),
  refusedSwap: optional(
    object({
      generation: required(unsigned),
      build: optional(unsigned),
      stage: required(swapStage),
      message: required(string),
      serving: optional(unsigned),
      agoMs: required(unsigned),
    }),
  ),
  lastCrash: optional(
    object({
      crash: required(generationCrashed),
      agoMs: required(unsigned),
    }),
  ),
  snapshot: optional(
    object({
      generation: required(unsigned),
      bytes: required(unsigned),
      ageMs: required(unsigned),
    }),
  ),
  endedGenerations: required(unsigned),
  crashes: defaulted(unsigned, () => 0),
});

/** Every request method with the codecs of its params and result, in protocol order. */
export const methods = {
  initialize: { params: initializeParams, result: initializeResult },
  didSave: { params: didSaveParams, result: didSaveResult },
  reload: { params: object({ freshState: optional(boolean) }), result: reloadOutcome },
  rollback: { params: noParams, result: reloadOutcome },
  status: { params: noParams, result: statusResult },
  subscribe: { params: noParams, result: object({ subscribed: required(boolean) }) },
  cancelBuild: { params: noParams, result: object({ cancelled: required(boolean) }) },
  shutdown: { params: noParams, result: noParams },
  state: {
    params: noParams,
    result: object({ generation: required(unsigned), path: optional(string), bytes: required(unsigned) }),
  },
  loadState: { params: object({ path: required(string) }), result: reloadOutcome },
} as const;

export type MethodName = keyof typeof methods;
export type ParamsOf<M extends MethodName> = Decoded<(typeof methods)[M]["params"]>;
export type ResultOf<M extends MethodName> = Decoded<(typeof methods)[M]["result"]>;
export const METHOD_NAMES = Object.keys(methods) as MethodName[];

export type InitializeParams = ParamsOf<"initialize">;
export type InitializeResult = ResultOf<"initialize">;
export type DidSaveResult = ResultOf<"didSave">;
export type ReloadOutcome = ResultOf<"reload">;
export type StatusResult = ResultOf<"status">;

export function isMethodName(name: string): name is MethodName {
  return Object.prototype.hasOwnProperty.call(methods, name);
}

// ---- Events ----------------------------------------------------------------------------------

const events = {
  buildStarted: object({
    build: required(unsigned),
    reason: required(oneOf(["initial", "save", "reload"])),
    paths: defaulted(array(string), () => []),
  }),
  buildProgress: object({
    build: required(unsigned),
    message: required(string),
    blocked: defaulted(boolean, () => false),
  }),
  buildFinished: object({
    build: required(unsigned),
    outcome: required(buildOutcome),
    durationMs: required(number),
    diagnostics: defaulted(array(diagnostic), () => []),
    builtWith: optional(builtWith),
  }),
  swapFinished: object({
    generation: required(unsigned),
    previousGeneration: optional(unsigned),
    rollback: defaulted(boolean, () => false),
    afterCrash: optional(unsigned),
    swapMs: required(number),
    totalMs: optional(number),
    buildMs: optional(number),
    stages: required(swapStages),
    warnings: omittedWhenEmpty(array(string)),
  }),
  swapFailed: object({
    generation: required(unsigned),
    stage: required(swapStage),
    message: required(string),
    state: optional(
      object({
        message: required(string),
        struct: optional(string),
        field: optional(string),
        path: optional(string),
      }),
    ),
    diagnostics: omittedWhenEmpty(array(diagnostic)),
  }),
  generationRetired: object({
    generation: required(unsigned),
    outcome: required(oneOf(["ended", "killed"])),
    reason: optional(string),
    drainMs: required(number),
    requestsCut: defaulted(unsigned, () => 0),
  }),
  generationCrashed,
  handlerPanicked: object({
    generation: required(unsigned),
    message: required(string),
    location: optional(string),
    request: optional(string),
  }),
  log: object({
    level: required(oneOf(["error", "warn", "info", "debug", "trace"])),
    target: required(string),
    message: required(string),
    generation: optional(unsigned),
  }),
  assetsChanged: object({
    files: required(
      array(
        object({
          path: required(string),
          relativePath: required(string),
        }),
      ),
    ),
  }),
} as const;

export type EventName = keyof typeof events;
export type EventParams<E extends EventName> = Decoded<(typeof events)[E]>;
/** An event notification, as a union discriminated by `method`. */
export type DaemonEvent = { [E in EventName]: { method: E; params: EventParams<E> } }[EventName];
export const EVENT_NAMES = Object.keys(events) as EventName[];

function isEventName(name: string): name is EventName {
  return Object.prototype.hasOwnProperty.call(events, name);
}

// ---- Envelopes -------------------------------------------------------------------------------

export type RequestId = number | string;

/** The `error` member of a failed response, thrown by the client as an error. */
export class ResponseError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "ResponseError";
  }

  toJSON(): { code: number; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

/** A request the client sends: its method and params, decoded. */
export type ClientRequest = { [M in MethodName]: { method: M; params: ParamsOf<M> } }[MethodName];

export type ClientMessage =
  | { kind: "request"; id: RequestId; request: ClientRequest }
  | { kind: "notification"; request: ClientRequest };

/** A client line that does not decode, with what the daemon answers (nothing for a notification). */
export class ClientDecodeError extends Error {
  constructor(
    readonly id: RequestId | null,
    readonly notification: boolean,
    readonly error: ResponseError,
  ) {
    super(error.message);
    this.name = "ClientDecodeError";
  }
}

export type DaemonMessage =
  | { kind: "response"; id: RequestId | null; result: unknown }
  | { kind: "error"; id: RequestId | null; error: ResponseError }
  | { kind: "event"; event: DaemonEvent }
  | { kind: "unknownNotification"; method: string; params: unknown };

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "boolean":
      return "a boolean";
    case "number":
      return "a number";
    case "string":
      return "a string";
    default:
      return "an object";
  }
}

/** Reads `id`: absent or null gives null; a non-integer number or another type is an error. */
function readId(object: Record<string, unknown>): RequestId | null {
  const id = object["id"];
  if (id === undefined || id === null) return null;
  if (typeof id === "string") return id;
  if (typeof id === "number" && Number.isSafeInteger(id)) return id;
  if (typeof id === "number") throw new Error(`"id" must be an integer or a string, not ${id}`);
  throw new Error(`"id" must be an integer or a string, not ${jsonKind(id)}`);
}

function versionProblem(object: Record<string, unknown>): string | undefined {
  const version = object["jsonrpc"];
  if (version === "2.0") return undefined;
  if (version === undefined) return 'the message has no "jsonrpc": "2.0" member';
  return `"jsonrpc" must be "2.0", not ${JSON.stringify(version)}`;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes a UTF-8 line into JSON, as the daemon's decoder does (errors are parse errors). */
function parseLine(line: Uint8Array | string): unknown {
  let text: string;
  if (typeof line === "string") {
    text = line;
  } else {
    try {
      text = utf8.decode(line);
    } catch {
      throw new ResponseError(ErrorCode.parseError, "message is not valid UTF-8");
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ResponseError(ErrorCode.parseError, `message is not valid JSON: ${(error as Error).message}`);
  }
}

function decodeParams<M extends MethodName>(method: M, params: unknown): ParamsOf<M> {
  try {
    return methods[method].params.decode(params, "params") as ParamsOf<M>;
  } catch (error) {
    if (error instanceof CodecError) {
      throw new ResponseError(ErrorCode.invalidParams, `invalid params for ${method}: ${error.message}`);
    }
    throw error;
  }
}

/**
 * Decodes one line a client sent, as the daemon does (the fake daemon in the tests uses this).
 * Throws {@link ClientDecodeError} with the code of `protocol/vectors/errors.jsonl`.
 */
export function decodeClientMessage(line: Uint8Array | string): ClientMessage {
  let value: unknown;
  try {
    value = parseLine(line);
  } catch (error) {
    throw new ClientDecodeError(null, false, error as ResponseError);
  }
  if (Array.isArray(value)) {
    throw new ClientDecodeError(
      null,
      false,
      new ResponseError(ErrorCode.invalidRequest, "batches are not supported: send one JSON-RPC message per line"),
    );
  }
  if (!isPlainObject(value)) {
    throw new ClientDecodeError(
      null,
      false,
      new ResponseError(ErrorCode.invalidRequest, `a message must be a JSON object, not ${jsonKind(value)}`),
    );
  }
  const notification = !("id" in value);
  let id: RequestId | null;
  try {
    id = readId(value);
  } catch (error) {
    throw new ClientDecodeError(null, false, new ResponseError(ErrorCode.invalidRequest, (error as Error).message));
  }
  const invalid = (message: string) =>
    new ClientDecodeError(id, notification, new ResponseError(ErrorCode.invalidRequest, message));
  const problem = versionProblem(value);
  if (problem !== undefined) throw invalid(problem);
  const method = value["method"];
  if (method === undefined) {
    if ("result" in value || "error" in value) throw invalid("the daemon sends no requests, so it expects no responses");
    throw invalid('the message has no "method"');
  }
  if (typeof method !== "string") throw invalid(`"method" must be a string, not ${jsonKind(method)}`);
  const params = value["params"];
  if (params !== undefined && params !== null && !isPlainObject(params)) {
    throw invalid(`"params" must be an object (named parameters), not ${jsonKind(params)}`);
  }
  if (!isMethodName(method)) {
    throw new ClientDecodeError(
      id,
      notification,
      new ResponseError(
        ErrorCode.methodNotFound,
        `unknown method ${JSON.stringify(method)}; the methods are: ${METHOD_NAMES.join(", ")}`,
      ),
    );
  }
  let request: ClientRequest;
  try {
    request = { method, params: decodeParams(method, params ?? {}) } as ClientRequest;
  } catch (error) {
    throw new ClientDecodeError(id, notification, error as ResponseError);
  }
  return id === null ? { kind: "notification", request } : { kind: "request", id, request };
}

/** Decodes one line the daemon sent. Throws a {@link ResponseError} when it is not a protocol message. */
export function decodeDaemonMessage(line: Uint8Array | string): DaemonMessage {
  const value = parseLine(line);
  if (!isPlainObject(value)) throw new ResponseError(ErrorCode.invalidRequest, "daemon message is not a JSON object");
  const problem = versionProblem(value);
  if (problem !== undefined) throw new ResponseError(ErrorCode.invalidRequest, problem);
  const method = value["method"];
  if (typeof method === "string") {
    const params = value["params"] ?? null;
    if (!isEventName(method)) return { kind: "unknownNotification", method, params };
    try {
      return { kind: "event", event: { method, params: events[method].decode(params, "params") } as DaemonEvent };
    } catch (error) {
      if (error instanceof CodecError) {
        throw new ResponseError(ErrorCode.invalidParams, `event ${method} does not match the protocol: ${error.message}`);
      }
      throw error;
    }
  }
  let id: RequestId | null;
  try {
    id = readId(value);
  } catch (error) {
    throw new ResponseError(ErrorCode.invalidRequest, (error as Error).message);
  }
  const hasResult = "result" in value;
  const hasError = "error" in value;
  if (hasResult === hasError) {
    throw new ResponseError(ErrorCode.invalidRequest, 'a response must have exactly one of "result" and "error"');
  }
  if (hasResult) return { kind: "response", id, result: value["result"] };
  const error = value["error"];
  if (!isPlainObject(error) || !Number.isSafeInteger(error["code"]) || typeof error["message"] !== "string") {
    throw new ResponseError(ErrorCode.invalidRequest, "malformed error object: it needs an integer code and a message");
  }
  return { kind: "error", id, error: new ResponseError(error["code"] as number, error["message"], error["data"]) };
}

/** Decodes the `result` of a response to `method`; throws {@link CodecError} when it does not fit. */
export function decodeResult<M extends MethodName>(method: M, result: unknown): ResultOf<M> {
  return methods[method].result.decode(result, "result") as ResultOf<M>;
}

/** Encodes a request (with an id) or a notification (id undefined) as one JSON line, no newline. */
export function encodeRequest<M extends MethodName>(id: RequestId | undefined, method: M, params: ParamsOf<M>): string {
  const message: Record<string, unknown> = { jsonrpc: "2.0" };
  if (id !== undefined) message["id"] = id;
  message["method"] = method;
  const encoded = (methods[method].params as Codec<ParamsOf<M>>).encode(params);
  if (!isPlainObject(encoded) || Object.keys(encoded).length > 0) message["params"] = encoded;
  return JSON.stringify(message);
}

/** Encodes a successful response to `method` (what the daemon sends; used by the fake daemon). */
export function encodeResult<M extends MethodName>(id: RequestId | null, method: M, result: ResultOf<M>): string {
  return JSON.stringify({ jsonrpc: "2.0", id, result: (methods[method].result as Codec<ResultOf<M>>).encode(result) });
}

/** Encodes an error response. */
export function encodeError(id: RequestId | null, error: ResponseError): string {
  return JSON.stringify({ jsonrpc: "2.0", id, error: error.toJSON() });
}

/** Encodes an event notification. */
export function encodeEvent(event: DaemonEvent): string {
  const codec = events[event.method] as Codec<unknown>;
  return JSON.stringify({ jsonrpc: "2.0", method: event.method, params: codec.encode(event.params) });
}
