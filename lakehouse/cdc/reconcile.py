"""Compare a silver current-state table with its PostgreSQL source: row count and a checksum."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal


def normalise(value):
    """One value as both sides can agree on: numbers as Decimal text, times as UTC ISO text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone().isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, (Decimal, float)):
        return str(Decimal(str(value)).normalize())
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    text = str(value)
    if text[:4].isdigit() and "T" in text[:11] and (text.endswith("Z") or "+" in text[10:]):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone().isoformat()
        except ValueError:
            return text
    try:
        if (
            any(ch.isdigit() for ch in text)
            and text.replace(".", "", 1).lstrip("-").isdigit()
            and "." in text
        ):
            return str(Decimal(text).normalize())
    except ArithmeticError:
        pass
    return text


def fingerprint(rows: list[dict], columns: list[str]) -> tuple[int, str]:
    """(row count, SHA-256 over the sorted normalised rows) for the given columns."""
    lines = sorted(json.dumps([normalise(r.get(c)) for c in columns], default=str) for r in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()
