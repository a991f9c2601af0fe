// The extension's state while it is active: settings, the apps of the workspace (one session and
// daemon connection per `hotswap.toml`), the status bar item, the log, daemon terminals, and
// every disposable. `main.ts` creates one; `commands.ts` acts through it.

import { constants as fsConstants, realpathSync } from "node:fs";
import { access, realpath } from "node:fs/promises";
import * as path from "node:path";

import * as vscode from "vscode";

import type { ClientInfo } from "./client";
import { type Config, type ReadConfig, SECTION, readConfig } from "./config";
import type { Backoff } from "./connection";
import { canonicalWorkspaceRoot, currentEnvironment, deriveEndpoint } from "./endpoint";
import { SaveFilter, appRootFor, isInside } from "./saveFilter";
import { AppSession, type SessionHost } from "./session";

export const STATUS_ITEM_ID = "hotswap.status";
export const MANIFEST = "hotswap.toml";
const PAUSED_KEY = "hotswap.paused";
const APP_SEARCH_EXCLUDE = "**/{target,node_modules,.git}/**";

export interface CtxOptions {
  /** Overrides the reconnect backoff (the tests use short waits). */
  backoff?: Backoff;
}

export class Ctx implements vscode.Disposable, SessionHost {
  readonly log: vscode.LogOutputChannel;
  readonly client: ClientInfo;
  readonly backoff: Backoff | undefined;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly disposables: { dispose(): unknown }[] = [];
  private readonly sessions = new Map<string, AppSession>();
  private readonly terminals = new Map<string, vscode.Terminal>();
  private readonly autoStarted = new Set<string>();
  private configValue: Config;
  private filter: SaveFilter;
  private pausedValue: boolean;
  private lastActive: AppSession | undefined;
  private discovery: Promise<void> = Promise.resolve();
  private readonly canonicalPaths = new Map<string, string>();

  constructor(
    private readonly extensionContext: vscode.ExtensionContext,
    options: CtxOptions = {},
  ) {
    this.log = vscode.window.createOutputChannel("hotswap", { log: true });
    const manifest = extensionContext.extension.packageJSON as { version?: unknown };
    this.client = { name: "vscode", version: typeof manifest.version === "string" ? manifest.version : "0.0.0" };
    this.backoff = options.backoff;
    const read = readConfig();
    this.configValue = read.config;
    this.reportConfigProblems(read);
    this.filter = new SaveFilter(this.configValue.include, this.configValue.exclude);
    this.pausedValue = extensionContext.workspaceState.get<boolean>(PAUSED_KEY, false);

    this.statusItem = vscode.window.createStatusBarItem(STATUS_ITEM_ID, vscode.StatusBarAlignment.Left, 10);
    this.statusItem.name = "hotswap";
    this.statusItem.command = "hotswap.showMenu";

    this.disposables.push(
      this.log,
      this.statusItem,
      vscode.workspace.onDidSaveTextDocument((document) => void this.documentSaved(document)),
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (event.affectsConfiguration(SECTION)) this.configurationChanged();
      }),
      vscode.workspace.onDidChangeWorkspaceFolders(() => { this.rediscover(); }),
      vscode.window.onDidChangeActiveTextEditor(() => { this.renderStatus(); }),
      vscode.window.onDidCloseTerminal((terminal) => {
        for (const [root, owned] of this.terminals) if (owned === terminal) this.terminals.delete(root);
      }),
    );
    const watcher = vscode.workspace.createFileSystemWatcher(`**/${MANIFEST}`, false, true, false);
    this.disposables.push(watcher, watcher.onDidCreate(() => { this.rediscover(); }), watcher.onDidDelete(() => { this.rediscover(); }));
  }

  get config(): Config {
    return this.configValue;
  }

  get paused(): boolean {
    return this.pausedValue;
  }

  get allSessions(): AppSession[] {
    return [...this.sessions.values()];
  }

  /** Finds the apps and connects to their daemons; resolves once every session has started. */
  async start(): Promise<void> {
    await vscode.commands.executeCommand("setContext", "hotswap.active", true);
    await vscode.commands.executeCommand("setContext", "hotswap.paused", this.pausedValue);
    this.rediscover();
    await this.discovery;
  }

  /** Waits for the app discovery in flight (tests and commands that need the sessions). */
  whenDiscovered(): Promise<void> {
    return this.discovery;
  }

  diagnosticsEnabled(): boolean {
    return this.configValue.diagnostics;
  }

  statusChanged(): void {
    this.renderStatus();
  }

  noDaemon(session: AppSession): void {
    if (!this.configValue.autoStart || this.autoStarted.has(session.root)) return;
    this.autoStarted.add(session.root);
    this.log.info(`[${session.name}] no daemon runs; starting one (hotswap.daemon.autoStart is on)`);
    void this.startDaemon(session);
  }

  rollback(session: AppSession): void {
    void vscode.commands.executeCommand("hotswap.rollback", session.root);
  }

  /**
   * The session commands act on: the one given by root, else the app of the active editor, else
   * the one that saw the last save, else the first.
   */
  focusedSession(root?: string): AppSession | undefined {
    if (root !== undefined) return this.sessions.get(root);
    const roots = [...this.sessions.keys()];
    const active = vscode.window.activeTextEditor?.document.uri;
    if (active?.scheme === "file") {
      const activeRoot = appRootFor(roots, active.fsPath) ?? appRootFor(roots, this.canonicalPath(active.fsPath));
      if (activeRoot !== undefined) return this.sessions.get(activeRoot);
    }
    if (this.lastActive !== undefined && this.sessions.get(this.lastActive.root) === this.lastActive) return this.lastActive;
    return this.sessions.values().next().value;
  }

  /** The canonical form of an open file's path (app roots are canonical), remembered per path. */
  private canonicalPath(file: string): string {
    let canonical = this.canonicalPaths.get(file);
    if (canonical === undefined) {
      try {
        canonical = realpathSync.native(file);
      } catch {
        canonical = file;
      }
      if (this.canonicalPaths.size > 256) this.canonicalPaths.clear();
      this.canonicalPaths.set(file, canonical);
    }
    return canonical;
  }

  async setPaused(paused: boolean): Promise<void> {
    this.pausedValue = paused;
    await this.extensionContext.workspaceState.update(PAUSED_KEY, paused);
    await vscode.commands.executeCommand("setContext", "hotswap.paused", paused);
    this.log.info(paused ? "swapping on save paused" : "swapping on save resumed");
    this.renderStatus();
  }

  /** Runs `hotswap serve` for the session's app in a terminal (shown, focus kept in the editor). */
  async startDaemon(session: AppSession): Promise<boolean> {
    const existing = this.terminals.get(session.root);
    if (existing !== undefined && existing.exitStatus === undefined) {
      existing.show(true);
      session.connection.retryNow();
      return true;
    }
    const executable = await resolveExecutable(this.configValue.daemonPath);
    if (executable === undefined) {
      const message = `hotswap: cannot find the daemon executable "${this.configValue.daemonPath}"${
        path.isAbsolute(this.configValue.daemonPath) ? "" : " on PATH"
      }. Build it with \`cargo build -p hotswap-daemon\` or set hotswap.daemon.path.`;
      this.log.error(message);
      void vscode.window.showErrorMessage(message, "Open Settings").then((choice) => {
        if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", "hotswap.daemon.path");
      });
      return false;
    }
    const args = ["serve", "--workspace", session.root];
    this.log.info(`[${session.name}] starting ${executable} ${args.join(" ")} in a terminal`);
    const terminal = vscode.window.createTerminal({
      name: `hotswap serve · ${session.name}`,
      cwd: session.root,
      shellPath: executable,
      shellArgs: args,
    });
    this.terminals.set(session.root, terminal);
    terminal.show(true);
    session.connection.retryNow();
    return true;
  }

  /** The terminal this extension started the session's daemon in, if it is still open. */
  daemonTerminal(session: AppSession): vscode.Terminal | undefined {
    return this.terminals.get(session.root);
  }

  private reportConfigProblems(read: ReadConfig): void {
    for (const problem of read.problems) this.log.warn(problem);
  }

  private configurationChanged(): void {
    const before = this.configValue;
    const read = readConfig();
    this.configValue = read.config;
    this.reportConfigProblems(read);
    this.filter = new SaveFilter(read.config.include, read.config.exclude);
    if (before.enable !== read.config.enable || before.socket !== read.config.socket) {
      this.log.info("settings changed: reconnecting");
      this.stopSessions();
      this.rediscover();
      return;
    }
    if (before.diagnostics !== read.config.diagnostics) {
      for (const session of this.sessions.values()) session.refreshDiagnostics();
    }
  }

  private stopSessions(): void {
    for (const session of this.sessions.values()) session.dispose();
    this.sessions.clear();
    this.lastActive = undefined;
  }

  /** Looks for the apps again (a `hotswap.toml` appeared or went away, folders changed). */
  private rediscover(): void {
    this.discovery = this.discovery.then(() => this.discover()).catch((error: unknown) => {
      this.log.error(`finding the apps of the workspace failed: ${(error as Error).message}`);
    });
  }

  private async discover(): Promise<void> {
    if (!this.configValue.enable) {
      this.stopSessions();
      this.renderStatus();
      return;
    }
    const manifests = await vscode.workspace.findFiles(`**/${MANIFEST}`, APP_SEARCH_EXCLUDE, 64);
    const roots = new Set<string>();
    for (const manifest of manifests) {
      if (manifest.scheme !== "file") continue;
      try {
        roots.add(await canonicalWorkspaceRoot(path.dirname(manifest.fsPath)));
      } catch (error) {
        this.log.warn(`skipping ${manifest.fsPath}: ${(error as Error).message}`);
      }
    }
    for (const [root, session] of this.sessions) {
      if (!roots.has(root)) {
        this.log.info(`[${session.name}] ${MANIFEST} is gone; disconnecting`);
        session.dispose();
        this.sessions.delete(root);
      }
    }
    const environment = currentEnvironment();
    for (const root of [...roots].sort()) {
      if (this.sessions.has(root)) continue;
      const endpoint = this.configValue.socket !== "" ? this.configValue.socket : deriveEndpoint(root, environment);
      const session = new AppSession(root, endpoint, this);
      session.status.setPaused(this.pausedValue);
      this.sessions.set(root, session);
      session.start();
    }
    if (this.sessions.size > 1 && this.configValue.socket !== "") {
      this.log.warn(`hotswap.socket is set, so all ${this.sessions.size} apps of this workspace connect to ${this.configValue.socket}`);
    }
    if (this.sessions.size === 0) this.log.info(`no ${MANIFEST} in this workspace`);
    this.renderStatus();
  }

  private async documentSaved(document: vscode.TextDocument): Promise<void> {
    const uri = document.uri;
    if (!this.configValue.enable || uri.scheme !== "file") return;
    // Decided when the save happens, before anything is awaited.
    if (this.pausedValue) {
      this.log.debug(`paused: not sending ${uri.fsPath}`);
      return;
    }
    const folder = vscode.workspace.getWorkspaceFolder(uri);
    if (folder === undefined) return;
    if (!this.filter.matches(path.relative(folder.uri.fsPath, uri.fsPath))) return;
    await this.discovery;
    const file = await realpath(uri.fsPath).catch(() => uri.fsPath);
    const roots = [...this.sessions.keys()];
    let root = appRootFor(roots, file);
    if (root === undefined) {
      // A file outside every app folder (a path dependency next to it, say) goes to the app of
      // its workspace folder when there is exactly one; the daemon decides whether it matters.
      const folderRoot = await realpath(folder.uri.fsPath).catch(() => folder.uri.fsPath);
      const candidates = roots.filter((candidate) => isInside(folderRoot, candidate));
      if (candidates.length === 1) root = candidates[0];
    }
    const session = root === undefined ? undefined : this.sessions.get(root);
    if (session === undefined) {
      this.log.debug(`no app for ${file}`);
      return;
    }
    this.lastActive = session;
    session.saved(file);
  }

  renderStatus(): void {
    const session = this.configValue.enable ? this.focusedSession() : undefined;
    if (session === undefined) {
      this.statusItem.hide();
      return;
    }
    session.status.setPaused(this.pausedValue);
    const view = session.status.view();
    const multiple = this.sessions.size > 1;
    // With several apps the item names the one it shows: `$(zap) admin: gen 5`.
    const named = (text: string) => text.replace(/^(\$\([^)]*\) )?(hotswap: )?/, `$1${session.name}: `);
    this.statusItem.text = multiple ? named(view.text) : view.text;
    this.statusItem.accessibilityInformation = { label: multiple ? named(view.label) : view.label };
    this.statusItem.backgroundColor =
      view.tone === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.tone === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
    const tooltip = new vscode.MarkdownString(view.tooltip.join("\n\n").replace(/\n{3,}/g, "\n\n"));
    tooltip.isTrusted = false;
    this.statusItem.tooltip = tooltip;
    this.statusItem.show();
  }

  dispose(): void {
    this.stopSessions();
    for (const disposable of this.disposables.splice(0)) disposable.dispose();
  }
}

/** The executable `command` names: a path, or a name looked up on `PATH`. */
export async function resolveExecutable(command: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const isExecutable = async (candidate: string) => {
    try {
      await access(candidate, process.platform === "win32" ? fsConstants.F_OK : fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes("/") || command.includes("\\")) {
    return (await isExecutable(command)) ? path.resolve(command) : undefined;
  }
  const extensions = process.platform === "win32" ? (env["PATHEXT"] ?? ".EXE;.CMD").split(";") : [""];
  for (const directory of (env["PATH"] ?? "").split(path.delimiter)) {
    if (directory === "") continue;
    for (const extension of extensions) {
      const candidate = path.join(directory, command + extension);
      if (await isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}
