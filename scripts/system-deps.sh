#!/usr/bin/env bash
# Install the system packages the local stack needs, from Debian's repositories, when missing:
# a Java 17 runtime (Kafka, Spark), Maven (fetches the stack's jars), PostgreSQL 15 and Chromium
# (the headless browser the dbt docs test opens the docs site with).
# Trino 476 also needs a JDK 24+ (e.g. Temurin 25) under /usr/lib/jvm or LAKEHOUSE_TRINO_JAVA_HOME.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
[ -x /usr/lib/postgresql/15/bin/postgres ] || command -v postgres >/dev/null || missing+=(postgresql-15)
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "  fix: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: installing ${missing[*]} from Debian ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

found_jdk=""
for release in /usr/lib/jvm/*/release; do
  v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release" 2>/dev/null || true)
  if [ -n "$v" ] && [ "$v" -ge 24 ]; then found_jdk=$(dirname "$release"); fi
done
if [ -z "${LAKEHOUSE_TRINO_JAVA_HOME:-}" ] && [ -z "$found_jdk" ]; then
  echo "warning: no JDK 24+ under /usr/lib/jvm; Trino 476 will not start." >&2
  echo "  fix: install a Temurin 25 JDK, or set LAKEHOUSE_TRINO_JAVA_HOME to a JDK 24+ home" >&2
fi
