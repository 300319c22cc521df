#!/usr/bin/env bash
# Install Debian's HAProxy on this machine when it is missing: the router of the `local` serving
# backend and of the router tests. Idempotent; returns at once when `haproxy` is on PATH.
#
# Usage: serving/haproxy/ensure-haproxy.sh     -> prints the haproxy version line
set -euo pipefail

if ! command -v haproxy >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure-haproxy: haproxy is not installed and installing it needs root (apt-get install haproxy)" >&2
        exit 1
    fi
    echo "ensure-haproxy: installing Debian's haproxy" >&2
    # shellcheck source=../docker/apt-install.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../docker/apt-install.sh"
    apt_install haproxy
fi
version="$(haproxy -v)"
echo "${version%%$'\n'*}"
