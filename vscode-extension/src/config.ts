// The extension's settings (`hotswap.*`), read once into a typed object. A setting of the wrong
// type falls back to its default and is reported, so a typo in settings.json never breaks saving.

import * as vscode from "vscode";

export const SECTION = "hotswap";

export interface Config {
  enable: boolean;
  include: string[];
  exclude: string[];
  /** Empty: derive the endpoint from the workspace root. */
  socket: string;
  daemonPath: string;
  autoStart: boolean;
  diagnostics: boolean;
}

export const DEFAULT_CONFIG: Readonly<Config> = {
  enable: true,
  include: ["**/*.rs", "**/Cargo.toml", "**/Cargo.lock", "**/assets/**", "**/static/**", "**/public/**", "**/templates/**"],
  exclude: ["**/target/**"],
  socket: "",
  daemonPath: "hotswap",
  autoStart: false,
  diagnostics: true,
};

export interface ReadConfig {
  config: Config;
  /** Settings that had the wrong type, with what was used instead. */
  problems: string[];
}

export function readConfig(): ReadConfig {
  const settings = vscode.workspace.getConfiguration(SECTION);
  const problems: string[] = [];
  function read<T>(key: string, fallback: T, accepts: (value: unknown) => value is T): T {
    const value = settings.get<unknown>(key);
    if (value === undefined) return fallback;
    if (accepts(value)) return value;
    problems.push(`${SECTION}.${key} should be ${describe(fallback)}, not ${JSON.stringify(value)}; using ${JSON.stringify(fallback)}`);
    return fallback;
  }
  const isBoolean = (value: unknown): value is boolean => typeof value === "boolean";
  const isString = (value: unknown): value is string => typeof value === "string";
  const isStrings = (value: unknown): value is string[] => Array.isArray(value) && value.every(isString);
  return {
    config: {
      enable: read("enable", DEFAULT_CONFIG.enable, isBoolean),
      include: read("include", [...DEFAULT_CONFIG.include], isStrings),
      exclude: read("exclude", [...DEFAULT_CONFIG.exclude], isStrings),
      socket: read("socket", DEFAULT_CONFIG.socket, isString).trim(),
      daemonPath: read("daemon.path", DEFAULT_CONFIG.daemonPath, isString).trim() || DEFAULT_CONFIG.daemonPath,
      autoStart: read("daemon.autoStart", DEFAULT_CONFIG.autoStart, isBoolean),
      diagnostics: read("diagnostics.enable", DEFAULT_CONFIG.diagnostics, isBoolean),
    },
    problems,
  };
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "a list of strings";
  return `a ${typeof value}`;
}
