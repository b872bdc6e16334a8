#!/usr/bin/env bash
# Stand-in base images for the image tests: no python:* image can be pulled here,
# so debootstrap Debian releases with their own python3, python3-venv, python3-pip
# and a `python` on PATH (python-is-python3), and `docker import` them.
#
#   tests/docker/standins.sh SUITE...      e.g. bookworm trixie bullseye
#   tests/docker/standins.sh --mirror      print the Debian mirror it would use (see mirror())
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

# The Debian mirror this machine's apt uses; nothing else (no built-in host): the
# first `deb` entry of the apt configuration for the machine's own Debian release
# (VERSION_CODENAME in os-release, on Debian), else the first whose URI ends in
# /debian, never a security archive. Read from one-line sources (sources.list, sources.list.d/*.list)
# and deb822 ones (sources.list.d/*.sources, `Enabled: no` skipped). DEBIAN_MIRROR,
# when set, names it instead. APT_DIR and OS_RELEASE exist for the tests of this.
APT_DIR=${APT_DIR:-/etc/apt}
OS_RELEASE=${OS_RELEASE:-/etc/os-release}

apt_entries() {
    # one "URI SUITE" line per deb entry, in apt's order
    local files=() f
    for f in "$APT_DIR/sources.list" "$APT_DIR"/sources.list.d/*.list "$APT_DIR"/sources.list.d/*.sources; do
        [ -f "$f" ] && [ -r "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
    function flush(   n, m, i, j, u, s) {
        if (deb && enabled) {
            n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
            for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (u[i] != "" && s[j] != "") print u[i], s[j]
        }
        deb = 0; enabled = 1; uris = ""; suites = ""; field = ""
    }
    FNR == 1 { if (deb822) flush(); deb822 = (FILENAME ~ /\.sources$/); deb = 0; enabled = 1; uris = ""; suites = ""; field = "" }
    deb822 {
        if ($0 ~ /^#/) next
        if ($0 ~ /^[ \t]*$/) { flush(); next }
        if ($0 ~ /^[ \t]/) {                       # continuation of the previous field
            if (field == "uris") uris = uris " " $0
            else if (field == "suites") suites = suites " " $0
            next
        }
        key = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
        field = key
        if (key == "types") { deb = (" " value " " ~ /[ \t]deb[ \t]/) }
        else if (key == "uris") uris = value
        else if (key == "suites") suites = value
        else if (key == "enabled") enabled = (tolower(value) !~ /no/)
        next
    }
    {
        sub(/#.*/, "")
        if ($1 != "deb") next
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if (i + 1 <= NF) print $i, $(i + 1)
    }
    END { if (deb822) flush() }
    ' "${files[@]}"
}

os_release() { sed -n "s/^$1=[\"']\{0,1\}\([^\"']*\).*/\1/p" "$OS_RELEASE" | head -n1; }

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local codename="" uri suite first_debian=""
    # the machine's own release counts only on Debian (an Ubuntu mirror cannot debootstrap Debian)
    if [ -r "$OS_RELEASE" ] && [ "$(os_release ID)" = debian ]; then
        codename=$(os_release VERSION_CODENAME)
    fi
    while read -r uri suite; do
        case "$suite" in *-security | */updates) continue ;; esac
        case "$uri" in */debian-security | */debian-security/) continue ;; esac
        if [ -n "$codename" ] && { [ "$suite" = "$codename" ] || [ "$suite" = "$codename-updates" ]; }; then
            echo "$uri"
            return 0
        fi
        case "$uri" in */debian | */debian/) [ -n "$first_debian" ] || first_debian=$uri ;; esac
    done < <(apt_entries)
    if [ -n "$first_debian" ]; then
        echo "$first_debian"
        return 0
    fi
    echo "standins.sh: no Debian mirror in the apt configuration ($APT_DIR/sources.list, $APT_DIR/sources.list.d/*.list, *.sources); configure one for apt, or set DEBIAN_MIRROR" >&2
    return 1
}

# `standins.sh --mirror`: print the mirror that would be used, and stop
if [ "$1" = "--mirror" ]; then
    mirror
    exit
fi

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
mirror_url=""
pids=() suites=()
for suite in "$@"; do
    if [ -s "$(cache_file "$suite")" ]; then
        log "$suite: cached rootfs $(cache_file "$suite")"
        continue
    fi
    [ -n "$mirror_url" ] || mirror_url=$(mirror) || exit 1
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
