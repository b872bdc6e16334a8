#!/usr/bin/env bash
# A private, throw-away Docker engine for the image tests.
#
#   tests/docker/engine.sh install      apt-get install docker.io debootstrap (if missing)
#   tests/docker/engine.sh start DIR    start dockerd with everything under DIR; prints DOCKER_HOST=...
#   tests/docker/engine.sh stop DIR     stop that dockerd (by its pid file) and remove DIR
#
# The engine has no bridge network and touches no iptables rules: every container
# must run with --network host (and every build with --network host).
# It must run as root (dockerd needs it).
set -euo pipefail

cmd=${1:-}
dir=${2:-}

log() { printf '[engine] %s\n' "$*" >&2; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /usr/bin/docker ] || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ ${#missing[@]} -eq 0 ]; then
        log "docker.io and debootstrap already installed"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

start_engine() {
    [ -n "$dir" ] || { log "usage: $0 start DIR"; exit 2; }
    mkdir -p "$dir/data" "$dir/exec"
    local sock="$dir/docker.sock" pidfile="$dir/dockerd.pid"
    local flags=(
        --data-root "$dir/data"
        --exec-root "$dir/exec"
        --pidfile "$pidfile"
        -H "unix://$sock"
        --bridge=none
        --iptables=false
        --storage-driver=overlay2
    )
    if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then
        flags+=(--ip6tables=false)
    fi
    log "starting dockerd in $dir"
    # setsid: dockerd (and the containerd it starts) must not get the
    # signals meant for the calling shell's process group.
    setsid dockerd "${flags[@]}" >"$dir/dockerd.log" 2>&1 </dev/null &
    echo $! >"$dir/dockerd.launcher.pid"
    local _
    for _ in $(seq 1 120); do
        if DOCKER_HOST="unix://$sock" /usr/bin/docker version >/dev/null 2>&1; then
            log "dockerd is up (pid $(cat "$pidfile" 2>/dev/null || echo '?'))"
            echo "DOCKER_HOST=unix://$sock"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/dockerd.launcher.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    log "dockerd did not come up; its log:"
    tail -n 40 "$dir/dockerd.log" >&2 || true
    exit 1
}

stop_engine() {
    [ -n "$dir" ] || { log "usage: $0 stop DIR"; exit 2; }
    [ -d "$dir" ] || return 0
    local sock="$dir/docker.sock" pid=""
    if [ -S "$sock" ]; then
        # Leave nothing running behind: remove every container of this engine.
        local ids=()
        mapfile -t ids < <(DOCKER_HOST="unix://$sock" /usr/bin/docker ps -aq 2>/dev/null || true)
        if [ ${#ids[@]} -gt 0 ]; then
            log "removing leftover containers: ${ids[*]}"
            DOCKER_HOST="unix://$sock" /usr/bin/docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
        fi
    fi
    if [ -f "$dir/dockerd.pid" ]; then
        pid=$(cat "$dir/dockerd.pid")
    elif [ -f "$dir/dockerd.launcher.pid" ]; then
        pid=$(cat "$dir/dockerd.launcher.pid")
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        local _
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd still running after 30 s; SIGKILL"
            kill -KILL "$pid" || true
        fi
    fi
    # dockerd's own containerd normally exits with it; make sure of it.
    local cpid
    for cpid in $(cat "$dir"/exec/containerd/containerd.pid 2>/dev/null || true); do
        if kill -0 "$cpid" 2>/dev/null; then
            log "stopping containerd (pid $cpid)"
            kill -TERM "$cpid" || true
        fi
    done
    # overlay mounts left behind by a killed engine would make rm fail
    { grep -o " $dir/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$dir"
    log "engine stopped, $dir removed"
}

case "$cmd" in
    install) install_packages ;;
    start) start_engine ;;
    stop) stop_engine ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
