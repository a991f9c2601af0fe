#!/usr/bin/env bash
# Runs every test of the VS Code extension (vscode-extension/): eslint, tsc, the unit and
# fake-vscode tests, the client against the real daemon, the .vsix packaging, and the end-to-end
# runs in real VS Code (code-server in headless Chromium), against a fake daemon and the real one.
#
#   scripts/vscode-test.sh                  everything; builds the daemon unless HOTSWAP_BIN is set
#   scripts/vscode-test.sh --without-daemon only what needs no hotswap binary
#
# Installs code-server, Node 24 and Chromium once (scripts/vscode-e2e-setup.sh, cached in
# ~/.cache/hotswap-e2e); screenshots land in vscode-extension/out/e2e-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$PWD

with_daemon=1
case "${1:-}" in
  "") ;;
  --without-daemon) with_daemon=0 ;;
  *) echo "usage: $0 [--without-daemon]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }

if [ "$with_daemon" = 1 ] && [ -z "${HOTSWAP_BIN:-}" ]; then
  step "cargo build -p hotswap-daemon"
  cargo build -p hotswap-daemon --locked
  export HOTSWAP_BIN="$repository/target/debug/hotswap"
fi

# The real daemon builds the app's dependencies as a shared library in the background, which
# takes a minute of both CPUs: these tests are about the editor, so it is off (tests/tests/
# direct_rustc.rs and tests/tests/examples.rs test it).
export HOTSWAP_SHARED_DEPS="${HOTSWAP_SHARED_DEPS:-0}"

step "scripts/vscode-e2e-setup.sh"
scripts/vscode-e2e-setup.sh

cd vscode-extension
step "npm ci"
npm ci --no-audit --no-fund
step "eslint"
npm run lint
step "tsc"
npm run typecheck

if [ "$with_daemon" = 1 ]; then
  step "npm test (vectors, client, fake-vscode, client against $HOTSWAP_BIN)"
  npm test
  step "npm run test:e2e (real VS Code against a fake daemon and the real one)"
  npm run test:e2e
else
  step "npm run test:unit (vectors, client, fake-vscode)"
  npm run test:unit
  step "npm run test:e2e:fake (real VS Code against a fake daemon)"
  npm run test:e2e:fake
fi

step "vscode-extension: all tests passed"
