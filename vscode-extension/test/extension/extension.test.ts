// The packaged bundle (`dist/main.js`) activated against the fake `vscode` module, talking to the
// fake daemon over a real Unix socket at the endpoint the daemon would use: activation, the
// handshake, which saves are sent, the status bar through a build and a swap, Problems entries,
// the failure notification and its buttons, every command, and the settings.

import "./register";

import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";

import type { HotswapApi } from "../../src/main";
import type { Diagnostic as WireDiagnostic } from "../../src/protocol";
import { FakeDaemon } from "../support/fakeDaemon";
import { EXTENSION_ROOT, temporaryDirectory } from "../support/paths";
import { waitFor } from "../support/wait";
import * as vscode from "./fakeVscode";

const { harness } = vscode;

interface ExtensionModule {
  activate(context: unknown): Promise<HotswapApi>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const extension = require(path.join(EXTENSION_ROOT, "dist", "main.js")) as ExtensionModule;

interface Manifest {
  version: string;
  activationEvents: string[];
  capabilities: { untrustedWorkspaces: { supported: boolean } };
  contributes: {
    commands: { command: string }[];
    configuration: { properties: Record<string, { default: unknown }> };
  };
}

let manifest: Manifest;
let temporary: { path: string; cleanup: () => Promise<void> };
/** The canonical app root (the folder with hotswap.toml). */
let appRoot: string;
/** The folder opened in the fake VS Code: a symlink to the workspace, so canonicalization matters. */
let openedFolder: string;
let runtimeDir: string;
const daemons: FakeDaemon[] = [];
let context: ReturnType<typeof vscode.extensionContext> | undefined;
const savedRuntimeDir = process.env["XDG_RUNTIME_DIR"];

/** The socket path, derived here independently of src/endpoint.ts from the protocol README's rule. */
function expectedEndpoint(root: string): string {
  const hash = createHash("sha256").update(root).digest("hex").slice(0, 16);
  return path.join(runtimeDir, "hotswap", `${path.basename(root)}-${hash}.sock`);
}

async function startDaemon(options: { generation?: number; socketPath?: string } = {}): Promise<FakeDaemon> {
  const daemon = await FakeDaemon.listen(options.socketPath ?? expectedEndpoint(appRoot), {
    workspaceRoot: appRoot,
    ...(options.generation === undefined ? {} : { generation: options.generation }),
  });
  daemons.push(daemon);
  return daemon;
}

async function activate(settings: Record<string, unknown> = {}): Promise<HotswapApi> {
  harness.settings = { ...settings };
  harness.openFolders(openedFolder);
  context = vscode.extensionContext(manifest.version);
  const api = await extension.activate(context);
  await api.ctx.whenDiscovered();
  return api;
}

function zeroStages() {
  return { copyMs: 0, loadMs: 0, verifyMs: 0, initMs: 0, stateMs: 0, smokeMs: 0, publishMs: 0 };
}

function statusText(): string {
  return harness.statusItem.text;
}

async function waitForStatus(pattern: RegExp, timeoutMs = 5000): Promise<void> {
  await waitFor(() => harness.statusItem.visible && pattern.test(statusText()), {
    timeoutMs,
    what: () => `status bar matching ${String(pattern)}; it says ${JSON.stringify(statusText())} (visible: ${harness.statusItem.visible})`,
  });
}

function file(relative: string): vscode.Uri {
  return vscode.Uri.file(path.join(openedFolder, relative));
}

beforeEach(async () => {
  manifest = JSON.parse(await readFile(path.join(EXTENSION_ROOT, "package.json"), "utf8")) as Manifest;
  harness.reset();
  temporary = await temporaryDirectory("ext");
  runtimeDir = path.join(temporary.path, "run");
  await mkdir(runtimeDir, { mode: 0o700 });
  process.env["XDG_RUNTIME_DIR"] = runtimeDir;
  appRoot = path.join(temporary.path, "real", "todo");
  await mkdir(path.join(appRoot, "src"), { recursive: true });
  await mkdir(path.join(appRoot, "target", "debug"), { recursive: true });
  await writeFile(path.join(appRoot, "hotswap.toml"), 'listen = "127.0.0.1:3000"\n');
  await writeFile(path.join(appRoot, "Cargo.toml"), '[package]\nname = "todo"\n');
  await writeFile(path.join(appRoot, "src", "lib.rs"), "pub fn hello() {}\n");
  await writeFile(path.join(appRoot, "src", "routes.rs"), "pub fn routes() {}\n");
  await writeFile(path.join(appRoot, "README.md"), "# todo\n");
  await writeFile(path.join(appRoot, "target", "debug", "generated.rs"), "\n");
  openedFolder = path.join(temporary.path, "opened");
  await symlink(appRoot, openedFolder);
});

afterEach(async () => {
  for (const disposable of context?.subscriptions.splice(0) ?? []) disposable.dispose();
  context = undefined;
  for (const daemon of daemons.splice(0)) await daemon.close();
  await temporary.cleanup();
  if (savedRuntimeDir === undefined) delete process.env["XDG_RUNTIME_DIR"];
  else process.env["XDG_RUNTIME_DIR"] = savedRuntimeDir;
});

describe("manifest", () => {
  test("activation, trust, and every command registered at activation is contributed", async () => {
    assert.deepEqual(manifest.activationEvents, ["workspaceContains:**/hotswap.toml"]);
    assert.equal(manifest.capabilities.untrustedWorkspaces.supported, false);
    const daemon = await startDaemon();
    await activate();
    await daemon.waitForSubscriber();
    assert.deepEqual(
      [...harness.commands.keys()].sort(),
      manifest.contributes.commands.map((command) => command.command).sort(),
    );
    assert.equal(harness.contexts.get("hotswap.active"), true);
    assert.equal(harness.contexts.get("hotswap.paused"), false);
  });

  test("the settings' defaults in package.json are the ones the code falls back to", async () => {
    const properties = manifest.contributes.configuration.properties;
    const daemon = await startDaemon();
    const api = await activate();
    await daemon.waitForSubscriber();
    const config = api.ctx.config;
    assert.deepEqual(
      {
        enable: properties["hotswap.enable"]?.default,
        include: properties["hotswap.include"]?.default,
        exclude: properties["hotswap.exclude"]?.default,
        socket: properties["hotswap.socket"]?.default,
        daemonPath: properties["hotswap.daemon.path"]?.default,
        autoStart: properties["hotswap.daemon.autoStart"]?.default,
        diagnostics: properties["hotswap.diagnostics.enable"]?.default,
      },
      { ...config },
    );
  });
});

describe("connecting", () => {
  test("derives the daemon's endpoint from the canonical root, handshakes and subscribes", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    assert.deepEqual(daemon.requests("initialize"), [{ protocolVersion: 1, clientName: "vscode", clientVersion: manifest.version }]);
    await waitForStatus(/^\$\(zap\) hotswap: gen 3$/);
    assert.equal(harness.statusItem.command, "hotswap.showMenu");
    assert.equal(harness.statusItem.backgroundColor, undefined);
    assert.ok(harness.log.lines.some((line) => line.includes("connected to daemon 0.1.0-fake")));
  });

  test("a daemon in the middle of its first build shows as building", async () => {
    const daemon = await startDaemon();
    const status = daemon.defaultStatus();
    daemon.handle("status", () => ({ ...status(), building: true }));
    await activate();
    await daemon.waitForSubscriber();
    await waitForStatus(/^\$\(sync~spin\) hotswap: building$/);
  });

  test("no daemon: a clear state, and a save reconnects at once when the daemon has appeared", async () => {
    await activate();
    await waitForStatus(/^\$\(debug-disconnect\) hotswap: no daemon$/);
    const tooltip = harness.statusItem.tooltip as vscode.MarkdownString;
    assert.ok(tooltip.value.includes(expectedEndpoint(appRoot)), tooltip.value);
    const daemon = await startDaemon({ generation: 1 });
    harness.save(file("src/lib.rs"));
    await daemon.waitForSubscriber(1500);
    await waitForStatus(/hotswap: gen 1$/);
    assert.ok(harness.log.lines.some((line) => line.includes("not sent (noDaemon)") && line.includes("lib.rs")));
  });

  test("a daemon of another protocol version shows as incompatible", async () => {
    const daemon = await FakeDaemon.listen(expectedEndpoint(appRoot), { protocolVersion: 2 });
    daemons.push(daemon);
    await activate();
    await waitForStatus(/incompatible daemon/);
    assert.ok(harness.statusItem.backgroundColor instanceof vscode.ThemeColor);
    assert.ok(harness.log.lines.some((line) => line.includes("does not speak protocol version 1")));
  });

  test("a lost connection shows as disconnected and comes back", async () => {
    const daemon = await startDaemon({ generation: 2 });
    await activate();
    await daemon.waitForSubscriber();
    daemon.dropConnections();
    await waitForStatus(/hotswap: disconnected/);
    await waitFor(() => daemon.connections.size === 1, { what: "a new connection" });
    await waitForStatus(/hotswap: gen 2$/);
  });
});

describe("saves", () => {
  test("sends the canonical paths of included files inside the workspace, one didSave per tick", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();

    harness.save(file("src/lib.rs"));
    harness.save(file("src/routes.rs"));
    const [first] = await daemon.waitForRequests("didSave");
    assert.deepEqual(first?.paths, [path.join(appRoot, "src", "lib.rs"), path.join(appRoot, "src", "routes.rs")]);

    // None of these is sent: not included, excluded, not a file, outside the workspace.
    harness.save(file("README.md"));
    harness.save(file("target/debug/generated.rs"));
    harness.saveDocument.fire({ uri: vscode.Uri.parse("untitled:Untitled-1") });
    harness.save(vscode.Uri.file(path.join(temporary.path, "elsewhere.rs")));
    harness.save(file("Cargo.toml"));
    const saves = await daemon.waitForRequests("didSave", 2);
    assert.deepEqual(saves[1]?.paths, [path.join(appRoot, "Cargo.toml")]);
    await waitFor(() => harness.log.lines.some((line) => line.includes("save ignored") && line.includes("Cargo.toml")), {
      what: "the daemon's ignored paths in the log",
    });
  });

  test("assets and templates are sent by default (the daemon updates pages without a build)", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();
    for (const relative of ["assets/site.css", "static/logo.svg", "templates/about.html"]) {
      await mkdir(path.dirname(path.join(appRoot, relative)), { recursive: true });
      await writeFile(path.join(appRoot, relative), "");
    }
    harness.save(file("assets/site.css"));
    harness.save(file("static/logo.svg"));
    harness.save(file("templates/about.html"));
    // One didSave or several (the paths are resolved asynchronously): every file is sent.
    const sent = () => daemon.requests("didSave").flatMap((save) => save.paths);
    await waitFor(() => sent().length >= 3, { what: () => `the three saves; sent ${sent().join(", ")}` });
    assert.deepEqual(sent().sort(), [
      path.join(appRoot, "assets", "site.css"),
      path.join(appRoot, "static", "logo.svg"),
      path.join(appRoot, "templates", "about.html"),
    ]);
  });

  test("include globs come from the settings", async () => {
    const daemon = await startDaemon();
    await activate({ "hotswap.include": ["**/*.md"] });
    await daemon.waitForSubscriber();
    harness.save(file("src/lib.rs"));
    harness.save(file("README.md"));
    const [save] = await daemon.waitForRequests("didSave");
    assert.deepEqual(save?.paths, [path.join(appRoot, "README.md")]);
  });

  test("pause and resume swapping on save", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.pauseSwapOnSave");
    assert.equal(harness.contexts.get("hotswap.paused"), true);
    await waitForStatus(/^\$\(debug-pause\) hotswap: gen 1 \(paused\)$/);
    harness.save(file("src/lib.rs"));
    await vscode.commands.executeCommand("hotswap.resumeSwapOnSave");
    await waitForStatus(/^\$\(zap\) hotswap: gen 1$/);
    harness.save(file("src/routes.rs"));
    const saves = await daemon.waitForRequests("didSave");
    assert.deepEqual(saves, [{ paths: [path.join(appRoot, "src", "routes.rs")] }]);
    assert.equal(harness.workspaceState.get("hotswap.paused"), false);
  });

  test("the paused state survives a restart of the extension", async () => {
    harness.workspaceState.set("hotswap.paused", true);
    const saved = new Map(harness.workspaceState);
    const daemon = await startDaemon({ generation: 1 });
    harness.workspaceState = saved;
    await activate();
    await daemon.waitForSubscriber();
    await waitForStatus(/\(paused\)$/);
  });
});

describe("builds and swaps", () => {
  const libRs = () => path.join(appRoot, "src", "lib.rs");
  const brokenBuild = (): WireDiagnostic[] => [
    {
      severity: "error",
      code: "E0308",
      message: "mismatched types",
      file: libRs(),
      range: { start: { line: 11, character: 4 }, end: { line: 11, character: 9 } },
      rendered: "error[E0308]: mismatched types\n  --> src/lib.rs:12:5\n",
      related: [
        {
          file: libRs(),
          range: { start: { line: 9, character: 20 }, end: { line: 9, character: 26 } },
          message: "expected `String` because of return type",
        },
      ],
    },
    { severity: "warning", code: "unused_variables", message: "unused variable: `x`", file: libRs(), related: [] },
    { severity: "error", message: "linking with `cc` failed: exit status: 1", related: [] },
  ];

  test("building, then gen N · time; no notification on success", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    daemon.emit({ method: "buildStarted", params: { build: 1, reason: "save", paths: [libRs()] } });
    await waitForStatus(/^\$\(sync~spin\) hotswap: building$/);
    daemon.emit({ method: "buildFinished", params: { build: 1, outcome: "succeeded", durationMs: 398.2, diagnostics: [] } });
    daemon.emit({
      method: "swapFinished",
      params: { generation: 4, previousGeneration: 3, rollback: false, swapMs: 3.1, totalMs: 412.4, buildMs: 398.2, stages: { copyMs: 0, loadMs: 1, verifyMs: 0, initMs: 1, stateMs: 0, smokeMs: 0, publishMs: 0 }, warnings: [] },
    });
    await waitForStatus(/^\$\(zap\) gen 4 · 412 ms$/);
    assert.deepEqual(harness.messages, []);
    assert.ok(harness.log.lines.some((line) => line.includes("build 1 started (save: src/lib.rs)")));
    assert.ok(harness.log.lines.some((line) => line.includes("swapped in generation 4 in 3 ms, 412 ms from save to serving")));
  });

  test("a failed build: error colour, Problems entries, a notification whose Rollback rolls back", async () => {
    const daemon = await startDaemon({ generation: 3 });
    let rolledBack = false;
    daemon.handle("rollback", () => {
      rolledBack = true;
      return { outcome: "swapped", generation: 5, previousGeneration: 3, swapMs: 2, totalMs: 2.1, stages: { copyMs: 0, loadMs: 1, verifyMs: 0, initMs: 1, stateMs: 0, smokeMs: 0, publishMs: 0 }, warnings: [] };
    });
    await activate();
    await daemon.waitForSubscriber();
    harness.answerMessage = (message) => (message.severity === "error" ? "Rollback" : undefined);

    daemon.emitFailedBuild(2, [libRs()], brokenBuild());
    await waitForStatus(/^\$\(error\) hotswap: build failed$/);
    assert.equal((harness.statusItem.backgroundColor as vscode.ThemeColor).id, "statusBarItem.errorBackground");

    const problems = harness.problems();
    const inLib = problems.get(libRs()) ?? [];
    assert.equal(inLib.length, 2);
    const error = inLib[0] as vscode.Diagnostic;
    assert.equal(error.message, "mismatched types");
    assert.equal(error.severity, vscode.DiagnosticSeverity.Error);
    assert.deepEqual([error.range.start.line, error.range.start.character, error.range.end.line, error.range.end.character], [11, 4, 11, 9]);
    assert.equal(error.source, "hotswap");
    assert.deepEqual(
      { value: (error.code as { value: string }).value, target: (error.code as { target: vscode.Uri }).target.toString() },
      { value: "E0308", target: "https://doc.rust-lang.org/error_codes/E0308.html" },
    );
    assert.equal(error.relatedInformation?.[0]?.message, "expected `String` because of return type");
    assert.equal((inLib[1] as vscode.Diagnostic).severity, vscode.DiagnosticSeverity.Warning);
    assert.equal((inLib[1] as vscode.Diagnostic).code, "unused_variables");
    const fileless = problems.get(path.join(appRoot, "hotswap.toml")) ?? [];
    assert.deepEqual(fileless.map((diagnostic) => diagnostic.message), ["linking with `cc` failed: exit status: 1"]);

    assert.deepEqual(harness.messages, [
      {
        severity: "error",
        message: "hotswap: build failed: mismatched types (generation 3 keeps serving).",
        actions: ["Show output", "Rollback"],
      },
    ]);
    await waitFor(() => rolledBack, { what: "the rollback request from the notification's button" });
    assert.ok(harness.log.lines.some((line) => line.startsWith("[error]") && line.includes("error[E0308]: mismatched types")));

    // The next good build replaces the diagnostics.
    daemon.emitSwap(3, [libRs()]);
    await waitFor(() => harness.problems().size === 0, { what: "Problems cleared by a clean build" });
    await waitForStatus(/^\$\(zap\) gen 4 · 413 ms$/);
  });

  test("a refused swap notifies with the stage; Show output opens the log", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    harness.answerMessage = () => "Show output";
    daemon.emit({ method: "swapFailed", params: { generation: 4, stage: "verify", message: "ABI version 2 is not supported", diagnostics: [] } });
    await waitForStatus(/^\$\(error\) hotswap: swap failed \(verify\)$/);
    assert.equal(harness.messages[0]?.message, 'hotswap: generation 4 was refused at stage "verify": ABI version 2 is not supported');
    await waitFor(() => harness.log.shown > 0, { what: "the log shown" });
  });

  test("a state that does not fit: a Problems entry at its field beside the build's, and the fix in the notification", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    const warning: WireDiagnostic = { severity: "warning", code: "unused_variables", message: "unused variable: `x`", file: libRs(), related: [] };
    daemon.emit({ method: "buildStarted", params: { build: 4, reason: "save", paths: [libRs()] } });
    daemon.emit({ method: "buildFinished", params: { build: 4, outcome: "succeeded", durationMs: 300, diagnostics: [warning] } });
    const message =
      "the old state does not read as this build's `Todos`: `items[\"bread\"].priority` is missing: the old values have no `priority`, a new field in `Todo` without a default. Fix it one of these ways: add `#[serde(default)]` to `priority` in `Todo` (the old values get the default), or bump `STATE_VERSION` and build the new state from the old one in `migrate_state`, or drop the state on purpose with `hotswap reload --fresh-state`";
    daemon.emit({
      method: "swapFailed",
      params: {
        generation: 4,
        stage: "state",
        message,
        state: { message, struct: "Todo", field: "priority", path: 'items["bread"].priority' },
        diagnostics: [
          {
            severity: "error",
            code: "hotswap::state",
            message,
            file: libRs(),
            range: { start: { line: 13, character: 4 }, end: { line: 13, character: 12 } },
            related: [],
          },
        ],
      },
    });
    await waitForStatus(/^\$\(error\) hotswap: swap failed \(state\)$/);
    await waitFor(() => (harness.problems().get(libRs()) ?? []).length === 2, { what: "the state's entry beside the build's warning" });
    const inLib = harness.problems().get(libRs()) ?? [];
    const kept = inLib[0] as vscode.Diagnostic;
    const atField = inLib[1] as vscode.Diagnostic;
    assert.equal(kept.code, "unused_variables");
    assert.equal(atField.severity, vscode.DiagnosticSeverity.Error);
    assert.equal(atField.source, "hotswap");
    assert.deepEqual([atField.range.start.line, atField.range.start.character], [13, 4]);
    assert.ok(atField.message.includes("add `#[serde(default)]` to `priority` in `Todo`"), atField.message);
    assert.ok(harness.messages[0]?.message.includes('refused at stage "state"'), harness.messages[0]?.message);
    assert.ok(harness.messages[0]?.message.includes("hotswap reload --fresh-state"), harness.messages[0]?.message);

    // The fix builds and swaps: the entry goes.
    daemon.emitSwap(5, [libRs()]);
    await waitFor(() => harness.problems().size === 0, { what: "Problems cleared by the next build" });
  });

  test("a crash notifies with how the generation died and what serves now", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    const message =
      "generation 3 crashed: stack overflow in thread 'hotswap-g3' (killed by SIGSEGV) while running GET /deep; the same build starts again from the state snapshot of 0.4 s ago";
    daemon.emit({
      method: "generationCrashed",
      params: {
        generation: 3,
        pid: 4243,
        cause: "stack overflow in thread 'hotswap-g3' (killed by SIGSEGV)",
        signal: "SIGSEGV (invalid memory access)",
        lastWords: ["thread 'hotswap-g3' has overflowed its stack", "fatal runtime error: stack overflow"],
        request: "GET /deep",
        recovery: { kind: "restart", snapshotAgeMs: 400 },
        message,
      },
    });
    await waitForStatus(/^\$\(error\) hotswap: gen 3 crashed$/);
    assert.equal(harness.messages[0]?.message, `hotswap: ${message}`);
    assert.ok(harness.log.lines.some((line) => line.includes("has overflowed its stack")), "the last words are logged");
    daemon.emit({
      method: "swapFinished",
      params: { generation: 4, previousGeneration: 3, rollback: false, afterCrash: 3, swapMs: 38.5, stages: zeroStages(), warnings: [] },
    });
    await waitForStatus(/^\$\(warning\) gen 4 · after a crash$/);
  });

  test("a swap refused before the extension connected shows until a swap succeeds", async () => {
    const daemon = await startDaemon({ generation: 3 });
    const status = daemon.defaultStatus();
    daemon.handle("status", () => ({
      ...status(),
      refusedSwap: { generation: 4, build: 6, stage: "state", message: "missing field `priority`", serving: 3, agoMs: 2000 },
    }));
    await activate();
    await waitForStatus(/^\$\(error\) hotswap: swap failed \(state\)$/);
    daemon.emit({
      method: "swapFinished",
      params: { generation: 5, previousGeneration: 3, rollback: false, swapMs: 2.5, totalMs: 400, buildMs: 397, stages: zeroStages(), warnings: [] },
    });
    await waitForStatus(/^\$\(zap\) gen 5 · 400 ms$/);
  });

  test("diagnostics can be switched off and on again", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    daemon.emitFailedBuild(2, [libRs()], brokenBuild());
    await waitFor(() => harness.problems().size === 2, { what: "Problems entries" });
    harness.updateSettings({ "hotswap.diagnostics.enable": false });
    assert.equal(harness.problems().size, 0);
    harness.updateSettings({ "hotswap.diagnostics.enable": true });
    assert.equal(harness.problems().size, 2);
  });

  test("with diagnostics off, a failed build adds nothing to Problems but still notifies", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate({ "hotswap.diagnostics.enable": false });
    await daemon.waitForSubscriber();
    daemon.emitFailedBuild(2, [libRs()], brokenBuild());
    await waitForStatus(/build failed/);
    assert.equal(harness.problems().size, 0);
    assert.equal(harness.messages.length, 1);
  });

  test("handler panics, retired generations and log records go to the log", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    daemon.emit({ method: "handlerPanicked", params: { generation: 3, message: "index out of bounds", location: "src/lib.rs:40:9" } });
    daemon.emit({ method: "generationRetired", params: { generation: 2, outcome: "killed", reason: "a thread never returned", drainMs: 5003, requestsCut: 1 } });
    daemon.emit({ method: "log", params: { level: "warn", target: "todo::routes", message: "slow request", generation: 3 } });
    await waitFor(() => harness.log.lines.some((line) => line.includes("todo::routes: slow request")), { what: "the log record" });
    const log = harness.log.lines.join("\n");
    assert.match(log, /\[error\] \[todo\] handler of generation 3 panicked at src\/lib.rs:40:9: index out of bounds/);
    assert.match(log, /\[warn\] \[todo\] generation 2 was killed after draining for 5\.0 s: a thread never returned/);
    assert.match(log, /\[warn\] \[todo\] 1 requests were cut at the drain timeout/);
    assert.match(log, /\[warn\] \[todo\] gen 3 todo::routes: slow request/);
    assert.deepEqual(harness.messages, []);
  });
});

describe("commands", () => {
  test("reload sends reload and logs the outcome", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.reload");
    assert.equal(daemon.requests("reload").length, 1);
    assert.ok(harness.log.lines.some((line) => line.includes("reload: generation 4 serves (413 ms)")));
  });

  test("rollback with nothing to roll back to says so", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.rollback");
    assert.deepEqual(harness.messages, [
      { severity: "information", message: "hotswap: nothing to roll back to: no earlier artifact has served", actions: [] },
    ]);
  });

  test("show status summarizes the daemon's status and logs all of it", async () => {
    const daemon = await startDaemon({ generation: 3 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.showStatus");
    assert.equal(
      harness.messages[0]?.message,
      "hotswap: app: generation 3 serves on 127.0.0.1:3000 · 2 connections, 17 requests",
    );
    assert.ok(harness.log.lines.some((line) => line.includes('"uptimeMs": 1234')));
  });

  test("commands without a daemon offer to start one", async () => {
    await activate();
    await waitForStatus(/no daemon/);
    await vscode.commands.executeCommand("hotswap.reload");
    assert.equal(harness.messages[0]?.severity, "error");
    assert.match(harness.messages[0].message, /^hotswap: cannot reload: no hotswap daemon runs for this workspace/);
    assert.deepEqual(harness.messages[0].actions, ["Start Daemon"]);
  });

  test("start daemon runs `hotswap serve --workspace ROOT` in a terminal and connects", async () => {
    const fakeBinary = path.join(temporary.path, "bin", "hotswap");
    await mkdir(path.dirname(fakeBinary));
    await writeFile(fakeBinary, "#!/bin/sh\nexit 0\n");
    await chmod(fakeBinary, 0o755);
    await activate({ "hotswap.daemon.path": fakeBinary });
    await waitForStatus(/no daemon/);
    const daemon = await startDaemon({ generation: 1 });
    await vscode.commands.executeCommand("hotswap.startDaemon");
    assert.equal(harness.terminals.length, 1);
    const terminal = harness.terminals[0] as vscode.FakeTerminal;
    assert.deepEqual(terminal.options, {
      name: "hotswap serve · todo",
      cwd: appRoot,
      shellPath: fakeBinary,
      shellArgs: ["serve", "--workspace", appRoot],
    });
    assert.equal(terminal.shown, 1);
    await daemon.waitForSubscriber(1500);
    await vscode.commands.executeCommand("hotswap.startDaemon");
    assert.equal(harness.terminals.length, 1, "no second daemon");
    assert.match(harness.messages.at(-1)?.message ?? "", /already runs/);
  });

  test("start daemon looks the executable up on PATH and says clearly when it is missing", async () => {
    await activate({ "hotswap.daemon.path": "hotswap-that-does-not-exist" });
    await waitForStatus(/no daemon/);
    await vscode.commands.executeCommand("hotswap.startDaemon");
    assert.equal(harness.terminals.length, 0);
    assert.match(harness.messages[0]?.message ?? "", /cannot find the daemon executable "hotswap-that-does-not-exist" on PATH/);
    assert.deepEqual(harness.messages[0]?.actions, ["Open Settings"]);
  });

  test("auto-start starts the daemon once when none runs", async () => {
    const fakeBinary = path.join(temporary.path, "hotswap");
    await writeFile(fakeBinary, "#!/bin/sh\nexit 0\n");
    await chmod(fakeBinary, 0o755);
    await activate({ "hotswap.daemon.path": fakeBinary, "hotswap.daemon.autoStart": true });
    await waitFor(() => harness.terminals.length === 1, { what: "the daemon's terminal" });
    await waitForStatus(/no daemon/);
    const log = harness.log.lines.join("\n");
    assert.match(log, /no daemon runs; starting one \(hotswap.daemon.autoStart is on\)/);
    assert.equal(harness.terminals.length, 1);
  });

  test("stop daemon sends shutdown", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.stopDaemon");
    assert.equal(daemon.requests("shutdown").length, 1);
  });

  test("stop daemon is quiet when the daemon closes the connection before answering", async () => {
    const daemon = await startDaemon({ generation: 1 });
    daemon.handle("shutdown", (_params, connection) => {
      connection.socket.destroy();
      return new Promise(() => undefined);
    });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.stopDaemon");
    assert.deepEqual(harness.messages, []);
    assert.ok(harness.log.lines.some((line) => line.includes("the daemon closed the connection while shutting down")));
  });

  test("the status bar's quick pick offers the actions and runs the one picked", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();
    harness.answerQuickPick = (items) => items.find((item) => item.label.includes("Reload now"));
    await vscode.commands.executeCommand(harness.statusItem.command ?? "");
    assert.deepEqual(
      harness.quickPicks[0]?.items.map((item) => item.label.replace(/^\$\([^)]*\) /, "")),
      ["Reload now", "Roll back", "Open in browser", "Show status", "Show log", "Stop daemon", "Pause swapping on save"],
    );
    assert.equal(harness.quickPicks[0].title, "hotswap · todo");
    assert.equal(daemon.requests("reload").length, 1);
  });

  test("open in browser opens the address the daemon serves, from the palette and the status bar's menu", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate();
    await daemon.waitForSubscriber();
    await vscode.commands.executeCommand("hotswap.openInBrowser");
    assert.deepEqual(harness.openedExternally, ["http://127.0.0.1:3000/"]);
    assert.ok(harness.log.lines.some((line) => line.includes("opened http://127.0.0.1:3000/ in the browser")));
    harness.answerQuickPick = (items) => items.find((item) => item.label.includes("Open in browser"));
    await vscode.commands.executeCommand(harness.statusItem.command ?? "");
    const item = harness.quickPicks[0]?.items.find((candidate) => candidate.label.includes("Open in browser"));
    assert.equal(item?.description, "http://127.0.0.1:3000/");
    assert.deepEqual(harness.openedExternally, ["http://127.0.0.1:3000/", "http://127.0.0.1:3000/"]);
    assert.deepEqual(harness.messages, []);
  });

  test("open in browser without a daemon offers to start one, and opens nothing", async () => {
    await activate();
    await waitForStatus(/no daemon/);
    await vscode.commands.executeCommand("hotswap.openInBrowser");
    assert.deepEqual(harness.openedExternally, []);
    assert.equal(harness.messages[0]?.severity, "warning");
    assert.match(harness.messages[0].message, /no daemon serves todo/);
    assert.deepEqual(harness.messages[0].actions, ["Start Daemon"]);
    harness.answerQuickPick = () => undefined;
    await vscode.commands.executeCommand(harness.statusItem.command ?? "");
    assert.ok(!harness.quickPicks[0]?.items.some((item) => item.label.includes("Open in browser")));
  });
});

describe("settings", () => {
  test("hotswap.enable off: no connection and no status bar item; on again reconnects", async () => {
    const daemon = await startDaemon({ generation: 1 });
    await activate({ "hotswap.enable": false });
    assert.equal(harness.statusItem.visible, false);
    harness.save(file("src/lib.rs"));
    assert.equal(daemon.connections.size, 0);
    harness.updateSettings({ "hotswap.enable": true });
    await daemon.waitForSubscriber();
    await waitForStatus(/hotswap: gen 1$/);
    harness.updateSettings({ "hotswap.enable": false });
    await waitFor(() => !harness.statusItem.visible && daemon.connections.size === 0, { what: "disconnected and hidden" });
  });

  test("hotswap.socket overrides the derived endpoint", async () => {
    const elsewhere = path.join(temporary.path, "custom.sock");
    const daemon = await startDaemon({ generation: 7, socketPath: elsewhere });
    await activate({ "hotswap.socket": elsewhere });
    await daemon.waitForSubscriber();
    await waitForStatus(/hotswap: gen 7$/);
  });

  test("settings of the wrong type fall back to their defaults and are reported", async () => {
    const daemon = await startDaemon({ generation: 1 });
    const api = await activate({ "hotswap.include": "**/*.rs", "hotswap.diagnostics.enable": "yes" });
    await daemon.waitForSubscriber();
    assert.deepEqual(api.ctx.config.include, ["**/*.rs", "**/Cargo.toml", "**/Cargo.lock", "**/assets/**", "**/static/**", "**/public/**", "**/templates/**"]);
    assert.equal(api.ctx.config.diagnostics, true);
    assert.ok(harness.log.lines.some((line) => line.includes("hotswap.include should be a list of strings")));
  });
});

describe("workspaces with several apps", () => {
  test("each app has its own daemon; a save goes to the app that holds the file", async () => {
    const second = path.join(appRoot, "admin");
    await mkdir(path.join(second, "src"), { recursive: true });
    await writeFile(path.join(second, "hotswap.toml"), "\n");
    await writeFile(path.join(second, "src", "lib.rs"), "\n");
    const outer = await startDaemon({ generation: 1 });
    const inner = await startDaemon({ generation: 5, socketPath: expectedEndpoint(second) });
    const api = await activate();
    await outer.waitForSubscriber();
    await inner.waitForSubscriber();
    assert.equal(api.ctx.allSessions.length, 2);
    harness.save(file("admin/src/lib.rs"));
    harness.save(file("src/lib.rs"));
    assert.deepEqual(await inner.waitForRequests("didSave"), [{ paths: [path.join(second, "src", "lib.rs")] }]);
    assert.deepEqual(await outer.waitForRequests("didSave"), [{ paths: [path.join(appRoot, "src", "lib.rs")] }]);
    // The status bar follows the active editor and names the app.
    harness.activeTextEditor = { document: { uri: file("admin/src/lib.rs") } };
    harness.changeActiveEditor.fire(undefined);
    await waitForStatus(/^\$\(zap\) admin: gen 5$/);
    harness.activeTextEditor = { document: { uri: file("src/lib.rs") } };
    harness.changeActiveEditor.fire(undefined);
    await waitForStatus(/^\$\(zap\) todo: gen 1$/);
  });
});
