// The commands of the extension, each a factory over the `Ctx` (rust-analyzer's pattern). A
// command that talks to the daemon acts on the focused app (see `Ctx.focusedSession`), or on the
// app whose root it is given as its argument.

import * as vscode from "vscode";

import { DisconnectedError } from "./client";
import { NotConnectedError } from "./connection";
import type { Ctx } from "./ctx";
import { ErrorCode, type ReloadOutcome, ResponseError, type StatusResult } from "./protocol";
import type { AppSession } from "./session";
import { formatDuration } from "./status";

export type Command = (...args: unknown[]) => Promise<void>;

function sessionOrWarn(ctx: Ctx, root: unknown): AppSession | undefined {
  const session = ctx.focusedSession(typeof root === "string" ? root : undefined);
  if (session === undefined) {
    void vscode.window.showWarningMessage(
      ctx.config.enable
        ? "hotswap: this workspace has no hotswap.toml, so there is no app to act on."
        : "hotswap is switched off (hotswap.enable).",
    );
  }
  return session;
}

/** Shows why a request failed; offers to start the daemon when none runs. */
function reportFailure(ctx: Ctx, session: AppSession, what: string, error: unknown): void {
  if (error instanceof NotConnectedError) {
    const offerStart = error.state.kind === "noDaemon" || error.state.kind === "disconnected";
    const message = `hotswap: cannot ${what}: ${error.message}`;
    if (!offerStart) {
      void vscode.window.showErrorMessage(message);
      return;
    }
    void vscode.window.showErrorMessage(message, "Start Daemon").then((choice) => {
      if (choice === "Start Daemon") void ctx.startDaemon(session);
    });
    return;
  }
  const message = `hotswap: ${what} failed: ${(error as Error).message}`;
  ctx.log.error(`[${session.name}] ${message}`);
  void vscode.window.showErrorMessage(message, "Show output").then((choice) => {
    if (choice === "Show output") ctx.log.show(true);
  });
}

/** Failures arrive as events too (status bar, Problems, notification); only quiet outcomes are logged here. */
function logOutcome(ctx: Ctx, session: AppSession, what: string, outcome: ReloadOutcome): void {
  switch (outcome.outcome) {
    case "swapped":
      ctx.log.info(`[${session.name}] ${what}: generation ${outcome.generation} serves (${formatDuration(outcome.totalMs)})`);
      return;
    case "unchanged":
      ctx.log.info(`[${session.name}] ${what}: the build produced the code that already serves`);
      return;
    case "buildFailed":
      ctx.log.info(`[${session.name}] ${what}: build failed`);
      return;
    case "swapFailed":
      ctx.log.info(`[${session.name}] ${what}: swap refused at stage ${outcome.stage}`);
      return;
    case "cancelled":
      ctx.log.info(`[${session.name}] ${what}: cancelled (${outcome.reason})`);
      return;
  }
}

export function reload(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    try {
      logOutcome(ctx, session, "reload", await session.request("reload", {}));
    } catch (error) {
      reportFailure(ctx, session, "reload", error);
    }
  };
}

/** Reload, starting the new generation with the app's default state (the old one stays for a rollback). */
export function reloadFreshState(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    try {
      logOutcome(ctx, session, "reload with a fresh state", await session.request("reload", { freshState: true }));
    } catch (error) {
      reportFailure(ctx, session, "reload with a fresh state", error);
    }
  };
}

export function rollback(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    try {
      logOutcome(ctx, session, "rollback", await session.request("rollback", {}));
    } catch (error) {
      if (error instanceof ResponseError && error.code === ErrorCode.noPreviousGeneration) {
        void vscode.window.showInformationMessage(`hotswap: ${error.message}`);
        return;
      }
      reportFailure(ctx, session, "roll back", error);
    }
  };
}

/** One line a person reads: what serves, how busy, how the last build went. */
export function summarizeStatus(status: StatusResult): string {
  const parts: string[] = [];
  const current = status.generations.find((generation) => generation.state === "current");
  parts.push(
    status.currentGeneration === undefined
      ? `${status.package}: nothing serves yet`
      : `${status.package}: generation ${status.currentGeneration} serves on ${status.listenAddress}`,
  );
  if (current !== undefined) parts.push(`${current.connections} connections, ${current.requests} requests`);
  const draining = status.generations.filter((generation) => generation.state === "draining").length;
  if (draining > 0) parts.push(`${draining} draining`);
  if (status.building) parts.push("building now");
  if (status.lastBuild !== undefined) {
    parts.push(`last build ${status.lastBuild.outcome} in ${formatDuration(status.lastBuild.durationMs)}`);
  }
  if (status.refusedSwap !== undefined) {
    parts.push(`the last swap was refused at the ${status.refusedSwap.stage} stage: ${status.refusedSwap.message}`);
  }
  if (status.lastCrash !== undefined) {
    parts.push(`last crash ${formatDuration(status.lastCrash.agoMs)} ago: ${status.lastCrash.crash.message}`);
  }
  return parts.join(" · ");
}

export function showStatus(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    let status: StatusResult;
    try {
      status = await session.request("status", {});
    } catch (error) {
      reportFailure(ctx, session, "get the status", error);
      return;
    }
    ctx.log.info(`[${session.name}] status:\n${JSON.stringify(status, null, 2)}`);
    const choice = await vscode.window.showInformationMessage(`hotswap: ${summarizeStatus(status)}`, "Show output");
    if (choice === "Show output") ctx.log.show(true);
  };
}

export function showLog(ctx: Ctx): Command {
  return () => {
    ctx.log.show(true);
    return Promise.resolve();
  };
}

export function startDaemon(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    if (session.connection.state.kind === "connected") {
      const { info } = session.connection.state;
      void vscode.window.showInformationMessage(`hotswap: the daemon for ${session.name} already runs (pid ${info.pid}).`);
      return;
    }
    await ctx.startDaemon(session);
  };
}

export function stopDaemon(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    if (session.connected) {
      try {
        await session.request("shutdown", {});
        ctx.log.info(`[${session.name}] asked the daemon to shut down`);
      } catch (error) {
        // A stopping daemon closes every connection, and the answer can lose that race.
        if (error instanceof DisconnectedError) {
          ctx.log.info(`[${session.name}] the daemon closed the connection while shutting down`);
          return;
        }
        reportFailure(ctx, session, "stop the daemon", error);
      }
      return;
    }
    const terminal = ctx.daemonTerminal(session);
    if (terminal !== undefined) {
      terminal.dispose();
      ctx.log.info(`[${session.name}] closed the daemon's terminal`);
      return;
    }
    void vscode.window.showInformationMessage(`hotswap: no daemon runs for ${session.name}.`);
  };
}

export function pauseSwapOnSave(ctx: Ctx): Command {
  return () => ctx.setPaused(true);
}

export function resumeSwapOnSave(ctx: Ctx): Command {
  return () => ctx.setPaused(false);
}

/**
 * The address a browser opens for an app that listens on `listenAddress` (`127.0.0.1:3000`,
 * `[::1]:3000`): an unspecified host (`0.0.0.0`, `[::]`) becomes the loopback address.
 */
export function browserUrl(listenAddress: string): string {
  const address = listenAddress.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
  return `http://${address}/`;
}

/** Opens the app's address in the default browser (where the page follows the saves). */
export function openInBrowser(ctx: Ctx): Command {
  return async (root) => {
    const session = sessionOrWarn(ctx, root);
    if (session === undefined) return;
    const state = session.connection.state;
    if (state.kind !== "connected") {
      const choice = await vscode.window.showWarningMessage(
        `hotswap: no daemon serves ${session.name}, so there is no address to open yet.`,
        "Start Daemon",
      );
      if (choice === "Start Daemon") await ctx.startDaemon(session);
      return;
    }
    const url = browserUrl(state.info.listenAddress);
    const opened = await vscode.env.openExternal(vscode.Uri.parse(url));
    if (opened) ctx.log.info(`[${session.name}] opened ${url} in the browser`);
    else ctx.log.warn(`[${session.name}] the browser did not open ${url}`);
  };
}

interface MenuItem extends vscode.QuickPickItem {
  command: string;
}

/** The quick pick behind the status bar item. */
export function showMenu(ctx: Ctx): Command {
  return async () => {
    const session = ctx.focusedSession();
    const connected = session?.connected ?? false;
    const items: MenuItem[] = [
      { label: "$(refresh) Reload now", description: "build and swap", command: "hotswap.reload" },
      { label: "$(history) Roll back", description: "serve the previous artifact again", command: "hotswap.rollback" },
      ...(session !== undefined && session.connection.state.kind === "connected"
        ? [
            {
              label: "$(globe) Open in browser",
              description: browserUrl(session.connection.state.info.listenAddress),
              command: "hotswap.openInBrowser",
            },
          ]
        : []),
      { label: "$(info) Show status", command: "hotswap.showStatus" },
      { label: "$(output) Show log", command: "hotswap.showLog" },
      connected
        ? { label: "$(debug-stop) Stop daemon", command: "hotswap.stopDaemon" }
        : { label: "$(play) Start daemon", description: "hotswap serve, in a terminal", command: "hotswap.startDaemon" },
      ctx.paused
        ? { label: "$(debug-continue) Resume swapping on save", command: "hotswap.resumeSwapOnSave" }
        : { label: "$(debug-pause) Pause swapping on save", command: "hotswap.pauseSwapOnSave" },
    ];
    const picked = await vscode.window.showQuickPick(items, {
      title: session === undefined ? "hotswap" : `hotswap · ${session.name}`,
      placeHolder: "What should hotswap do?",
    });
    if (picked !== undefined) await vscode.commands.executeCommand(picked.command, session?.root);
  };
}

/** Every command id with its factory; `package.json` contributes the same ids. */
export const COMMANDS: Record<string, (ctx: Ctx) => Command> = {
  "hotswap.reload": reload,
  "hotswap.reloadFreshState": reloadFreshState,
  "hotswap.rollback": rollback,
  "hotswap.showStatus": showStatus,
  "hotswap.showLog": showLog,
  "hotswap.startDaemon": startDaemon,
  "hotswap.stopDaemon": stopDaemon,
  "hotswap.pauseSwapOnSave": pauseSwapOnSave,
  "hotswap.resumeSwapOnSave": resumeSwapOnSave,
  "hotswap.showMenu": showMenu,
  "hotswap.openInBrowser": openInBrowser,
};
