// The default save globs as package.json declares them, so that tests check what users get.

import { readFileSync } from "node:fs";
import * as path from "node:path";

import { EXTENSION_ROOT } from "./paths";

interface Manifest {
  contributes: { configuration: { properties: Record<string, { default: unknown }> } };
}

const manifest = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, "package.json"), "utf8")) as Manifest;
const properties = manifest.contributes.configuration.properties;

export const DEFAULT_INCLUDE_FOR_TESTS = {
  include: properties["hotswap.include"]?.default as string[],
  exclude: properties["hotswap.exclude"]?.default as string[],
};
