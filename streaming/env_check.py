"""Check the PyFlink environment: run a tiny Table API job on a local mini-cluster.

Run with the streaming environment's Python: `streaming/.venv/bin/python streaming/env_check.py`.
Prints `pyflink: OK <version> <rows>` when Flink, its JVM (Java 17) and Python workers all work.
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment
from pyflink.version import __version__


def main() -> int:
    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    env.get_config().set("parallelism.default", "1")
    rows = env.execute_sql(
        "SELECT event_type, COUNT(*) AS n FROM (VALUES ('click'), ('impression'), ('impression')) "
        "AS t(event_type) GROUP BY event_type"
    ).collect()
    with rows:
        result = sorted((r[0], r[1]) for r in rows)
    if result != [("click", 1), ("impression", 2)]:
        print(f"pyflink: unexpected result {result}", file=sys.stderr)
        return 1
    print(f"pyflink: OK {__version__} {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
