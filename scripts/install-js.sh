#!/usr/bin/env bash
# Installs the Node packages the end-to-end tests use (official socket.io-client), from the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/js"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
