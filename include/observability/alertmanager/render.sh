#!/bin/sh
# Write Alertmanager's config with the webhook URL from the environment, then exec the command given.
#
# Usage: render.sh TEMPLATE OUTPUT [COMMAND ARG...]
#   e.g. render.sh /etc/alertmanager/alertmanager.yml /alertmanager/alertmanager.yml \
#          /bin/alertmanager --config.file=/alertmanager/alertmanager.yml
#
# Alertmanager expands no variables in its config, and the URL must stay out of git. Every
# ${MLOPS_ALERT_WEBHOOK_URL} in TEMPLATE is replaced literally (awk's index/substr, so "&" or "/" in
# the URL are not special); with the variable empty or unset, the lines ending in "# webhook" are
# left out instead, so Alertmanager still starts. POSIX sh and awk: runs in the busybox-based
# prom/alertmanager image and on the host.
set -eu
[ "$#" -ge 2 ] || { echo "usage: render.sh TEMPLATE OUTPUT [COMMAND ARG...]" >&2; exit 2; }
template=$1
output=$2
shift 2
if [ -z "${MLOPS_ALERT_WEBHOOK_URL:-}" ]; then
    echo "render.sh: MLOPS_ALERT_WEBHOOK_URL is not set: alerts stay in Alertmanager (UI, amtool)" >&2
fi
awk '
    BEGIN { key = "${MLOPS_ALERT_WEBHOOK_URL}"; url = ENVIRON["MLOPS_ALERT_WEBHOOK_URL"] }
    url == "" && /# webhook$/ { next }
    {
        rest = $0; out = ""
        while ((i = index(rest, key)) > 0) {
            out = out substr(rest, 1, i - 1) url
            rest = substr(rest, i + length(key))
        }
        print out rest
    }
' "$template" > "$output.tmp"
mv "$output.tmp" "$output"
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
