// Where the tests find the repository's files, and private temporary folders for each test.

import { mkdtemp, realpath, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

/** `vscode-extension/` (the tests run compiled from `out/test/...` or `out/e2e`). */
export const EXTENSION_ROOT = path.resolve(__dirname, "..", "..", "..");
export const REPOSITORY_ROOT = path.resolve(EXTENSION_ROOT, "..");
export const VECTORS = path.join(REPOSITORY_ROOT, "protocol", "vectors");

/** A new empty folder (canonical path) that `cleanup` removes. */
export async function temporaryDirectory(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  // Short paths: a Unix socket path must fit in 107 bytes.
  const directory = await realpath(await mkdtemp(path.join(os.tmpdir(), `hs-${prefix}-`)));
  return { path: directory, cleanup: () => rm(directory, { recursive: true, force: true }) };
}
