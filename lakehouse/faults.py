"""Fault hooks for the crash tests: kill this process at a named point, and leave proof that it did.

`LAKEHOUSE_FAULT` lists the points to fire at, each with an optional probability
(`lakehouse-bronze.before_commit` or `lakehouse-raw.before_commit@0.5`, comma-separated). Before
the SIGKILL, the hook appends the point's name to the file named by `LAKEHOUSE_FAULT_MARKER` (if
set), so a test can assert that the crash happened exactly where it claims, not somewhere else.
Never set outside tests: without the variable a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import random
import signal

FAULT_ENV = "LAKEHOUSE_FAULT"
FAULT_MARKER_ENV = "LAKEHOUSE_FAULT_MARKER"


def armed(spec: str) -> dict[str, float]:
    """The points a `LAKEHOUSE_FAULT` value names, with their probability (1 when none is given)."""
    points = {}
    for item in spec.split(","):
        name, _, probability = item.strip().partition("@")
        if name:
            points[name] = float(probability) if probability else 1.0
    return points


def fault_point(name: str) -> None:
    """Kill this process here (SIGKILL: no cleanup, like a power cut) if the point is armed."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    probability = armed(spec).get(name)
    if probability is None or random.random() >= probability:
        return
    marker = os.environ.get(FAULT_MARKER_ENV)
    if marker:
        with open(marker, "a") as out:
            out.write(name + "\n")
            out.flush()
            os.fsync(out.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def fired(marker_path: str | os.PathLike) -> list[str]:
    """The points that killed a process, in order, from a marker file (empty if none fired)."""
    try:
        with open(marker_path) as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []
