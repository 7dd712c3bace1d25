"""Kafka principals and their ACLs: one SCRAM principal per client, each allowed only what it does.

| client   | principal (default) | may                                                                    |
| -------- | ------------------- | ---------------------------------------------------------------------- |
| admin    | admin               | everything (super user): the broker itself, `stack up`, backups        |
| landing  | landing             | read the events, CDC, real-time and audit topics; its groups; write the |
|          |                     | alerts topic (the code location's principal: its alert sensors)         |
| producer | clickstream         | write (and create) the events topic                                    |
| connect  | debezium            | Kafka Connect: its `_connect-*` topics and group, write the CDC topics |
| flink    | flink               | read the events topic, write the real-time topics (transactions)      |
| pinot    | pinot               | read the real-time topics and its tables' CDC topics (not customers)   |
| trino    | trino               | write the audit topic                                                  |

The local broker (lakehouse/stack/services.py) has one client listener (SASL_PLAINTEXT on loopback: SCRAM
for the clients, PLAIN for the super user, whose password is in the broker's 0600 config) and a PLAIN
controller listener; everyone not granted is refused (`allow.everyone.if.no.acl.found=false`).

Python clients get `client_config()`; JVM clients get a 0600 properties file holding their JAAS line and
name it through Kafka's FileConfigProvider (`java_client_reference()`), so no password is in their command
line, their table or connector configuration, or their logs."""

from __future__ import annotations

from pathlib import Path

from lakehouse.settings import LakehouseSettings

CLIENTS = ("admin", "landing", "producer", "connect", "flink", "pinot", "trino")
SCRAM_ITERATIONS = 8192
_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
_FILE_PROVIDER = "org.apache.kafka.common.config.provider.FileConfigProvider"
# flink-sql-connector-kafka relocates the Kafka client's classes
FLINK_SHADE = "org.apache.flink.kafka.shaded."


def secured(s: LakehouseSettings) -> bool:
    return s.kafka_security_protocol != "PLAINTEXT"


def client_config(s: LakehouseSettings, client: str, mechanism: str | None = None) -> dict[str, str]:
    """librdkafka (confluent_kafka) settings of `client`: the brokers and its credentials."""
    from lakehouse.resources.kafka import KafkaResource

    if client not in CLIENTS:
        raise ValueError(f"unknown Kafka client {client!r}: one of {', '.join(CLIENTS)}")
    conf = KafkaResource.from_settings(s, client).client_config()
    if mechanism and "sasl.mechanism" in conf:
        conf["sasl.mechanism"] = mechanism
    return conf


def jaas(s: LakehouseSettings, client: str, mechanism: str | None = None, shade: str = "") -> str:
    """The JAAS line a JVM client logs in with (`shade`: the package prefix of a relocated client)."""
    user, password = s.kafka_principal(client)
    module = shade + _MODULES[mechanism or s.kafka_sasl_mechanism]
    return f'{module} required username="{jaas_escape(user)}" password="{jaas_escape(password)}";'


def java_client_file(s: LakehouseSettings, client: str, folder: Path, shade: str = "") -> Path:
    """Write `folder/kafka-client.properties` (0600): the client's security settings with its JAAS line."""
    from lakehouse.secrets_store import write_private
    from lakehouse.stack.services import java_properties

    values = java_client_settings(s)
    if secured(s):
        values["sasl.jaas.config"] = jaas(s, client, shade=shade)
    path = folder / "kafka-client.properties"
    write_private(path, java_properties(values))
    return path


def java_client_settings(s: LakehouseSettings) -> dict[str, str]:
    """A JVM client's Kafka security settings without any secret (the login comes from `jaas_login`)."""
    values = {"security.protocol": s.kafka_security_protocol}
    if secured(s):
        values["sasl.mechanism"] = s.kafka_sasl_mechanism
        if s.kafka_ssl_ca_file:
            values |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(s.kafka_ssl_ca_file)}
    return values


def jaas_login(
    s: LakehouseSettings, client: str, folder: Path, sections: dict[str, str] | None = None
) -> str:
    """For a JVM that logs its Kafka clients' configuration (Trino) or cannot resolve config providers
    (Pinot's Kafka 2.8 client): the JVM option naming a 0600 JAAS file whose `KafkaClient` section its
    Kafka clients log in with, when their settings (java_client_settings) hold no `sasl.jaas.config`."""
    from lakehouse.secrets_store import write_private

    path = folder / "kafka-jaas.conf"
    write_private(path, f"KafkaClient {{\n  {jaas(s, client)}\n}};\n" if secured(s) else "")
    return f"-Djava.security.auth.login.config={path}"


def java_client_reference(
    s: LakehouseSettings, path: Path, shade: str = "", provider: str = "lakehousefile"
) -> dict[str, str]:
    """Kafka client settings of a JVM client that name its secret file instead of holding the password:
    Kafka's FileConfigProvider (alias `provider`) reads the JAAS line from `path` when the client starts."""
    values = java_client_settings(s)
    if secured(s):
        values |= {"sasl.jaas.config": f"${{{provider}:{path}:sasl.jaas.config}}",
                   "config.providers": provider,
                   f"config.providers.{provider}.class": shade + _FILE_PROVIDER}  # fmt: skip
    return values


def broker_settings(s: LakehouseSettings) -> dict[str, str]:
    """server.properties entries of the local broker: listeners, SASL and the authorizer."""
    user, password = s.kafka_principal("admin")
    plain = jaas(s, "admin", mechanism="PLAIN")[:-1] + f' user_{user}="{jaas_escape(password)}";'
    return {
        "listeners": f"CLIENT://{s.kafka_bootstrap},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
        "advertised.listeners": f"CLIENT://{s.kafka_bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENT",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "listener.name.client.plain.sasl.jaas.config": plain,
        "listener.name.client.scram-sha-512.sasl.jaas.config": _MODULES["SCRAM-SHA-512"] + " required;",
        "listener.name.client.scram-sha-256.sasl.jaas.config": _MODULES["SCRAM-SHA-256"] + " required;",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{user}",
        "allow.everyone.if.no.acl.found": "false",
    }


def jaas_escape(value: str) -> str:
    """A value inside a JAAS option's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def grants(s: LakehouseSettings) -> list[tuple[str, str, str, str, list[str]]]:
    """(client, resource type, pattern type, resource name, operations) of every ACL: least privilege."""
    from lakehouse.realtime.flink import FLINK_GROUP_PREFIX
    from lakehouse.realtime.pinot import PINOT_TABLES, CdcTable

    pinot_cdc_topics = sorted({t.topic(s) for t in PINOT_TABLES if isinstance(t, CdcTable)})

    cdc, rt = f"{s.cdc_topic_prefix}.", s.realtime_topic("")
    read = ["READ", "DESCRIBE"]
    return [
        # the events topic and the topics named after it (`<events topic>.<something>`)
        ("landing", "TOPIC", "PREFIXED", s.events_topic, read),
        ("landing", "TOPIC", "PREFIXED", cdc, read),
        ("landing", "TOPIC", "PREFIXED", rt, read),  # the stream jobs' outputs land in raw too
        ("landing", "TOPIC", "LITERAL", s.trino_audit_topic, read),
        ("landing", "GROUP", "LITERAL", "lakehouse-ingest", ["READ", "DESCRIBE"]),
        ("landing", "TOPIC", "LITERAL", s.alerts_topic, ["WRITE", "DESCRIBE"]),  # the alert sensors
        ("landing", "GROUP", "PREFIXED", "lakehouse-probe-", ["READ", "DESCRIBE"]),
        ("producer", "TOPIC", "PREFIXED", s.events_topic, ["WRITE", "DESCRIBE", "CREATE"]),
        ("connect", "TOPIC", "PREFIXED", cdc, ["WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS"]),
        ("connect", "TOPIC", "PREFIXED", "__debezium-heartbeat", ["WRITE", "DESCRIBE", "CREATE"]),
        ("connect", "TOPIC", "PREFIXED", "_connect-", ["ALL"]),
        ("connect", "GROUP", "LITERAL", "lakehouse-connect", ["ALL"]),
        ("connect", "BROKER", "LITERAL", "kafka-cluster", ["DESCRIBE", "DESCRIBE_CONFIGS"]),
        ("flink", "TOPIC", "PREFIXED", s.events_topic, read),
        ("flink", "TOPIC", "PREFIXED", rt, ["WRITE", "DESCRIBE"]),
        ("flink", "GROUP", "PREFIXED", FLINK_GROUP_PREFIX, ["READ", "DESCRIBE"]),
        ("flink", "TRANSACTIONAL_ID", "PREFIXED", FLINK_GROUP_PREFIX, ["WRITE", "DESCRIBE"]),
        ("pinot", "TOPIC", "PREFIXED", rt, read),
        # only the change topics its tables consume (not customers': clear PII)
        *(("pinot", "TOPIC", "LITERAL", topic, read) for topic in pinot_cdc_topics),
        ("pinot", "GROUP", "PREFIXED", "lakehouse-pinot-", ["READ", "DESCRIBE"]),
        ("trino", "TOPIC", "LITERAL", s.trino_audit_topic, ["WRITE", "DESCRIBE"]),
    ]


def install(s: LakehouseSettings, log=print, extra: list | None = None, prune: bool = False) -> None:
    """Create or update every client's SCRAM credentials, then their ACLs (as the super user, over PLAIN);
    `extra`: more grants in the form of `grants()` (a test namespace's topics, say); `prune` (`stack up`):
    remove the clients' ACLs that are not granted (any more), e.g. after a narrowing of `grants()`."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from lakehouse.stack.errors import StackError

    admin = AdminClient(client_config(s, "admin", mechanism="PLAIN"))
    # one request per mechanism: Kafka alters a user's credential once per request
    upserts = [[UserScramCredentialUpsertion(user, ScramCredentialInfo(m, SCRAM_ITERATIONS), password.encode())
                for user, password in map(s.kafka_principal, CLIENTS)]
               for m in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)]  # fmt: skip
    bindings = [
        AclBinding(ResourceType[kind], name, ResourcePatternType[pattern], f"User:{s.kafka_principal(client)[0]}",
                   "*", AclOperation[op], AclPermissionType.ALLOW)
        for client, kind, pattern, name, ops in [*grants(s), *(extra or [])] for op in ops
    ]  # fmt: skip
    try:
        for request in upserts:
            for future in admin.alter_user_scram_credentials(request).values():
                future.result(30)
        for future in admin.create_acls(bindings).values():
            future.result(30)
        stale = _stale_acls(admin, s, bindings) if prune else []
        for future in admin.delete_acls(stale).values() if stale else []:
            future.result(30)
    except KafkaException as exc:
        raise StackError(f"Kafka refused the principals' credentials or ACLs: {exc}",
                         fix="read `lakehouse stack logs kafka`; remove .lakehouse/data/kafka if its "
                         "metadata predates SASL (its topics are lost)") from exc  # fmt: skip
    log(
        f"  Kafka: {len(CLIENTS)} SCRAM principals, {len(bindings)} ACLs"
        + (f", {len(stale)} no longer granted removed" if stale else "")
    )


def _key(binding) -> tuple:
    return (binding.restype, binding.name, binding.resource_pattern_type, binding.principal, binding.host,
            binding.operation, binding.permission_type)  # fmt: skip


def _stale_acls(admin, s: LakehouseSettings, wanted: list) -> list:
    """Filters matching exactly the ACLs of the clients' principals that `wanted` does not hold."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    keep = {_key(b) for b in wanted}
    stale = []
    for client in CLIENTS[1:]:  # not the super user's
        query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{s.kafka_principal(client)[0]}",
                                 None, AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
        for binding in admin.describe_acls(query).result(30):
            if _key(binding) not in keep:
                stale.append(AclBindingFilter(*_key(binding)))
    return stale
