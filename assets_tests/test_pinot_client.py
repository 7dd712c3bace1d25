"""How PinotClient reads the broker's answers (pure: the broker's JSON is given)."""

import pytest

from lakehouse.realtime.pinot import PinotClient, PinotRejected


class _Answer:
    def __init__(self, body: dict):
        self.status_code, self._body = 200, body

    def json(self) -> dict:
        return self._body


def _client_answering(monkeypatch, body: dict) -> PinotClient:
    client = PinotClient("http://controller", "http://broker")
    monkeypatch.setattr(client, "_call", lambda *args, **kwargs: _Answer(body))
    return client


def test_count_reads_the_single_row(monkeypatch):
    body = {"exceptions": [], "resultTable": {"rows": [[42]]}}
    assert _client_answering(monkeypatch, body).count("t") == 42


def test_count_is_zero_while_no_segment_is_routable(monkeypatch):
    # What the broker answers, in turn, for a table just created (seen on Pinot 0.11).
    for body in (
        {"exceptions": [{"errorCode": 410, "message": "BrokerResourceMissingError"}]},
        {"exceptions": [], "numServersQueried": 0},  # no result table
        {"exceptions": [{"errorCode": 305, "message": "1 segments [t__0__0] unavailable"}]},
    ):
        assert _client_answering(monkeypatch, body).count("t") == 0, body


def test_count_of_a_missing_table_raises(monkeypatch):
    body = {"exceptions": [{"errorCode": 190, "message": "TableDoesNotExistError"}]}
    with pytest.raises(PinotRejected, match="TableDoesNotExistError") as raised:
        _client_answering(monkeypatch, body).count("t")
    assert raised.value.error_code == 190


def test_a_query_error_raises_with_pinot_s_message(monkeypatch):
    body = {"exceptions": [{"errorCode": 150, "message": "SQLParsingError: bad"}]}
    with pytest.raises(PinotRejected, match="SQLParsingError: bad"):
        _client_answering(monkeypatch, body).count("t")
