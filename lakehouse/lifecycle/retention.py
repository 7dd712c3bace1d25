"""Which backups to keep: the newest of each of the last N days that have one, and the newest of each of
the M weeks before those days (LAKEHOUSE_BACKUP_KEEP_DAILY, LAKEHOUSE_BACKUP_KEEP_WEEKLY)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

STAMP = "%Y%m%dT%H%M%SZ"  # how every backup names its time (UTC), in keys and ids


def kept(stamps: Iterable[datetime], daily: int, weekly: int) -> set[datetime]:
    """The backups to keep, by their times; everything else may be deleted. The newest one is always kept,
    and applying the rule to what it keeps keeps all of it (running retention twice deletes nothing more)."""
    newest_first = sorted(set(stamps), reverse=True)
    keep: set[datetime] = set()
    days: list = []
    for stamp in newest_first:
        if len(days) < daily and stamp.date() not in days:
            days.append(stamp.date())
            keep.add(stamp)
    if not days:
        return keep
    oldest_daily = days[-1]
    weeks: list = []
    for stamp in newest_first:
        week = stamp.isocalendar()[:2]
        if stamp.date() < oldest_daily and len(weeks) < weekly and week not in weeks:
            if week == oldest_daily.isocalendar()[:2]:
                continue  # that week already has a daily backup kept
            weeks.append(week)
            keep.add(stamp)
    return keep
