#!/bin/sh
# Runs once, when PostgreSQL initialises an empty data directory (docker-entrypoint-initdb.d; the
# Kubernetes StatefulSet mounts the same script from the postgres-initdb ConfigMap in k8s/postgres.yaml).
# It makes a read-only login for Grafana's ledger data source. The ledger service logs in as
# $POSTGRES_USER, owns the tables and migrates them (Alembic); whatever it creates later is readable
# by the reader through the default privileges, and by nobody else.
set -eu
: "${LEDGER_READER_PASSWORD:?set LEDGER_READER_PASSWORD: the password of Grafana's read-only role}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" -v reader="${LEDGER_READER_USER:-ledger_reader}" \
    -v reader_password="$LEDGER_READER_PASSWORD" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
-- A dashboard never writes, and a slow panel gives up instead of holding a connection.
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '30s';
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
