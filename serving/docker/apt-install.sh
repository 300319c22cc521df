#!/usr/bin/env bash
# Install Debian packages when their commands are missing, waiting for a dpkg lock held by another
# install and refreshing the package lists when a package is unknown (a fresh machine may have none).
#
# Usage: serving/docker/apt-install.sh [--check CMD]... PACKAGE...
#        e.g. serving/docker/apt-install.sh --check promtool prometheus
# With --check, nothing is installed when every CMD is on PATH already. Needs root otherwise.
# Scripts can also `source` it and call apt_install PACKAGE... themselves.
set -euo pipefail

# `make test` starts one apt transaction for the whole suite in the background (Makefile:
# apt-packages) and leaves its pid here. A command it installs may already be on PATH before dpkg has
# configured it, so a check or an install waits for that transaction to end first.
_apt_background_pidfile="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.run/apt-packages.pid"

wait_for_background_apt() {
    local pid waited=0
    [ -z "${MLOPS_APT_BACKGROUND:-}" ] || return 0  # that transaction itself
    pid=$(cat "$_apt_background_pidfile" 2>/dev/null) || return 0
    # A stale pidfile's number may belong to another process by now: only that script counts.
    while [ -n "$pid" ] && grep -qs apt-install "/proc/$pid/cmdline" && [ "$waited" -lt 1200 ]; do
        [ "$waited" = 0 ] && echo "apt-install: waiting for the background apt transaction (pid $pid)" >&2
        sleep 2
        waited=$((waited + 2))
    done
}

apt_install() {
    wait_for_background_apt
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=1200)
    if ! apt-get install "${opts[@]}" "$@" >&2; then
        for _ in 1 2 3 4 5 6; do
            apt-get update -q -o DPkg::Lock::Timeout=1200 >&2 && break
            sleep 5
        done
        apt-get install "${opts[@]}" "$@" >&2
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    wait_for_background_apt
    checks=()
    while [ "${1:-}" = --check ]; do
        checks+=("$2")
        shift 2
    done
    missing=0
    for cmd in "${checks[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    if [ "${#checks[@]}" -gt 0 ] && [ "$missing" = 0 ]; then
        exit 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "apt-install: installing $* needs root (apt-get install $*)" >&2
        exit 1
    fi
    [ "$#" -gt 0 ] || { echo "apt-install: no package given" >&2; exit 2; }
    apt_install "$@"
fi
