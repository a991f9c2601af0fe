#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust workspace (unit, in-process and
# end-to-end tests with the real binaries). Safe to run again: installs are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "all tests passed"
