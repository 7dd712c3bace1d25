"""`dagster-daemon` with the lakehouse's fault points at the sensor daemon's crash windows.

Dagster's sensor daemon calls `check_for_debug_crash(flags, "RUN_CREATED")` once a run requested by a tick
is stored and `..."RUN_LAUNCHED")` once it was submitted, both before the tick's cursor is saved. This
wrapper (tests only) turns those into `lakehouse.faults` points named `dagster-sensor.run_created` and
`dagster-sensor.run_launched`: armed by LAKEHOUSE_FAULT, the daemon is SIGKILLed exactly there and the
marker file says so. Usage: python daemon_with_fault_points.py run -w workspace.yaml
"""

import sys

import dagster._daemon.sensor as sensor_daemon
from dagster._daemon.cli import main

from lakehouse.faults import fault_point

_check = sensor_daemon.check_for_debug_crash


def _with_fault_point(flags, name):
    fault_point(f"dagster-sensor.{name.lower()}")
    return _check(flags, name)


sensor_daemon.check_for_debug_crash = _with_fault_point

if __name__ == "__main__":
    sys.argv[0] = "dagster-daemon"
    sys.exit(main())
