#!/usr/bin/env bash
# Installs what the browser tests (live reload, tests/tests/live_reload.rs) and the benchmark's
# browser case need, once: Debian's Chromium and playwright-core from the npm registry, in the
# cache the other end-to-end tests use, ${HOTSWAP_E2E_CACHE:-~/.cache/hotswap-e2e}. A second
# run returns at once. tests/src/browser.rs looks in the same place.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION=1.64.1
cache="${HOTSWAP_E2E_CACHE:-$HOME/.cache/hotswap-e2e}"

step() { printf '\n==> %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x /usr/bin/chromium ]; then
  step "apt-get install chromium"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi
if ! command -v node >/dev/null; then
  step "apt-get install nodejs"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs
fi

playwright="$cache/playwright-core-$PLAYWRIGHT_CORE_VERSION"
if [ ! -f "$playwright/.complete" ]; then
  step "playwright-core $PLAYWRIGHT_CORE_VERSION (npm) into $playwright"
  rm -rf "$playwright" "$playwright.partial"
  mkdir -p "$cache"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$playwright.partial" --no-save --no-audit --no-fund \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION"
  mv "$playwright.partial" "$playwright"
  touch "$playwright/.complete"
fi
echo "playwright-core: $playwright/node_modules/playwright-core"
echo "chromium:        /usr/bin/chromium"
