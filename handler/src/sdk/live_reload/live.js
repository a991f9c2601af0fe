// hotswap live reload: the page follows the saves. Served by the hotswap SDK at
// /__hotswap/live.js while `hotswap serve` runs with [browser] live_reload (the default); never in
// a standalone (production) build. It reads /__hotswap/events (Server-Sent Events) and
// - reloads the page after a swap (a new generation serves),
// - swaps a saved stylesheet in place (the page keeps its scroll, its form input, its scripts),
//   and reloads for any other saved asset,
// - shows the compiler's errors, a refused swap or a crash over the page until the next swap,
// - reconnects with backoff when the server goes, and says so once,
// - lets go of its connection while the tab is hidden (a browser gives a site six connections,
//   and each open tab would hold one), and catches up when it is shown again.
(() => {
  "use strict";
  if (window.__hotswapLiveReload) return;
  const script = document.currentScript;
  const servedBy = Number("__HOTSWAP_GENERATION__");
  const tagged = script && script.dataset ? script.dataset.hotswapGeneration : undefined;
  const pageGeneration = tagged ? Number(tagged) : servedBy;
  const eventsUrl = new URL("/__hotswap/events", script && script.src ? script.src : location.href);
  eventsUrl.searchParams.set("generation", String(pageGeneration));

  const state = {
    pageGeneration,
    daemon: null,
    connected: false,
    failures: 0,
    unloading: false,
    notified: false,
    controller: null,
    cssSwaps: 0,
    suspended: false,
    catchUp: false,
  };
  window.__hotswapLiveReload = state;
  window.addEventListener("pagehide", () => {
    state.unloading = true;
    if (state.controller) state.controller.abort();
  });

  const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000, 15000, 30000];
  const HIDDEN_GRACE_MS = 1000;
  let hiddenTimer = null;

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      if (hiddenTimer === null && !state.suspended) {
        hiddenTimer = setTimeout(() => {
          hiddenTimer = null;
          state.suspended = true;
          if (state.controller) state.controller.abort();
        }, HIDDEN_GRACE_MS);
      }
      return;
    }
    if (hiddenTimer !== null) {
      clearTimeout(hiddenTimer);
      hiddenTimer = null;
    }
    if (state.suspended) {
      // What happened meanwhile: the server says whether to reload or show an error; saved
      // stylesheets are fetched again, in place.
      state.suspended = false;
      state.catchUp = true;
      connect();
    }
  });

  function connect() {
    if (state.unloading || state.suspended) return;
    const controller = new AbortController();
    state.controller = controller;
    let opened = false;
    let answered = false;
    fetch(eventsUrl, { cache: "no-store", signal: controller.signal, headers: { accept: "text/event-stream" } })
      .then((response) => {
        answered = true;
        // A 503 while nothing serves (the first build, a crash): try again later.
        if (!response.ok || !response.body) return undefined;
        opened = true;
        return readEvents(response.body.getReader());
      })
      .catch(() => {})
      .then(() => {
        state.connected = false;
        if (state.unloading || state.suspended) return;
        if (opened) {
          // The stream ended (a swap, or the server stopping): try again at once.
          state.failures = 0;
        } else {
          state.failures += 1;
          // Nothing answers at all: the server is gone. Said once until it is back.
          if (!answered) tellStopped();
        }
        const delay = RETRY_DELAYS_MS[Math.min(state.failures, RETRY_DELAYS_MS.length - 1)];
        setTimeout(connect, opened ? RETRY_DELAYS_MS[0] : delay);
      });
  }

  async function readEvents(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length > 0) handle(name, JSON.parse(data.join("\n")));
      }
    }
  }

  function handle(name, data) {
    switch (name) {
      case "hello":
        if (state.daemon !== null && state.daemon !== data.daemon) {
          // Another `hotswap serve`: its generations are numbered anew.
          reload();
          return;
        }
        state.daemon = data.daemon;
        state.connected = true;
        state.failures = 0;
        if (state.catchUp) {
          state.catchUp = false;
          const links = Array.from(document.querySelectorAll('link[rel~="stylesheet"][href]'));
          for (const link of links) {
            if (new URL(link.href, location.href).origin === location.origin) swapStylesheet(link);
          }
        }
        if (state.notified) {
          state.notified = false;
          removeNotice();
        }
        return;
      case "reload":
        reload();
        return;
      case "assets":
        assetsChanged(data.files || []);
        return;
      case "build-failed":
        showOverlay("build", "Build failed", `generation ${data.generation} keeps serving this page; the next successful build replaces it`, data.errors || []);
        return;
      case "build-ok":
        hideOverlay("build");
        return;
      case "swap-failed":
        showOverlay("swap", `Generation ${data.generation} was refused at the ${data.stage} stage`, "the current generation keeps serving", [{ location: null, message: data.message, rendered: null }]);
        return;
      case "crashed":
        showOverlay("crash", "The generation that served this page crashed", "reload to see the page from the code that serves now", [{ location: null, message: data.message, rendered: null }]);
        return;
    }
  }

  function reload() {
    if (state.unloading) return;
    state.unloading = true;
    if (state.controller) state.controller.abort();
    location.reload();
  }

  // ---- Stylesheets ---------------------------------------------------------------------------

  function endsWithPath(pathname, relativePath) {
    let decoded = pathname;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      // Keep it as it is.
    }
    return decoded === "/" + relativePath || decoded.endsWith("/" + relativePath) || decoded === relativePath;
  }

  function assetsChanged(files) {
    const links = Array.from(document.querySelectorAll('link[rel~="stylesheet"][href]'));
    const swaps = [];
    for (const file of files) {
      const relativePath = String(file.relativePath || "");
      if (!/\.css$/i.test(relativePath)) {
        reload();
        return;
      }
      const matching = links.filter((link) => {
        const url = new URL(link.href, location.href);
        return url.origin === location.origin && endsWithPath(url.pathname, relativePath);
      });
      if (matching.length === 0) {
        // Not linked by this page (imported by another stylesheet, or another page's): reload.
        reload();
        return;
      }
      swaps.push(...matching);
    }
    for (const link of new Set(swaps)) swapStylesheet(link);
  }

  function swapStylesheet(link) {
    const url = new URL(link.href, location.href);
    url.searchParams.set("hotswap", String(Date.now()));
    const fresh = link.cloneNode(false);
    fresh.href = url.href;
    fresh.addEventListener("load", () => {
      link.remove();
      state.cssSwaps += 1;
    }, { once: true });
    fresh.addEventListener("error", () => fresh.remove(), { once: true });
    link.after(fresh);
  }

  // ---- Overlay and notice ----------------------------------------------------------------------

  const OVERLAY_STYLE = `
    :host { all: initial; }
    .backdrop { position: fixed; inset: 0; z-index: 2147483647; background: rgba(20, 20, 24, 0.72);
      display: flex; align-items: flex-start; justify-content: center; overflow: auto;
      font: 14px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
    .panel { margin: 48px 16px; max-width: 960px; width: calc(100% - 32px); background: #1d1f23;
      color: #e8e8e8; border-top: 6px solid #ff5555; border-radius: 6px; padding: 20px 24px;
      box-shadow: 0 12px 40px rgba(0, 0, 0, 0.5); }
    h1 { font-size: 17px; margin: 0 0 4px; color: #ff7b72; }
    .note { margin: 0 0 16px; color: #a0a0a8; }
    .item { margin: 14px 0 0; }
    .location { color: #79c0ff; font-weight: bold; }
    .message { color: #ffffff; white-space: pre-wrap; }
    pre { margin: 6px 0 0; padding: 10px 12px; background: #111214; color: #e6e6e6; border-radius: 4px;
      overflow: auto; white-space: pre; }
    button { float: right; background: none; border: 0; color: #a0a0a8; font-size: 20px; cursor: pointer; }
    .brand { color: #a0a0a8; font-size: 12px; margin: 16px 0 0; }`;

  let overlay = null;

  function showOverlay(kind, title, note, items) {
    hideOverlay();
    const host = document.createElement("hotswap-overlay");
    host.dataset.kind = kind;
    const root = host.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = OVERLAY_STYLE;
    const backdrop = element("div", "backdrop");
    const panel = element("div", "panel");
    const close = element("button", null, "×");
    close.title = "Hide (the next swap shows the page anew)";
    close.addEventListener("click", () => hideOverlay());
    panel.append(close, element("h1", null, title), element("p", "note", note));
    for (const item of items) {
      const entry = element("div", "item");
      if (item.location) entry.append(element("span", "location", item.location), document.createTextNode(" "));
      entry.append(element("span", "message", item.message || ""));
      if (item.rendered) entry.append(element("pre", null, item.rendered));
      panel.append(entry);
    }
    panel.append(element("p", "brand", "hotswap"));
    backdrop.append(panel);
    root.append(style, backdrop);
    document.documentElement.append(host);
    overlay = host;
  }

  function hideOverlay(kind) {
    if (overlay && (kind === undefined || overlay.dataset.kind === kind)) {
      overlay.remove();
      overlay = null;
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  let notice = null;

  function tellStopped() {
    if (state.notified) return;
    state.notified = true;
    const message = "hotswap: the server does not answer (was `hotswap serve` stopped?); this page reconnects, and reloads, when it is back";
    console.warn(message);
    const host = document.createElement("hotswap-notice");
    const root = host.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = `:host { all: initial; } div { position: fixed; right: 12px; bottom: 12px; z-index: 2147483647;
      max-width: 420px; padding: 8px 12px; border-radius: 6px; background: #1d1f23; color: #e8e8e8;
      font: 13px/1.4 system-ui, sans-serif; box-shadow: 0 4px 16px rgba(0, 0, 0, 0.35); }`;
    root.append(style, element("div", null, message));
    document.documentElement.append(host);
    notice = host;
  }

  function removeNotice() {
    if (notice) {
      notice.remove();
      notice = null;
    }
  }

  connect();
})();
