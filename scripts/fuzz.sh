#!/usr/bin/env bash
# Fuzzes the protocol's decoders and line framer with cargo-fuzz (libFuzzer, AddressSanitizer):
# `decode_client_message`, `decode_daemon_message` and `line_framer` from protocol/fuzz/.
#
#   scripts/fuzz.sh [SECONDS]    # the whole run's budget, shared by the three targets; default 300
#
# cargo-fuzz needs nightly-only rustc flags; this uses the stable toolchain with
# RUSTC_BOOTSTRAP=1 (stable ships the sanitizer runtimes). It installs cargo-fuzz from crates.io
# when missing (`cargo install cargo-fuzz --locked`, about a minute), seeds each corpus from
# protocol/vectors/, and exits non-zero with the crashing input's path if a target fails.
# Memory per target is capped at 2 GiB and inputs at 11 MiB (a 10 MiB line fits).
# The same checks run over a deterministic corpus in `cargo test` (tests/tests/reliability_protocol.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$PWD
seconds=${1:-300}
targets=(decode_client_message decode_daemon_message line_framer)
per_target=$((seconds / ${#targets[@]}))
if [ "$per_target" -lt 1 ]; then
    per_target=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cd protocol/fuzz
echo "==> building the fuzz targets (release, AddressSanitizer)"
cargo fuzz build -O

# Seeds: every line of the golden vectors, as the decoders see them (one message per file).
write_seeds() {
    local target=$1 corpus=$2
    mkdir -p "$corpus"
    local index=0
    while IFS= read -r line; do
        index=$((index + 1))
        case "$target" in
            line_framer) printf '\x10\x07%s\n%s\r\n\n' "$line" "$line" >"$corpus/vector-$index" ;;
            *) printf '%s' "$line" >"$corpus/vector-$index" ;;
        esac
    done < <(cat "$repository"/protocol/vectors/messages.jsonl "$repository"/protocol/vectors/errors.jsonl)
}

failed=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    write_seeds "$target" "$corpus"
    echo "==> fuzzing $target for $per_target s"
    if ! cargo fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$per_target" -rss_limit_mb=2048 -max_len=11534336 -timeout=10 \
        -print_final_stats=1 2>&1 | tail -n 25; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "==> fuzzing failed: ${failed[*]}; crashing inputs are in $repository/protocol/fuzz/artifacts/" >&2
    exit 1
fi
echo "==> fuzzing found nothing in $seconds s"
