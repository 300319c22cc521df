#!/bin/bash
# The official Airflow image's rule, which docker-compose.yaml's `command:` lines rely on: bash and
# python run as given, anything else is an airflow subcommand (`celery worker` -> `airflow celery worker`).
set -euo pipefail
case "${1:-}" in
    bash | python | python3) exec "$@" ;;
    *) exec airflow "$@" ;;
esac
