#!/usr/bin/env bash
# The hotswap demo: build hotswap, create an app with `hotswap new`, serve it, change its code,
# and watch the running server answer with the new code while its in-memory counter survives.
#
#   scripts/demo.sh            runs the demo, then keeps serving until Ctrl-C (when run in a terminal)
#   scripts/demo.sh --once     runs the demo and stops (what CI runs)
#
# The first build compiles the app's dependencies (about a minute on 2 cores); every swap after
# that takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$PWD

once=0
case "${1:-}" in
  "") [ -t 1 ] || once=1 ;;
  --once) once=1 ;;
  *) echo "usage: $0 [--once]" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# One HTTP request with bash alone (no curl needed): prints the response's body, or with
# `--header NAME` that header's line instead.
http() {
  local method=$1 path=$2 header=${4:-}
  [ "${3:-}" = --header ] || header=""
  printf '> %s %s%s\n' "$method" "$url" "$path"
  exec 3<>"/dev/tcp/${address%:*}/${address##*:}"
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' \
    "$method" "$path" "$address" >&3
  local response
  response=$(cat <&3)
  exec 3<&-
  if [ -n "$header" ]; then
    printf '%s\n' "$response" | tr -d '\r' | grep -i "^$header:"
  else
    printf '%s\n' "${response#*$'\r\n\r\n'}"
  fi
}

say "Building hotswap"
cargo build --quiet -p hotswap-daemon --bin hotswap
hotswap="$repository/target/debug/hotswap"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/hotswap-demo.XXXXXX")"
app="$workdir/demo-app"
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    "$hotswap" --workspace "$app" stop >/dev/null 2>&1 || kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

say "1. Create an app (a cdylib handler crate and its hotswap.toml)"
run "$hotswap" new "$app" --listen 127.0.0.1:0
cd "$app"

say "2. Serve it: hotswap builds the handler, loads it, and owns the HTTP socket"
printf '$ hotswap serve &    (log: %s)\n' "$workdir/serve.log"
"$hotswap" serve >"$workdir/serve.log" 2>&1 &
daemon_pid=$!
until "$hotswap" status >/dev/null 2>&1; do
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$workdir/serve.log"; exit 1; }
  sleep 0.2
done
printf 'waiting for the first build'
until "$hotswap" status --json | grep -q '"currentGeneration"'; do
  kill -0 "$daemon_pid" 2>/dev/null || { echo; cat "$workdir/serve.log"; exit 1; }
  if "$hotswap" status --json | grep -q '"outcome": "failed"'; then echo; cat "$workdir/serve.log"; exit 1; fi
  printf '.'
  sleep 1
done
echo
address="$("$hotswap" status --json | sed -n 's/.*"listenAddress": "\(.*\)".*/\1/p')"
url="http://$address"

say "3. Talk to it, and put something in its memory"
http GET /
http POST /counter
http POST /counter

say "4. Change the code (as your editor would) and save"
run sed -i 's/hello from hotswap\\n/hello from hotswap, now with new code!\\n/' src/lib.rs
run "$hotswap" reload

say "5. The same server answers with the new code, and the counter is still there"
http GET /
http GET /counter
http GET / --header hotswap-generation

say "6. What the daemon saw"
run "$hotswap" status

if [ "$once" = 1 ]; then
  say "Done: the demo app is stopped and removed."
  exit 0
fi
say "The app keeps running at $url"
cat <<TEXT
Edit $app/src/lib.rs and save it, then run
  $hotswap --workspace $app save $app/src/lib.rs
(or open it in an editor with the hotswap extension or hotswap-lsp), and reload $url.
Watch the daemon with: $hotswap --workspace $app events
Press Ctrl-C to stop.
TEXT
wait "$daemon_pid"
