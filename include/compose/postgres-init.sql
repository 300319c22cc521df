-- A second database on the same Postgres for MLflow's backend store.
CREATE DATABASE mlflow OWNER airflow;
