// The whole product, as a user meets it: the real `hotswap` daemon (HOTSWAP_BIN) serving an app
// scaffolded with `hotswap new`, and real VS Code (code-server) with the packaged .vsix. Edit the
// handler, Ctrl+S: the status bar shows the new generation and the app answers with the new code.
// A broken save: the error is in Problems and the old code keeps serving; its notification's
// Rollback serves the code before. The daemon can also be started and stopped from the status
// bar's menu. Fails without HOTSWAP_BIN. Screenshots go to out/e2e-artifacts/.

import * as assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { after, afterEach, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { canonicalWorkspaceRoot, currentEnvironment, deriveEndpoint } from "../src/endpoint";
import { temporaryDirectory } from "../test/support/paths";
import {
  SCAFFOLD_GREETING,
  ServeProcess,
  firstInteger,
  freePort,
  hotswapBinary,
  httpRequest,
  privateEnvironment,
  runHotswap,
  scaffoldApp,
} from "../test/support/realDaemon";
import { CodeServer, Workbench, launchChromium } from "./support/workbench";

/** The first build compiles the scaffold's dependencies from scratch: minutes on two cores. */
const FIRST_BUILD_MS = 15 * 60_000;
const SWAP_MS = 3 * 60_000;
/** What the status bar says when a build or swap failed. */
const FAILED = /failed|incompatible/;
const BROKEN_LINE = 'fn hotswap_broken() -> u32 { "not a number" }';

let binary: string;
let temporary: { path: string; cleanup: () => Promise<void> } | undefined;
/** What each test started, stopped in reverse order after it. */
let cleanups: (() => Promise<unknown>)[] = [];

before(async () => {
  binary = await hotswapBinary();
  temporary = await temporaryDirectory("e2e-real");
});

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  cleanups = [];
});

after(async () => {
  await temporary?.cleanup();
});

/** code-server on `folder` with the .vsix, and the workbench open in Chromium. */
async function openVsCode(name: string, folder: string, env: NodeJS.ProcessEnv): Promise<Workbench> {
  assert.ok(temporary !== undefined);
  const server = await CodeServer.start({
    home: path.join(temporary.path, `${name}-home`),
    folder,
    env,
    settings: { "hotswap.daemon.path": binary },
  });
  cleanups.push(() => server.stop());
  const browser: Browser = await launchChromium();
  cleanups.push(() => browser.close());
  return Workbench.open(browser, server);
}

async function body(listen: string): Promise<string> {
  const answer = await httpRequest(listen, "GET", "/");
  assert.equal(answer.status, 200, answer.body);
  return answer.body;
}

test("real VS Code and the real daemon: save swaps the code, a broken save keeps it", { timeout: FIRST_BUILD_MS + 6 * SWAP_MS }, async () => {
  assert.ok(temporary !== undefined);
  const env = await privateEnvironment(path.join(temporary.path, "run"));
  const app = path.join(temporary.path, "app");
  const libRs = await scaffoldApp(binary, app, env);
  const root = await canonicalWorkspaceRoot(app);
  const endpoint = deriveEndpoint(root, currentEnvironment(env));

  const listen = `127.0.0.1:${await freePort()}`;
  const daemon = ServeProcess.start(binary, app, listen, env);
  cleanups.push(() => daemon.stop());
  const info = await daemon.waitUntilServing(endpoint, { name: "e2e" }, 60_000);
  assert.equal(info.listenAddress, listen);
  // The first generation (the start-up build) serves before VS Code opens.
  const generation = await daemon.waitForFirstGeneration(endpoint, FIRST_BUILD_MS);
  assert.ok((await body(listen)).includes(SCAFFOLD_GREETING));
  const counter = firstInteger((await httpRequest(listen, "POST", "/counter")).body);

  const workbench = await openVsCode("saves", root, env);
  await workbench.waitForStatus(new RegExp(`^hotswap: gen ${generation}$`), 60_000, FAILED);

  // Edit the handler's answer and save.
  await workbench.openFile("src/lib.rs");
  await workbench.select(SCAFFOLD_GREETING);
  await workbench.type(`${SCAFFOLD_GREETING}, edited in VS Code`);
  await workbench.save();
  assert.ok((await readFile(libRs, "utf8")).includes("edited in VS Code"), "the editor wrote the file");
  const swapped = await workbench.waitForStatus(new RegExp(`^gen ${generation + 1} · \\d+(\\.\\d)? m?s$`), SWAP_MS, FAILED);
  assert.ok((await body(listen)).includes(`${SCAFFOLD_GREETING}, edited in VS Code`));
  assert.equal(firstInteger((await httpRequest(listen, "POST", "/counter")).body), counter + 1, "state survives the swap");
  await workbench.screenshot("real-1-swapped.png");

  // A broken save: the build fails, Problems shows the error, the old code keeps serving.
  await workbench.page.keyboard.press("Control+End");
  await workbench.type(`\n${BROKEN_LINE}\n`);
  await workbench.save();
  await workbench.waitForStatus(/^hotswap: build failed$/, SWAP_MS);
  const problems = await workbench.problems("mismatched types");
  assert.match(problems, /lib\.rs/);
  await workbench.notification("hotswap: build failed").first().waitFor({ timeout: 30_000 });
  assert.ok((await body(listen)).includes(`${SCAFFOLD_GREETING}, edited in VS Code`), "the old code keeps serving");
  await workbench.showProblem("mismatched types");
  await workbench.screenshot("real-2-build-failed.png");
  assert.match(swapped, /^gen \d+ · /);
});

test("real VS Code starts the daemon from the status bar, rolls back from the failure notification, stops it", { timeout: FIRST_BUILD_MS + 6 * SWAP_MS }, async () => {
  assert.ok(temporary !== undefined);
  const env = await privateEnvironment(path.join(temporary.path, "run-menu"));
  const app = path.join(temporary.path, "menu-app");
  const listen = `127.0.0.1:${await freePort()}`;
  await runHotswap(binary, ["new", app, "--listen", listen], { env });
  const root = await canonicalWorkspaceRoot(app);
  // Whatever happens, no daemon outlives the test.
  cleanups.push(() => runHotswap(binary, ["stop"], { cwd: root, env, timeoutMs: 30_000 }));

  const workbench = await openVsCode("menu", root, env);
  await workbench.waitForStatus(/^hotswap: no daemon$/);
  await workbench.pickFromStatusMenu("Start daemon");
  // The daemon runs in a terminal, builds, and serves its first generation.
  await workbench.waitForStatus(/^(hotswap: (building|idle|gen 1)|gen 1 · .*)$/, 60_000);
  await workbench.waitForStatus(/^(hotswap: gen 1|gen 1 · .*)$/, FIRST_BUILD_MS, FAILED);
  assert.ok((await body(listen)).includes(SCAFFOLD_GREETING));

  await workbench.openFile("src/lib.rs");
  await workbench.select(SCAFFOLD_GREETING);
  await workbench.type(`${SCAFFOLD_GREETING}, second version`);
  await workbench.save();
  await workbench.waitForStatus(/^gen 2 · /, SWAP_MS, FAILED);
  assert.ok((await body(listen)).includes("second version"));

  await workbench.page.keyboard.press("Control+End");
  await workbench.type(`\n${BROKEN_LINE}\n`);
  await workbench.save();
  await workbench.waitForStatus(/^hotswap: build failed$/, SWAP_MS);
  const toast = workbench.notification("hotswap: build failed").first();
  await toast.waitFor({ timeout: 30_000 });
  await toast.getByRole("button", { name: "Rollback" }).click();
  // Rollback serves the artifact before generation 2 (the scaffold's code) as generation 3.
  await workbench.waitForStatus(/^gen 3 · rolled back$/, SWAP_MS, /swap failed|incompatible/);
  const rolledBack = await body(listen);
  assert.ok(rolledBack.includes(SCAFFOLD_GREETING) && !rolledBack.includes("second version"), rolledBack);
  await workbench.screenshot("real-3-rolled-back.png");

  await workbench.pickFromStatusMenu("Stop daemon");
  await workbench.waitForStatus(/^hotswap: (no daemon|disconnected)$/, 60_000);
  await assert.rejects(httpRequest(listen, "GET", "/"), "the app no longer answers");
});
