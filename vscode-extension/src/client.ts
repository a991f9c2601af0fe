// A connection to a hotswap daemon over its local socket (Node `net`: a Unix socket, or a named
// pipe on Windows). Requests may overlap: responses are matched to requests by id, and events go
// to the listeners. No `vscode` import: the unit tests run it against a fake daemon on a real
// socket, and the daemon tests against the real `hotswap` binary.

import * as net from "node:net";

import { CodecError } from "./codec";
import { LineFramer, encodeLine } from "./framing";
import {
  type DaemonEvent,
  ErrorCode,
  type InitializeResult,
  type MethodName,
  type ParamsOf,
  PROTOCOL_VERSION,
  type RequestId,
  ResponseError,
  type ResultOf,
  decodeDaemonMessage,
  decodeResult,
  encodeRequest,
} from "./protocol";

/** Nothing listens at the endpoint: no socket file, or a stale one. */
export class NoDaemonError extends Error {
  constructor(
    readonly endpoint: string,
    readonly errno: NodeJS.ErrnoException,
  ) {
    super(`no hotswap daemon listens on ${endpoint} (${errno.code ?? errno.message})`);
    this.name = "NoDaemonError";
  }
}

/** The connection ended before an answer came. */
export class DisconnectedError extends Error {
  constructor(message = "the hotswap daemon closed the connection") {
    super(message);
    this.name = "DisconnectedError";
  }
}

/** The daemon speaks another protocol version. */
export class IncompatibleDaemonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IncompatibleDaemonError";
  }
}

/** The daemon sent something that does not fit the protocol. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

export interface ClientInfo {
  name: string;
  version?: string;
}

export interface ConnectOptions {
  /** Give up connecting after this long (default 5 s). */
  timeoutMs?: number;
}

type Listener<T> = (value: T) => void;

interface PendingRequest {
  method: MethodName;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

const NO_DAEMON_CODES = new Set(["ENOENT", "ECONNREFUSED", "ENOTDIR"]);

export class DaemonClient {
  private readonly pending = new Map<RequestId, PendingRequest>();
  private readonly eventListeners = new Set<Listener<DaemonEvent>>();
  private readonly closeListeners = new Set<Listener<Error | undefined>>();
  private readonly problemListeners = new Set<Listener<string>>();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    readonly endpoint: string,
  ) {
    const framer = new LineFramer();
    socket.on("data", (data: Buffer) => {
      for (const frame of framer.push(data)) {
        if (frame.kind === "tooLong") {
          this.problem(`skipped a message of more than ${frame.seen} bytes from the daemon (the limit is 1 MiB)`);
        } else {
          this.receive(frame.line);
        }
      }
    });
    socket.on("error", (error) => { this.shutDown(new DisconnectedError(`connection to the hotswap daemon failed: ${error.message}`)); });
    socket.on("close", () => { this.shutDown(new DisconnectedError()); });
  }

  /** Connects to the daemon at `endpoint` (without `initialize`). */
  static connect(endpoint: string, options: ConnectOptions = {}): Promise<DaemonClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const socket = net.connect(endpoint);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connecting to ${endpoint} took longer than ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error.code !== undefined && NO_DAEMON_CODES.has(error.code) ? new NoDaemonError(endpoint, error) : error);
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        resolve(new DaemonClient(socket, endpoint));
      });
    });
  }

  /** Connects, then agrees on the protocol version with `initialize`. */
  static async connectAndInitialize(
    endpoint: string,
    client: ClientInfo,
    options: ConnectOptions = {},
  ): Promise<{ client: DaemonClient; info: InitializeResult }> {
    const connection = await DaemonClient.connect(endpoint, options);
    try {
      const info = await connection.initialize(client);
      return { client: connection, info };
    } catch (error) {
      connection.close();
      throw error;
    }
  }

  /** Sends `initialize`. A daemon of another protocol version gives {@link IncompatibleDaemonError}. */
  async initialize(client: ClientInfo): Promise<InitializeResult> {
    let info: InitializeResult;
    try {
      info = await this.request("initialize", {
        protocolVersion: PROTOCOL_VERSION,
        clientName: client.name,
        ...(client.version === undefined ? {} : { clientVersion: client.version }),
      });
    } catch (error) {
      if (error instanceof ResponseError && error.code === ErrorCode.unsupportedProtocolVersion) {
        throw new IncompatibleDaemonError(
          `the hotswap daemon does not speak protocol version ${PROTOCOL_VERSION}: ${error.message}`,
        );
      }
      throw error;
    }
    if (info.protocolVersion !== PROTOCOL_VERSION) {
      throw new IncompatibleDaemonError(
        `the hotswap daemon ${info.daemonVersion} speaks protocol version ${info.protocolVersion}, this extension ${PROTOCOL_VERSION}`,
      );
    }
    return info;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends a request and waits for its result, decoded. JSON-RPC errors reject with {@link ResponseError}. */
  request<M extends MethodName>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (this.closed) return Promise.reject(new DisconnectedError());
    const id = this.nextId++;
    return new Promise<ResultOf<M>>((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      try {
        this.socket.write(encodeLine(encodeRequest(id, method, params)));
      } catch (error) {
        this.pending.delete(id);
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Sends a request without an id: the daemon acts on it and answers nothing. */
  notify<M extends MethodName>(method: M, params: ParamsOf<M>): void {
    if (this.closed) throw new DisconnectedError();
    this.socket.write(encodeLine(encodeRequest(undefined, method, params)));
  }

  onEvent(listener: Listener<DaemonEvent>): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Called once when the connection ends; with the reason unless {@link close} ended it. */
  onClose(listener: Listener<Error | undefined>): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Called for messages that were skipped because they do not fit the protocol. */
  onProblem(listener: Listener<string>): () => void {
    this.problemListeners.add(listener);
    return () => this.problemListeners.delete(listener);
  }

  close(): void {
    this.shutDown(undefined);
  }

  private receive(line: Buffer): void {
    let message;
    try {
      message = decodeDaemonMessage(line);
    } catch (error) {
      this.problem(`skipped a message from the daemon: ${(error as Error).message}`);
      return;
    }
    switch (message.kind) {
      case "event":
        for (const listener of this.eventListeners) listener(message.event);
        return;
      case "unknownNotification":
        // A newer daemon may send more kinds of events: ignore them, as the protocol asks.
        return;
      case "response":
      case "error": {
        const pending = message.id === null ? undefined : this.pending.get(message.id);
        if (message.id === null || pending === undefined) {
          const what = message.kind === "error" ? `error ${message.error.code}: ${message.error.message}` : "result";
          this.problem(`the daemon answered a request this client did not send (id ${String(message.id)}): ${what}`);
          return;
        }
        this.pending.delete(message.id);
        if (message.kind === "error") {
          pending.reject(message.error);
          return;
        }
        try {
          pending.resolve(decodeResult(pending.method, message.result));
        } catch (error) {
          const reason = error instanceof CodecError ? error.message : String(error);
          pending.reject(new ProtocolError(`the daemon's answer to ${pending.method} does not fit the protocol: ${reason}`));
        }
        return;
      }
    }
  }

  private problem(message: string): void {
    for (const listener of this.problemListeners) listener(message);
  }

  private shutDown(reason: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const error = reason ?? new DisconnectedError("the connection to the hotswap daemon was closed");
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    for (const listener of this.closeListeners) listener(reason);
    this.closeListeners.clear();
    this.eventListeners.clear();
  }
}
