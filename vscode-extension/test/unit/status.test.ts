// The status bar's state machine: each connection state and build/swap event gives the text the
// issue asks for (idle, building with a spinner, `gen N · 412 ms`, build failed in the error
// colour, disconnected / no daemon), and paused is shown on top of any of them.

import * as assert from "node:assert/strict";
import { test } from "node:test";

import type { DaemonEvent, InitializeResult } from "../../src/protocol";
import { StatusModel, formatDuration } from "../../src/status";
import { STAGES } from "../support/fakeDaemon";

const INFO: InitializeResult = {
  protocolVersion: 1,
  daemonVersion: "0.1.0",
  pid: 42,
  workspaceRoot: "/w/todo",
  package: "todo",
  listenAddress: "127.0.0.1:3000",
  generation: 3,
};

function connected(generation?: number): StatusModel {
  const model = new StatusModel("todo");
  const info = { ...INFO };
  if (generation === undefined) delete info.generation;
  else info.generation = generation;
  model.connection({ kind: "connected", info });
  return model;
}

const swap = (generation: number, totalMs: number, extra: Partial<Extract<DaemonEvent, { method: "swapFinished" }>["params"]> = {}): DaemonEvent => ({
  method: "swapFinished",
  params: { generation, previousGeneration: generation - 1, rollback: false, swapMs: 3.1, totalMs, buildMs: 398.2, stages: STAGES, warnings: [], ...extra },
});

test("offline states", () => {
  const model = new StatusModel("todo");
  assert.equal(model.view().text, "$(circle-slash) hotswap: off");
  model.connection({ kind: "connecting" });
  assert.equal(model.view().text, "$(sync~spin) hotswap: connecting");
  model.connection({ kind: "noDaemon", endpoint: "/run/user/1/hotswap/todo-1.sock", retryInMs: 250 });
  const noDaemon = model.view();
  assert.equal(noDaemon.text, "$(debug-disconnect) hotswap: no daemon");
  assert.equal(noDaemon.tone, "normal");
  assert.ok(noDaemon.tooltip.some((line) => line.includes("/run/user/1/hotswap/todo-1.sock")));
  assert.ok(noDaemon.tooltip.some((line) => line.includes("Start Daemon")));
  model.connection({ kind: "disconnected", reason: "the hotswap daemon closed the connection", retryInMs: 250 });
  assert.deepEqual([model.view().text, model.view().tone], ["$(debug-disconnect) hotswap: disconnected", "warning"]);
  model.connection({ kind: "incompatible", reason: "speaks protocol version 2", retryInMs: 4000 });
  assert.deepEqual([model.view().text, model.view().tone], ["$(error) hotswap: incompatible daemon", "error"]);
});

test("idle shows the serving generation, or that none serves yet", () => {
  assert.equal(connected(3).view().text, "$(zap) hotswap: gen 3");
  assert.equal(connected().view().text, "$(zap) hotswap: idle");
  assert.ok(connected(3).view().tooltip.some((line) => line.includes("[127.0.0.1:3000](http://127.0.0.1:3000/)")));
});

test("a save's build and swap: building, then gen N with the time from save to serving", () => {
  const model = connected(3);
  model.event({ method: "buildStarted", params: { build: 7, reason: "save", paths: ["/w/todo/src/lib.rs"] } });
  assert.equal(model.view().text, "$(sync~spin) hotswap: building");
  model.event({ method: "buildProgress", params: { build: 7, message: "Blocking waiting for file lock", blocked: true } });
  assert.equal(model.view().text, "$(sync~spin) hotswap: building (waiting for lock)");
  model.event({ method: "buildFinished", params: { build: 7, outcome: "succeeded", durationMs: 398.2, diagnostics: [] } });
  assert.equal(model.view().text, "$(sync~spin) hotswap: building (waiting for lock)", "succeeded: the swap is still to come");
  model.event(swap(4, 412.5));
  assert.deepEqual([model.view().text, model.view().tone], ["$(zap) gen 4 · 413 ms", "normal"]);
  assert.equal(model.currentGeneration, 4);
  model.event(swap(5, 1830, { warnings: ["state started fresh"] }));
  assert.deepEqual([model.view().text, model.view().tone], ["$(zap) gen 5 · 1.8 s", "warning"]);
  model.event(swap(6, 2.1, { rollback: true }));
  assert.equal(model.view().text, "$(history) gen 6 · rolled back");
});

test("a failed build is an error until the next good one; the old generation keeps serving", () => {
  const model = connected(3);
  model.event({ method: "buildStarted", params: { build: 1, reason: "save", paths: [] } });
  model.event({
    method: "buildFinished",
    params: {
      build: 1,
      outcome: "failed",
      durationMs: 310,
      diagnostics: [
        { severity: "warning", message: "unused variable", related: [] },
        { severity: "error", message: "mismatched types", related: [] },
      ],
    },
  });
  const failed = model.view();
  assert.deepEqual([failed.text, failed.tone], ["$(error) hotswap: build failed", "error"]);
  assert.ok(failed.tooltip.some((line) => line === "Build failed with 1 error: mismatched types."));
  assert.ok(failed.tooltip.includes("Generation 3 keeps serving."));
  model.event({ method: "swapFailed", params: { generation: 4, stage: "verify", message: "ABI version 2", diagnostics: [] } });
  assert.deepEqual([model.view().text, model.view().tone], ["$(error) hotswap: swap failed (verify)", "error"]);
  model.event(swap(4, 300));
  assert.equal(model.view().tone, "normal");
});

test("a cancelled build goes back to what showed before; unchanged says so", () => {
  const model = connected(3);
  model.event(swap(4, 412.5));
  model.event({ method: "buildStarted", params: { build: 2, reason: "save", paths: [] } });
  model.event({ method: "buildStarted", params: { build: 3, reason: "save", paths: [] } });
  model.event({ method: "buildFinished", params: { build: 3, outcome: "cancelled", durationMs: 10, diagnostics: [] } });
  assert.equal(model.view().text, "$(zap) gen 4 · 413 ms");
  model.event({ method: "buildStarted", params: { build: 4, reason: "reload", paths: [] } });
  model.event({ method: "buildFinished", params: { build: 4, outcome: "unchanged", durationMs: 120, diagnostics: [] } });
  assert.equal(model.view().text, "$(zap) gen 4 · unchanged");
});

test("a build already running when the client connects shows as building", () => {
  const model = connected();
  model.buildRunning();
  assert.equal(model.view().text, "$(sync~spin) hotswap: building");
  assert.ok(model.view().tooltip.includes("Build: cargo build"));
  model.event(swap(1, 30_000));
  assert.equal(model.view().text, "$(zap) gen 1 · 30.0 s");
  model.buildRunning();
  assert.equal(model.view().text, "$(zap) gen 1 · 30.0 s", "only an idle status turns into building");
});

test("paused shows on top of the state", () => {
  const model = connected(3);
  model.setPaused(true);
  assert.equal(model.view().text, "$(debug-pause) hotswap: gen 3 (paused)");
  assert.ok(model.view().tooltip.some((line) => line.includes("paused")));
  model.setPaused(false);
  assert.equal(model.view().text, "$(zap) hotswap: gen 3");
});

test("events while offline change nothing; reconnecting takes the daemon's generation", () => {
  const model = new StatusModel("todo");
  model.connection({ kind: "noDaemon", endpoint: "/s", retryInMs: 1 });
  model.event(swap(9, 1));
  assert.equal(model.view().text, "$(debug-disconnect) hotswap: no daemon");
  model.connection({ kind: "connected", info: INFO });
  assert.equal(model.view().text, "$(zap) hotswap: gen 3");
});

test("durations", () => {
  assert.deepEqual([0.4, 412.5, 999.4, 1000, 1830, 12_345].map(formatDuration), ["0 ms", "413 ms", "999 ms", "1.0 s", "1.8 s", "12.3 s"]);
});
