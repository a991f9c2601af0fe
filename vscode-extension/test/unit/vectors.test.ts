// The golden vectors of `protocol/vectors/`, checked both ways as the Rust tests check them:
// every message decodes into its typed form and encodes back to the same JSON; every client error
// gets the daemon's code and id; every endpoint derives to the same socket path and pipe name.

import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";

import {
  lastComponent,
  sanitizedName,
  socketDirectory,
  unixSocketPath,
  windowsPipeName,
  workspaceHash,
} from "../../src/endpoint";
import {
  ClientDecodeError,
  EVENT_NAMES,
  METHOD_NAMES,
  decodeClientMessage,
  decodeDaemonMessage,
  decodeResult,
  encodeError,
  encodeEvent,
  encodeRequest,
  encodeResult,
  isMethodName,
} from "../../src/protocol";
import { VECTORS } from "../support/paths";

function vectors(name: string): Record<string, unknown>[] {
  const text = readFileSync(path.join(VECTORS, name), "utf8");
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  assert.ok(lines.length > 0, `${name} has vectors`);
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

function reparse(text: string): unknown {
  return JSON.parse(text) as unknown;
}

describe("protocol/vectors/messages.jsonl", () => {
  const all = vectors("messages.jsonl");
  const seenRequests = new Set<string>();
  const seenResults = new Set<string>();
  const seenEvents = new Set<string>();

  for (const vector of all) {
    const name = vector["name"] as string;
    const message = vector["message"] as Record<string, unknown>;
    const line = JSON.stringify(message);

    test(`${vector["from"] as string}: ${name}`, () => {
      if (vector["from"] === "client") {
        const decoded = decodeClientMessage(Buffer.from(line));
        seenRequests.add(decoded.request.method);
        const encoded =
          decoded.kind === "request"
            ? encodeRequest(decoded.id, decoded.request.method, decoded.request.params as never)
            : encodeRequest(undefined, decoded.request.method, decoded.request.params as never);
        assert.equal(decoded.kind === "notification", !("id" in message), "request or notification");
        assert.deepEqual(reparse(encoded), message);
        return;
      }
      assert.equal(vector["from"], "daemon");
      const decoded = decodeDaemonMessage(Buffer.from(line));
      switch (decoded.kind) {
        case "response": {
          const method = vector["method"];
          assert.ok(typeof method === "string" && isMethodName(method), `${name} names its method`);
          const typed = decodeResult(method, decoded.result);
          seenResults.add(method);
          assert.deepEqual(reparse(encodeResult(decoded.id, method, typed as never)), message);
          return;
        }
        case "error":
          assert.deepEqual(reparse(encodeError(decoded.id, decoded.error)), message);
          return;
        case "event":
          seenEvents.add(decoded.event.method);
          assert.deepEqual(reparse(encodeEvent(decoded.event)), message);
          return;
        case "unknownNotification":
          assert.fail(`${name}: ${decoded.method} should be a known event`);
      }
    });
  }

  test("every request, result and event has a vector", () => {
    assert.deepEqual([...seenRequests].sort(), [...METHOD_NAMES].sort());
    assert.deepEqual([...seenResults].sort(), [...METHOD_NAMES].sort());
    assert.deepEqual([...seenEvents].sort(), [...EVENT_NAMES].sort());
  });
});

describe("decoding is strict where the Rust types are", () => {
  const swapped = {
    outcome: "swapped",
    generation: 4,
    swapMs: 3.1,
    totalMs: 412.5,
    stages: { copyMs: 0, loadMs: 0, verifyMs: 0, initMs: 0, stateMs: 0, smokeMs: 0, publishMs: 0 },
  };

  test("a missing required field names its path", () => {
    const { stages: _stages, ...withoutStages } = swapped;
    assert.throws(() => decodeResult("reload", withoutStages), /result\.stages: expected an object, found nothing/);
    assert.throws(
      () => decodeResult("reload", { ...swapped, stages: { ...swapped.stages, loadMs: "1" } }),
      /result\.stages\.loadMs: expected a number/,
    );
  });

  test("integers are integers and outcomes are known", () => {
    assert.throws(() => decodeResult("reload", { ...swapped, generation: 1.5 }), /result\.generation: expected a non-negative integer/);
    assert.throws(() => decodeResult("reload", { ...swapped, outcome: "exploded" }), /result\.outcome: expected one of swapped/);
  });

  test("unknown fields are dropped and defaults filled in", () => {
    const decoded = decodeResult("reload", { ...swapped, futureField: true });
    assert.deepEqual(decoded, { ...swapped, warnings: [] });
    const event = decodeDaemonMessage('{"jsonrpc":"2.0","method":"buildStarted","params":{"build":1,"reason":"initial"}}');
    assert.deepEqual(event, { kind: "event", event: { method: "buildStarted", params: { build: 1, reason: "initial", paths: [] } } });
  });

  test("unknown notifications are kept apart, malformed events are errors", () => {
    const future = decodeDaemonMessage('{"jsonrpc":"2.0","method":"futureEvent","params":{"x":1}}');
    assert.deepEqual(future, { kind: "unknownNotification", method: "futureEvent", params: { x: 1 } });
    assert.throws(
      () => decodeDaemonMessage('{"jsonrpc":"2.0","method":"buildStarted","params":{}}'),
      /event buildStarted does not match the protocol: params\.build/,
    );
    assert.throws(() => decodeDaemonMessage('{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}'), /exactly one of/);
    assert.throws(() => decodeDaemonMessage('{"id":1,"result":{}}'), /no "jsonrpc": "2.0"/);
  });
});

describe("protocol/vectors/errors.jsonl (the daemon's decoder, which the fake daemon uses)", () => {
  for (const vector of vectors("errors.jsonl")) {
    const name = vector["name"] as string;
    test(name, () => {
      const line =
        typeof vector["line"] === "string"
          ? Buffer.from(vector["line"], "utf8")
          : Buffer.from(vector["lineHex"] as string, "hex");
      const expected = vector["error"] as { code: number; id: number | string | null };
      assert.throws(
        () => decodeClientMessage(line),
        (error: unknown) => {
          assert.ok(error instanceof ClientDecodeError, `${name}: a decode error`);
          assert.equal(error.error.code, expected.code, `${name}: code (${error.message})`);
          assert.equal(error.id, expected.id, `${name}: id`);
          assert.equal(!error.notification, vector["answered"], `${name}: answered`);
          assert.ok(error.message.length > 0, `${name}: errors explain themselves`);
          return true;
        },
      );
    });
  }
});

describe("protocol/vectors/endpoints.jsonl", () => {
  for (const vector of vectors("endpoints.jsonl")) {
    const root = vector["root"] as string;
    test(root, () => {
      const environment = {
        runtimeDir: vector["runtimeDir"] as string | null,
        tempDir: vector["tempDir"] as string,
        uid: vector["uid"] as number,
      };
      assert.equal(sanitizedName(root, "unix"), vector["name"]);
      assert.equal(workspaceHash(root), vector["hash"]);
      assert.equal(unixSocketPath(root, environment), vector["socketPath"]);
      assert.equal(windowsPipeName(root, "unix"), vector["windowsPipe"]);
    });
  }
});

describe("endpoint details beyond the vectors", () => {
  test("the socket directory follows Rust's Path::join", () => {
    assert.equal(socketDirectory({ runtimeDir: "/run/user/7/", tempDir: "/tmp", uid: 7 }), "/run/user/7/hotswap");
    assert.equal(socketDirectory({ runtimeDir: "", tempDir: "/var/tmp/", uid: 7 }), "/var/tmp/hotswap-7");
  });

  test("the last component is the one Rust's Path::file_name gives", () => {
    assert.equal(lastComponent("/a/b/", "unix"), "b");
    assert.equal(lastComponent("/a/b/.", "unix"), "b");
    assert.equal(lastComponent("/a/..", "unix"), null);
    assert.equal(lastComponent("/", "unix"), null);
    assert.equal(lastComponent("C:\\Users\\ada\\todo", "windows"), "todo");
    assert.equal(lastComponent("C:\\", "windows"), null);
  });

  test("names count code points, not UTF-16 units, and stop at 32", () => {
    assert.equal(sanitizedName("/x/😀a", "unix"), "_a");
    assert.equal(sanitizedName(`/x/${"ü".repeat(40)}`, "unix"), "_".repeat(32));
  });
});

test("the method list matches the protocol README's order", () => {
  // The README's request table, first column, in order: the reference a client author reads.
  const readme = readFileSync(path.join(VECTORS, "..", "README.md"), "utf8");
  const requests = readme.slice(readme.indexOf("## Requests"), readme.indexOf("### Reload outcome"));
  const documented = [...requests.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]);
  assert.ok(documented.length > 0, "no request table found in protocol/README.md");
  assert.deepEqual(METHOD_NAMES, documented);
});
