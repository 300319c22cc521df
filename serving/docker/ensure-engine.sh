#!/usr/bin/env bash
# Make a Docker engine answer on this machine.
#
# Reuses an engine that already answers `docker info`; otherwise installs Debian's docker.io when
# dockerd is absent, starts dockerd in the background (log and pidfile under <repo>/.run/) and waits
# for it. Idempotent: a second run returns at once.
#
# Usage: serving/docker/ensure-engine.sh
# Env:   MLOPS_RUN_DIR          state dir (default <repo>/.run)
#        MLOPS_ENGINE_WAIT      seconds to wait for the engine to answer (default 60)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir="${MLOPS_RUN_DIR:-$repo_root/.run}"
wait_s="${MLOPS_ENGINE_WAIT:-60}"
log="$run_dir/dockerd.log"
pidfile="$run_dir/dockerd.pid"

say() { echo "ensure-engine: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

# shellcheck source=apt-install.sh
source "$repo_root/serving/docker/apt-install.sh"  # apt_install: waits for the dpkg lock, refreshes lists

if command -v docker >/dev/null 2>&1 && engine_answers; then
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers and starting one needs root; start dockerd or join the docker group"
    exit 1
fi

# One starter at a time: a concurrent run waits, then finds the engine up.
mkdir -p "$run_dir"
exec 9>"$run_dir/ensure-engine.lock"
flock 9
if engine_answers; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Debian's docker.io"
    # iptables gives containers NAT; docker.io only recommends it.
    apt_install docker.io iptables
    # The package's own init script may have started an engine already.
    if engine_answers; then
        exit 0
    fi
fi

# Alive = our pidfile names a live dockerd (not a zombie left by a killed session).
dockerd_alive() {
    local pid
    pid="$(cat "$pidfile" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

start_dockerd() {
    say "starting dockerd (log: $log)"
    rm -f "$pidfile"
    # setsid + closed stdin/stdout: the engine outlives this script and holds no caller's pipe;
    # nor this script's lock (fd 9).
    setsid dockerd --pidfile "$pidfile" </dev/null >>"$log" 2>&1 9>&- &
    started_at=$SECONDS
}

started_at=-1
if dockerd_alive; then
    say "dockerd (pid $(cat "$pidfile")) is running but not answering yet; waiting"
else
    start_dockerd
fi

deadline=$((SECONDS + wait_s))
while [ "$SECONDS" -lt "$deadline" ]; do
    if engine_answers; then
        say "engine ready after ${SECONDS}s"
        exit 0
    fi
    # A dockerd that went away (it was stopping, or failed at start) is started again, once it
    # had time to write its pidfile.
    if [ $((SECONDS - started_at)) -gt 15 ] && ! dockerd_alive; then
        start_dockerd
    fi
    sleep 1
done

say "dockerd did not answer 'docker info' within ${wait_s}s; last lines of $log:"
tail -n 30 "$log" >&2 || true
exit 1
