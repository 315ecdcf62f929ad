#!/usr/bin/env bash
# Installs the Debian packages Lookalike needs, only those that are missing.
# Usage: scripts/install-system-deps.sh [base|test|demo|bench]
set -euo pipefail
profile="${1:-base}"

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want() { for p in "$@"; do have_pkg "$p" || need+=("$p"); done; }

# python3 -m venv needs ensurepip, which Debian ships separately.
python3.11 -c "import ensurepip, venv" 2>/dev/null || want python3.11-venv
want dataset-fashion-mnist redis-server
if [[ "$profile" == "test" ]]; then
  want chromium postgresql
fi
if [[ "$profile" == "bench" ]]; then
  want wrk  # the HTTP load generator of bench/api_load_bench.py
fi

if ((${#need[@]} == 0)); then
  exit 0
fi
echo "Installing Debian packages: ${need[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
