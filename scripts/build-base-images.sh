#!/usr/bin/env bash
# Build the three base images Lookalike's compose file uses from Debian packages, for
# machines that cannot pull from an image registry (air-gapped shops, CI behind a proxy):
#
#   debootstrap --variant=minbase bookworm  ->  docker import  lookalike-base/debian:bookworm
#   + python3.11 in a venv                   ->  lookalike-base/python:3.11-bookworm
#   + redis-server                           ->  lookalike-base/redis:7-bookworm
#   + postgresql-15                          ->  lookalike-base/postgres:15-bookworm
#
# Usage (as root, with docker and debootstrap installed):
#   scripts/build-base-images.sh [--ca-cert FILE.crt]... [--mirror URL] [--env-file FILE]
# Each --ca-cert is trusted by every image (update-ca-certificates; pip reads the bundle
# through PIP_CERT), for package registries behind a TLS-intercepting proxy. --env-file
# writes the image names as the build arguments docker-compose.yml reads.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${BASE_IMAGE_PREFIX:-lookalike-base}"
MIRROR=""
ENV_FILE=""
CA_CERTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ca-cert) CA_CERTS+=("$2"); shift 2 ;;
    --mirror) MIRROR="$2"; shift 2 ;;
    --env-file) ENV_FILE="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for cert in "${CA_CERTS[@]}"; do
  [ -f "$cert" ] || { echo "CA certificate not found: $cert" >&2; exit 2; }
  grep -q "BEGIN CERTIFICATE" "$cert" || { echo "not a PEM certificate: $cert" >&2; exit 2; }
done
if [ -z "$MIRROR" ]; then
  # The mirror apt already uses on this host, else Debian's own.
  MIRROR="$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null \
    | grep -v -- '-security' | grep -m1 '/debian/\?$' || true)"
  MIRROR="${MIRROR:-http://deb.debian.org/debian/}"
fi

ROOTFS="$(mktemp -d)"
chmod 0755 "$ROOTFS"  # mktemp makes it 0700: it becomes the image's /
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates bookworm "$ROOTFS" "$MIRROR" >/dev/null
for cert in "${CA_CERTS[@]}"; do
  name="$(basename "$cert" .crt)"
  cp "$cert" "$ROOTFS/usr/local/share/ca-certificates/extra-$name.crt"
done
chroot "$ROOTFS" update-ca-certificates >/dev/null
cat > "$ROOTFS/etc/apt/apt.conf.d/90lookalike" <<'APT'
APT::Install-Recommends "false";
Acquire::Retries "3";
APT
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$PREFIX/debian:bookworm"

build() {  # build <dockerfile> <tag>
  docker build --network host --build-arg "DEBIAN_IMAGE=$PREFIX/debian:bookworm" \
    -f "deploy/base/$1" -t "$2" deploy/base
}
build python.Dockerfile "$PREFIX/python:3.11-bookworm"
build redis.Dockerfile "$PREFIX/redis:7-bookworm"
build postgres.Dockerfile "$PREFIX/postgres:15-bookworm"

ARGS="DEBIAN_IMAGE=$PREFIX/debian:bookworm
PYTHON_IMAGE=$PREFIX/python:3.11-bookworm
REDIS_IMAGE=$PREFIX/redis:7-bookworm
POSTGRES_IMAGE=$PREFIX/postgres:15-bookworm"
if [ -n "$ENV_FILE" ]; then
  printf '%s\n' "$ARGS" > "$ENV_FILE"
fi
echo "Base images built. Give them to docker compose (in .env or the environment):"
printf '%s\n' "$ARGS"
