#!/usr/bin/env bash
# Download the wheels the serving image installs, for the image's platform (Linux x86_64, CPython
# 3.11, glibc of Debian bookworm), so `docker build` installs offline with --no-index.
#
# Skips the download when the wheelhouse is complete for the current requirements (a stamp holds the
# hash of requirements.txt and the platform arguments). The wheelhouse is replaced atomically: a
# failed download leaves the previous one in place.
#
# Usage: serving/docker/wheelhouse.sh            -> prints the wheelhouse path on stdout
# Env:   MLOPS_RUN_DIR                state dir (default <repo>/.run)
#        MLOPS_WHEELHOUSE             wheelhouse dir (default $MLOPS_RUN_DIR/wheelhouse)
#        MLOPS_SERVING_REQUIREMENTS   requirements file (default serving/requirements.txt)
#        PYTHON                       interpreter whose pip downloads (default: python3 with pip)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir="${MLOPS_RUN_DIR:-$repo_root/.run}"
wheelhouse="${MLOPS_WHEELHOUSE:-$run_dir/wheelhouse}"
requirements="${MLOPS_SERVING_REQUIREMENTS:-$repo_root/serving/requirements.txt}"

say() { echo "wheelhouse: $*" >&2; }

if [ ! -f "$requirements" ]; then
    say "no requirements file at $requirements"
    exit 1
fi

# Bookworm's glibc is 2.36: every manylinux tag up to manylinux_2_36 runs there. pip does not infer
# the older tags from a newer one, so they are all listed.
platform_args=(--only-binary=:all: --implementation cp --python-version 3.11)
for glibc_minor in $(seq 36 -1 17); do
    platform_args+=(--platform "manylinux_2_${glibc_minor}_x86_64")
done
platform_args+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

# One download at a time per checkout: concurrent runs wait, then find the work done.
mkdir -p "$run_dir"
exec 9>"$run_dir/wheelhouse.lock"
flock 9

key="$( { cat "$requirements"; echo "${platform_args[*]}"; } | sha256sum | cut -d' ' -f1)"
stamp="$wheelhouse/.complete"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    echo "$wheelhouse"
    exit 0
fi

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 "$repo_root/.venv/bin/python" python; do
        if [ -n "$candidate" ] && "$candidate" -m pip --version >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
python="$(pick_python)" || { say "no Python with pip found (set PYTHON)"; exit 1; }

partial="$wheelhouse.partial"
rm -rf "$partial"
mkdir -p "$partial"
find_links=()
# Reuse wheels of the previous wheelhouse instead of downloading them again.
[ -d "$wheelhouse" ] && find_links=(--find-links "$wheelhouse")

say "downloading wheels for $requirements"
"$python" -m pip download --disable-pip-version-check --no-input -q \
    "${platform_args[@]}" "${find_links[@]}" -r "$requirements" -d "$partial" >&2

echo "$key" >"$partial/.complete"
rm -rf "$wheelhouse"
mv "$partial" "$wheelhouse"
say "$(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"
echo "$wheelhouse"
