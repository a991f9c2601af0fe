// Drives headless Chromium for hotswap's Rust tests and benchmark: one JSON command per line on
// standard input, one JSON answer per line on standard output ({"id", "ok", "result"|"error"}).
// Run by tests/src/browser.rs with NODE_PATH pointing at the playwright-core that
// scripts/browser-e2e-setup.sh installs (cached in ~/.cache/hotswap-e2e), and Debian's Chromium.
//
// Commands (each has an "id"): launch {userDataDir}, open {page, url}, evaluate {page, expression},
// waitFor {page, expression, timeoutMs} (polls every 10 ms through navigations; the answer is the
// first truthy value), console {page}, loads {page}, screenshot {page, path}, close {page}, quit.
import { createInterface } from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.HOTSWAP_CHROMIUM || "/usr/bin/chromium";
let browser = null;
let context = null;
const pages = new Map();

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function pageOf(name) {
  const entry = pages.get(name);
  if (!entry) throw new Error(`no page ${JSON.stringify(name)}`);
  return entry;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const commands = {
  async launch({ userDataDir }) {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1100, height: 760 },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // Background tabs must keep their timers: several tabs are tested at once.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
      ],
    });
    browser = context;
    return { version: context.browser() ? context.browser().version() : "persistent" };
  },

  async open({ page: name, url }) {
    const page = await context.newPage();
    const entry = { page, console: [], loads: 0 };
    page.on("console", (message) => entry.console.push({ type: message.type(), text: message.text() }));
    page.on("pageerror", (error) => entry.console.push({ type: "pageerror", text: String(error) }));
    page.on("load", () => (entry.loads += 1));
    pages.set(name, entry);
    await page.goto(url, { waitUntil: "load" });
    return { loads: entry.loads };
  },

  async evaluate({ page, expression }) {
    return await pageOf(page).page.evaluate(expression);
  },

  async waitFor({ page, expression, timeoutMs }) {
    const entry = pageOf(page);
    const deadline = Date.now() + (timeoutMs ?? 10000);
    let lastError = null;
    for (;;) {
      try {
        const value = await entry.page.evaluate(expression);
        if (value) return value;
        lastError = null;
      } catch (error) {
        // A navigation (a reload) destroys the context the expression ran in: try again.
        lastError = error;
      }
      if (Date.now() > deadline) {
        const why = lastError ? ` (last error: ${lastError.message})` : "";
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression}${why}`);
      }
      await sleep(10);
    }
  },

  async console({ page }) {
    return pageOf(page).console;
  },

  async loads({ page }) {
    return pageOf(page).loads;
  },

  async screenshot({ page, path }) {
    await pageOf(page).page.screenshot({ path });
    return path;
  },

  async close({ page }) {
    await pageOf(page).page.close();
    pages.delete(page);
    return null;
  },

  async quit() {
    if (browser) await browser.close();
    browser = null;
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
    } catch (error) {
      send({ id: null, ok: false, error: `not JSON: ${error.message}` });
      return;
    }
    const run = commands[command.op];
    if (!run) {
      send({ id: command.id, ok: false, error: `unknown op ${JSON.stringify(command.op)}` });
      return;
    }
    try {
      const result = await run(command);
      send({ id: command.id, ok: true, result: result === undefined ? null : result });
    } catch (error) {
      send({ id: command.id, ok: false, error: String(error && error.stack ? error.stack : error) });
    }
    if (command.op === "quit") process.exit(0);
  });
});
lines.on("close", async () => {
  await queue;
  if (browser) await browser.close().catch(() => {});
  process.exit(0);
});
