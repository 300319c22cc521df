#!/usr/bin/env bash
# Provide the images the serving stack builds on, without needing a container registry:
#
#   $MLOPS_BASE_IMAGE   (default mlops/base:bookworm)   Debian bookworm + python3 (3.11) + venv
#   $MLOPS_ROUTER_IMAGE (default mlops/haproxy:local)   the base + Debian's haproxy, non-root
#
# The base is the official python:3.11-slim-bookworm when it can be pulled; otherwise a minimal
# Debian is built with debootstrap from the same mirror as this machine's apt and `docker import`ed.
# The debootstrap tarball is cached under <repo>/.run/cache/, keyed by suite, mirrors and package
# list, so a rebuild after the image was removed takes seconds. An image that exists with the
# current key is kept as is: a second run returns in well under a second.
#
# Usage: serving/docker/build-base-image.sh     -> prints "base=<tag>" and "router=<tag>" on stdout
# Env:   MLOPS_BASE_IMAGE, MLOPS_ROUTER_IMAGE   tags to produce
#        MLOPS_PULL_TIMEOUT                     seconds to try the official image (default 20, 0 = skip)
#        MLOPS_DEBIAN_MIRROR                    Debian mirror (default: the one apt uses here)
#        MLOPS_DEBIAN_SECURITY_MIRROR           Debian security mirror (default: the one apt uses here)
#        MLOPS_RUN_DIR                          state dir (default <repo>/.run)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir="${MLOPS_RUN_DIR:-$repo_root/.run}"
cache_dir="$run_dir/cache"
base_image="${MLOPS_BASE_IMAGE:-mlops/base:bookworm}"
router_image="${MLOPS_ROUTER_IMAGE:-mlops/haproxy:local}"
pull_timeout="${MLOPS_PULL_TIMEOUT:-20}"
official_image="python:3.11-slim-bookworm"
suite=bookworm
# tini: a tiny init for PID 1 (`docker run --init` does the same with the engine's own).
packages=(python3 python3-venv ca-certificates tini)
# Bump when the way the rootfs is made changes, so cached tarballs and images are rebuilt.
recipe_version=1

say() { echo "build-base-image: $*" >&2; }

# shellcheck source=apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"  # apt_install: waits for the dpkg lock

image_label() { # image label -> value ("" when the image or label is missing)
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# The first URI apt uses for a suite, from deb822 .sources files or one-line sources.list entries.
host_mirror() { # suite
    local suite_name="$1" file uri
    for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uri="$(host_mirror_in "$suite_name" "$file")"
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
}

host_mirror_in() { # suite file
    local suite_name="$1" file="$2"
    if [[ "$file" == *.sources ]]; then
        awk -v s="$suite_name" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
                }
                if (ok && uri != "") { print uri; exit }
            }' "$file"
    else
        awk -v s="$suite_name" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == s) { print $i; exit } }' "$file"
    fi
}

ensure_engine() {
    "$repo_root/serving/docker/ensure-engine.sh"
}

# ---------------------------------------------------------------------------------------------
# base image
# ---------------------------------------------------------------------------------------------
build_base_from_debootstrap() {
    local mirror security_mirror key tarball
    mirror="${MLOPS_DEBIAN_MIRROR:-$(host_mirror "$suite")}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    security_mirror="${MLOPS_DEBIAN_SECURITY_MIRROR:-$(host_mirror "$suite-security")}"
    security_mirror="${security_mirror:-http://deb.debian.org/debian-security}"

    local pkgs=("${packages[@]}")
    key="$(printf '%s\n' "$recipe_version" "$suite" "$mirror" "$security_mirror" "${pkgs[@]}" | sha256sum | cut -c1-16)"
    tarball="$cache_dir/base-$suite-$key.tar"

    if [ "$(image_label "$base_image" org.mlops.base.key)" = "$key" ]; then
        return 0
    fi

    if [ ! -f "$tarball" ]; then
        if ! command -v debootstrap >/dev/null 2>&1; then
            say "installing debootstrap"
            apt_install debootstrap
        fi
        make_rootfs_tarball "$mirror" "$security_mirror" "$tarball" "${pkgs[@]}"
    else
        say "using cached rootfs $tarball"
    fi

    say "importing $tarball as $base_image"
    local previous
    previous="$(docker image inspect --format '{{.Id}}' "$base_image" 2>/dev/null || true)"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL org.mlops.base.key=$key org.mlops.base.source=debootstrap:$suite" \
        --change 'CMD ["python3"]' \
        "$tarball" "$base_image" >/dev/null
    remove_if_untagged "$previous"
}

make_rootfs_tarball() { # mirror security_mirror tarball packages...
    local mirror="$1" security_mirror="$2" tarball="$3"
    shift 3
    local include
    include="$(IFS=,; echo "$*")"
    local rootfs
    mkdir -p "$cache_dir"
    rootfs="$(mktemp -d "$cache_dir/rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this rootfs
    trap "umount '$rootfs/proc' 2>/dev/null || true; rm -rf '$rootfs'" EXIT

    say "debootstrap $suite from $mirror with: $*"
    debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache_dir/debootstrap.log" >&2
        say "debootstrap failed; full log in $cache_dir/debootstrap.log"
        exit 1
    }

    # Security and point-release updates, like the official Debian images.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
    # Keep later apt installs (FROM this base) small: no recommends, no docs, no package cache.
    cat >"$rootfs/etc/apt/apt.conf.d/90mlops-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90mlops-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -q && apt-get -y -q upgrade && apt-get clean' >>"$cache_dir/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache_dir/debootstrap.log" >&2
        say "updating the rootfs failed; full log in $cache_dir/debootstrap.log"
        exit 1
    }
    umount "$rootfs/proc"

    # What an image does not need: package lists, caches, docs, logs, the build machine's resolver.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    : >"$rootfs/etc/resolv.conf"
    echo "$suite-mlops" >"$rootfs/etc/hostname"

    tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
    # Older tarballs of other keys are dead weight.
    find "$cache_dir" -maxdepth 1 -name "base-$suite-*.tar" -not -path "$tarball" -delete
    say "rootfs tarball: $tarball ($(du -h "$tarball" | cut -f1))"
}

ensure_base_image() {
    # An image this script imported is checked against the current key (cheap, no debootstrap).
    local source
    source="$(image_label "$base_image" org.mlops.base.source)"
    if docker image inspect "$base_image" >/dev/null 2>&1 && [ "${source#debootstrap:}" = "$source" ]; then
        return 0 # the official image (tagged earlier) or one provided by the user
    fi
    if [ -z "$source" ] && [ "$pull_timeout" != 0 ]; then
        if docker image inspect "$official_image" >/dev/null 2>&1 ||
            timeout "$pull_timeout" docker pull -q "$official_image" >/dev/null 2>&1; then
            say "using $official_image"
            docker tag "$official_image" "$base_image"
            return 0
        fi
        say "could not pull $official_image; building the base with debootstrap"
    fi
    build_base_from_debootstrap
}

# ---------------------------------------------------------------------------------------------
# router image
# ---------------------------------------------------------------------------------------------
ensure_router_image() {
    local context="$repo_root/serving/haproxy" key
    key="$( { docker image inspect --format '{{.Id}}' "$base_image"; cat "$context/Dockerfile"; } | sha256sum | cut -c1-16)"
    if [ "$(image_label "$router_image" org.mlops.build.key)" = "$key" ]; then
        return 0
    fi
    say "building $router_image from $base_image"
    local previous log="$run_dir/router-build.log"
    previous="$(docker image inspect --format '{{.Id}}' "$router_image" 2>/dev/null || true)"
    mkdir -p "$run_dir"
    # The classic builder works with every engine; host networking lets apt reach the mirror the
    # way this machine does (no NAT or container DNS needed).
    DOCKER_BUILDKIT=0 docker build --network host \
        --build-arg "BASE_IMAGE=$base_image" \
        --label "org.mlops.build.key=$key" \
        -t "$router_image" "$context" >"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        say "building $router_image failed; full log in $log"
        exit 1
    }
    remove_if_untagged "$previous"
}

remove_if_untagged() { # image id: an image a rebuild replaced, unless something still uses it
    if [ -n "$1" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ]; then
        docker rmi "$1" >/dev/null 2>&1 || true
    fi
}

# One build at a time per checkout: concurrent runs wait, then find the work done.
mkdir -p "$run_dir"
exec 9>"$run_dir/build-base-image.lock"
flock 9
ensure_engine
ensure_base_image
ensure_router_image
echo "base=$base_image"
echo "router=$router_image"
