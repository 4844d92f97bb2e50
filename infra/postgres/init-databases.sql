-- One PostgreSQL server, one database per service, all owned by POSTGRES_USER: the MLflow tracking store,
-- the preference store (alignops/feedback) and the Prefect server's database. The postgres image runs this
-- once, on the first start with an empty data volume (compose.yaml; k8s/postgres.yaml carries the same text).
CREATE DATABASE mlflow;
CREATE DATABASE feedback;
CREATE DATABASE prefect;
