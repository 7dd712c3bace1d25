#!/bin/sh
# Dagster's own role and database (LAKEHOUSE_DAGSTER_DB_USER / LAKEHOUSE_DAGSTER_DB, default lakehouse_dagster),
# made once on a new postgres volume; the password comes from the environment, never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$DAGSTER_DB_USER" -v db="$DAGSTER_DB" -v pw="$DAGSTER_DB_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"role";
SQL
