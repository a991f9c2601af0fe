// Which saved files are sent to the daemon: include and exclude globs from the settings, matched
// against the path relative to the workspace folder, and which app (folder with a `hotswap.toml`)
// a file belongs to. No `vscode` import.

import * as path from "node:path";

import picomatch from "picomatch";

export class SaveFilter {
  private readonly included: (path: string) => boolean;
  private readonly excluded: (path: string) => boolean;

  constructor(
    readonly include: readonly string[],
    readonly exclude: readonly string[],
  ) {
    const options: picomatch.PicomatchOptions = { dot: true };
    const compile = (globs: readonly string[]) => {
      if (globs.length === 0) return () => false;
      const matcher = picomatch([...globs], options);
      return (file: string) => matcher(file);
    };
    this.included = compile(include);
    this.excluded = compile(exclude);
  }

  /** True when `relativePath` (from the workspace folder, `/` or `\` separated) should be sent. */
  matches(relativePath: string): boolean {
    const normalized = relativePath.split(path.sep).join("/").replace(/\\/g, "/");
    return this.included(normalized) && !this.excluded(normalized);
  }
}

/** True when `file` is `folder` or lies below it. */
export function isInside(folder: string, file: string): boolean {
  const relative = path.relative(folder, file);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/** The app a saved file belongs to: the deepest app root that contains it. */
export function appRootFor(appRoots: readonly string[], file: string): string | undefined {
  let best: string | undefined;
  for (const root of appRoots) {
    if (isInside(root, file) && (best === undefined || root.length > best.length)) best = root;
  }
  return best;
}
