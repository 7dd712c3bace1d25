"""`lakehouse lifecycle ...`: archive, restore and list partitions; S3 lifecycle rules; backups and drills."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime

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


def _backup(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle import delta_backup, drill, pg_backup, platform_backup

    s = get_settings()
    if args.what == "all":
        figures = drill.take_backups(s)
        print("backups: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    elif args.what == "postgres":
        pg_backup.base_backup(s)
        pg_backup.prune(s)
    elif args.what == "kafka":
        platform_backup.backup_kafka(s)
    elif args.what == "dagster":
        platform_backup.backup_dagster(s)
    else:
        for layer, table in args.tables or drill.backed_up_tables(s):
            delta_backup.backup_table(s, layer, table)
            delta_backup.prune(s, layer, table)
    return 0


def _drill(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle.drill import restore_drill

    report = restore_drill(get_settings(), postgres=not args.no_postgres)
    print("drill: " + ", ".join(f"{k}={v}" for k, v in report.figures.items()))
    print("drill: passed" if report.passed else f"drill: FAILED ({len(report.problems)} problems above)")
    return 0 if report.passed else 1


def _pitr(args: argparse.Namespace) -> int:
    from lakehouse.lifecycle import pg_backup
    from lakehouse.lifecycle.cold_tier import LifecycleError

    s = get_settings()
    root = s.home / "restore" / "postgres"
    if args.stop:
        pg_backup.stop_scratch(root)
        print(f"stopped the restored PostgreSQL in {root}")
        return 0
    target = datetime.fromisoformat(args.to) if args.to else None
    if target is not None and target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    try:
        pg_backup.sync_wal(s)  # what the server archived since the last shipping
    except LifecycleError as exc:
        print(f"warning: no WAL shipped before the restore ({exc.problem})")
    copy = pg_backup.point_in_time_restore(s, target, cluster=args.cluster)
    print(
        f"restored PostgreSQL running: psql -h {copy.socket_dir} -p {copy.port} -U postgres {s.postgres_db}"
    )
    print("stop it with: lakehouse lifecycle pitr --stop")
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
    bak = life_sub.add_parser("backup", help="back up PostgreSQL, the Delta tables, Kafka and Dagster",
                              description="Backups go to LAKEHOUSE_BACKUP_BUCKET; retention keeps the newest of "
                              "LAKEHOUSE_BACKUP_KEEP_DAILY days and _WEEKLY weeks. Delta backups are incremental.")  # fmt: skip
    bak.add_argument(
        "what", choices=["all", "postgres", "delta", "kafka", "dagster"], nargs="?", default="all"
    )
    bak.add_argument("tables", nargs="*", type=_table, metavar="LAYER/TABLE", help="delta: these tables only")
    bak.set_defaults(func=_backup)
    dr = life_sub.add_parser("drill", help="restore the newest backups into scratch locations and compare",
                             description="Exit status 1 when anything restored differs from its backup.")  # fmt: skip
    dr.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL point-in-time restore")
    dr.set_defaults(func=_drill)
    pitr = life_sub.add_parser("pitr", help="restore PostgreSQL to a point in time on a scratch port",
                               description="Starts a copy on LAKEHOUSE_PG_RESTORE_PORT from the newest base "
                               "backup before --to, with the archived WAL replayed up to --to, and leaves it running.")  # fmt: skip
    pitr.add_argument("--to", help="ISO time (UTC when no zone); default: everything archived")
    pitr.add_argument(
        "--cluster",
        help="the system id of the cluster to restore (default: this stack's, or the "
        "newest in the bucket when this one has no backup yet)",
    )
    pitr.add_argument("--stop", action="store_true", help="stop a copy an earlier pitr left running")
    pitr.set_defaults(func=_pitr)
