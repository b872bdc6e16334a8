#!/usr/bin/env bash
# Stand-in base images for the image tests: no python:* image can be pulled here,
# so debootstrap Debian releases with their own python3, python3-venv, python3-pip
# and a `python` on PATH (python-is-python3), and `docker import` them.
#
#   tests/docker/standins.sh SUITE...      e.g. bookworm trixie bullseye
#
# Images: asgi-start-standin:SUITE   (bookworm -> 3.11, trixie -> 3.13, bullseye -> 3.9)
#
# The debootstrapped root filesystem is cached as a tarball in
#   ${ASGI_START_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asgi-start}
# and rebuilt from scratch when missing (several suites in parallel).
# The machine's CA bundle and its pip index settings are added to the stand-in
# image only (never to the project's Dockerfile), so pip can reach the index inside builds.
#
# Needs root, debootstrap, and DOCKER_HOST pointing at a running engine.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
CACHE=${ASGI_START_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asgi-start}
PACKAGES=python3,python3-venv,python3-pip,python-is-python3
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# bump when the rootfs recipe changes, to invalidate caches
RECIPE=1

log() { printf '[standins %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[ $# -gt 0 ] || { echo "usage: $0 SUITE..." >&2; exit 2; }
mkdir -p "$CACHE"

mirror() {
    # The Debian mirror apt on this machine uses (deb822 or one-line sources).
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v '^\s*#' \
        | grep -oE '(https?|file)://[^ ]+/debian/?( |$)' \
        | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
    echo "${m:-http://deb.debian.org/debian}"
}

cache_file() { echo "$CACHE/standin-$1-r$RECIPE.tar"; }

debootstrap_suite() {
    local suite=$1 mirror=$2 out work
    out=$(cache_file "$suite")
    work=$(mktemp -d "${TMPDIR:-/tmp}/standin-$suite.XXXXXX")
    log "debootstrap $suite from $mirror"
    local rc=0
    debootstrap --variant=minbase --include="$PACKAGES" --components=main \
        "$suite" "$work/rootfs" "$mirror" >"$work/log" 2>&1 || rc=$?
    # debootstrap mounts proc/sys in the target; never leave them behind
    { grep -o " $work/rootfs/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        log "debootstrap $suite failed ($rc):"
        tail -n 30 "$work/log" >&2
        tail -n 30 "$work/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        rm -rf "$work"
        return $rc
    fi
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
        "$work/rootfs/var/log/"* "$work/rootfs/dev/"* 2>/dev/null || true
    tar --numeric-owner -C "$work/rootfs" -cf "$out.tmp.$$" .
    mv "$out.tmp.$$" "$out"
    rm -rf "$work"
    log "debootstrap $suite done: $(du -h "$out" | cut -f1)"
}

# 1. debootstrap the suites that are not cached, in parallel
mirror_url=$(mirror)
pids=() suites=()
for suite in "$@"; do
    if [ -s "$(cache_file "$suite")" ]; then
        log "$suite: cached rootfs $(cache_file "$suite")"
        continue
    fi
    debootstrap_suite "$suite" "$mirror_url" &
    pids+=($!) suites+=("$suite")
done
fail=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { log "${suites[$i]}: debootstrap failed"; fail=1; }
done
[ $fail -eq 0 ] || exit 1

# 2. the stand-in's own additions: CA bundle + pip settings
extra=$(mktemp -d "${TMPDIR:-/tmp}/standin-extra.XXXXXX")
trap 'rm -rf "$extra"' EXIT
mkdir -p "$extra/etc/ssl/certs"
cp "$CA_BUNDLE" "$extra/etc/ssl/certs/ca-certificates.crt"
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    echo "disable-pip-version-check = true"
    # Same index as this machine's pip, when it names a remote one
    # (local file:// indexes and find-links do not exist inside containers).
    idx=$(pip config get global.index-url 2>/dev/null || true)
    case "$idx" in http*) echo "index-url = $idx" ;; esac
    for e in $(pip config get global.extra-index-url 2>/dev/null || true); do
        case "$e" in http*) echo "extra-index-url = $e" ;; esac
    done
} >"$extra/etc/pip.conf"

# 3. docker import the cached rootfs, then add the stand-in's files in a layer
#    of their own (docker import refuses a tar holding a path twice)
cat >"$extra/Dockerfile" <<'EOF'
ARG RAW
FROM ${RAW}
COPY etc/ /etc/
EOF
make_image() {
    local suite=$1
    "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        --message "debootstrap $suite minbase + $PACKAGES" \
        "$(cache_file "$suite")" "asgi-start-standin-raw:$suite" >/dev/null
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host --build-arg "RAW=asgi-start-standin-raw:$suite" \
        -t "asgi-start-standin:$suite" "$extra" >/dev/null
    local ver
    ver=$("$DOCKER" run --rm --network host "asgi-start-standin:$suite" python --version 2>&1)
    log "asgi-start-standin:$suite ready ($ver)"
}
pids=() suites=()
for suite in "$@"; do
    make_image "$suite" &
    pids+=($!) suites+=("$suite")
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { log "${suites[$i]}: docker import failed"; fail=1; }
done
exit $fail
