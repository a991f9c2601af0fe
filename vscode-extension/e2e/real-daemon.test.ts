// The whole product, as a user meets it: the real `hotswap` daemon (HOTSWAP_BIN) serving an app
// scaffolded with `hotswap new`, and real VS Code (code-server) with the packaged .vsix. Edit the
// handler, Ctrl+S: the status bar shows the new generation and the app answers with the new code.
// A broken save: the error is in Problems and the old code keeps serving. Fails without
// HOTSWAP_BIN. Screenshots go to out/e2e-artifacts/.

import * as assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { after, before, test } from "node:test";

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
  scaffoldApp,
} from "../test/support/realDaemon";
import { CodeServer, Workbench, launchChromium } from "./support/workbench";

/** The first build compiles the scaffold's dependencies from scratch: minutes on two cores. */
const FIRST_BUILD_MS = 15 * 60_000;
const SWAP_MS = 3 * 60_000;
const BROKEN_LINE = 'fn hotswap_broken() -> u32 { "not a number" }';

let binary: string;
let temporary: { path: string; cleanup: () => Promise<void> } | undefined;
let serve: ServeProcess | undefined;
let server: CodeServer | undefined;
let browser: Browser | undefined;

before(async () => {
  binary = await hotswapBinary();
  temporary = await temporaryDirectory("e2e-real");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await serve?.stop();
  await temporary?.cleanup();
});

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
  serve = ServeProcess.start(binary, app, listen, env);
  const daemon = serve;
  const info = await daemon.waitUntilServing(endpoint, { name: "e2e" }, 60_000);
  assert.equal(info.listenAddress, listen);
  // The first generation (the start-up build) serves before VS Code opens.
  const generation = await daemon.waitForFirstGeneration(endpoint, FIRST_BUILD_MS);
  assert.ok((await body(listen)).includes(SCAFFOLD_GREETING));
  const counter = firstInteger((await httpRequest(listen, "POST", "/counter")).body);

  server = await CodeServer.start({ home: path.join(temporary.path, "home"), folder: root, env, settings: { "hotswap.daemon.path": binary } });
  browser = await launchChromium();
  const workbench = await Workbench.open(browser, server);
  await workbench.waitForStatus(new RegExp(`^hotswap: gen ${generation}$`));

  // Edit the handler's answer and save.
  await workbench.openFile("src/lib.rs");
  await workbench.select(SCAFFOLD_GREETING);
  await workbench.type(`${SCAFFOLD_GREETING}, edited in VS Code`);
  await workbench.save();
  assert.ok((await readFile(libRs, "utf8")).includes("edited in VS Code"), "the editor wrote the file");
  const swapped = await workbench.waitForStatus(new RegExp(`^gen ${generation + 1} · \\d+(\\.\\d)? m?s$`), SWAP_MS);
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
  await workbench.screenshot("real-2-build-failed.png");
  assert.match(swapped, /^gen \d+ · /);
});
