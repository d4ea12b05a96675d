#!/usr/bin/env bash
# Build sleeptime and run its demo on the embedded default model (fetched on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Not --quiet: the first build compiles llama.cpp (about 10 minutes on 2 cores), and cargo's
# progress is the only sign of life meanwhile.
exec cargo run --release -p sleeptime -- demo "$@"
