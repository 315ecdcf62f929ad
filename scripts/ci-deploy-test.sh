#!/usr/bin/env bash
# CI's deployment test (tests/deploy/test_stack.py): runs it where a Docker engine can be
# started and the run fits the time left; otherwise says clearly that it skipped it and why.
# Usage: scripts/ci-deploy-test.sh SECONDS_LEFT
# Exits non-zero only when the test ran and failed.
set -euo pipefail
cd "$(dirname "$0")/.."
left="${1:?seconds left in the CI budget}"
budget="${LOOKALIKE_DEPLOY_TEST_BUDGET:-2700}"  # a cold run with image builds, and a margin
need_gb="${LOOKALIKE_DEPLOY_TEST_DISK_GB:-40}"  # vfs copies every layer for every container
started=""

skip() { echo "DEPLOYMENT TEST SKIPPED: $*"; exit 0; }
stop_engine() {
  if [[ -n "$started" ]]; then
    echo "stopping the Docker engine this script started (pid $started)"
    kill "$started" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$started" 2>/dev/null || break; sleep 1; done
  fi
}
trap stop_engine EXIT
remove_test_stacks() {  # what a killed run leaves: the test's projects are lookalike-deploy-*
  local label='{{.Label "com.docker.compose.project"}}'
  docker ps -a --format "{{.ID}} $label" | awk '$2 ~ /^lookalike-deploy-/ {print $1}' \
    | xargs -r docker rm -f >/dev/null || true
  docker volume ls --format "{{.Name}} $label" | awk '$2 ~ /^lookalike-deploy-/ {print $1}' \
    | xargs -r docker volume rm -f >/dev/null || true
  docker network ls --format "{{.ID}} $label" | awk '$2 ~ /^lookalike-deploy-/ {print $1}' \
    | xargs -r docker network rm >/dev/null || true
}

[[ "${LOOKALIKE_CI_DEPLOY:-auto}" != "off" ]] || skip "LOOKALIKE_CI_DEPLOY=off"
(( left > budget )) || skip "$left s left in the CI budget, the test needs up to $budget s"
[[ $(id -u) -eq 0 ]] || skip "starting a Docker engine needs root"
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null \
    || ! command -v debootstrap >/dev/null; then
  echo "installing docker.io, docker-compose and debootstrap from Debian"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends docker.io docker-compose debootstrap >/dev/null; } \
    || skip "could not install Docker from Debian"
fi
free_gb=$(( $(df --output=avail -k /var/lib | tail -1) / 1024 / 1024 ))
(( free_gb >= need_gb )) || skip "${free_gb} GB free under /var/lib, the stack needs ${need_gb} GB"

if ! docker info >/dev/null 2>&1; then
  mkdir -p var
  dockerd --iptables=false --storage-driver=vfs >var/ci-dockerd.log 2>&1 &
  started=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || skip "dockerd did not start (var/ci-dockerd.log: $(tail -1 var/ci-dockerd.log))"
fi

echo "deployment test: building the images and running the whole stack (up to $budget s)"
status=0
SECONDS=0
LOOKALIKE_DEPLOY_TEST=1 timeout --kill-after=60 "$budget" \
  .venv/bin/python -m pytest -p no:cacheprovider -q tests/deploy/test_stack.py || status=$?
echo "deployment test took ${SECONDS} s"
if (( status == 124 || status == 137 )); then
  remove_test_stacks
  echo "DEPLOYMENT TEST NOT COMPLETED: it ran out of its $budget s budget (a slow machine, not a verdict)"
  exit 0
fi
exit "$status"
