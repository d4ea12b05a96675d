#!/usr/bin/env bash
# Build sleeptime and run its demo on the embedded default model (fetched on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --quiet -p sleeptime -- demo "$@"
