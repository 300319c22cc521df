# The Python environment of the offline compose stack: every runtime dependency of uv.lock (the
# versions `make test` runs) plus moto's S3 server, installed from a wheelhouse downloaded on the
# host (mlops_dev.compose, with serving/docker/wheelhouse.sh), with no index: the way the serving
# base image is built. The Airflow image (which the MLflow server runs too) builds on it; the S3
# stand-in runs it as it is, so its large layer is on disk once.
#
# Build context: .run/compose/context (assembled by `python -m mlops_dev.compose build`):
# requirements.txt, wheelhouse/.
ARG BASE_IMAGE=mlops/base:bookworm

# The wheels stay in this stage: the image gets the installed environment only.
FROM ${BASE_IMAGE} AS build
LABEL org.mlops.build-stage=compose-python
COPY requirements.txt /tmp/build/requirements.txt
COPY wheelhouse/ /tmp/build/wheelhouse/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-index --find-links /tmp/build/wheelhouse \
        --no-cache-dir --disable-pip-version-check -q -r /tmp/build/requirements.txt \
    && /opt/venv/bin/python -m pip check --disable-pip-version-check

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true
