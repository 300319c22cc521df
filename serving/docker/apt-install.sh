#!/usr/bin/env bash
# Install Debian packages when their commands are missing, waiting for a dpkg lock held by another
# install and refreshing the package lists when a package is unknown (a fresh machine may have none).
#
# Usage: serving/docker/apt-install.sh [--check CMD]... PACKAGE...
#        e.g. serving/docker/apt-install.sh --check promtool prometheus
# With --check, nothing is installed when every CMD is on PATH already. Needs root otherwise.
# Scripts can also `source` it and call apt_install PACKAGE... themselves.
set -euo pipefail

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
    if ! apt-get install "${opts[@]}" "$@" >&2; then
        for _ in 1 2 3 4 5 6; do
            apt-get update -q -o DPkg::Lock::Timeout=300 >&2 && break
            sleep 5
        done
        apt-get install "${opts[@]}" "$@" >&2
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
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
