// What the status bar says about one workspace's daemon, as a pure state machine: connection
// states and daemon events go in, the text, tone and tooltip come out. No `vscode` import.

import type { ConnectionState } from "./connection";
import type { DaemonEvent, EventParams, InitializeResult, SwapStage } from "./protocol";

export type Tone = "normal" | "warning" | "error";

export interface StatusView {
  /** Status bar text, with `$(codicon)` icons. */
  text: string;
  /** The same without icons, for screen readers. */
  label: string;
  tone: Tone;
  /** Markdown lines for the tooltip. */
  tooltip: string[];
}

type Phase =
  | { kind: "offline"; connection: Exclude<ConnectionState, { kind: "connected" }> }
  | { kind: "idle" }
  | { kind: "building"; build?: number; progress?: string; blocked: boolean }
  | { kind: "swapped"; swap: EventParams<"swapFinished"> }
  | { kind: "unchanged" }
  | { kind: "buildFailed"; errors: number; firstError?: string }
  | { kind: "swapFailed"; stage: SwapStage; message: string }
  | { kind: "crashed"; crash: EventParams<"generationCrashed"> };

/** `412 ms` under a second, `1.8 s` above. */
export function formatDuration(milliseconds: number): string {
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  return `${(milliseconds / 1000).toFixed(1)} s`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

export class StatusModel {
  private phase: Phase = { kind: "offline", connection: { kind: "stopped" } };
  /** The phase before the build that is running, to go back to when it is cancelled. */
  private beforeBuild: Phase = { kind: "idle" };
  private info: InitializeResult | undefined;
  private generation: number | undefined;
  private paused = false;

  constructor(private readonly appName: string) {}

  get currentGeneration(): number | undefined {
    return this.generation;
  }

  get connected(): boolean {
    return this.phase.kind !== "offline";
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
  }

  connection(state: ConnectionState): void {
    if (state.kind === "connected") {
      this.info = state.info;
      this.generation = state.info.generation;
      this.phase = { kind: "idle" };
      return;
    }
    this.phase = { kind: "offline", connection: state };
  }

  /**
   * The daemon's `status` said the last swap was refused (and none succeeded since): shown as
   * refused, so that a client connecting later knows the code on disk is not what serves.
   */
  refused(stage: SwapStage, message: string): void {
    if (this.phase.kind === "idle") this.phase = { kind: "swapFailed", stage, message };
  }

  /**
   * The daemon's `status` said a build runs: shown as building until events say more (a client
   * that connects during a build missed its `buildStarted`).
   */
  buildRunning(): void {
    if (this.phase.kind === "idle") {
      this.beforeBuild = this.phase;
      this.phase = { kind: "building", blocked: false };
    }
  }

  event(event: DaemonEvent): void {
    if (this.phase.kind === "offline") return;
    switch (event.method) {
      case "buildStarted":
        if (this.phase.kind !== "building") this.beforeBuild = this.phase;
        this.phase = { kind: "building", build: event.params.build, blocked: false };
        return;
      case "buildProgress":
        if (this.phase.kind === "building") {
          this.phase = { ...this.phase, progress: event.params.message, blocked: event.params.blocked };
        }
        return;
      case "buildFinished": {
        const { outcome, diagnostics } = event.params;
        if (outcome === "failed") {
          const errors = diagnostics.filter((diagnostic) => diagnostic.severity === "error");
          const first = errors[0];
          this.phase = {
            kind: "buildFailed",
            errors: errors.length,
            ...(first === undefined ? {} : { firstError: first.message }),
          };
        } else if (outcome === "unchanged") {
          this.phase = { kind: "unchanged" };
        } else if (outcome === "cancelled") {
          this.phase = this.beforeBuild;
        }
        // "succeeded": still building until the swap finishes or fails.
        return;
      }
      case "swapFinished":
        this.generation = event.params.generation;
        this.phase = { kind: "swapped", swap: event.params };
        return;
      case "swapFailed":
        this.phase = { kind: "swapFailed", stage: event.params.stage, message: event.params.message };
        return;
      case "generationCrashed":
        if (event.params.recovery.kind === "none") this.generation = undefined;
        this.phase = { kind: "crashed", crash: event.params };
        return;
      case "generationRetired":
      case "handlerPanicked":
      case "log":
        return;
    }
  }

  view(): StatusView {
    const view = this.baseView();
    if (this.paused) {
      view.text = `$(debug-pause) ${view.text.replace(/^\$\([^)]*\) /, "")} (paused)`;
      view.label = `${view.label} (paused)`;
      view.tooltip.push("", "Swapping on save is **paused**: saves are not sent to the daemon.");
    }
    view.tooltip.push("", "Click for hotswap actions.");
    return view;
  }

  private servingLine(): string[] {
    if (this.info === undefined) return [];
    const generation = this.generation === undefined ? "no generation yet" : `generation ${this.generation}`;
    return [
      `**${this.info.package}** on [${this.info.listenAddress}](http://${this.info.listenAddress}/): ${generation}`,
      `daemon ${this.info.daemonVersion}, pid ${this.info.pid}`,
    ];
  }

  private baseView(): StatusView {
    const header = `**hotswap** · ${this.appName}`;
    const phase = this.phase;
    const make = (icon: string, label: string, tone: Tone, lines: string[]): StatusView => ({
      text: `$(${icon}) ${label}`,
      label,
      tone,
      tooltip: [header, "", ...lines],
    });
    const generationLabel = this.generation === undefined ? "no generation" : `gen ${this.generation}`;
    switch (phase.kind) {
      case "offline": {
        const state = phase.connection;
        switch (state.kind) {
          case "stopped":
            return make("circle-slash", "hotswap: off", "normal", ["Not connected to a daemon."]);
          case "connecting":
            return make("sync~spin", "hotswap: connecting", "normal", ["Connecting to the daemon…"]);
          case "noDaemon":
            return make("debug-disconnect", "hotswap: no daemon", "normal", [
              "No daemon runs for this workspace.",
              `Looked for it at \`${state.endpoint}\`; trying again every few seconds.`,
              "Run **hotswap: Start Daemon**, or `hotswap serve` in a terminal.",
            ]);
          case "disconnected":
            return make("debug-disconnect", "hotswap: disconnected", "warning", [
              `Lost the daemon: ${state.reason}`,
              "Reconnecting…",
            ]);
          case "incompatible":
            return make("error", "hotswap: incompatible daemon", "error", [
              state.reason,
              "Install matching versions of the hotswap daemon and this extension.",
            ]);
        }
        break;
      }
      case "idle":
        return make("zap", this.generation === undefined ? "hotswap: idle" : `hotswap: ${generationLabel}`, "normal", [
          ...this.servingLine(),
        ]);
      case "building": {
        const progress = phase.blocked ? "waiting for another cargo to release its lock" : (phase.progress ?? "cargo build");
        return make("sync~spin", phase.blocked ? "hotswap: building (waiting for lock)" : "hotswap: building", "normal", [
          `${phase.build === undefined ? "Build" : `Build ${phase.build}`}: ${progress}`,
          ...this.servingLine(),
        ]);
      }
      case "swapped": {
        const swap = phase.swap;
        const lines = [...this.servingLine()];
        if (swap.afterCrash !== undefined) {
          lines.push(
            `Generation ${swap.afterCrash} crashed; ${swap.rollback ? "the previous build" : "the same build"} serves again (${formatDuration(swap.swapMs)}).`,
          );
          for (const warning of swap.warnings) lines.push(`⚠ ${warning}`);
          return make("warning", `${generationLabel} · after a crash`, "warning", lines);
        }
        if (swap.rollback) {
          lines.push(`Rolled back to an earlier artifact in ${formatDuration(swap.swapMs)}.`);
          return make("history", `${generationLabel} · rolled back`, "normal", lines);
        }
        const total = swap.totalMs ?? swap.swapMs;
        const parts = [`swap ${formatDuration(swap.swapMs)}`];
        if (swap.buildMs !== undefined) parts.unshift(`build ${formatDuration(swap.buildMs)}`);
        lines.push(`Swapped in ${formatDuration(total)} (${parts.join(", ")}).`);
        for (const warning of swap.warnings) lines.push(`⚠ ${warning}`);
        return make("zap", `${generationLabel} · ${formatDuration(total)}`, swap.warnings.length > 0 ? "warning" : "normal", lines);
      }
      case "unchanged":
        return make("zap", `${generationLabel} · unchanged`, "normal", [
          "The last build produced the code that already serves.",
          ...this.servingLine(),
        ]);
      case "buildFailed":
        return make("error", "hotswap: build failed", "error", [
          `Build failed${phase.errors > 0 ? ` with ${plural(phase.errors, "error")}` : ""}${phase.firstError === undefined ? "" : `: ${phase.firstError}`}.`,
          this.generation === undefined ? "Nothing serves yet." : `Generation ${this.generation} keeps serving.`,
        ]);
      case "swapFailed":
        return make("error", `hotswap: swap failed (${phase.stage})`, "error", [
          `The new generation was refused at stage \`${phase.stage}\`: ${phase.message}`,
          this.generation === undefined
            ? "Nothing serves yet."
            : `Generation ${this.generation} keeps serving: the code on disk is not what serves until a swap succeeds.`,
        ]);
      case "crashed": {
        const crash = phase.crash;
        const lines = [crash.message];
        if (crash.lastWords.length > 0) lines.push("", ...crash.lastWords.map((line) => `    ${line}`));
        const label = crash.recovery.kind === "none" ? "hotswap: crashed, nothing serves" : `hotswap: gen ${crash.generation} crashed`;
        return make("error", label, "error", lines);
      }
    }
  }
}
