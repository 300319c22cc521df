# The compose stack's infrastructure services built offline from the project's Debian base
# (serving/docker/build-base-image.sh) with Debian's own packages, for machines that cannot pull
# postgres, redis, prom/prometheus or prom/alertmanager. One image for the four: one apt transaction,
# one set of layers on disk; offline.yaml picks each service's command.
#
# Versions are Debian bookworm's (PostgreSQL 15, Redis 7.0, Prometheus 2.42, Alertmanager 0.25), not
# the tags docker-compose.yaml pins; the configuration files of this repository work on both.
ARG BASE_IMAGE=mlops/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postgresql redis-server prometheus prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    # Data folders of the named volumes: a fresh volume copies these owners.
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql \
    && install -d -o redis -g redis /data \
    && install -d -o nobody -g nogroup /prometheus /alertmanager
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
