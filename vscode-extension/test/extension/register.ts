// Makes `require("vscode")` load the fake `vscode` module, for code that runs outside VS Code.
// Import this before loading the extension bundle.

import Module from "node:module";
import * as path from "node:path";

const fake = path.join(__dirname, "fakeVscode.js");
type Resolve = (request: string, ...rest: unknown[]) => string;
const moduleWithResolver = Module as unknown as { _resolveFilename: Resolve };
const original = moduleWithResolver._resolveFilename;
moduleWithResolver._resolveFilename = function resolveVscode(this: unknown, request: string, ...rest: unknown[]): string {
  if (request === "vscode") return fake;
  return original.call(this, request, ...rest);
};
