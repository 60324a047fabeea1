#!/usr/bin/env bash
# The one command that sets up what the tests need and runs them all.
# Emulators are installed here and started by the tests themselves, each on a
# free loopback port: moto (PyPI, server mode) for Kinesis and DynamoDB,
# kinesis-local (npm) for Kinesis enhanced fan-out, tansu (crates.io) for Kafka.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
KINESIS_LOCAL_VERSION=0.6.2
TANSU_VERSION=0.6.0

if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [ ! -x .emulators/node_modules/.bin/kinesis-local ]; then
  echo "installing kinesis-local@$KINESIS_LOCAL_VERSION into .emulators"
  mkdir -p .emulators
  npm install --silent --no-audit --no-fund --prefix .emulators "kinesis-local@$KINESIS_LOCAL_VERSION"
fi

# tansu, a Kafka-compatible broker in Rust (crates.io), for tests/kafka.rs: the
# tests start it with in-memory storage (feature dynostore) on a free port.
# Built from source once (about 13 min on 2 idle cores), then kept.
if [ ! -x .emulators/tansu/bin/tansu ]; then
  echo "building tansu $TANSU_VERSION (the Kafka broker for tests/kafka.rs) into .emulators/tansu"
  CARGO_TARGET_DIR=.emulators/tansu-target \
    cargo install --quiet tansu --version "$TANSU_VERSION" --locked --features dynostore --root .emulators/tansu
  rm -rf .emulators/tansu-target
fi

# Headless Chromium and chromedriver for the labeling page's browser test
# (tests/label_ui.rs). Debian's packages; skipped when already installed.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium and chromium-driver (apt)"
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } ||
    echo "WARNING: could not install chromium; the headless browser test will say SKIPPED"
fi

# Unit, integration, example and doc tests, with every feature on, plus the
# benchmarks in criterion's quick test mode (each benchmark runs once).
cargo test --all-features --lib --tests --examples --benches
cargo test --all-features --doc
