#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from a corpus made of the committed
# seeds and, for the message parser, the RFC 4475 torture messages read in place from
# ../shared. A fixed seed makes a CI run repeatable locally (rm -rf fuzz/corpus first).
# Fails on the first crash; the crashing input is left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/switchboard-fuzz-target}"
rfc4475="../../shared/testdata/rfc4475"
for target in sip_message sdp digest_header; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  cp seeds/"$target"/* "$corpus"/
  if [ "$target" = sip_message ] && [ -d "$rfc4475" ]; then
    cp "$rfc4475"/*.dat "$corpus"/
  fi
  echo "==> fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -seed=1 -max_len=65536 -timeout=10 -print_final_stats=1
done
