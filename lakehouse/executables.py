"""Find the command-line tools installed in this Python environment (dbt, dagster, weed)."""

import shutil
import sys
from pathlib import Path


def env_executable(name: str) -> str | None:
    """The environment's own `name` (even when the environment is not activated), else one on PATH."""
    local = Path(sys.prefix) / "bin" / name
    return str(local) if local.exists() else shutil.which(name)
