#!/usr/bin/env bash
# Installs the servers the test suite starts itself (Redis from Debian's packages) and openssl,
# which makes the throwaway certificate of the TLS (rediss://) test.
# SecantusDB, the MongoDB-compatible server, is a Python package in the dev group.
set -euo pipefail
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends openssl
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server
  # Debian starts a system redis on 6379; the tests use their own on free ports.
  (command -v systemctl >/dev/null && $SUDO systemctl stop redis-server) >/dev/null 2>&1 || true
  (command -v service >/dev/null && $SUDO service redis-server stop) >/dev/null 2>&1 || true
fi
redis-server --version
