"""Download and cache the JVM artifacts of the stack from Maven Central.

Maven does the transfer (it writes to a temporary file and checks the published checksum,
`-C` makes a mismatch fatal), so a half-downloaded file is never taken for a whole one. What we
build from the downloads (a jar folder, an unpacked server) is made in a temporary folder and
renamed into place with a marker file last, so an interrupted run is detected and redone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from lakehouse.stack.errors import StackError

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
COMPLETE_MARKER = ".complete"


def _require_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven (`mvn`) is not installed; the stack fetches its jars from Maven Central with it.",
            fix="apt-get install -y maven",
        )
    return mvn


def _local_repo() -> Path:
    """Maven's local repository, passed explicitly: Java takes the home folder from the passwd
    entry rather than $HOME, and we must look where Maven writes."""
    return Path.home() / ".m2" / "repository"


def _run_maven(args: list[str], what: str) -> None:
    cmd = [_require_maven(), "-B", "-q", "-C", f"-Dmaven.repo.local={_local_repo()}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(
            f"downloading {what} from Maven Central failed:\n{tail}",
            fix="check the network access to Maven Central and run the command again "
            "(completed downloads are cached in ~/.m2 and reused)",
        )


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).exists()


def _publish(tmp: Path, final: Path) -> Path:
    """Move a freshly built folder into place, marking it complete."""
    (tmp / COMPLETE_MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def jar_set(pom_name: str, cache_dir: Path, log=print) -> Path:
    """All runtime jars of a pom in `stack/maven/`, copied into `<cache>/jars/<name>-<pom digest>/` (a changed
    pom is a new set: a warm cache never serves the jars of an older one)."""
    pom = MAVEN_DIR / f"{pom_name}.xml"
    final = cache_dir / "jars" / f"{pom_name}-{_sha1(pom)[:10]}"
    if is_complete(final):
        return final
    log(f"  fetching {pom_name} jars from Maven Central (cached afterwards) ...")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pom_name}-", dir=final.parent))
    try:
        _run_maven(
            [
                "-f",
                str(MAVEN_DIR / f"{pom_name}.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            f"the {pom_name} jars",
        )
        return _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def maven_file(
    group: str, artifact: str, version: str, ext: str, log=print, classifier: str | None = None
) -> Path:
    """One artifact from Maven Central, verified against its published SHA-1."""
    name = f"{artifact}-{version}-{classifier}.{ext}" if classifier else f"{artifact}-{version}.{ext}"
    path = _local_repo() / group.replace(".", "/") / artifact / version / name
    for attempt in (1, 2):
        if not path.exists():
            log(f"  downloading {path.name} from Maven Central (cached in ~/.m2 afterwards) ...")
            _run_maven(
                [
                    "dependency:get",
                    f"-Dartifact={group}:{artifact}:{version}:{ext}{':' + classifier if classifier else ''}",
                    "-Dtransitive=false",
                ],  # fmt: skip
                f"{artifact}-{version}.{ext}",
            )
        if not path.exists():
            raise StackError(f"Maven reported success but {path} is not there", fix="run the command again")
        sha_file = path.with_name(path.name + ".sha1")
        expected = sha_file.read_text().split()[0].strip() if sha_file.exists() else None
        if expected is None or _sha1(path) == expected:
            return path
        # A corrupt or truncated file in the local repository: drop it and fetch it once more.
        path.unlink(missing_ok=True)
        sha_file.unlink(missing_ok=True)
        if attempt == 2:
            raise StackError(
                f"{path.name} does not match its published SHA-1 after a fresh download",
                fix=f"delete {path.parent} and run the command again",
            )
    return path


def unpacked_tarball(archive: Path, final: Path, keep_plugins: set[str] | None = None, log=print) -> Path:
    """Unpack a server tarball into `final` (its single top folder), optionally pruning plugins."""
    if is_complete(final):
        return final
    log(f"  unpacking {archive.name} ...")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="tar")
        except (tarfile.TarError, EOFError, OSError) as exc:
            archive.unlink(missing_ok=True)
            raise StackError(
                f"{archive.name} is damaged ({exc}); it has been deleted",
                fix="run the command again to download it anew",
            ) from exc
        (top,) = [p for p in tmp.iterdir() if p.is_dir()]
        if keep_plugins is not None:
            for plugin in (top / "plugin").iterdir():
                if plugin.name not in keep_plugins:
                    shutil.rmtree(plugin)
        return _publish(top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


AGENT_SOURCE = Path(__file__).resolve().parent / "agent"
AGENT_JAR = "lakehouse-loopback-agent.jar"
PINOT_FUNCTIONS_SOURCE = Path(__file__).resolve().parent.parent / "realtime" / "pinot_functions"


def built_jar(name: str, source: Path, cache_dir: Path, classpath: list[Path], bundled: list[Path] = (),
              manifest: str = "", log=print) -> Path:  # fmt: skip
    """A jar of the project's own Java sources under `source`, compiled with this machine's JDK against
    `classpath`, the `bundled` jars' classes inside it; cached under a name that changes with the sources."""
    sources = sorted(source.rglob("*.java"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + manifest.encode()
                            + " ".join(p.name for p in [*classpath, *bundled]).encode())  # fmt: skip
    final = cache_dir / f"{name}-{digest.hexdigest()[:12]}"
    if is_complete(final):
        return final / f"{name}.jar"
    log(f"  building {name} (javac) ...")
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if not (javac and jar):
        raise StackError(f"building {name} needs a JDK (javac and jar), found only a runtime",
                         fix="apt-get install -y openjdk-17-jdk-headless")  # fmt: skip
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        classes = tmp / "classes"
        classes.mkdir()
        steps = [
            [javac, "--release", "11", "-nowarn", "-cp", ":".join(map(str, classpath)), "-d", str(classes),
             *map(str, sources)],
            *[[jar, "xf", str(b)] for b in bundled],
        ]  # fmt: skip
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, cwd=classes)
            if proc.returncode != 0:
                raise StackError(f"building {name} failed: {(proc.stdout + proc.stderr)[-800:]}",
                                 fix="check the JDK (`javac -version`) and run the command again")  # fmt: skip
        shutil.rmtree(classes / "META-INF", ignore_errors=True)
        (tmp / "MANIFEST.MF").write_text(manifest)
        proc = subprocess.run([jar, "cfm", str(tmp / f"{name}.jar"), str(tmp / "MANIFEST.MF"), "-C", str(classes), "."],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise StackError(f"packing {name} failed: {proc.stderr[-800:]}", fix="run the command again")
        shutil.rmtree(classes)
        (tmp / "MANIFEST.MF").unlink()
        return _publish(tmp, final) / f"{name}.jar"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def loopback_agent(cache_dir: Path, log=print) -> Path:
    """The loopback agent's jar (lakehouse/stack/agent), Byte Buddy inside it."""
    buddy = sorted(jar_set("loopback-agent", cache_dir, log=log).glob("byte-buddy-*.jar"))
    return built_jar("lakehouse-loopback-agent", AGENT_SOURCE, cache_dir, buddy, bundled=buddy, log=log,
                     manifest="Premain-Class: lakehouse.agent.LoopbackAgent\nCan-Retransform-Classes: true\n"
                              "Can-Redefine-Classes: true\n")  # fmt: skip


def pinot_functions(cache_dir: Path, log=print) -> Path:
    """The scalar functions Pinot's CDC table unpacks Debezium's envelope with (lakehouse/realtime/pinot_functions)."""
    spi = sorted(jar_set("pinot", cache_dir, log=log).glob("pinot-spi-*.jar"))
    return built_jar("lakehouse-pinot-functions", PINOT_FUNCTIONS_SOURCE, cache_dir, spi, log=log)
