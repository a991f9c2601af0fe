// The extension's client against the real `hotswap` daemon (HOTSWAP_BIN): the endpoint it
// derives is the daemon's, the handshake and every request decode, and a save, a broken save, a
// fix and a rollback do to the running app what the events say. Fails without HOTSWAP_BIN.

import * as assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { after, before, test } from "node:test";

import { DaemonClient, DisconnectedError } from "../../src/client";
import { canonicalWorkspaceRoot, currentEnvironment, deriveEndpoint } from "../../src/endpoint";
import type { DaemonEvent, EventParams } from "../../src/protocol";
import { temporaryDirectory } from "../support/paths";
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
} from "../support/realDaemon";
import { waitFor } from "../support/wait";

/** The first build compiles the scaffold's dependencies from scratch: minutes on two cores. */
const FIRST_BUILD_MS = 15 * 60_000;
const REBUILD_MS = 3 * 60_000;

let binary: string;
let temporary: { path: string; cleanup: () => Promise<void> } | undefined;
let serve: ServeProcess | undefined;

before(async () => {
  binary = await hotswapBinary();
  temporary = await temporaryDirectory("daemon");
});

after(async () => {
  await serve?.stop();
  await temporary?.cleanup();
});

class EventLog {
  readonly events: DaemonEvent[] = [];
  constructor(client: DaemonClient) {
    client.onEvent((event) => this.events.push(event));
  }

  /** Waits for the first event from `from` on that matches; returns it and its index. */
  async next<M extends DaemonEvent["method"]>(
    method: M,
    from: number,
    matches: (params: EventParams<M>) => boolean,
    timeoutMs: number,
    daemon: ServeProcess,
  ): Promise<{ params: EventParams<M>; index: number }> {
    let found: { params: EventParams<M>; index: number } | undefined;
    await waitFor(
      () => {
        for (let index = from; index < this.events.length; index += 1) {
          const event = this.events[index] as DaemonEvent;
          if (event.method === method && matches(event.params as EventParams<M>)) {
            found = { params: event.params as EventParams<M>, index };
            return true;
          }
        }
        if (!daemon.running) throw new Error(`the daemon exited:\n${daemon.log}`);
        return false;
      },
      {
        timeoutMs,
        what: () =>
          `a ${method} event; got ${this.events.slice(from).map((event) => event.method).join(", ") || "none"}\n--- daemon output ---\n${daemon.log}`,
      },
    );
    return found as { params: EventParams<M>; index: number };
  }
}

test("the client against the real daemon: endpoint, handshake, save, broken save, fix, rollback, shutdown", { timeout: FIRST_BUILD_MS + 8 * REBUILD_MS }, async () => {
  assert.ok(temporary !== undefined);
  const env = await privateEnvironment(path.join(temporary.path, "run"));
  const app = path.join(temporary.path, "app");
  const libRs = await scaffoldApp(binary, app, env);
  const root = await canonicalWorkspaceRoot(app);
  const canonicalLibRs = path.join(root, "src", "lib.rs");

  // The endpoint this extension derives is the one the daemon prints.
  const endpoint = deriveEndpoint(root, currentEnvironment(env));
  const printed = (await runHotswap(binary, ["endpoint"], { cwd: app, env })).stdout.trim();
  assert.equal(endpoint, printed);

  const listen = `127.0.0.1:${await freePort()}`;
  serve = ServeProcess.start(binary, app, listen, env);
  const daemon = serve;
  await daemon.waitUntilServing(endpoint, { name: "vscode-test" }, 60_000);

  const { client, info } = await DaemonClient.connectAndInitialize(endpoint, { name: "vscode-test", version: "0.0.0" });
  try {
    assert.equal(info.protocolVersion, 1);
    assert.equal(info.workspaceRoot, root);
    assert.equal(info.listenAddress, listen);
    const log = new EventLog(client);
    assert.deepEqual(await client.request("subscribe", {}), { subscribed: true });
    const socketMode = (await stat(endpoint)).mode & 0o777;
    assert.equal(socketMode & 0o077, 0, `the socket is private (mode ${socketMode.toString(8)})`);

    // The first generation: either already serving, or after the start-up build.
    let generation = await daemon.waitForFirstGeneration(endpoint, FIRST_BUILD_MS);
    const before = await httpRequest(listen, "GET", "/");
    assert.equal(before.status, 200);
    assert.ok(before.body.includes(SCAFFOLD_GREETING), before.body);

    const status = await client.request("status", {});
    assert.equal(status.currentGeneration, generation);
    assert.equal(status.endpoint, endpoint);
    assert.equal(status.listenAddress, listen);

    const counterBefore = firstInteger((await httpRequest(listen, "POST", "/counter")).body);

    // A good save: a new generation answers with the new code.
    const original = await readFile(libRs, "utf8");
    const edited = original.replace(SCAFFOLD_GREETING, `${SCAFFOLD_GREETING}, edited by the client test`);
    await writeFile(libRs, edited);
    let mark = log.events.length;
    const saved = await client.request("didSave", { paths: [canonicalLibRs] });
    assert.deepEqual(saved.accepted, [canonicalLibRs]);
    const firstSwap = await log.next("swapFinished", mark, (swap) => swap.generation > generation, REBUILD_MS, daemon);
    assert.equal(firstSwap.params.rollback, false);
    const started = await log.next("buildStarted", mark, () => true, 0, daemon);
    assert.equal(started.params.reason, "save");
    assert.deepEqual(started.params.paths, [canonicalLibRs]);
    assert.ok(started.index < firstSwap.index, "the build starts before the swap");
    generation = firstSwap.params.generation;
    assert.ok((await httpRequest(listen, "GET", "/")).body.includes("edited by the client test"));
    assert.equal(firstInteger((await httpRequest(listen, "POST", "/counter")).body), counterBefore + 1, "the counter survives the swap");

    // A broken save: the build fails with a diagnostic at the broken line; the old code serves.
    const brokenLine = edited.split("\n").length - (edited.endsWith("\n") ? 1 : 0);
    await writeFile(libRs, `${edited}${edited.endsWith("\n") ? "" : "\n"}fn hotswap_broken() -> u32 { "not a number" }\n`);
    mark = log.events.length;
    await client.request("didSave", { paths: [canonicalLibRs] });
    const failed = await log.next("buildFinished", mark, (build) => build.outcome === "failed", REBUILD_MS, daemon);
    const error = failed.params.diagnostics.find((diagnostic) => diagnostic.severity === "error" && diagnostic.file === canonicalLibRs);
    assert.ok(error !== undefined, JSON.stringify(failed.params.diagnostics, null, 2));
    assert.equal(error.range?.start.line, brokenLine, JSON.stringify(error));
    assert.equal(error.code, "E0308");
    assert.ok((await httpRequest(listen, "GET", "/")).body.includes("edited by the client test"), "the old code keeps serving");
    assert.equal((await client.request("status", {})).currentGeneration, generation);

    // A fix with new code: a new generation.
    await writeFile(libRs, original.replace(SCAFFOLD_GREETING, `${SCAFFOLD_GREETING}, edited twice`));
    mark = log.events.length;
    await client.request("didSave", { paths: [canonicalLibRs] });
    const secondSwap = await log.next("swapFinished", mark, (swap) => swap.generation > generation, REBUILD_MS, daemon);
    const clean = await log.next("buildFinished", mark, () => true, 0, daemon);
    assert.equal(clean.params.outcome, "succeeded");
    assert.ok(!clean.params.diagnostics.some((diagnostic) => diagnostic.severity === "error"));
    generation = secondSwap.params.generation;
    assert.ok((await httpRequest(listen, "GET", "/")).body.includes("edited twice"));

    // Rollback serves the previous artifact again, as a new generation.
    mark = log.events.length;
    const rolledBack = await client.request("rollback", {});
    assert.equal(rolledBack.outcome, "swapped", JSON.stringify(rolledBack));
    const rollbackSwap = await log.next("swapFinished", mark, (swap) => swap.rollback, REBUILD_MS, daemon);
    assert.ok(rollbackSwap.params.generation > generation);
    const afterRollback = (await httpRequest(listen, "GET", "/")).body;
    assert.ok(afterRollback.includes("edited by the client test"), afterRollback);
    assert.equal(firstInteger((await httpRequest(listen, "POST", "/counter")).body), counterBefore + 2, "the counter survives every swap");

    assert.deepEqual(await client.request("cancelBuild", {}), { cancelled: false });

    // Shutdown: the daemon exits cleanly. The protocol says it answers `{}`; this daemon closes
    // every connection as it stops, and the answer can lose that race (its own `hotswap stop`
    // accepts both), so a closed connection counts as an answer here too.
    const shutdown = await client.request("shutdown", {}).catch((error: unknown) => {
      if (error instanceof DisconnectedError) return "connection closed";
      throw error;
    });
    assert.ok(shutdown === "connection closed" || Object.keys(shutdown).length === 0, JSON.stringify(shutdown));
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      daemon.exited,
      new Promise((resolve) => (timer = setTimeout(() => { resolve("still running after 30 s"); }, 30_000))),
    ]);
    clearTimeout(timer);
    assert.equal(code, 0, daemon.log);
    assert.ok(!existsSync(endpoint), "the daemon removed its socket");
  } catch (error) {
    // Say what the daemon printed: the reason is usually there.
    throw new Error(`${(error as Error).message}\n--- daemon output ---\n${daemon.log}`, { cause: error });
  } finally {
    client.close();
  }
});
