// Running the real `hotswap` binary in tests: found through `HOTSWAP_BIN` (these tests fail, not
// skip, without it), an app scaffolded with `hotswap new`, `hotswap serve` on a free loopback port
// with a private socket directory, and small HTTP helpers to ask the app what code it runs.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, mkdir, readFile } from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import { promisify } from "node:util";

import { DaemonClient, NoDaemonError } from "../../src/client";
import type { InitializeResult } from "../../src/protocol";

const execFileAsync = promisify(execFile);

/** The text the scaffold's `GET /` answers with. */
export const SCAFFOLD_GREETING = "hello from hotswap";

/**
 * The path of the real daemon binary from `HOTSWAP_BIN`. Throws with what to do when it is unset
 * or wrong, so a test run without the daemon fails loudly instead of passing silently.
 */
export async function hotswapBinary(): Promise<string> {
  const binary = process.env["HOTSWAP_BIN"];
  if (binary === undefined || binary === "") {
    throw new Error(
      "HOTSWAP_BIN is not set. These tests run the real hotswap daemon: build it with " +
        "`cargo build -p hotswap-daemon` and run them with HOTSWAP_BIN=<repository>/target/debug/hotswap " +
        "(scripts/vscode-test.sh does both). `npm run test:unit` runs only the tests that need no daemon.",
    );
  }
  const resolved = path.resolve(binary);
  try {
    await access(resolved, fsConstants.X_OK);
  } catch (error) {
    throw new Error(`HOTSWAP_BIN=${binary} is not an executable file; build it with \`cargo build -p hotswap-daemon\``, {
      cause: error,
    });
  }
  return resolved;
}

/** Runs a `hotswap` subcommand to completion; the error carries its output. */
export async function runHotswap(
  binary: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(binary, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const failure = error as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `\`hotswap ${args.join(" ")}\` failed: ${failure.message}\nstdout:\n${failure.stdout ?? ""}\nstderr:\n${failure.stderr ?? ""}`,
      { cause: error },
    );
  }
}

/** Scaffolds an app with `hotswap new` and checks that it looks as the tests expect. */
export async function scaffoldApp(binary: string, directory: string, env: NodeJS.ProcessEnv): Promise<string> {
  await runHotswap(binary, ["new", directory], { env });
  const libRs = path.join(directory, "src", "lib.rs");
  const source = await readFile(libRs, "utf8");
  if (!source.includes(SCAFFOLD_GREETING)) {
    throw new Error(`the scaffold's src/lib.rs should contain "${SCAFFOLD_GREETING}" (its GET / answer); it is:\n${source}`);
  }
  await access(path.join(directory, "hotswap.toml"));
  return libRs;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  return address.port;
}

/** An environment whose socket directory is private to the test. */
export async function privateEnvironment(runtimeDir: string): Promise<NodeJS.ProcessEnv> {
  await mkdir(runtimeDir, { recursive: true, mode: 0o700 });
  return { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
}

export class ServeProcess {
  private output = "";
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on("data", (data: Buffer) => (this.output += data.toString("utf8")));
    child.stderr?.on("data", (data: Buffer) => (this.output += data.toString("utf8")));
    this.exited = new Promise((resolve) => child.once("exit", (code) => { resolve(code); }));
  }

  /** `hotswap serve --workspace APP --listen 127.0.0.1:PORT`. */
  static start(binary: string, app: string, listen: string, env: NodeJS.ProcessEnv): ServeProcess {
    return new ServeProcess(
      spawn(binary, ["serve", "--workspace", app, "--listen", listen], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the daemon printed, for failure messages. */
  get log(): string {
    return this.output;
  }

  /**
   * Waits until the daemon answers `initialize` on `endpoint`. Fails at once when the daemon
   * exits, with its output.
   */
  async waitUntilServing(endpoint: string, client: { name: string }, timeoutMs: number): Promise<InitializeResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`hotswap serve exited with ${String(this.child.exitCode ?? this.child.signalCode)}:\n${this.output}`);
      try {
        const { client: connection, info } = await DaemonClient.connectAndInitialize(endpoint, client);
        connection.close();
        return info;
      } catch (error) {
        if (!(error instanceof NoDaemonError)) throw error;
      }
      if (Date.now() > deadline) throw new Error(`hotswap serve did not listen on ${endpoint} within ${timeoutMs} ms:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /**
   * Waits until a generation serves (the start-up build can take minutes) and returns its number.
   * Fails at once, with the daemon's output, when that build fails, the swap is refused, or the
   * daemon exits.
   */
  async waitForFirstGeneration(endpoint: string, timeoutMs: number): Promise<number> {
    const { client, info } = await DaemonClient.connectAndInitialize(endpoint, { name: "test-first-generation" });
    try {
      let failure: string | undefined;
      let generation = info.generation;
      client.onEvent((event) => {
        if (event.method === "swapFinished") generation ??= event.params.generation;
        if (event.method === "swapFailed") failure = `the swap was refused at stage ${event.params.stage}: ${event.params.message}`;
        if (event.method === "buildFinished" && event.params.outcome === "failed") {
          failure = `the build failed:\n${event.params.diagnostics.map((diagnostic) => diagnostic.rendered ?? diagnostic.message).join("\n")}`;
        }
      });
      await client.request("subscribe", {});
      // The generation may have started serving between initialize and subscribe.
      generation ??= (await client.request("status", {})).currentGeneration;
      const deadline = Date.now() + timeoutMs;
      while (generation === undefined) {
        if (failure !== undefined) throw new Error(`no generation serves: ${failure}\n--- daemon output ---\n${this.output}`);
        if (!this.running) throw new Error(`hotswap serve exited:\n${this.output}`);
        if (Date.now() > deadline) throw new Error(`no generation serves after ${timeoutMs} ms:\n${this.output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return generation;
    } finally {
      client.close();
    }
  }

  /** Ends the daemon if it still runs (SIGTERM, then SIGKILL after 10 s). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One HTTP request on a new connection (no keep-alive, so each request meets the current code). */
export function httpRequest(address: string, method: string, requestPath: string): Promise<HttpAnswer> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method, path: requestPath, agent: false, timeout: 10_000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => { resolve({ status: response.statusCode ?? 0, body }); });
    });
    request.on("timeout", () => request.destroy(new Error(`${method} ${requestPath} timed out`)));
    request.on("error", reject);
    request.end();
  });
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon).replace(/^\[|\]$/g, ""), Number(address.slice(colon + 1))];
}

/** The first integer in a body (the scaffold's counter answers with its value). */
export function firstInteger(body: string): number {
  const match = /-?\d+/.exec(body);
  if (match === null) throw new Error(`expected a number in the answer, got ${JSON.stringify(body)}`);
  return Number(match[0]);
}
