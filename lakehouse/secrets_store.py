"""Where the platform's secrets come from: the environment, else one secrets file only its owner can read.

No secret has a default in the code. On first use, every secret the environment does not set is generated
(random, URL-safe) into `<LAKEHOUSE_HOME>/secrets.env` (or `LAKEHOUSE_SECRETS_FILE`), mode 0600; a file
others can read, or one owned by someone else, is refused with the command that fixes it. Values are
exported to this process's environment as their `LAKEHOUSE_*` variables, so subprocesses (dbt) and Dagster's
`EnvVar` see the same ones, and nothing needs to pass a secret on a command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from pathlib import Path

from lakehouse.stack.errors import StackError

# Every secret setting. Adding one here is enough: it is generated on first use, never printed, kept out of
# config files others can read, and scanned for by the secret-scan test.
SECRET_FIELDS = (
    "s3_secret_key",
    "postgres_password",
    "superset_secret_key",
    "superset_admin_password",
    "trino_password",
    "trino_analyst_password",
    "trino_bi_password",
    "trino_merchant_password",
    "trino_shared_secret",
    "pinot_admin_password",
    "pinot_reader_password",
    "connect_password",
    "dagster_db_password",
    "kafka_admin_password",
    "kafka_landing_password",
    "kafka_producer_password",
    "kafka_connect_password",
    "kafka_flink_password",
    "kafka_pinot_password",
    "kafka_trino_password",
)
ENV_PREFIX = "LAKEHOUSE_"
REPO_HOME = Path(__file__).resolve().parent.parent / ".lakehouse"


def variable(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def secrets_path(environ: os._Environ | dict | None = None) -> Path:
    """`LAKEHOUSE_SECRETS_FILE`, else `secrets.env` in `LAKEHOUSE_HOME` (default: the repo's .lakehouse)."""
    env = os.environ if environ is None else environ
    if env.get("LAKEHOUSE_SECRETS_FILE"):
        return Path(env["LAKEHOUSE_SECRETS_FILE"]).expanduser()
    home = Path(env["LAKEHOUSE_HOME"]).expanduser() if env.get("LAKEHOUSE_HOME") else REPO_HOME
    return home / "secrets.env"


def check_private(path: Path) -> None:
    """Refuse a secrets file that someone other than its owner can read or write, or that another user owns."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StackError(f"the secrets file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o})",
                         fix=f"chmod 600 {path}")  # fmt: skip
    if info.st_uid != os.geteuid():
        raise StackError(f"the secrets file {path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})",
                         fix=f"chown {os.geteuid()} {path}, or point LAKEHOUSE_SECRETS_FILE at your own")  # fmt: skip


def parse(text: str, path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().startswith(ENV_PREFIX):
            raise StackError(f"{path} line {number} is not LAKEHOUSE_NAME=value",
                             fix=f"correct or delete that line of {path} (a deleted secret is generated anew)")  # fmt: skip
        values[name.strip()] = value.strip()
    return values


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace a file atomically (a reader never sees half of it), its mode set before it has any content:
    the one way the platform writes a file that holds or guards a secret."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # O_EXCL, 0600, unpredictable
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_secrets(path: Path, values: dict[str, str]) -> None:
    header = ("# Secrets of the local lakehouse stack (generated; mode 0600). An environment variable of the\n"
              "# same name wins over a line here. Delete a line to have it generated anew.\n")  # fmt: skip
    write_private(path, header + "".join(f"{name}={value}\n" for name, value in values.items()))


def load(environ: dict | None = None, generate: bool = True) -> dict[str, str]:
    """{variable: value} of every secret: the environment's, else the file's; missing ones are generated into
    the file (under a lock, so concurrent first uses agree)."""
    env = os.environ if environ is None else environ
    path = secrets_path(env)
    wanted = [variable(f) for f in SECRET_FIELDS]
    if all(env.get(v) for v in wanted):
        return {v: env[v] for v in wanted}
    with _locked(path):
        stored: dict[str, str] = {}
        if path.exists():
            check_private(path)
            stored = parse(path.read_text(), path)
        missing = [v for v in wanted if not env.get(v) and not stored.get(v)]
        if missing and generate:
            stored.update({v: secrets.token_urlsafe(24) for v in missing})
            _write_secrets(path, stored)
    return {v: env.get(v) or stored.get(v, "") for v in wanted}


def export(environ: dict | None = None) -> dict[str, str]:
    """`load`, and set each secret's variable in this process's environment where it is not set."""
    env = os.environ if environ is None else environ
    values = load(env)
    for name, value in values.items():
        if not env.get(name):  # unset or empty
            env[name] = value
    return values


def without_secrets(environ: dict | os._Environ) -> dict[str, str]:
    """An environment for a process that needs none of the platform's secrets (a service is given its own
    explicitly): the secrets `export` put there are left out."""
    names = {variable(f) for f in SECRET_FIELDS}
    return {k: v for k, v in environ.items() if k not in names}
