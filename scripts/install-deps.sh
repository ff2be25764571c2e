#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine:
# SIPp (Debian package `sip-tester`) for the end-to-end SIP tests, and
# openssl (the TLS test's certificate and client).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
