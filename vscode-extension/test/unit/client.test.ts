// The client and the reconnecting connection against the fake daemon on a real Unix socket:
// handshake, overlapping requests, events, errors, no daemon, version mismatch, dropped
// connections and malformed input.

import * as assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { after, before, test } from "node:test";

import {
  DaemonClient,
  DisconnectedError,
  IncompatibleDaemonError,
  NoDaemonError,
  ProtocolError,
} from "../../src/client";
import { type ConnectionState, DaemonConnection, NotConnectedError, backoffDelay } from "../../src/connection";
import { type DaemonEvent, ErrorCode, ResponseError } from "../../src/protocol";
import { FakeDaemon, type FakeDaemonOptions } from "../support/fakeDaemon";
import { temporaryDirectory } from "../support/paths";
import { waitFor } from "../support/wait";

const CLIENT = { name: "unit-test", version: "9.9.9" };
let directory: { path: string; cleanup: () => Promise<void> };
let socketCounter = 0;

before(async () => {
  directory = await temporaryDirectory("client");
});
after(async () => {
  await directory.cleanup();
});

function socketPath(): string {
  socketCounter += 1;
  return path.join(directory.path, `d${socketCounter}.sock`);
}

async function withDaemon(
  body: (daemon: FakeDaemon) => Promise<void>,
  options: FakeDaemonOptions = {},
): Promise<void> {
  const daemon = await FakeDaemon.listen(socketPath(), options);
  try {
    await body(daemon);
  } finally {
    await daemon.close();
  }
}

test("initialize sends the protocol version and client name, and reads the daemon's facts", async () => {
  await withDaemon(async (daemon) => {
    daemon.generation = 3;
    const { client, info } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    try {
      assert.deepEqual(daemon.requests("initialize"), [{ protocolVersion: 1, clientName: "unit-test", clientVersion: "9.9.9" }]);
      assert.equal(info.protocolVersion, 1);
      assert.equal(info.generation, 3);
      assert.equal(info.listenAddress, "127.0.0.1:3000");
    } finally {
      client.close();
    }
  });
});

test("overlapping requests get their own answers, whatever order they come back in", async () => {
  await withDaemon(async (daemon) => {
    let releaseReload: () => void = () => undefined;
    const reloadGate = new Promise<void>((resolve) => {
      releaseReload = resolve;
    });
    daemon.handle("reload", async () => {
      await reloadGate;
      return { outcome: "unchanged", generation: 1, buildMs: 12 };
    });
    // The fake answers one connection's requests in order, so `status` goes on a second connection.
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    const { client: second } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    try {
      const reload = client.request("reload", {});
      const status = await second.request("status", {});
      assert.equal(status.package, "app");
      const didSave = client.request("didSave", { paths: ["/a/src/lib.rs", "/a/README.md"] });
      releaseReload();
      assert.deepEqual(await reload, { outcome: "unchanged", generation: 1, buildMs: 12 });
      assert.deepEqual(await didSave, {
        accepted: ["/a/src/lib.rs"],
        ignored: [{ path: "/a/README.md", reason: "outside the handler's packages" }],
      });
    } finally {
      client.close();
      second.close();
    }
  });
});

test("JSON-RPC errors reject with their code and message", async () => {
  await withDaemon(async (daemon) => {
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    try {
      await assert.rejects(client.request("rollback", {}), (error: unknown) => {
        assert.ok(error instanceof ResponseError);
        assert.equal(error.code, ErrorCode.noPreviousGeneration);
        assert.match(error.message, /nothing to roll back to/);
        return true;
      });
    } finally {
      client.close();
    }
  });
});

test("a result that does not fit the protocol is a ProtocolError naming the field", async () => {
  await withDaemon(async (daemon) => {
    daemon.handle("cancelBuild", () => ({ cancelled: "yes" }) as never);
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    try {
      await assert.rejects(client.request("cancelBuild", {}), (error: unknown) => {
        assert.ok(error instanceof ProtocolError);
        assert.match(error.message, /answer to cancelBuild .*result\.cancelled: expected a boolean/);
        return true;
      });
    } finally {
      client.close();
    }
  });
});

test("events reach the listeners in order; unknown notifications and garbage are skipped", async () => {
  await withDaemon(async (daemon) => {
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    const events: DaemonEvent[] = [];
    const problems: string[] = [];
    client.onEvent((event) => events.push(event));
    client.onProblem((problem) => problems.push(problem));
    try {
      await client.request("subscribe", {});
      daemon.sendRaw('{"jsonrpc":"2.0","method":"fromTheFuture","params":{}}\n');
      daemon.sendRaw("this is not json\n");
      daemon.sendRaw(`${"x".repeat(1024 * 1024 + 10)}\n`);
      daemon.emitSwap(1, ["/a/src/lib.rs"]);
      await waitFor(() => events.length === 4, { what: "four events" });
      assert.deepEqual(
        events.map((event) => event.method),
        ["buildStarted", "buildProgress", "buildFinished", "swapFinished"],
      );
      assert.equal(problems.length, 2, problems.join("\n"));
      assert.match(problems[0] ?? "", /not valid JSON/);
      assert.match(problems[1] ?? "", /more than 1048586 bytes/);
      // The connection is still usable.
      assert.equal((await client.request("status", {})).currentGeneration, 1);
    } finally {
      client.close();
    }
  });
});

test("no socket, or a socket nobody listens on, is NoDaemonError", async () => {
  await assert.rejects(DaemonClient.connect(socketPath()), (error: unknown) => {
    assert.ok(error instanceof NoDaemonError);
    assert.equal(error.errno.code, "ENOENT");
    return true;
  });
  // A stale socket file left by a daemon that died.
  const stale = socketPath();
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(stale, resolve));
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  // Node removes the socket file on close; a daemon killed with SIGKILL leaves it behind, which
  // refuses connections just like this plain file does.
  if (!existsSync(stale)) await writeFile(stale, "");
  await assert.rejects(DaemonClient.connect(stale), NoDaemonError);
});

test("a daemon of another protocol version is IncompatibleDaemonError", async () => {
  await withDaemon(
    async (daemon) => {
      await assert.rejects(DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT), (error: unknown) => {
        assert.ok(error instanceof IncompatibleDaemonError);
        assert.match(error.message, /does not speak protocol version 1/);
        return true;
      });
    },
    { protocolVersion: 2 },
  );
});

test("requests waiting when the connection drops reject with DisconnectedError", async () => {
  await withDaemon(async (daemon) => {
    daemon.handle("reload", () => new Promise(() => undefined));
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    const closed: (Error | undefined)[] = [];
    client.onClose((reason) => closed.push(reason));
    const reload = client.request("reload", {});
    await daemon.waitForRequests("reload");
    daemon.dropConnections();
    await assert.rejects(reload, DisconnectedError);
    assert.equal(closed.length, 1);
    assert.ok(closed[0] instanceof DisconnectedError);
    await assert.rejects(client.request("status", {}), DisconnectedError);
  });
});

test("notifications get no answer", async () => {
  await withDaemon(async (daemon) => {
    const { client } = await DaemonClient.connectAndInitialize(daemon.socketPath, CLIENT);
    try {
      client.notify("didSave", { paths: ["/a/src/lib.rs"] });
      await daemon.waitForRequests("didSave");
      assert.equal(daemon.received.at(-1)?.message.kind, "notification");
      // The next request's answer is the first line the client reads after the notification.
      assert.equal((await client.request("cancelBuild", {})).cancelled, false);
    } finally {
      client.close();
    }
  });
});

// ---- DaemonConnection ------------------------------------------------------------------------

const FAST = { initialMs: 20, maxMs: 80 };

function recordStates(connection: DaemonConnection): ConnectionState[] {
  const states: ConnectionState[] = [];
  connection.onState((state) => states.push(state));
  return states;
}

test("backoff doubles from the first wait up to the longest", () => {
  const backoff = { initialMs: 250, maxMs: 4000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((failures) => backoffDelay(backoff, failures)),
    [250, 500, 1000, 2000, 4000, 4000, 4000],
  );
});

test("without a daemon the connection retries with growing waits, then connects when one appears", async () => {
  const endpoint = socketPath();
  const connection = new DaemonConnection({ endpoint, client: CLIENT, backoff: FAST });
  const states = recordStates(connection);
  connection.start();
  try {
    await waitFor(() => states.filter((state) => state.kind === "noDaemon").length >= 3, { what: "three failed attempts" });
    const waits = states.flatMap((state) => (state.kind === "noDaemon" ? [state.retryInMs] : []));
    assert.deepEqual(waits.slice(0, 3), [20, 40, 80]);
    await assert.rejects(connection.request("status", {}), (error: unknown) => {
      assert.ok(error instanceof NotConnectedError);
      assert.match(error.message, /no hotswap daemon runs for this workspace \(nothing listens on .*d\d+\.sock\)/);
      return true;
    });
    const daemon = await FakeDaemon.listen(endpoint);
    try {
      await waitFor(() => connection.state.kind === "connected", { what: "connected" });
      await daemon.waitForSubscriber();
      // initialize came first, then subscribe.
      assert.deepEqual(
        daemon.received.map(({ message }) => message.request.method),
        ["initialize", "subscribe"],
      );
      assert.equal((await connection.request("status", {})).package, "app");
    } finally {
      connection.stop();
      await daemon.close();
    }
  } finally {
    connection.stop();
  }
});

test("a dropped connection is reported and re-established; events flow again", async () => {
  await withDaemon(async (daemon) => {
    const connection = new DaemonConnection({ endpoint: daemon.socketPath, client: CLIENT, backoff: FAST });
    const states = recordStates(connection);
    const events: DaemonEvent[] = [];
    connection.onEvent((event) => events.push(event));
    connection.start();
    try {
      await waitFor(() => connection.state.kind === "connected", { what: "connected" });
      await daemon.waitForSubscriber();
      daemon.dropConnections();
      await waitFor(() => states.some((state) => state.kind === "disconnected"), { what: "disconnected" });
      await waitFor(() => connection.state.kind === "connected" && daemon.connections.size === 1, { what: "reconnected" });
      await daemon.waitForSubscriber();
      daemon.emitSwap(1, []);
      await waitFor(() => events.length === 4, { what: "events after reconnecting" });
      assert.equal(daemon.requests("initialize").length, 2);
      assert.equal(daemon.requests("subscribe").length, 2);
    } finally {
      connection.stop();
    }
    assert.equal(connection.state.kind, "stopped");
  });
});

test("an incompatible daemon is a state of its own and is retried at the longest wait", async () => {
  await withDaemon(
    async (daemon) => {
      const connection = new DaemonConnection({ endpoint: daemon.socketPath, client: CLIENT, backoff: FAST });
      connection.start();
      try {
        await waitFor(() => connection.state.kind === "incompatible", { what: "incompatible" });
        const state = connection.state;
        assert.ok(state.kind === "incompatible");
        assert.equal(state.retryInMs, FAST.maxMs);
        assert.match(state.reason, /protocol version 1 is not supported; this daemon speaks 2/);
      } finally {
        connection.stop();
      }
    },
    { protocolVersion: 2 },
  );
});

test("retryNow connects at once instead of waiting for the backoff", async () => {
  const endpoint = socketPath();
  const connection = new DaemonConnection({ endpoint, client: CLIENT, backoff: { initialMs: 60_000, maxMs: 60_000 } });
  connection.start();
  try {
    await waitFor(() => connection.state.kind === "noDaemon", { what: "no daemon" });
    const daemon = await FakeDaemon.listen(endpoint);
    try {
      connection.retryNow();
      await waitFor(() => connection.state.kind === "connected", { what: "connected without waiting a minute", timeoutMs: 2000 });
    } finally {
      connection.stop();
      await daemon.close();
    }
  } finally {
    connection.stop();
  }
});
