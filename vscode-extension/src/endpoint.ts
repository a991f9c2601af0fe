// Which socket the daemon of a workspace listens on: the same derivation as
// `protocol/src/endpoint.rs`, pinned by `protocol/vectors/endpoints.jsonl`.
//
// Unix: `<dir>/<name>-<hash>.sock`, `<dir>` = `$XDG_RUNTIME_DIR/hotswap` when that is absolute, else
// `<tmp>/hotswap-<uid>` (`<tmp>` = `$TMPDIR` or `/tmp`, as Rust's `std::env::temp_dir`). Windows:
// `\\.\pipe\hotswap-<name>-<hash>`. `<hash>` = first 16 hex digits of SHA-256 over the canonical
// root's UTF-8 bytes; `<name>` = the root's last component, characters outside `[A-Za-z0-9._-]`
// replaced by `_`, cut to 32 characters, `workspace` when empty. No `vscode` import.

import { createHash } from "node:crypto";
import { realpath } from "node:fs/promises";
import * as os from "node:os";

/** The facts of the environment the endpoint depends on, so that the derivation stays pure. */
export interface EndpointEnvironment {
  /** `$XDG_RUNTIME_DIR`, when set. */
  runtimeDir: string | null;
  /** The temporary directory: `$TMPDIR` when set, else `/tmp`. */
  tempDir: string;
  /** The effective user id (unused on Windows). */
  uid: number;
}

export type Platform = "unix" | "windows";

export function currentPlatform(): Platform {
  return process.platform === "win32" ? "windows" : "unix";
}

/** The environment of this process, read as the daemon reads its own. */
export function currentEnvironment(env: NodeJS.ProcessEnv = process.env): EndpointEnvironment {
  return {
    runtimeDir: env["XDG_RUNTIME_DIR"] ?? null,
    // Rust's `temp_dir()` on Unix is `$TMPDIR` if set (even when empty), else `/tmp`; Node's
    // `os.tmpdir()` would also look at `$TMP` and `$TEMP`, so it is not used here.
    tempDir: currentPlatform() === "windows" ? os.tmpdir() : (env["TMPDIR"] ?? "/tmp"),
    uid: typeof process.geteuid === "function" ? process.geteuid() : 0,
  };
}

/** `Path::join` on Unix: no doubled separator, and joining onto an empty path gives the child. */
function joinUnix(parent: string, child: string): string {
  if (parent === "") return child;
  return parent.endsWith("/") ? `${parent}${child}` : `${parent}/${child}`;
}

/** The directory that holds the sockets of all workspaces (Unix). */
export function socketDirectory(environment: EndpointEnvironment): string {
  const runtimeDir = environment.runtimeDir;
  if (runtimeDir !== null && runtimeDir.startsWith("/")) return joinUnix(runtimeDir, "hotswap");
  return joinUnix(environment.tempDir, `hotswap-${environment.uid}`);
}

/**
 * The last component of `root` as Rust's `Path::file_name` sees it: trailing separators and `.`
 * components do not count, and a path ending in `..` or naming only a root has none.
 */
export function lastComponent(root: string, platform: Platform = currentPlatform()): string | null {
  const separators = platform === "windows" ? /[\\/]/ : /\//;
  const components = root.split(separators).filter((component) => component !== "" && component !== ".");
  const last = components[components.length - 1];
  if (last === undefined || last === "..") return null;
  // A Windows drive prefix such as `C:` or a verbatim `?` is not a file name.
  if (platform === "windows" && components.length === 1 && /^(?:[A-Za-z]:|\?)$/.test(last)) return null;
  return last;
}

/** The root's last component, restricted to `[A-Za-z0-9._-]` and 32 characters. */
export function sanitizedName(root: string, platform: Platform = currentPlatform()): string {
  let name = "";
  let length = 0;
  // `for...of` walks Unicode code points, as Rust's `chars()` walks scalar values.
  for (const character of lastComponent(root, platform) ?? "") {
    if (length === 32) break;
    name += /^[A-Za-z0-9._-]$/.test(character) ? character : "_";
    length += 1;
  }
  return name === "" ? "workspace" : name;
}

/** The first 16 hex digits of the SHA-256 of the root's UTF-8 bytes. */
export function workspaceHash(root: string): string {
  return createHash("sha256").update(Buffer.from(root, "utf8")).digest("hex").slice(0, 16);
}

function endpointStem(root: string, platform: Platform): string {
  return `${sanitizedName(root, platform)}-${workspaceHash(root)}`;
}

/** The Unix socket path of the workspace at `canonicalRoot`. */
export function unixSocketPath(canonicalRoot: string, environment: EndpointEnvironment): string {
  return joinUnix(socketDirectory(environment), `${endpointStem(canonicalRoot, "unix")}.sock`);
}

/** The Windows named pipe of the workspace at `canonicalRoot`. */
export function windowsPipeName(canonicalRoot: string, platform: Platform = currentPlatform()): string {
  return `\\\\.\\pipe\\hotswap-${endpointStem(canonicalRoot, platform)}`;
}

/** The socket (Unix) or pipe (Windows) of the workspace at `canonicalRoot`. Pure. */
export function deriveEndpoint(
  canonicalRoot: string,
  environment: EndpointEnvironment,
  platform: Platform = currentPlatform(),
): string {
  return platform === "windows" ? windowsPipeName(canonicalRoot, platform) : unixSocketPath(canonicalRoot, environment);
}

/**
 * The canonical form of a workspace root, as the daemon computes it with Rust's
 * `fs::canonicalize`: absolute, symlinks resolved. On Windows that function returns a verbatim
 * path (`\\?\C:\...` or `\\?\UNC\server\share\...`), so the same prefix is added here.
 */
export async function canonicalWorkspaceRoot(root: string, platform: Platform = currentPlatform()): Promise<string> {
  const resolved = await realpath(root);
  if (platform !== "windows" || resolved.startsWith("\\\\?\\")) return resolved;
  if (resolved.startsWith("\\\\")) return `\\\\?\\UNC\\${resolved.slice(2)}`;
  return `\\\\?\\${resolved}`;
}
