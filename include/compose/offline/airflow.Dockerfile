# The offline Airflow image of the compose stack: what include/compose/airflow/Dockerfile makes of
# the official apache/airflow image, made from the project's Python environment image
# (python.Dockerfile) instead: uid 50000 in group 0, AIRFLOW_HOME=/opt/airflow, the official
# entrypoint's rule (`scheduler` runs `airflow scheduler`; bash and python run as given), curl for
# the health checks, the Docker CLI for mlops_deploy, and this project's package.
#
# Build context: .run/compose/context (build-images.sh assembles it): the project's wheel under
# project/, airflow-entrypoint.sh.
ARG PYTHON_ENV_IMAGE=mlops-offline/python:local
FROM ${PYTHON_ENV_IMAGE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        curl docker.io util-linux \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && install -d -o 50000 -g 0 -m 2775 /opt/airflow /opt/airflow/logs /opt/airflow/dags /opt/airflow/plugins
COPY project/ /tmp/project/
RUN pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check -q /tmp/project/*.whl \
    && rm -rf /tmp/project \
    && python -c "import mlops_pipeline.orchestration.airflow_settings, mlops_pipeline.monitoring.exporter"
COPY airflow-entrypoint.sh /usr/local/bin/airflow-entrypoint
ENV AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_USER_HOME_DIR=/home/airflow \
    HOME=/home/airflow
WORKDIR /opt/airflow
USER 50000:0
EXPOSE 8080
ENTRYPOINT ["tini", "--", "/usr/local/bin/airflow-entrypoint"]
CMD ["--help"]
