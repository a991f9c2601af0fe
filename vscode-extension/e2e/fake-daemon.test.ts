// Real VS Code (code-server) with the packaged .vsix, against the fake daemon: the extension
// activates on a folder with a hotswap.toml and shows "no daemon"; when a daemon appears it
// connects; Ctrl+S sends didSave with the file's path; the status bar follows build and swap
// events; a failed build fills the Problems panel and raises a notification whose Rollback button
// reaches the daemon. Screenshots go to out/e2e-artifacts/.

import * as assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { currentEnvironment, deriveEndpoint } from "../src/endpoint";
import { FakeDaemon } from "../test/support/fakeDaemon";
import { temporaryDirectory } from "../test/support/paths";
import { privateEnvironment } from "../test/support/realDaemon";
import { waitFor } from "../test/support/wait";
import { CodeServer, Workbench, launchChromium } from "./support/workbench";

let temporary: { path: string; cleanup: () => Promise<void> } | undefined;
let server: CodeServer | undefined;
let browser: Browser | undefined;
let daemon: FakeDaemon | undefined;

/** A line that does not compile: E0308 on the string literal. */
const BROKEN_LINE = 'fn hotswap_broken() -> u32 { "not a number" }';

const LIB_RS = `pub fn greeting() -> &'static str {
    "hello from hotswap"
}
`;

before(async () => {
  temporary = await temporaryDirectory("e2e-fake");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await daemon?.close();
  await temporary?.cleanup();
});

test("real VS Code: activation, no daemon, save, swap, failed build, rollback", { timeout: 5 * 60_000 }, async () => {
  assert.ok(temporary !== undefined);
  const app = path.join(temporary.path, "todo");
  await mkdir(path.join(app, "src"), { recursive: true });
  await writeFile(path.join(app, "hotswap.toml"), 'listen = "127.0.0.1:3000"\n');
  await writeFile(path.join(app, "Cargo.toml"), '[package]\nname = "todo"\nversion = "0.1.0"\nedition = "2024"\n\n[lib]\ncrate-type = ["cdylib"]\n');
  await writeFile(path.join(app, "src", "lib.rs"), LIB_RS);
  const env = await privateEnvironment(path.join(temporary.path, "run"));
  const endpoint = deriveEndpoint(app, currentEnvironment(env));

  server = await CodeServer.start({ home: path.join(temporary.path, "home"), folder: app, env });
  browser = await launchChromium();
  const workbench = await Workbench.open(browser, server);

  // Activated by the hotswap.toml, with nothing listening.
  await workbench.waitForStatus(/^hotswap: no daemon$/);
  await workbench.screenshot("fake-1-no-daemon.png");

  // A daemon appears: the extension connects within its backoff and shows the generation.
  daemon = await FakeDaemon.listen(endpoint, { generation: 1, workspaceRoot: app });
  const fake = daemon;
  await workbench.waitForStatus(/^hotswap: gen 1$/, 15_000);
  assert.deepEqual(fake.requests("initialize")[0], { protocolVersion: 1, clientName: "vscode", clientVersion: "0.1.0" });

  // Edit and save: the daemon hears about the file.
  await workbench.openFile("src/lib.rs");
  await workbench.select("hello from hotswap");
  await workbench.type("hello from VS Code");
  await workbench.save();
  const [save] = await fake.waitForRequests("didSave", 1, 15_000);
  assert.deepEqual(save, { paths: [path.join(app, "src", "lib.rs")] });

  // The daemon builds and swaps: the status bar shows the new generation and the time.
  fake.emitSwap(1, [path.join(app, "src", "lib.rs")], 412.4);
  await workbench.waitForStatus(/^gen 2 · 412 ms$/, 15_000);
  await workbench.screenshot("fake-2-swapped.png");

  // A broken save: the daemon reports a failed build; Problems entries, the error colour, and a
  // notification with its buttons.
  await workbench.page.keyboard.press("Control+End");
  await workbench.type(BROKEN_LINE);
  await workbench.save();
  const saves = await fake.waitForRequests("didSave", 2, 15_000);
  assert.deepEqual(saves[1], { paths: [path.join(app, "src", "lib.rs")] });
  const literal = BROKEN_LINE.indexOf('"not a number"');
  fake.emitFailedBuild(2, [path.join(app, "src", "lib.rs")], [
    {
      severity: "error",
      code: "E0308",
      message: "mismatched types",
      file: path.join(app, "src", "lib.rs"),
      range: { start: { line: 3, character: literal }, end: { line: 3, character: literal + 14 } },
      rendered: `error[E0308]: mismatched types\n --> src/lib.rs:4:${literal + 1}\n`,
      related: [],
    },
  ]);
  await workbench.waitForStatus(/^hotswap: build failed$/, 15_000);
  const background = await workbench.statusBackground();
  assert.notEqual(background, "rgba(0, 0, 0, 0)", "the item has the error background");
  const toast = workbench.notification("hotswap: build failed: mismatched types (generation 2 keeps serving).");
  await toast.waitFor({ timeout: 15_000 });
  const problems = await workbench.problems("mismatched types");
  assert.match(problems, /lib\.rs/);
  assert.match(problems, new RegExp(`\\[Ln 4, Col ${literal + 1}\\]`));
  await workbench.screenshot("fake-3-build-failed.png");
  fake.handle("rollback", () => ({
    outcome: "swapped",
    generation: 3,
    previousGeneration: 2,
    swapMs: 2,
    totalMs: 2.1,
    stages: { copyMs: 0.5, loadMs: 0.9, verifyMs: 0.01, initMs: 0.5, stateMs: 0.05, smokeMs: 0, publishMs: 0.01 },
    warnings: [],
  }));
  await toast.getByRole("button", { name: "Rollback" }).click();
  await fake.waitForRequests("rollback", 1, 15_000);

  // A command from the palette reaches the daemon too.
  await workbench.runCommand("hotswap: Reload Now");
  await waitFor(() => fake.requests("reload").length === 1, { timeoutMs: 15_000, what: "a reload request" });
});
