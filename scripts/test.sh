#!/usr/bin/env bash
# Runs every test of hotswap: formatting and lints, the Rust workspace (unit tests, in-process
# tests, end-to-end tests with the real binaries, real cargo builds, real neovim/Emacs and pages
# in headless Chromium), the language server against the real daemon, and the VS Code extension
# (unit tests and real VS Code in headless Chromium). Installs what the tests need first
# (editors, code-server, Chromium, playwright-core; cached in ~/.cache/hotswap-e2e, so later runs
# skip it). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "install the editors the tests drive (neovim 0.7 and 0.11, Emacs with eglot)"
lsp/scripts/install-editors.sh

step "install Chromium and playwright-core for the browser tests (live reload)"
scripts/browser-e2e-setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check
(cd examples && cargo fmt --all -- --check)
(cd tests/fixtures && cargo fmt --all -- --check)
rustfmt --edition 2024 --check protocol/fuzz/fuzz_targets/*.rs

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p hotswap-lsp --all-targets --features real-daemon-tests --locked -- -D warnings
cargo clippy -p hotswap-handler --all-targets --all-features --locked -- -D warnings
(cd examples && cargo clippy --workspace --locked -- -D warnings)

step "cargo build (the hotswap and hotswap-lsp binaries)"
cargo build --workspace --bins --locked
export HOTSWAP_BIN="$repository/target/debug/hotswap"

step "cargo test --workspace"
cargo test --workspace --locked

step "hotswap-handler with every feature (the axum adapter)"
cargo test -p hotswap-handler --all-features --locked

step "hotswap-lsp in neovim and Emacs against the real daemon"
cargo test -p hotswap-lsp --features real-daemon-tests --locked real_daemon

step "the VS Code extension"
scripts/vscode-test.sh

step "all tests passed"
