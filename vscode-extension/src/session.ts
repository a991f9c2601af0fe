// One app (a folder with a `hotswap.toml`) and its daemon: the connection, the status it shows,
// its build log, its Problems entries, and the notification when a build or swap fails.

import * as path from "node:path";

import * as vscode from "vscode";

import type { ClientInfo } from "./client";
import { type ConnectionState, DaemonConnection, type Backoff } from "./connection";
import { diagnosticsByFile } from "./diagnostics";
import type { DaemonEvent, Diagnostic, MethodName, ParamsOf, ResultOf, SwapStages } from "./protocol";
import { StatusModel, formatDuration } from "./status";

export interface SessionHost {
  readonly log: vscode.LogOutputChannel;
  readonly client: ClientInfo;
  readonly backoff: Backoff | undefined;
  diagnosticsEnabled(): boolean;
  /** Something the status bar shows changed. */
  statusChanged(session: AppSession): void;
  /** The connection to this session's daemon is down because nothing listens. */
  noDaemon(session: AppSession): void;
  /** The user picked "Rollback" on a failure notification. */
  rollback(session: AppSession): void;
}

const ACTION_SHOW_OUTPUT = "Show output";
const ACTION_ROLLBACK = "Rollback";

function describeStages(stages: SwapStages): string {
  return Object.entries(stages)
    .map(([stage, milliseconds]) => `${stage.replace(/Ms$/, "")} ${milliseconds.toFixed(2)} ms`)
    .join(", ");
}

export class AppSession implements vscode.Disposable {
  readonly status: StatusModel;
  readonly connection: DaemonConnection;
  private readonly collection: vscode.DiagnosticCollection;
  /** The diagnostics of the last finished build, kept to show them again when switched back on. */
  private lastDiagnostics: readonly Diagnostic[] = [];
  /** The last complete build's diagnostics (Problems shows them with a refused state's). */
  private buildDiagnostics: readonly Diagnostic[] = [];
  private pendingSaves = new Set<string>();
  private saveTimer: NodeJS.Timeout | undefined;
  private everConnected = false;

  constructor(
    /** The canonical app root: the folder that holds `hotswap.toml`. */
    readonly root: string,
    readonly endpoint: string,
    private readonly host: SessionHost,
  ) {
    this.status = new StatusModel(path.basename(root) || root);
    this.collection = vscode.languages.createDiagnosticCollection("hotswap");
    this.connection = new DaemonConnection({
      endpoint,
      client: host.client,
      ...(host.backoff === undefined ? {} : { backoff: host.backoff }),
    });
    this.connection.onState((state) => { this.connectionChanged(state); });
    this.connection.onEvent((event) => { this.handleEvent(event); });
    this.connection.onProblem((message) => { host.log.warn(`[${this.name}] ${message}`); });
  }

  get name(): string {
    return path.basename(this.root) || this.root;
  }

  get connected(): boolean {
    return this.connection.state.kind === "connected";
  }

  start(): void {
    this.host.log.info(`[${this.name}] connecting to the daemon of ${this.root} at ${this.endpoint}`);
    this.connection.start();
  }

  request<M extends MethodName>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    return this.connection.request(method, params);
  }

  /**
   * Queues saved paths; the saves of one tick (a "Save All") go out as one `didSave`. When the
   * daemon is not connected the paths are dropped (the daemon builds from disk when it starts)
   * and a reconnect is tried at once.
   */
  saved(file: string): void {
    this.pendingSaves.add(file);
    if (this.saveTimer !== undefined) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      const paths = [...this.pendingSaves].sort();
      this.pendingSaves.clear();
      void this.sendSaves(paths);
    }, 0);
  }

  private async sendSaves(paths: string[]): Promise<void> {
    const log = this.host.log;
    if (!this.connected) {
      log.info(`[${this.name}] not sent (${this.connection.state.kind}): saved ${paths.join(", ")}`);
      this.connection.retryNow();
      return;
    }
    try {
      const result = await this.connection.request("didSave", { paths });
      for (const accepted of result.accepted) log.debug(`[${this.name}] save accepted: ${accepted}`);
      for (const ignored of result.ignored) log.info(`[${this.name}] save ignored: ${ignored.path}: ${ignored.reason}`);
    } catch (error) {
      log.error(`[${this.name}] didSave failed: ${(error as Error).message}`);
    }
  }

  /** Shows or hides the last build's diagnostics after the setting changed. */
  refreshDiagnostics(): void {
    this.collection.clear();
    if (!this.host.diagnosticsEnabled()) return;
    const fallback = path.join(this.root, "hotswap.toml");
    for (const [file, diagnostics] of diagnosticsByFile(this.lastDiagnostics, fallback)) {
      this.collection.set(vscode.Uri.file(file), diagnostics);
    }
  }

  private connectionChanged(state: ConnectionState): void {
    const log = this.host.log;
    this.status.connection(state);
    switch (state.kind) {
      case "connected": {
        this.everConnected = true;
        const { info } = state;
        const generation = info.generation === undefined ? "no generation yet" : `generation ${info.generation}`;
        log.info(
          `[${this.name}] connected to daemon ${info.daemonVersion} (pid ${info.pid}) for ${info.package}, serving on ${info.listenAddress}: ${generation}`,
        );
        void this.learnWhetherBuilding();
        break;
      }
      case "noDaemon":
        log.debug(`[${this.name}] no daemon at ${state.endpoint}; next try in ${state.retryInMs} ms`);
        this.host.noDaemon(this);
        break;
      case "disconnected":
        if (this.everConnected) log.warn(`[${this.name}] ${state.reason}; next try in ${state.retryInMs} ms`);
        break;
      case "incompatible":
        log.error(`[${this.name}] ${state.reason}`);
        break;
      case "connecting":
      case "stopped":
        break;
    }
    this.host.statusChanged(this);
  }

  /** A build that started before this connection subscribed sent its `buildStarted` to nobody. */
  private async learnWhetherBuilding(): Promise<void> {
    try {
      const status = await this.connection.request("status", {});
      if (status.building) this.status.buildRunning();
      if (status.refusedSwap !== undefined) this.status.refused(status.refusedSwap.stage, status.refusedSwap.message);
      this.host.statusChanged(this);
    } catch (error) {
      this.host.log.debug(`[${this.name}] status after connecting failed: ${(error as Error).message}`);
    }
  }

  private handleEvent(event: DaemonEvent): void {
    this.status.event(event);
    this.logEvent(event);
    switch (event.method) {
      case "buildFinished":
        if (event.params.outcome !== "cancelled") {
          this.buildDiagnostics = event.params.diagnostics;
          this.lastDiagnostics = event.params.diagnostics;
          this.refreshDiagnostics();
        }
        if (event.params.outcome === "failed") {
          const errors = event.params.diagnostics.filter((diagnostic) => diagnostic.severity === "error");
          const first = errors[0];
          const serving =
            this.status.currentGeneration === undefined
              ? "nothing serves yet"
              : `generation ${this.status.currentGeneration} keeps serving`;
          const summary = first === undefined ? "" : `: ${first.message}`;
          this.notifyFailure(`hotswap: build failed${summary} (${serving}).`);
        }
        break;
      case "swapFailed":
        if (event.params.diagnostics.length > 0) {
          // The struct a state does not fit, in Problems beside the build's own diagnostics.
          this.lastDiagnostics = [...this.buildDiagnostics, ...event.params.diagnostics];
          this.refreshDiagnostics();
        }
        this.notifyFailure(
          `hotswap: generation ${event.params.generation} was refused at stage "${event.params.stage}": ${event.params.message}`,
        );
        break;
      case "generationCrashed":
        this.notifyFailure(`hotswap: ${event.params.message}`);
        break;
      default:
        break;
    }
    this.host.statusChanged(this);
  }

  private notifyFailure(message: string): void {
    void vscode.window.showErrorMessage(message, ACTION_SHOW_OUTPUT, ACTION_ROLLBACK).then((choice) => {
      if (choice === ACTION_SHOW_OUTPUT) this.host.log.show(true);
      if (choice === ACTION_ROLLBACK) this.host.rollback(this);
    });
  }

  private logEvent(event: DaemonEvent): void {
    const log = this.host.log;
    const prefix = `[${this.name}]`;
    switch (event.method) {
      case "buildStarted": {
        const { build, reason, paths } = event.params;
        const files = paths.map((file) => path.relative(this.root, file) || file).join(", ");
        log.info(`${prefix} build ${build} started (${reason}${files === "" ? "" : `: ${files}`})`);
        return;
      }
      case "buildProgress":
        log.info(`${prefix} build ${event.params.build}: ${event.params.message}`);
        return;
      case "buildFinished": {
        const { build, outcome, durationMs, diagnostics, builtWith } = event.params;
        const errors = diagnostics.filter((diagnostic) => diagnostic.severity === "error").length;
        const warnings = diagnostics.filter((diagnostic) => diagnostic.severity === "warning").length;
        const tool =
          builtWith === "rustcSharedDeps"
            ? " by rustc directly, on the shared dependency library"
            : builtWith === "rustc"
              ? " by rustc directly"
              : builtWith === "cargo"
                ? " by cargo"
                : "";
        const line = `${prefix} build ${build} ${outcome} in ${formatDuration(durationMs)}${tool} (${errors} errors, ${warnings} warnings)`;
        if (outcome === "failed") log.error(line);
        else log.info(line);
        for (const diagnostic of diagnostics) {
          const text = diagnostic.rendered ?? `${diagnostic.severity}: ${diagnostic.message}`;
          if (diagnostic.severity === "error") log.error(text.trimEnd());
          else log.info(text.trimEnd());
        }
        return;
      }
      case "swapFinished": {
        const swap = event.params;
        const what =
          swap.afterCrash !== undefined
            ? `after generation ${swap.afterCrash} crashed, ${swap.rollback ? "the previous build" : "the same build"} serves again as generation`
            : swap.rollback
              ? "rolled back to an earlier artifact as generation"
              : "swapped in generation";
        const total = swap.totalMs === undefined ? "" : `, ${formatDuration(swap.totalMs)} from save to serving`;
        log.info(`${prefix} ${what} ${swap.generation} in ${formatDuration(swap.swapMs)}${total} (${describeStages(swap.stages)})`);
        for (const warning of swap.warnings) log.warn(`${prefix} ${warning}`);
        return;
      }
      case "swapFailed":
        log.error(`${prefix} generation ${event.params.generation} refused at stage ${event.params.stage}: ${event.params.message}`);
        return;
      case "generationRetired": {
        const retired = event.params;
        const reason = retired.reason === undefined ? "" : `: ${retired.reason}`;
        if (retired.outcome === "ended") {
          log.info(`${prefix} generation ${retired.generation} ended after draining for ${formatDuration(retired.drainMs)}${reason}`);
        } else {
          log.warn(`${prefix} generation ${retired.generation} was killed after draining for ${formatDuration(retired.drainMs)}${reason}`);
        }
        if (retired.requestsCut > 0) log.warn(`${prefix} ${retired.requestsCut} requests were cut at the drain timeout`);
        return;
      }
      case "generationCrashed": {
        const crash = event.params;
        log.error(`${prefix} ${crash.message}`);
        for (const line of crash.lastWords) log.error(`${prefix}   | ${line}`);
        return;
      }
      case "handlerPanicked": {
        const panic = event.params;
        const request = panic.request === undefined ? "" : ` answering ${panic.request}`;
        log.error(
          `${prefix} handler of generation ${panic.generation}${request} panicked${panic.location === undefined ? "" : ` at ${panic.location}`}: ${panic.message}`,
        );
        return;
      }
      case "log": {
        const record = event.params;
        const text = `${prefix} ${record.generation === undefined ? "" : `gen ${record.generation} `}${record.target}: ${record.message}`;
        switch (record.level) {
          case "error":
            log.error(text);
            return;
          case "warn":
            log.warn(text);
            return;
          case "info":
            log.info(text);
            return;
          case "debug":
            log.debug(text);
            return;
          case "trace":
            log.trace(text);
            return;
        }
        return;
      }
      case "assetsChanged": {
        const files = event.params.files.map((file) => file.relativePath).join(", ");
        log.info(`${prefix} saved ${files}: read at run time, no build; open pages update`);
        return;
      }
    }
  }

  dispose(): void {
    if (this.saveTimer !== undefined) clearTimeout(this.saveTimer);
    this.connection.stop();
    this.collection.dispose();
  }
}
