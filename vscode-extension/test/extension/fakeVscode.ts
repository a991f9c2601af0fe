// A small fake of the `vscode` module: the part of the API the extension uses, backed by plain
// data a test can drive and inspect through `harness`. `register.ts` makes `require("vscode")`
// load it, so the real bundle (`dist/main.js`) runs against it. Workspace search and file
// watching use the real file system.

import { readdirSync } from "node:fs";
import * as path from "node:path";

import picomatch from "picomatch";

type Listener<T> = (value: T) => unknown;

export class Disposable {
  constructor(private readonly callback: () => void) {}
  static from(...disposables: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => {
      for (const disposable of disposables) disposable.dispose();
    });
  }
  dispose(): void {
    this.callback();
  }
}

export class EventEmitter<T> {
  private readonly listeners = new Set<Listener<T>>();
  readonly event = (listener: Listener<T>): Disposable => {
    this.listeners.add(listener);
    return new Disposable(() => this.listeners.delete(listener));
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
  get listenerCount(): number {
    return this.listeners.size;
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
    readonly raw: string,
  ) {}
  static file(file: string): Uri {
    return new Uri("file", path.resolve(file), `file://${path.resolve(file)}`);
  }
  static parse(value: string): Uri {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value)?.[1] ?? "file";
    return new Uri(scheme, scheme === "file" ? value.replace(/^file:\/\//, "") : "", value);
  }
  get path(): string {
    return this.fsPath;
  }
  toString(): string {
    return this.raw;
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(startLine: number, startCharacter: number, endLine: number, endCharacter: number) {
    this.start = new Position(startLine, startCharacter);
    this.end = new Position(endLine, endCharacter);
  }
}

export enum DiagnosticSeverity {
  Error = 0,
  Warning = 1,
  Information = 2,
  Hint = 3,
}

export class Location {
  constructor(
    readonly uri: Uri,
    readonly range: Range,
  ) {}
}

export class DiagnosticRelatedInformation {
  constructor(
    readonly location: Location,
    readonly message: string,
  ) {}
}

export class Diagnostic {
  source?: string;
  code?: string | number | { value: string | number; target: Uri };
  relatedInformation?: DiagnosticRelatedInformation[];
  constructor(
    readonly range: Range,
    readonly message: string,
    readonly severity: DiagnosticSeverity = DiagnosticSeverity.Error,
  ) {}
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class MarkdownString {
  isTrusted = false;
  constructor(readonly value: string = "") {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export class FakeStatusBarItem {
  text = "";
  name: string | undefined;
  command: string | undefined;
  tooltip: MarkdownString | string | undefined;
  backgroundColor: ThemeColor | undefined;
  accessibilityInformation: { label: string } | undefined;
  visible = false;
  disposed = false;
  constructor(
    readonly id: string,
    readonly alignment: StatusBarAlignment,
    readonly priority: number | undefined,
  ) {}
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.disposed = true;
    this.visible = false;
  }
}

export class FakeLogOutputChannel {
  readonly lines: string[] = [];
  shown = 0;
  constructor(readonly name: string) {}
  private add(level: string, message: string): void {
    this.lines.push(`[${level}] ${message}`);
  }
  trace(message: string): void {
    this.add("trace", message);
  }
  debug(message: string): void {
    this.add("debug", message);
  }
  info(message: string): void {
    this.add("info", message);
  }
  warn(message: string): void {
    this.add("warn", message);
  }
  error(message: string): void {
    this.add("error", message);
  }
  appendLine(message: string): void {
    this.add("line", message);
  }
  show(): void {
    this.shown += 1;
  }
  dispose(): void {
    // Nothing to release.
  }
}

export class FakeDiagnosticCollection {
  readonly entries = new Map<string, Diagnostic[]>();
  disposed = false;
  constructor(readonly name: string) {}
  set(uri: Uri, diagnostics: Diagnostic[]): void {
    this.entries.set(uri.fsPath, diagnostics);
  }
  delete(uri: Uri): void {
    this.entries.delete(uri.fsPath);
  }
  clear(): void {
    this.entries.clear();
  }
  get(uri: Uri): Diagnostic[] | undefined {
    return this.entries.get(uri.fsPath);
  }
  dispose(): void {
    this.disposed = true;
    this.entries.clear();
  }
}

export interface FakeTerminalOptions {
  name?: string;
  cwd?: string;
  shellPath?: string;
  shellArgs?: string[];
}

export class FakeTerminal {
  exitStatus: { code: number | undefined } | undefined;
  shown = 0;
  disposed = false;
  constructor(readonly options: FakeTerminalOptions) {}
  get name(): string {
    return this.options.name ?? "";
  }
  show(): void {
    this.shown += 1;
  }
  dispose(): void {
    this.disposed = true;
    harness.closeTerminal.fire(this);
  }
}

export interface ShownMessage {
  severity: "error" | "warning" | "information";
  message: string;
  actions: string[];
}

export interface WorkspaceFolder {
  uri: Uri;
  name: string;
  index: number;
}

export interface TextDocument {
  uri: Uri;
}

type Answer = (message: ShownMessage) => string | undefined;
type QuickPickItem = { label: string; description?: string };

/** Everything a test sets up and looks at. `reset` starts from nothing. */
class Harness {
  settings: Record<string, unknown> = {};
  workspaceFolders: WorkspaceFolder[] = [];
  workspaceTrusted = true;
  activeTextEditor: { document: TextDocument } | undefined;
  statusItems: FakeStatusBarItem[] = [];
  outputChannels: FakeLogOutputChannel[] = [];
  collections: FakeDiagnosticCollection[] = [];
  terminals: FakeTerminal[] = [];
  messages: ShownMessage[] = [];
  contexts = new Map<string, unknown>();
  commands = new Map<string, (...args: unknown[]) => unknown>();
  executed: { command: string; args: unknown[] }[] = [];
  quickPicks: { items: QuickPickItem[]; title?: string }[] = [];
  /** Addresses given to `env.openExternal`, and what it answers (a browser opened). */
  openedExternally: string[] = [];
  openExternalAnswer = true;
  /** Picks the answer to a message (the default dismisses it). */
  answerMessage: Answer = () => undefined;
  /** Picks a quick pick item by label (the default dismisses it). */
  answerQuickPick: (items: QuickPickItem[]) => QuickPickItem | undefined = () => undefined;
  workspaceState = new Map<string, unknown>();

  readonly saveDocument = new EventEmitter<TextDocument>();
  readonly changeConfiguration = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
  readonly changeWorkspaceFolders = new EventEmitter<unknown>();
  readonly changeActiveEditor = new EventEmitter<unknown>();
  readonly closeTerminal = new EventEmitter<FakeTerminal>();
  readonly watcherCreate = new EventEmitter<Uri>();
  readonly watcherDelete = new EventEmitter<Uri>();

  reset(): void {
    this.settings = {};
    this.workspaceFolders = [];
    this.workspaceTrusted = true;
    this.activeTextEditor = undefined;
    this.statusItems = [];
    this.outputChannels = [];
    this.collections = [];
    this.terminals = [];
    this.messages = [];
    this.contexts.clear();
    this.commands.clear();
    this.executed = [];
    this.quickPicks = [];
    this.openedExternally = [];
    this.openExternalAnswer = true;
    this.answerMessage = () => undefined;
    this.answerQuickPick = () => undefined;
    this.workspaceState.clear();
  }

  /** Opens folders as the workspace. */
  openFolders(...folders: string[]): void {
    this.workspaceFolders = folders.map((folder, index) => ({ uri: Uri.file(folder), name: path.basename(folder), index }));
  }

  /** Changes settings and tells the extension, as the settings editor does. */
  updateSettings(changes: Record<string, unknown>): void {
    Object.assign(this.settings, changes);
    this.changeConfiguration.fire({
      affectsConfiguration: (section) => Object.keys(changes).some((key) => key === section || key.startsWith(`${section}.`)),
    });
  }

  save(uri: Uri): void {
    this.saveDocument.fire({ uri });
  }

  /** The one status bar item the extension made. */
  get statusItem(): FakeStatusBarItem {
    const item = this.statusItems[0];
    if (item === undefined) throw new Error("the extension created no status bar item");
    return item;
  }

  get log(): FakeLogOutputChannel {
    const channel = this.outputChannels[0];
    if (channel === undefined) throw new Error("the extension created no output channel");
    return channel;
  }

  /** Every diagnostic shown now, by file. */
  problems(): Map<string, Diagnostic[]> {
    const all = new Map<string, Diagnostic[]>();
    for (const collection of this.collections) {
      if (collection.disposed) continue;
      for (const [file, diagnostics] of collection.entries) all.set(file, [...(all.get(file) ?? []), ...diagnostics]);
    }
    return all;
  }
}

export const harness = new Harness();

function show(severity: ShownMessage["severity"]) {
  return (message: string, ...rest: unknown[]): Promise<string | undefined> => {
    const actions = rest.filter((item): item is string => typeof item === "string");
    const shown = { severity, message, actions };
    harness.messages.push(shown);
    return Promise.resolve(harness.answerMessage(shown));
  };
}

export const window = {
  createStatusBarItem(id: string, alignment: StatusBarAlignment, priority?: number): FakeStatusBarItem {
    const item = new FakeStatusBarItem(id, alignment, priority);
    harness.statusItems.push(item);
    return item;
  },
  createOutputChannel(name: string, options?: { log: true }): FakeLogOutputChannel {
    if (options?.log !== true) throw new Error("the fake only makes log output channels");
    const channel = new FakeLogOutputChannel(name);
    harness.outputChannels.push(channel);
    return channel;
  },
  showErrorMessage: show("error"),
  showWarningMessage: show("warning"),
  showInformationMessage: show("information"),
  showQuickPick(items: QuickPickItem[], options?: { title?: string }): Promise<QuickPickItem | undefined> {
    harness.quickPicks.push({ items, ...(options?.title === undefined ? {} : { title: options.title }) });
    return Promise.resolve(harness.answerQuickPick(items));
  },
  createTerminal(options: FakeTerminalOptions): FakeTerminal {
    const terminal = new FakeTerminal(options);
    harness.terminals.push(terminal);
    return terminal;
  },
  get activeTextEditor() {
    return harness.activeTextEditor;
  },
  onDidChangeActiveTextEditor: harness.changeActiveEditor.event,
  onDidCloseTerminal: harness.closeTerminal.event,
};

function walk(directory: string, visit: (file: string) => void): void {
  let entries;
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) walk(full, visit);
    else visit(full);
  }
}

export const workspace = {
  get workspaceFolders() {
    return harness.workspaceFolders.length === 0 ? undefined : harness.workspaceFolders;
  },
  get isTrusted() {
    return harness.workspaceTrusted;
  },
  getConfiguration(section: string) {
    return {
      get<T>(key: string, fallback?: T): T | undefined {
        const value = harness.settings[`${section}.${key}`];
        return value === undefined ? fallback : (value as T);
      },
    };
  },
  getWorkspaceFolder(uri: Uri): WorkspaceFolder | undefined {
    return harness.workspaceFolders
      .filter((folder) => {
        const relative = path.relative(folder.uri.fsPath, uri.fsPath);
        return !relative.startsWith("..") && !path.isAbsolute(relative);
      })
      .sort((a, b) => b.uri.fsPath.length - a.uri.fsPath.length)[0];
  },
  findFiles(include: string, exclude: string | undefined, maxResults?: number): Promise<Uri[]> {
    const included = picomatch(include, { dot: true });
    const excluded = exclude === undefined ? () => false : picomatch(exclude, { dot: true });
    const found: Uri[] = [];
    for (const folder of harness.workspaceFolders) {
      walk(folder.uri.fsPath, (file) => {
        const relative = path.relative(folder.uri.fsPath, file).split(path.sep).join("/");
        if (included(relative) && !excluded(relative)) found.push(Uri.file(file));
      });
    }
    return Promise.resolve(found.slice(0, maxResults ?? found.length));
  },
  createFileSystemWatcher() {
    return {
      onDidCreate: harness.watcherCreate.event,
      onDidDelete: harness.watcherDelete.event,
      onDidChange: new EventEmitter<Uri>().event,
      dispose: () => undefined,
    };
  },
  onDidSaveTextDocument: harness.saveDocument.event,
  onDidChangeConfiguration: harness.changeConfiguration.event,
  onDidChangeWorkspaceFolders: harness.changeWorkspaceFolders.event,
};

export const env = {
  openExternal(uri: Uri): Promise<boolean> {
    harness.openedExternally.push(uri.toString());
    return Promise.resolve(harness.openExternalAnswer);
  },
};

export const languages = {
  createDiagnosticCollection(name: string): FakeDiagnosticCollection {
    const collection = new FakeDiagnosticCollection(name);
    harness.collections.push(collection);
    return collection;
  },
};

export const commands = {
  registerCommand(id: string, callback: (...args: unknown[]) => unknown): Disposable {
    if (harness.commands.has(id)) throw new Error(`command ${id} is already registered`);
    harness.commands.set(id, callback);
    return new Disposable(() => harness.commands.delete(id));
  },
  executeCommand(command: string, ...args: unknown[]): Promise<unknown> {
    harness.executed.push({ command, args });
    if (command === "setContext") {
      harness.contexts.set(args[0] as string, args[1]);
      return Promise.resolve(undefined);
    }
    const callback = harness.commands.get(command);
    if (callback === undefined) return Promise.resolve(undefined);
    return Promise.resolve(callback(...args));
  },
};

/** The ExtensionContext `activate` gets. */
export function extensionContext(version: string) {
  return {
    subscriptions: [] as { dispose(): unknown }[],
    workspaceState: {
      get<T>(key: string, fallback: T): T {
        return harness.workspaceState.has(key) ? (harness.workspaceState.get(key) as T) : fallback;
      },
      update(key: string, value: unknown): Promise<void> {
        harness.workspaceState.set(key, value);
        return Promise.resolve();
      },
    },
    extension: { packageJSON: { version } },
  };
}
