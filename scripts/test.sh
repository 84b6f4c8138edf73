#!/usr/bin/env bash
# Ekko's whole test suite: formatting, lints, one release build, every Rust test, a short fuzz
# run of the device decoders, the
# getting-started conformance kit (real Python clients against the built binary), and the
# README's examples (examples/run.sh: curl, Python and Node against a live server).
#
#   ./scripts/test.sh            # from the repository root
#
# It installs what it needs (a Rust toolchain must be present; Python venv support is
# installed with apt-get when missing). The conformance kit lives in ../shared/conformance
# (override with EKKO_CONFORMANCE=/path/to/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
step() { printf '\n==> %s\n' "$*"; }

step "checking tools"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "python3 venv support is missing; installing it"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
fi
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
CONFORMANCE=${EKKO_CONFORMANCE:-$ROOT/../shared/conformance/run.sh}
[ -f "$CONFORMANCE" ] || { echo "conformance kit not found at $CONFORMANCE (set EKKO_CONFORMANCE)"; exit 1; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

step "cargo build --release"
cargo build --release --workspace --locked

step "cargo test --release"
cargo test --release --workspace --locked

step "fuzzing every device decoder (10 s per target)"
bash scripts/fuzz.sh "${EKKO_FUZZ_SECONDS:-10}"

step "getting-started conformance kit"
bash "$CONFORMANCE" target/release/ekko

step "README examples"
bash examples/run.sh target/release/ekko

step "OAuth client compatibility (openid-client, authlib, headless Chromium)"
bash tests/oauth-clients/run.sh target/release/ekko

step "Real-time client compatibility (gql Phoenix, phoenix V2 + @absinthe/socket, graphql-ws, subscriptions-transport-ws, graphql-sse)"
bash tests/realtime-clients/run.sh target/release/ekko
