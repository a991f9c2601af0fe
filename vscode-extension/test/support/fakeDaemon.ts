// A scriptable stand-in for the hotswap daemon on a real Unix socket, speaking the protocol
// through the same codecs (`decodeClientMessage`, `encodeResult`, `encodeEvent`). It records
// every message it receives, answers with handlers a test may replace, enforces `initialize`
// first, and sends events to subscribed connections.

import { mkdir, rm } from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";

import { LineFramer } from "../../src/framing";
import {
  ClientDecodeError,
  type ClientMessage,
  type DaemonEvent,
  type Diagnostic,
  ErrorCode,
  type MethodName,
  type ParamsOf,
  PROTOCOL_VERSION,
  ResponseError,
  type ResultOf,
  decodeClientMessage,
  encodeError,
  encodeEvent,
  encodeResult,
} from "../../src/protocol";
import { waitFor } from "./wait";

export interface FakeConnection {
  readonly socket: net.Socket;
  initialized: boolean;
  subscribed: boolean;
  clientName?: string;
}

type Handler<M extends MethodName> = (
  params: ParamsOf<M>,
  connection: FakeConnection,
) => ResultOf<M> | ResponseError | Promise<ResultOf<M> | ResponseError>;

type Handlers = { [M in MethodName]: Handler<M> };

export interface ReceivedMessage {
  message: ClientMessage;
  connection: FakeConnection;
}

export const STAGES = { copyMs: 0.02, loadMs: 1.1, verifyMs: 0.01, initMs: 1.4, stateMs: 0.3, smokeMs: 0.2, publishMs: 0.01 };

export interface FakeDaemonOptions {
  /** The protocol version the fake speaks (another one makes `initialize` fail with -32001). */
  protocolVersion?: number;
  /** The generation `initialize` reports. */
  generation?: number;
  workspaceRoot?: string;
}

export class FakeDaemon {
  readonly received: ReceivedMessage[] = [];
  readonly connections = new Set<FakeConnection>();
  /** Lines that did not decode, with the error the fake answered. */
  readonly rejected: { line: string; error: ClientDecodeError }[] = [];
  generation: number | undefined;
  private readonly handlers: Handlers;

  private constructor(
    private readonly server: net.Server,
    readonly socketPath: string,
    private readonly options: FakeDaemonOptions,
  ) {
    this.generation = options.generation;
    this.handlers = this.defaultHandlers();
  }

  /** Listens on `socketPath`, creating its directory (mode 0700, as the daemon does). */
  static async listen(socketPath: string, options: FakeDaemonOptions = {}): Promise<FakeDaemon> {
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    await rm(socketPath, { force: true });
    const server = net.createServer();
    const daemon = new FakeDaemon(server, socketPath, options);
    server.on("connection", (socket) => {
      daemon.accept(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return daemon;
  }

  /** The fake's own `status` answer, for handlers that change part of it. */
  defaultStatus(): () => ResultOf<"status"> {
    return () => this.statusResult();
  }

  private statusResult(): ResultOf<"status"> {
    return {
      daemonVersion: "0.1.0-fake",
      pid: process.pid,
      workspaceRoot: this.options.workspaceRoot ?? "/fake/app",
      package: "app",
      endpoint: this.socketPath,
      listenAddress: "127.0.0.1:3000",
      uptimeMs: 1234,
      ...(this.generation === undefined ? {} : { currentGeneration: this.generation }),
      generations:
        this.generation === undefined
          ? []
          : [{ generation: this.generation, state: "current" as const, connections: 2, inFlight: 0, requests: 17, ageMs: 500, pid: 4243, rssBytes: 20971520, streams: 0 }],
      building: false,
      endedGenerations: 0,
      crashes: 0,
    };
  }

  /** Replaces how the fake answers `method`. */
  handle<M extends MethodName>(method: M, handler: Handler<M>): void {
    (this.handlers as Record<MethodName, unknown>)[method] = handler;
  }

  /** The requests received so far (notifications included) for `method`. */
  requests<M extends MethodName>(method: M): ParamsOf<M>[] {
    return this.received
      .map(({ message }) => message.request)
      .filter((request) => request.method === method)
      .map((request) => request.params as ParamsOf<M>);
  }

  /** Waits until `count` requests of `method` have arrived; returns them. */
  async waitForRequests<M extends MethodName>(method: M, count = 1, timeoutMs = 5000): Promise<ParamsOf<M>[]> {
    await waitFor(() => this.requests(method).length >= count, {
      timeoutMs,
      what: () => `${count} ${method} request(s); got ${this.received.map(({ message }) => message.request.method).join(", ") || "none"}`,
    });
    return this.requests(method);
  }

  /** Waits until some connection has subscribed to events. */
  async waitForSubscriber(timeoutMs = 5000): Promise<void> {
    await waitFor(() => [...this.connections].some((connection) => connection.subscribed), {
      timeoutMs,
      what: "a subscribed connection",
    });
  }

  /** Sends an event to every subscribed connection. */
  emit(event: DaemonEvent): void {
    const line = `${encodeEvent(event)}\n`;
    for (const connection of this.connections) if (connection.subscribed) connection.socket.write(line);
  }

  /** Sends raw bytes to every connection (for malformed-input tests). */
  sendRaw(data: string | Buffer): void {
    for (const connection of this.connections) connection.socket.write(data);
  }

  /** Emits what a successful save-triggered build and swap look like. */
  emitSwap(build: number, paths: string[], totalMs = 412.5): void {
    const previous = this.generation;
    const generation = (previous ?? 0) + 1;
    this.generation = generation;
    this.emit({ method: "buildStarted", params: { build, reason: "save", paths } });
    this.emit({ method: "buildProgress", params: { build, message: "Compiling app v0.1.0", blocked: false } });
    this.emit({ method: "buildFinished", params: { build, outcome: "succeeded", durationMs: 398.2, diagnostics: [] } });
    this.emit({
      method: "swapFinished",
      params: {
        generation,
        ...(previous === undefined ? {} : { previousGeneration: previous }),
        rollback: false,
        swapMs: 3.1,
        totalMs,
        buildMs: 398.2,
        stages: STAGES,
        warnings: [],
      },
    });
  }

  /** Emits a failed build with `diagnostics`. */
  emitFailedBuild(build: number, paths: string[], diagnostics: Diagnostic[]): void {
    this.emit({ method: "buildStarted", params: { build, reason: "save", paths } });
    this.emit({ method: "buildFinished", params: { build, outcome: "failed", durationMs: 310, diagnostics } });
  }

  /** Closes every client connection; the server keeps listening. */
  dropConnections(): void {
    for (const connection of this.connections) connection.socket.destroy();
    this.connections.clear();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => { resolve(); }));
    await rm(this.socketPath, { force: true });
  }

  private accept(socket: net.Socket): void {
    const connection: FakeConnection = { socket, initialized: false, subscribed: false };
    this.connections.add(connection);
    const framer = new LineFramer();
    // Requests on one connection are answered in order, as a daemon reading one line at a time does.
    let queue = Promise.resolve();
    socket.on("data", (data: Buffer) => {
      for (const frame of framer.push(data)) {
        if (frame.kind === "tooLong") {
          socket.write(`${encodeError(null, new ResponseError(ErrorCode.invalidRequest, "line too long"))}\n`);
          continue;
        }
        queue = queue.then(() => this.receive(connection, frame.line));
      }
    });
    socket.on("error", () => {
      this.connections.delete(connection);
    });
    socket.on("close", () => {
      this.connections.delete(connection);
    });
  }

  private async receive(connection: FakeConnection, line: Buffer): Promise<void> {
    let message: ClientMessage;
    try {
      // Decoded as the daemon decodes: the same function the vectors check.
      message = decodeClientMessage(line);
    } catch (error) {
      if (!(error instanceof ClientDecodeError)) throw error;
      this.rejected.push({ line: line.toString("utf8"), error });
      if (!error.notification) connection.socket.write(`${encodeError(error.id, error.error)}\n`);
      return;
    }
    this.received.push({ message, connection });
    const { request } = message;
    let answer: unknown;
    if (!connection.initialized && request.method !== "initialize") {
      answer = new ResponseError(ErrorCode.notInitialized, `${request.method} before initialize`);
    } else if (connection.initialized && request.method === "initialize") {
      answer = new ResponseError(ErrorCode.alreadyInitialized, "initialize sent twice");
    } else {
      const handler: Handler<MethodName> = this.handlers[request.method];
      answer = await handler(request.params, connection);
    }
    if (message.kind === "notification" || connection.socket.destroyed) return;
    const id = message.id;
    if (answer instanceof ResponseError) {
      connection.socket.write(`${encodeError(id, answer)}\n`);
    } else {
      connection.socket.write(`${encodeResult(id, request.method, answer as never)}\n`);
    }
  }

  private defaultHandlers(): Handlers {
    const root = this.options.workspaceRoot ?? "/fake/app";
    const protocolVersion = this.options.protocolVersion ?? PROTOCOL_VERSION;
    return {
      initialize: (params, connection) => {
        if (params.protocolVersion !== protocolVersion) {
          return new ResponseError(
            ErrorCode.unsupportedProtocolVersion,
            `protocol version ${params.protocolVersion} is not supported; this daemon speaks ${protocolVersion}`,
          );
        }
        connection.initialized = true;
        connection.clientName = params.clientName;
        return {
          protocolVersion,
          daemonVersion: "0.1.0-fake",
          pid: process.pid,
          workspaceRoot: root,
          package: "app",
          listenAddress: "127.0.0.1:3000",
          ...(this.generation === undefined ? {} : { generation: this.generation }),
        };
      },
      didSave: (params) => ({
        accepted: params.paths.filter((file) => file.endsWith(".rs")),
        ignored: params.paths.filter((file) => !file.endsWith(".rs")).map((file) => ({ path: file, reason: "outside the handler's packages" })),
      }),
      reload: () => {
        const previous = this.generation;
        this.generation = (previous ?? 0) + 1;
        return {
          outcome: "swapped",
          generation: this.generation,
          ...(previous === undefined ? {} : { previousGeneration: previous }),
          buildMs: 398.2,
          swapMs: 3.1,
          totalMs: 412.5,
          stages: STAGES,
          warnings: [],
        };
      },
      rollback: () => new ResponseError(ErrorCode.noPreviousGeneration, "nothing to roll back to: no earlier artifact has served"),
      status: () => this.statusResult(),
      state: () => ({ generation: this.generation ?? 0, bytes: 0 }),
      loadState: () => ({ outcome: "cancelled", reason: "the fake daemon keeps no state" }),
      subscribe: (_params, connection) => {
        connection.subscribed = true;
        return { subscribed: true };
      },
      cancelBuild: () => ({ cancelled: false }),
      shutdown: () => ({}),
    };
  }
}
