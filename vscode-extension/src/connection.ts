// Keeps one workspace connected to its daemon: connect, `initialize`, `subscribe`; when the
// daemon is missing or the connection drops, try again with exponential backoff. Its state is
// what the status bar shows. No `vscode` import.

import { type ClientInfo, DaemonClient, IncompatibleDaemonError, NoDaemonError } from "./client";
import type { DaemonEvent, InitializeResult, MethodName, ParamsOf, ResultOf } from "./protocol";

export type ConnectionState =
  | { kind: "connecting" }
  | { kind: "connected"; info: InitializeResult }
  /** Nothing listens on the endpoint. */
  | { kind: "noDaemon"; endpoint: string; retryInMs: number }
  /** The daemon was there but the connection failed or ended. */
  | { kind: "disconnected"; reason: string; retryInMs: number }
  /** The daemon speaks another protocol version. */
  | { kind: "incompatible"; reason: string; retryInMs: number }
  | { kind: "stopped" };

export interface Backoff {
  /** The first retry waits this long; each failure doubles it. */
  initialMs: number;
  /** The longest wait between two attempts. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, maxMs: 4000 };

/** The wait before attempt `failures + 1`, after `failures` failed attempts in a row. */
export function backoffDelay(backoff: Backoff, failures: number): number {
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1));
}

/** The daemon is not connected now; the message says what state the connection is in. */
export class NotConnectedError extends Error {
  constructor(readonly state: ConnectionState) {
    super(describeDisconnection(state));
    this.name = "NotConnectedError";
  }
}

export function describeDisconnection(state: ConnectionState): string {
  switch (state.kind) {
    case "connected":
      return "connected";
    case "connecting":
      return "still connecting to the hotswap daemon";
    case "noDaemon":
      return `no hotswap daemon runs for this workspace (nothing listens on ${state.endpoint})`;
    case "disconnected":
      return `not connected to the hotswap daemon: ${state.reason}`;
    case "incompatible":
      return state.reason;
    case "stopped":
      return "the connection to the hotswap daemon is switched off";
  }
}

export interface ConnectionOptions {
  endpoint: string;
  client: ClientInfo;
  backoff?: Backoff;
}

type Listener<T> = (value: T) => void;

export class DaemonConnection {
  private stateValue: ConnectionState = { kind: "stopped" };
  private client: DaemonClient | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Bumped by start/stop/retry so that a connect that finishes late knows it is stale. */
  private attempt = 0;
  private readonly stateListeners = new Set<Listener<ConnectionState>>();
  private readonly eventListeners = new Set<Listener<DaemonEvent>>();
  private readonly problemListeners = new Set<Listener<string>>();
  private readonly backoff: Backoff;

  constructor(private readonly options: ConnectionOptions) {
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  get endpoint(): string {
    return this.options.endpoint;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  onState(listener: Listener<ConnectionState>): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  onEvent(listener: Listener<DaemonEvent>): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Messages from the daemon that were skipped, for the log. */
  onProblem(listener: Listener<string>): () => void {
    this.problemListeners.add(listener);
    return () => this.problemListeners.delete(listener);
  }

  /** Starts connecting (and keeps reconnecting) unless already started. */
  start(): void {
    if (this.stateValue.kind !== "stopped") return;
    this.failures = 0;
    void this.connect();
  }

  /** Closes the connection and stops reconnecting. */
  stop(): void {
    this.attempt += 1;
    this.clearRetry();
    const client = this.client;
    this.client = undefined;
    client?.close();
    this.setState({ kind: "stopped" });
  }

  /**
   * Tries at once instead of waiting for the next retry, and restarts the backoff from its
   * shortest wait (after a save, or after the daemon was started). No effect while connected.
   */
  retryNow(): void {
    if (this.stateValue.kind === "connected" || this.stateValue.kind === "connecting" || this.stateValue.kind === "stopped") {
      return;
    }
    this.failures = 0;
    void this.connect();
  }

  /** Sends a request on the live connection; rejects with {@link NotConnectedError} when there is none. */
  request<M extends MethodName>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (this.client === undefined || this.stateValue.kind !== "connected") {
      return Promise.reject(new NotConnectedError(this.stateValue));
    }
    return this.client.request(method, params);
  }

  private async connect(): Promise<void> {
    this.clearRetry();
    const attempt = ++this.attempt;
    this.setState({ kind: "connecting" });
    let client: DaemonClient | undefined;
    try {
      const connected = await DaemonClient.connectAndInitialize(this.options.endpoint, this.options.client);
      client = connected.client;
      if (attempt !== this.attempt) {
        client.close();
        return;
      }
      client.onEvent((event) => {
        for (const listener of this.eventListeners) listener(event);
      });
      client.onProblem((message) => {
        for (const listener of this.problemListeners) listener(message);
      });
      await client.request("subscribe", {});
      if (attempt !== this.attempt) {
        client.close();
        return;
      }
      this.client = client;
      this.failures = 0;
      const connectedClient = client;
      client.onClose((reason) => {
        if (this.client !== connectedClient) return;
        this.client = undefined;
        this.failed({
          kind: "disconnected",
          reason: reason?.message ?? "the connection was closed",
          retryInMs: 0,
        });
      });
      this.setState({ kind: "connected", info: connected.info });
    } catch (error) {
      client?.close();
      if (attempt !== this.attempt) return;
      if (error instanceof NoDaemonError) {
        this.failed({ kind: "noDaemon", endpoint: this.options.endpoint, retryInMs: 0 });
      } else if (error instanceof IncompatibleDaemonError) {
        this.failed({ kind: "incompatible", reason: error.message, retryInMs: 0 });
      } else {
        this.failed({ kind: "disconnected", reason: (error as Error).message, retryInMs: 0 });
      }
    }
  }

  private failed(state: Exclude<ConnectionState, { kind: "connecting" | "connected" | "stopped" }>): void {
    this.failures += 1;
    // A daemon of another version will not change soon: wait the longest.
    const delay = state.kind === "incompatible" ? this.backoff.maxMs : backoffDelay(this.backoff, this.failures);
    this.clearRetry();
    const attempt = this.attempt;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (attempt === this.attempt) void this.connect();
    }, delay);
    this.setState({ ...state, retryInMs: delay });
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private setState(state: ConnectionState): void {
    this.stateValue = state;
    for (const listener of this.stateListeners) listener(state);
  }
}
