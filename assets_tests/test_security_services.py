"""Every service of the stack authenticates and listens on loopback only, and no secret is in sight.

Each test tries to get in: a socket bound beyond 127.0.0.1 (with a stream job's mini-cluster running),
PostgreSQL without or with a wrong password and through its socket as another user, the object store's
S3 API and the filer, volume and master ports below it unsigned or wrongly signed, Kafka Connect's REST
API asked for the connector's password, and every configured secret looked for in the logs, the process
table, the files others can read and what the Dagster UI shows of the resources.
"""

import os
import stat
import subprocess
from pathlib import Path

import boto3
import psutil
import psycopg
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from lakehouse import secrets_store
from lakehouse.stack import process
from lakehouse.stack.registry import SERVICES
from lakehouse.stack.services import Postgres

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def stack_processes(s) -> list[psutil.Process]:
    """The processes of the stack's services and stream jobs, with all their descendants."""
    run = s.home / "run"
    records = [process.read_record(run, p.stem) for p in run.glob("*.json")]
    records += [process.read_record(run / "flink", p.stem) for p in (run / "flink").glob("*.json")]
    found: dict[int, psutil.Process] = {}
    for record in filter(None, records):
        if not record.is_alive():
            continue
        root = psutil.Process(record.pid)
        for proc in [root, *root.children(recursive=True)]:
            found[proc.pid] = proc
    return list(found.values())


@pytest.fixture(scope="module")
def stream_job(namespace):
    """One stream job running in this module's namespace: its mini-cluster and gateway are listening too."""
    from lakehouse.realtime import flink

    s = namespace.settings
    job = flink.by_name("product_ctr")
    flink.start(s, job, log=lambda *_: None)
    yield job
    flink.stop(s, job, log=lambda *_: None)


def test_every_listening_socket_of_the_stack_is_on_loopback(stack, stream_job):
    procs = {p.pid: p for p in stack_processes(stack)}
    listening = [
        c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in procs
    ]
    exposed = [f"{c.laddr.ip}:{c.laddr.port} by {' '.join(procs[c.pid].cmdline())[:120]}"
               for c in listening if c.laddr.ip not in LOOPBACK]  # fmt: skip
    assert not exposed, "listening beyond 127.0.0.1:\n" + "\n".join(exposed)
    ports = {c.laddr.port for c in listening}
    expected = {port for svc in SERVICES for port in svc.ports(stack)}
    assert expected <= ports, (
        f"service ports not found listening (is the scan blind?): {sorted(expected - ports)}"
    )
    job_pids = {p.pid for p in stack_processes(stack) if "product_ctr" in " ".join(p.cmdline()) or
                any("product_ctr" in " ".join(a.cmdline()) for a in p.parents())}  # fmt: skip
    assert any(c.pid in job_pids for c in listening), "the stream job's own listening sockets were not seen"


def test_postgres_refuses_missing_and_wrong_passwords_and_other_users_on_its_socket(stack):
    s = stack
    for password in ("", "wrong-password", s.trino_password):
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(host="127.0.0.1", port=s.postgres_port, user=s.postgres_user, password=password,
                            dbname=s.postgres_db, connect_timeout=5).close()  # fmt: skip
        assert "password" in str(err.value).lower(), err.value
    with pytest.raises(psycopg.OperationalError):  # the superuser over TCP: password authentication as well
        psycopg.connect(host="127.0.0.1", port=s.postgres_port, user="postgres", password="postgres",
                        dbname="postgres", connect_timeout=5).close()  # fmt: skip
    sock = Postgres().socket_dir(s)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    denied = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/lib/postgresql/15/bin/psql", "-h", str(sock),
                             "-p", str(s.postgres_port), "-U", "postgres", "-c", "select 1"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr


def _s3(s, key, secret):
    return boto3.client("s3", endpoint_url=s.s3_endpoint, region_name=s.s3_region, aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))  # fmt: skip


def test_the_object_store_refuses_wrong_or_missing_credentials_on_every_port(stack):
    s = stack
    for key, secret, code in (
        (s.s3_access_key, "wrong", "SignatureDoesNotMatch"),
        ("nobody", "x", "InvalidAccessKeyId"),
    ):
        with pytest.raises(ClientError) as err:
            _s3(s, key, secret).list_objects_v2(Bucket=s.bucket, MaxKeys=1)
        assert err.value.response["Error"]["Code"] == code
    assert requests.get(f"{s.s3_endpoint}/{s.bucket}?list-type=2", timeout=10).status_code == 403
    assert requests.put(f"{s.s3_endpoint}/{s.bucket}/anonymous.txt", data=b"x", timeout=10).status_code == 403
    # the ports below the S3 API: the filer (every file of every bucket), the volume server (the bytes)
    assert requests.get(f"http://127.0.0.1:8888/buckets/{s.bucket}/", timeout=10).status_code == 401
    assert (
        requests.put(f"http://127.0.0.1:8888/buckets/{s.bucket}/evil.txt", data=b"x", timeout=10).status_code
        == 401
    )
    fid = requests.get("http://127.0.0.1:9333/dir/assign", timeout=10).json()["fid"]
    assert requests.post(f"http://127.0.0.1:9340/{fid}", files={"file": b"x"}, timeout=10).status_code == 401
    assert requests.get(f"http://127.0.0.1:9340/{fid}", timeout=10).status_code == 401
    client = _s3(s, s.s3_access_key, s.s3_secret_key)  # and the right credentials still work
    client.put_object(Bucket=s.bucket, Key="_security_probe/ok.txt", Body=b"ok")
    assert client.get_object(Bucket=s.bucket, Key="_security_probe/ok.txt")["Body"].read() == b"ok"
    client.delete_object(Bucket=s.bucket, Key="_security_probe/ok.txt")


def test_kafka_connect_never_shows_the_database_password(stack):
    from lakehouse.cdc.connector import rest

    s = stack
    base = f"http://127.0.0.1:{s.connect_port}/connectors"
    api = rest(s)
    answers = [api.get(f"{base}/lakehouse-cdc/config", timeout=10).text,
               api.get(f"{base}?expand=info&expand=status", timeout=10).text,
               api.get(f"{base}/lakehouse-cdc/tasks", timeout=10).text]  # fmt: skip
    assert all(s.postgres_password not in a for a in answers)
    assert "${file:" in answers[0]  # the configuration names the secret; the worker resolves it


def test_kafka_connect_refuses_requests_without_or_with_wrong_credentials(stack):
    s = stack
    base = f"http://127.0.0.1:{s.connect_port}/connectors"
    evil = {
        "name": "evil",
        "config": {"connector.class": "org.apache.kafka.connect.tools.MockSourceConnector"},
    }
    for auth in (None, (s.connect_user, "wrong"), ("nobody", s.connect_password), (s.connect_user, "")):
        assert requests.get(base, auth=auth, timeout=10).status_code == 401, auth
        assert requests.post(base, json=evil, auth=auth, timeout=10).status_code == 401, auth
    assert requests.get(base, auth=(s.connect_user, s.connect_password), timeout=10).status_code == 200
    assert "evil" not in requests.get(base, auth=(s.connect_user, s.connect_password), timeout=10).json()


def _secrets(s) -> dict[str, str]:
    return {name: value for name, value in secrets_store.load().items() if len(value) >= 12}


def readable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can read the file: its mode lets them, and every folder above
    it lets them through."""
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def test_no_secret_in_logs_the_process_table_readable_files_or_the_ui(stack):
    s = stack
    secrets = _secrets(s)
    assert len(secrets) >= 8, "the scan would prove nothing without the secrets"
    leaks = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        leaks += [
            f"process {proc.info['pid']} command line holds {n}" for n, v in secrets.items() if v in line
        ]
    assert not stat.S_IMODE(s.home.stat().st_mode) & (stat.S_IROTH | stat.S_IRGRP), "others can list the home"
    scanned = 0
    skip = {s.home / "data", s.home / "backups", s.home / "flink", s.home / "restore", s.home / "dbt_docs"}
    for dirpath, dirnames, filenames in os.walk(s.home):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_file() or path.stat().st_size > 20_000_000:
                continue
            text, scanned = path.read_bytes(), scanned + 1
            held = [n for n, v in secrets.items() if v.encode() in text]
            if held and (path.is_relative_to(s.home / "logs") or readable_by_others(path)):
                leaks.append(f"{path} (mode {stat.S_IMODE(path.stat().st_mode):o}) holds {', '.join(held)}")
    assert scanned > 30, f"only {scanned} files scanned"
    ui = _ui_resource_values()
    leaks += [f"the Dagster UI shows {n}" for n, v in secrets.items() if v in ui]
    assert not leaks, "\n".join(leaks)


def _ui_resource_values() -> str:
    """What the Dagster UI (its GraphQL API) shows of every resource's configuration."""
    import dagster as dg
    from dagster_graphql.test.utils import (
        define_out_of_process_context,
        execute_dagster_graphql,
        infer_repository_selector,
    )

    from lakehouse.settings import REPO_ROOT

    query = """query($sel: RepositorySelector!) { allTopLevelResourceDetailsOrError(repositorySelector: $sel) {
      __typename ... on ResourceDetailsList { results { name configuredValues { key value type } } } } }"""
    with (
        dg.instance_for_test() as instance,
        define_out_of_process_context(
            str(REPO_ROOT / "lakehouse" / "definitions.py"), "defs", instance
        ) as ctx,
    ):
        answer = execute_dagster_graphql(ctx, query, {"sel": infer_repository_selector(ctx)})
    results = answer.data["allTopLevelResourceDetailsOrError"]["results"]
    secret_fields = [
        v for r in results for v in r["configuredValues"] if "password" in v["key"] or "secret" in v["key"]
    ]
    assert secret_fields and all(v["type"] == "ENV_VAR" for v in secret_fields), secret_fields
    return str(results)


def test_pinot_refuses_anonymous_and_wrong_principals_and_groovy(stack):
    from lakehouse.realtime.pinot import PinotClient, PinotRejected

    s = stack
    controller, broker = s.pinot_controller_url, s.pinot_broker_url
    query = {"sql": "SELECT count(*) FROM security_probe"}

    def broker_error(auth) -> int | None:
        """The broker answers a refused query with HTTP 200 and Pinot's error 180 (access denied)."""
        answer = requests.post(f"{broker}/query/sql", json=query, auth=auth, timeout=10)
        if answer.status_code in (401, 403):
            return 180
        return (answer.json().get("exceptions") or [{}])[0].get("errorCode")

    for auth in (None, (s.pinot_admin_user, "wrong"), ("nobody", s.pinot_admin_password)):
        assert requests.get(f"{controller}/tables", auth=auth, timeout=10).status_code in (401, 403), auth
        assert broker_error(auth) == 180, auth
    reader = (s.pinot_reader_user, s.pinot_reader_password)
    assert broker_error(reader) != 180  # let in (the table does not exist: another error)
    assert requests.get(f"{controller}/tables", auth=reader, timeout=10).status_code == 200
    schema = {"schemaName": "security_probe", "dimensionFieldSpecs": [{"name": "x", "dataType": "STRING"}]}
    refused = requests.post(f"{controller}/schemas", json=schema, auth=reader, timeout=10)
    assert refused.status_code == 403, refused.text  # READ only
    assert PinotClient.from_settings(s).table_exists("security_probe") is False  # the admin can ask
    # a table config carrying a Groovy script (code run inside the server) is refused outright
    admin = PinotClient.from_settings(s)
    admin.apply_schema(schema)
    groovy = {"tableName": "security_probe", "tableType": "OFFLINE", "segmentsConfig": {"replication": "1"},
              "tenants": {}, "tableIndexConfig": {}, "metadata": {},
              "ingestionConfig": {"transformConfigs": [
                  {"columnName": "x", "transformFunction": "Groovy({'id'.execute().text}, x)"}]}}  # fmt: skip
    try:
        with pytest.raises(PinotRejected) as err:
            admin.apply_table(groovy)
        assert "groovy" in str(err.value).lower(), err.value
    finally:
        requests.delete(f"{controller}/schemas/security_probe", auth=admin.auth, timeout=10)


def test_a_service_gets_only_its_own_secrets_in_its_environment(stack):
    """The secrets `export` puts in the environment stay out of the services that need none of them
    (PostgreSQL's superuser could otherwise read them back from /proc/self/environ)."""
    s = stack
    secrets = _secrets(s)
    run = s.home / "run"
    checked = 0
    for name in ("postgres", "kafka", "zookeeper", "metastore", "pinot", "connect"):
        record = process.read_record(run, name)
        assert record and record.is_alive(), name
        environ = Path(f"/proc/{record.pid}/environ").read_bytes()
        held = [n for n, v in secrets.items() if v.encode() in environ]
        assert not held, f"{name}'s environment holds {held}"
        checked += 1
    trino = process.read_record(run, "trino")
    environ = Path(f"/proc/{trino.pid}/environ").read_bytes()
    assert s.trino_shared_secret.encode() in environ  # the scan sees what it looks for
    assert s.trino_password.encode() not in environ and checked == 6


def test_zookeeper_refuses_clients_without_the_stack_s_certificate(stack, tmp_path):
    """Pinot's cluster state (table configs included) is in ZooKeeper: its only client port takes mutual TLS
    with the stack's certificate (Pinot itself connects so: the stack is up)."""
    import socket

    from lakehouse.security import tls
    from lakehouse.stack.services import zookeeper_command

    s = stack
    assert zookeeper_command(s, b"ruok") == b"imok"  # the stack's certificate
    stranger = tls.paths(tmp_path)  # a certificate for the same names the stack never made
    tls.generate(stranger)
    assert zookeeper_command(s, b"ruok", client_cert=stranger.key_and_cert) is None
    with socket.create_connection(("127.0.0.1", s.zookeeper_port), timeout=5) as plain:  # no TLS at all
        plain.sendall(b"ruok")
        try:
            answer = plain.recv(16)
        except OSError:
            answer = b""
    assert answer != b"imok"


def _handshake(port: int, client_cert: tuple[str, str] | None, ca: str) -> str:
    """'ok' when a TLS connection to the port answers an HTTP/2 preface (gRPC), else the failure."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    if client_cert:
        context.load_cert_chain(*client_cert)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
        ):
            tls_sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            frame = tls_sock.recv(9)
            settings_frame = len(frame) == 9 and frame[3] == 0x04  # the server's HTTP/2 SETTINGS: it is gRPC
            return "ok" if settings_frame else f"answer {frame!r}"
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_seaweedfs_grpc_ports_refuse_callers_without_the_stack_s_certificate(stack, tmp_path):
    """The master's, volume's and filer's gRPC ports would serve files and metadata to anyone; with mutual
    TLS a caller without the stack's certificate is refused at the handshake."""
    from lakehouse.security import tls
    from lakehouse.stack.services import ObjectStore

    s = stack
    weed = process.read_record(s.home / "run", "objectstore")
    listening = {c.laddr.port for c in psutil.Process(weed.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}  # fmt: skip
    grpc = sorted(port + 10000 for port in ObjectStore().ports(s))  # SeaweedFS: each HTTP port + 10000
    assert set(grpc) <= listening, (grpc, listening)  # master, filer, volume and the S3 gateway
    cert = tls.paths(s.tls_dir)
    key = s.home / "data" / "objectstore" / "grpc" / "key.pem"
    stranger = tls.paths(tmp_path)  # a certificate for the same names the stack never made
    tls.generate(stranger)
    for port in grpc:
        assert _handshake(port, (str(cert.cert), str(key)), str(cert.cert)) == "ok", port  # the stack's own
        assert _handshake(port, None, str(cert.cert)) != "ok", port  # no client certificate
        assert (
            _handshake(port, (str(stranger.key_and_cert), str(stranger.key_and_cert)), str(cert.cert)) != "ok"
        )
