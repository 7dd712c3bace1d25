"""Where alerts go: one JSON line in the alert log, then one message on the Kafka alerts topic (see
lakehouse/alerts.py for the sensors that raise them).

The log is the record: an alert is appended once (by its id) before anything is sent. What Kafka has taken
is noted in `<log>.delivered`; every publish, and every tick of `freshness_alerts`, sends what the log holds
beyond that note, so an alert raised while Kafka was down reaches the topic once Kafka is back."""

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


def _json_lines(path: Path) -> list:
    """The parseable lines of a JSON-lines file (a line cut short by a crash is skipped, not fatal)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


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

    @property
    def _delivered_path(self) -> Path:
        return Path(self.log_path + ".delivered")

    def logged(self) -> list[dict]:
        return [r for r in _json_lines(Path(self.log_path)) if isinstance(r, dict) and "id" in r]

    def undelivered(self) -> list[dict]:
        sent = set(_json_lines(self._delivered_path))
        return [r for r in self.logged() if r["id"] not in sent]

    def publish(self, records: list[dict]) -> None:
        """Append the records not yet in the log, then send Kafka everything it has not taken yet (raises
        when it cannot: the alerts stay in the log and go out with the next publish)."""
        path = Path(self.log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seen = {r["id"] for r in self.logged()}
        cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with path.open("a") as f:
            if cut:  # the last line was cut short (a crash): start ours on a line of its own
                f.write("\n")
            for record in records:
                if record["id"] not in seen:
                    seen.add(record["id"])
                    f.write(json.dumps(record, sort_keys=True) + "\n")
        self.deliver()

    def deliver(self) -> int:
        """Send the logged alerts Kafka has not taken; the number sent."""
        from lakehouse.resources.kafka import make_producer

        pending = self.undelivered()
        if not pending:
            return 0
        errors: list[str] = []
        taken: list[str] = []
        producer = make_producer({**self.kafka.client_config(), "message.timeout.ms": 15000})

        def on_delivery(err, msg):
            errors.append(str(err)) if err else taken.append(msg.key().decode())

        for record in pending:
            producer.produce(self.topic, key=record["id"], value=json.dumps(record, sort_keys=True),
                             on_delivery=on_delivery)  # fmt: skip
        left = producer.flush(20)
        if taken:
            with self._delivered_path.open("a") as f:
                f.writelines(json.dumps(ident) + "\n" for ident in taken)
        if errors or left:
            raise dg.Failure(
                f"{len(pending) - len(taken)} alert(s) are in {self.log_path} but Kafka topic {self.topic!r} did not "
                f"take them ({errors[0] if errors else f'{left} undelivered'}); they are sent again with the next "
                f"alert or freshness tick. Check Kafka (`lakehouse stack status kafka`)."
            )
        return len(taken)
