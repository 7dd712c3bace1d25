"""Superset's REST API, as the bundle's import, the drift check, the tests and the benchmark use it.

A session logs in once (`/api/v1/security/login`, provider db) and takes a CSRF token for its writes.
Every failure is a `SupersetError` naming the cause: Superset down, credentials refused, a database that
does not connect, an import Superset rejected (with its own messages).
"""

from __future__ import annotations

import json
from typing import Any

import requests


class SupersetError(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem, self.fix = problem, fix


def _messages(answer: requests.Response) -> str:
    """Superset's own account of a refusal (its `errors[].message` and their `extra`, or `message`)."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:800]
    parts = []
    for error in body.get("errors") or []:
        parts.append(error.get("message", ""))
        extra = error.get("extra") or {}
        for key, value in extra.items():
            if key not in ("issue_codes",) and value:
                parts.append(f"{key}: {json.dumps(value)[:600]}")
    if body.get("message"):
        parts.append(
            json.dumps(body["message"])[:800] if not isinstance(body["message"], str) else body["message"]
        )
    return "; ".join(p for p in parts if p) or answer.text[:800]


class SupersetClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 120.0):
        self.url, self.username, self.timeout = url.rstrip("/"), username, timeout
        self._password = password
        self._session: requests.Session | None = None

    def _request(self, session: requests.Session, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise SupersetError(f"Superset at {self.url} does not answer ({type(exc).__name__})",
                                fix="start it: `lakehouse stack up superset` (`lakehouse stack status` shows it)") from exc  # fmt: skip
        except requests.Timeout as exc:
            raise SupersetError(f"Superset at {self.url} did not answer {method} {path} within {self.timeout:.0f}s",
                                fix="check `lakehouse stack logs superset`") from exc  # fmt: skip

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            answer = self._request(session, "POST", "/api/v1/security/login", json={
                "username": self.username, "password": self._password, "provider": "db", "refresh": False})  # fmt: skip
            if answer.status_code in (400, 401):
                raise SupersetError(f"Superset refused the login of {self.username!r}: {_messages(answer)}",
                                    fix="set LAKEHOUSE_SUPERSET_ADMIN_USER/PASSWORD to Superset's admin (the stack "
                                        "creates it from those settings at `lakehouse stack up`)")  # fmt: skip
            self._check(answer, "log in")
            session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            csrf = self._request(session, "GET", "/api/v1/security/csrf_token/")
            self._check(csrf, "take a CSRF token")
            session.headers.update({"X-CSRFToken": csrf.json()["result"], "Referer": self.url})
            self._session = session
        return self._session

    def _check(self, answer: requests.Response, what: str) -> requests.Response:
        if answer.status_code >= 400:
            raise SupersetError(f"Superset could not {what} (HTTP {answer.status_code}): {_messages(answer)}",
                                fix="read Superset's reason above; `lakehouse stack logs superset` has the rest")  # fmt: skip
        return answer

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request of the logged-in session; an expired token (401) logs in again, once."""
        answer = self._request(self.session, method, path, **kwargs)
        if answer.status_code == 401:
            self._session = None
            answer = self._request(self.session, method, path, **kwargs)
        return answer

    def get(self, path: str, what: str, **kwargs) -> requests.Response:
        return self._check(self.call("GET", path, **kwargs), what)

    def post(self, path: str, what: str, **kwargs) -> requests.Response:
        return self._check(self.call("POST", path, **kwargs), what)

    def test_connection(self, database_name: str, uri: str, extra: dict | None = None) -> None:
        """Connect to a database from inside Superset (its drivers, its environment) before anything is
        imported; a refused password or an unreachable database is named here."""
        answer = self.call("POST", "/api/v1/database/test_connection/",
                               json={"database_name": database_name, "sqlalchemy_uri": uri,
                                     "extra": json.dumps(extra or {})})  # fmt: skip
        if answer.status_code >= 400:
            raise SupersetError(
                f"Superset cannot connect to database {database_name!r}: {_messages(answer)}",
                fix="check the service is up (`lakehouse stack status`) and that the password setting "
                "(LAKEHOUSE_TRINO_BI_PASSWORD / LAKEHOUSE_PINOT_READER_PASSWORD) is the database's",
            )

    def import_bundle(self, bundle: bytes, passwords: dict[str, str]) -> None:
        """Import (overwrite) every object of the bundle in one transaction: a refused import changes nothing."""
        self.post("/api/v1/assets/import/", "import the bundle",
                  files={"bundle": ("bundle.zip", bundle, "application/zip")},
                  data={"passwords": json.dumps(passwords)})  # fmt: skip

    def export_all(self) -> bytes:
        return self.get("/api/v1/assets/export/", "export its assets").content

    def dashboard(self, slug: str) -> dict[str, Any] | None:
        answer = self.call("GET", f"/api/v1/dashboard/{slug}")
        if answer.status_code == 404:
            return None
        return self._check(answer, f"read dashboard {slug}").json()["result"]

    def dashboard_charts(self, dashboard_id: int) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/dashboard/{dashboard_id}/charts", "list a dashboard's charts").json()[
            "result"
        ]

    def chart_data(self, chart_id: int) -> dict[str, Any]:
        """The chart's data from its saved query_context (what a dashboard shows)."""
        return self.get(f"/api/v1/chart/{chart_id}/data/", f"return chart {chart_id}'s data").json()

    def chart_query(self, chart_id: int) -> str:
        """The SQL Superset runs for the chart."""
        chart = self.get(f"/api/v1/chart/{chart_id}", f"read chart {chart_id}").json()["result"]
        context = json.loads(chart["query_context"])
        context["result_type"] = "query"
        answer = self.post("/api/v1/chart/data", f"render chart {chart_id}'s SQL", json=context)
        return answer.json()["result"][0]["query"]
