"""docker-compose.yml offers the same services, ports and variables as the local stack.

No Docker engine runs here, so the file is checked by parsing it against the stack's own definitions.
"""

import re
from pathlib import Path

import yaml

from lakehouse.settings import REPO_ROOT, LakehouseSettings
from lakehouse.stack.registry import SERVICES

COMPOSE = REPO_ROOT / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def published(service: dict) -> set[int]:
    ports = set()
    for spec in service.get("ports", []):
        host_part = str(spec).rsplit(":", 1)[0]  # 127.0.0.1:${VAR:-5432}
        match = re.search(r"(\d+)\}?$", host_part)
        assert match, spec
        ports.add(int(match.group(1)))
        assert str(spec).startswith("127.0.0.1:"), f"{spec} must be published on 127.0.0.1 only"
    return ports


def test_every_local_service_has_its_twin_with_the_same_ports(clean_env):
    services = compose()["services"]
    defaults = LakehouseSettings(_env_file=None)
    for svc in SERVICES:
        assert svc.name in services, f"{svc.name} is missing from docker-compose.yml"
        assert set(svc.ports(defaults)) <= published(services[svc.name]), svc.name


def test_compose_variables_are_settings_of_the_project():
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{(?:ENV:)?(LAKEHOUSE_[A-Z0-9_]+)", text))
    used |= set(re.findall(r"\$\{(?:ENV:)?(LAKEHOUSE_[A-Z0-9_]+)", (REPO_ROOT / "docker").joinpath(
        "trino/etc/catalog/delta.properties").read_text()))  # fmt: skip
    fields = {f"LAKEHOUSE_{name.upper()}" for name in LakehouseSettings.model_fields}
    assert used, "compose should be configured by LAKEHOUSE_* variables"
    assert used <= fields, f"unknown variables: {sorted(used - fields)}"
    for name in ("LAKEHOUSE_S3_ACCESS_KEY", "LAKEHOUSE_S3_SECRET_KEY", "LAKEHOUSE_BUCKET"):
        assert name in used


def test_compose_defaults_match_the_settings_defaults(clean_env):
    defaults = LakehouseSettings(_env_file=None)
    text = COMPOSE.read_text()
    found = re.findall(r"\$\{(LAKEHOUSE_[A-Z0-9_]+):-([^}]*)\}", text)
    assert found, "compose should give its LAKEHOUSE_* variables defaults"
    for var, default in found:
        value = getattr(defaults, var.removeprefix("LAKEHOUSE_").lower())
        value = str(value).lower() if isinstance(value, bool) else value  # compose spells booleans lower case
        assert str(value) == default, f"{var}: compose default {default!r} != settings default {value!r}"


def test_mounted_files_exist():
    sources = [str(volume).split(":", 1)[0] for service in compose()["services"].values()
               for volume in service.get("volumes", [])]  # fmt: skip
    files = [source for source in sources if source.startswith("./")]
    assert files, "compose should mount the repository's configuration files"
    generated = {
        "./.lakehouse/trino/etc/rules.json",
        "./.lakehouse/trino/etc/password.db",
        "./.lakehouse/tls",
    }
    for source in files:
        if source.startswith("./.lakehouse/"):  # written by `lakehouse security init` (see the next test)
            assert source in generated, source
            continue
        assert (REPO_ROOT / Path(source)).exists(), source


def test_security_init_writes_what_compose_mounts(tmp_path, monkeypatch):
    from lakehouse.security import tls, trino_access

    s = LakehouseSettings(home=tmp_path)
    cert = tls.ensure(s.tls_dir, print)
    trino_access.install(s, s.home / "trino" / "etc", print)
    for name in ("rules.json", "password.db"):
        assert (tmp_path / "trino" / "etc" / name).is_file()
    assert (
        cert.key_and_cert.name == "server.pem" and cert.cert.name == "ca.pem"
    )  # the names config.properties uses
    compose_config = (REPO_ROOT / "docker" / "trino" / "etc" / "config.properties").read_text()
    assert "/etc/trino/tls/server.pem" in compose_config and "/etc/trino/tls/ca.pem" in compose_config
