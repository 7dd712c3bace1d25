"""Start, watch and stop the PyFlink stream jobs of `streaming/jobs` as local processes.

Each job runs in the streaming environment (`streaming/.venv`, its own Python and PyFlink) on a
local mini-cluster, one process per job and namespace. Its state folder
(`<home>/flink/<namespace>/<job>/`) keeps the checkpoints it resumes from, its log and
`status.json`, which the job rewrites every 2 s with the Flink job's state and newest checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from lakehouse.resources.kafka import ensure_topic
from lakehouse.security.kafka_access import client_config
from lakehouse.settings import REPO_ROOT, LakehouseSettings
from lakehouse.stack import fetch, process
from lakehouse.stack.errors import StackError

STREAMING_DIR = REPO_ROOT / "streaming"
REJECTS_OUTPUT = "stream_rejects"
CONNECTOR_JAR = "flink-sql-connector-kafka-5.0.0-2.2.jar"


@dataclass(frozen=True)
class FlinkJob:
    name: str  # the module in streaming/jobs
    output: str  # its output topic is `rt.<output>` (see LakehouseSettings.realtime_topic)
    description: str
    # The job's own arguments, each taken from a setting: (command-line flag, settings field).
    settings_args: tuple[tuple[str, str], ...] = ()

    def extra_args(self, s: LakehouseSettings) -> list[str]:
        return [arg for flag, field in self.settings_args for arg in (flag, str(getattr(s, field)))]


FLINK_JOBS = [
    FlinkJob("product_ctr", "product_ctr",
             "Click-through rate per product and minute (impressions against clicks) in one-minute "
             "event-time windows, written to Kafka when the watermark passes a window's end."),
    FlinkJob("cart_abandonment", "cart_abandonment",
             "Sessions that added to the cart and did not purchase, written when the session is over "
             "(no event for LAKEHOUSE_CART_ABANDON_MINUTES).",
             settings_args=(("--abandon-minutes", "cart_abandon_minutes"),)),
    FlinkJob("suspicious_purchases", "purchase_alerts",
             "Purchases far above the user's usual amount (amount_spike) or too many in a short "
             "window (burst), flagged within seconds.",
             settings_args=(("--amount-factor", "suspicious_amount_factor"),
                            ("--burst-count", "suspicious_burst_count"),
                            ("--burst-minutes", "suspicious_burst_minutes"))),
]  # fmt: skip


def by_name(name: str) -> FlinkJob:
    for job in FLINK_JOBS:
        if job.name == name:
            return job
    raise StackError(
        f"unknown stream job {name!r}", fix=f"choose from {', '.join(j.name for j in FLINK_JOBS)}"
    )


def namespace(s: LakehouseSettings) -> str:
    return s.schema_prefix.rstrip("_") or "main"


def state_dir(s: LakehouseSettings, job: FlinkJob) -> Path:
    return s.home / "flink" / namespace(s) / job.name


def _run_dir(s: LakehouseSettings) -> Path:
    return s.home / "run" / "flink"


def _record_name(s: LakehouseSettings, job: FlinkJob) -> str:
    return f"{namespace(s)}.{job.name}"


FLINK_GROUP_PREFIX = "lakehouse-flink-"  # the jobs' consumer groups and transactional ids (Kafka ACLs)


def group_id(s: LakehouseSettings, job: FlinkJob) -> str:
    return f"{FLINK_GROUP_PREFIX}{namespace(s)}-{job.name}"


def _python() -> Path:
    python = STREAMING_DIR / ".venv" / "bin" / "python"
    if not python.exists():
        raise StackError(
            f"the streaming environment is missing ({python})",
            fix="run `make setup` (it creates streaming/.venv with PyFlink)",
        )
    return python


def kafka_settings(s: LakehouseSettings) -> dict[str, str]:
    """The jobs' Kafka login as the flink principal: a 0600 file the (relocated) Kafka client reads through
    its file provider; the command line names the file only."""
    from lakehouse.security.kafka_access import FLINK_SHADE, java_client_file, java_client_reference

    folder = s.home / "flink"
    folder.mkdir(parents=True, exist_ok=True)
    return java_client_reference(
        s, java_client_file(s, "flink", folder, shade=FLINK_SHADE), shade=FLINK_SHADE
    )


def command(s: LakehouseSettings, job: FlinkJob) -> list[str]:
    jar = fetch.jar_set("flink", s.cache_dir) / CONNECTOR_JAR
    return [
        str(_python()), "-m", f"jobs.{job.name}",
        "--bootstrap", s.kafka_bootstrap,
        *(f"--kafka-property={k}={v}" for k, v in kafka_settings(s).items()),
        "--source-topic", s.events_topic,
        "--output-topic", s.realtime_topic(job.output),
        "--rejects-topic", s.realtime_topic(REJECTS_OUTPUT),
        "--group-id", group_id(s, job),
        "--state-dir", str(state_dir(s, job)),
        "--connector-jar", str(jar),
        "--checkpoint-seconds", str(s.flink_checkpoint_seconds),
        "--watermark-seconds", str(s.flink_watermark_seconds),
        "--idle-seconds", str(s.flink_idle_seconds),
        *job.extra_args(s),
    ]  # fmt: skip


def read_status(s: LakehouseSettings, job: FlinkJob) -> dict:
    try:
        return json.loads((state_dir(s, job) / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def process_record(s: LakehouseSettings, job: FlinkJob) -> process.ProcessRecord | None:
    record = process.read_record(_run_dir(s), _record_name(s, job))
    if record and not record.is_alive():
        process.drop_record(_run_dir(s), _record_name(s, job))
        return None
    return record


def running(s: LakehouseSettings, job: FlinkJob) -> bool:
    """Whether the job's process (started here) is alive."""
    return process_record(s, job) is not None


def log_path(s: LakehouseSettings, job: FlinkJob) -> Path:
    return state_dir(s, job) / "job.log"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def problem(s: LakehouseSettings, job: FlinkJob) -> str | None:
    """None when the job runs and checkpoints, else what is wrong."""
    status = read_status(s, job)
    if not running(s, job):
        error = f": {status['error']}" if status.get("error") else ""
        return f"the {job.name} job is not running (last state {status.get('state', 'unknown')}{error})"
    if status.get("state") != "RUNNING":
        return f"the {job.name} job is {status.get('state', 'starting')}"
    age = time.time() - status.get("updated_at", 0)
    if age > 30:
        return f"the {job.name} job has not reported for {age:.0f}s"
    checkpoint_at = status.get("checkpoint_at")
    allowed = 6 * s.flink_checkpoint_seconds + 60
    if checkpoint_at and time.time() - checkpoint_at > allowed:
        return f"the {job.name} job's last checkpoint is {time.time() - checkpoint_at:.0f}s old (outputs are not committed)"
    return None


def start(s: LakehouseSettings, job: FlinkJob, log=print, timeout: float = 300.0) -> dict:
    """Run the job if it is not running yet, and wait until Flink reports it RUNNING."""
    record = process_record(s, job)
    if record is None:
        for name in (job.output, REJECTS_OUTPUT):
            ensure_topic(client_config(s, "admin"), s.realtime_topic(name), partitions=1)
        folder = state_dir(s, job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "status.json").unlink(missing_ok=True)
        log(f"{job.name}: starting the Flink job (local mini-cluster) ...")
        record = process.launch(_run_dir(s), _record_name(s, job), command(s, job), log_path(s, job),
                                env={"FLINK_LOG_DIR": str(folder / "flink-log")}, cwd=STREAMING_DIR)  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(s, job)
        if status.get("state") == "RUNNING":
            log(f"{job.name}: running as Flink job {status['job_id']} (pid {record.pid})")
            return {**status, "pid": record.pid}
        if not record.is_alive() or status.get("state") in ("FAILED", "CANCELED", "FINISHED"):
            process.drop_record(_run_dir(s), _record_name(s, job))
            raise StackError(
                f"the {job.name} Flink job stopped while starting ({status.get('state', 'no status')}). "
                f"Last lines of {log_path(s, job)}:\n{_tail(log_path(s, job))}",
                fix=f"read the log; Flink's own log is in {state_dir(s, job) / 'flink-log'}. If a checkpoint "
                f"cannot be restored after the job changed, delete {state_dir(s, job) / 'checkpoints'}",
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"the {job.name} Flink job was not running after {timeout:.0f}s (state {status.get('state')})",
                fix=f"see {log_path(s, job)}",
            )
        time.sleep(1)


def stop(s: LakehouseSettings, job: FlinkJob, log=print) -> bool:
    record = process_record(s, job)
    if record is None:
        return False
    log(f"{job.name} ({namespace(s)}): stopping pid {record.pid} ...")
    process.terminate(record, timeout=30)
    process.drop_record(_run_dir(s), _record_name(s, job))
    return True


def stop_all(home: Path, log=print, only_namespace: str | None = None) -> int:
    """Stop every stream job started under `home` (all namespaces, or one)."""
    run_dir = home / "run" / "flink"
    stopped = 0
    for path in sorted(run_dir.glob("*.json")):
        name = path.stem
        if only_namespace and not name.startswith(f"{only_namespace}."):
            continue
        record = process.read_record(run_dir, name)
        if record and record.is_alive():
            log(f"stream job {name}: stopping pid {record.pid} ...")
            process.terminate(record, timeout=30)
            stopped += 1
        process.drop_record(run_dir, name)
    return stopped
