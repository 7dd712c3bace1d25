"""`lakehouse lifecycle ...`: archive, restore and list partitions; S3 lifecycle rules; backups and drills."""

from __future__ import annotations

import argparse
import json
from datetime import date

from lakehouse.settings import get_settings


def _table(text: str) -> tuple[str, str]:
    layer, sep, table = text.partition("/")
    if not (sep and layer and table):
        raise argparse.ArgumentTypeError(f"{text!r} is not LAYER/TABLE, e.g. bronze/clickstream_events")
    return layer, table


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2026-11-01") from None


def _archive(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle.archive import archive_day, expired_days

    s = get_settings()
    days = expired_days(s, *args.table) if args.expired else [args.date]
    if not days:
        print(f"{'/'.join(args.table)}: no expired partition holds live files")
    for day in days:
        archive_day(s, *args.table, day)
    return 0


def _restore(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle.archive import restore_days

    report = restore_days(get_settings(), *args.table, args.start, args.end or args.start)
    print(f"{report['table']}: {report['files']} files, {report['rows']} rows back from the cold tier")
    return 0


def _archived(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle.archive import archived

    lines = archived(get_settings(), *args.table)
    for line in lines:
        print(
            f"  {line['day']}  {line['files']:>4} files  {line['rows']:>10} rows  {line['bytes']:>12} bytes"
        )
    if not lines:
        print(f"{'/'.join(args.table)}: nothing archived")
    return 0


def _rules(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle.cold_tier import apply_rules, lifecycle_rules
    from lakehouse.resources.lake import s3_client

    s = get_settings()
    prefixes = [f"{s.schema(layer)}/{table}/" for layer, table in s.archive_retention]
    rules = lifecycle_rules(s, prefixes, cold_expire_days=args.cold_expire_days)
    if args.apply:
        applied = apply_rules(s3_client(s), rules)
        for bucket, ids in applied.items():
            print(f"s3://{bucket}: applied {', '.join(ids) or 'nothing'}")
    else:
        print(json.dumps({b: {"Rules": c["Rules"]} for b, c in rules.items()}, indent=2))
    return 0


def add_parser(sub) -> None:
    life = sub.add_parser("lifecycle", help="archive old partitions to the cold tier and back; lifecycle rules",
                          description="Archival keeps each table's partitions older than its retention "
                          "(LAKEHOUSE_ARCHIVE_AFTER_DAYS) in the cold bucket (LAKEHOUSE_COLD_BUCKET, storage class "
                          "LAKEHOUSE_COLD_STORAGE_CLASS) with a manifest, and removes them from the hot table in one "
                          "commit; restore brings them back byte-identical.")  # fmt: skip
    life_sub = life.add_subparsers(dest="what", required=True)
    arc = life_sub.add_parser("archive", help="archive one expired partition, or all of them")
    arc.add_argument("table", type=_table, metavar="LAYER/TABLE", help="e.g. bronze/clickstream_events")
    which = arc.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", type=_day, help="the partition (event_date) to archive")
    which.add_argument("--expired", action="store_true", help="every partition older than the retention")
    arc.set_defaults(func=_archive)
    res = life_sub.add_parser("restore", help="bring archived partitions back into the hot table",
                              description="Restores the archived files of --from..--to (inclusive) at their "
                              "original paths, checked against their manifests' SHA-256, in one commit with their "
                              "original statistics. On AWS, Glacier objects are thawed first (RestoreObject; hours).")  # fmt: skip
    res.add_argument("table", type=_table, metavar="LAYER/TABLE")
    res.add_argument("--from", dest="start", type=_day, required=True, help="first day (event_date)")
    res.add_argument("--to", dest="end", type=_day, help="last day (default: --from)")
    res.set_defaults(func=_restore)
    lst = life_sub.add_parser("archived", help="what a table has in the cold tier, per day")
    lst.add_argument("table", type=_table, metavar="LAYER/TABLE")
    lst.set_defaults(func=_archived)
    rules = life_sub.add_parser("rules", help="S3 lifecycle rules for real AWS (print, or --apply)",
                                description="Prints the lifecycle configuration of the lake, cold and backup "
                                "buckets. --apply puts them; a rule the store does not implement (SeaweedFS has "
                                "expiration only) is named and left out.")  # fmt: skip
    rules.add_argument("--apply", action="store_true", help="put the rules on the buckets")
    rules.add_argument("--cold-expire-days", type=int, help="expire archived objects after this many days")
    rules.set_defaults(func=_rules)
