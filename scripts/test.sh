#!/usr/bin/env bash
# The one command that sets up what the tests need and runs them all.
# Later backends add their emulator here (moto for Kinesis, SNS, ...), started
# by the tests themselves on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

# Unit, integration, example and doc tests, with every feature on, plus the
# benchmarks in criterion's quick test mode (each benchmark runs once).
cargo test --all-features --lib --tests --examples --benches
cargo test --all-features --doc
