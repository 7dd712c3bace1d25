"""Where alerts go: one JSON line in the alert log, then one message on the Kafka alerts topic (see
lakehouse/alerts.py for the sensors that raise them)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from lakehouse.resources.kafka import KafkaResource

RUN_FAILED, FRESHNESS_FAILED = "run_failed", "freshness_failed"


def alert(kind: str, subject: str, message: str, *, occurrence: str, **details) -> dict:
    """An alert record; `occurrence` makes its id (the same failure seen twice is one alert)."""
    ident = hashlib.sha256(f"{kind}\0{subject}\0{occurrence}".encode()).hexdigest()[:16]
    return {"id": ident, "kind": kind, "subject": subject, "message": message, "at": time.time(), **details}


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go: the alert log and the Kafka topic."""

    log_path: str
    topic: str = "ops.alerts"
    webserver_url: str = ""
    kafka: KafkaResource

    @classmethod
    def from_settings(cls, s, env_secrets: bool = False) -> AlertsResource:
        return cls(log_path=str(s.alerts_log), topic=s.alerts_topic,
                   webserver_url=f"http://127.0.0.1:{s.dagster_port}",
                   kafka=KafkaResource.from_settings(s, env_secrets=env_secrets))  # fmt: skip

    def logged_ids(self) -> set[str]:
        path = Path(self.log_path)
        if not path.exists():
            return set()
        return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}

    def publish(self, records: list[dict]) -> None:
        """Append the records not yet in the log, then send them all to Kafka (raises when it cannot)."""
        from lakehouse.resources.kafka import make_producer

        if not records:
            return
        path = Path(self.log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seen = self.logged_ids()
        with path.open("a") as f:
            for record in records:
                if record["id"] not in seen:
                    f.write(json.dumps(record, sort_keys=True) + "\n")
        errors: list[str] = []
        producer = make_producer({**self.kafka.client_config(), "message.timeout.ms": 15000})
        for record in records:
            producer.produce(self.topic, key=record["id"], value=json.dumps(record, sort_keys=True),
                             on_delivery=lambda err, _msg: err and errors.append(str(err)))  # fmt: skip
        left = producer.flush(20)
        if errors or left:
            raise dg.Failure(
                f"{len(records)} alert(s) are in {path} but Kafka topic {self.topic!r} did not take them "
                f"({errors[0] if errors else f'{left} undelivered'}); they are sent again at the next tick. "
                f"Check Kafka (`lakehouse stack status kafka`)."
            )
