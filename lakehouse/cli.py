"""The `lakehouse` command: the local stack, data generators and the demo run."""

from __future__ import annotations

import argparse
import sys

from lakehouse.settings import get_settings
from lakehouse.stack.errors import StackError


def _stack(args: argparse.Namespace) -> int:
    from lakehouse.stack import manager

    s = get_settings()
    if args.action == "up":
        manager.up(s, args.services or None)
        print("stack: up")
    elif args.action == "fetch":
        manager.fetch_all(s)
        print("stack: everything downloaded")
    elif args.action == "down":
        manager.down(s, args.services or None)
        print("stack: down")
    elif args.action == "status":
        rows = manager.status(s)
        cols = ["service", "state", "pid", "ports", "health", "memory", "url"]
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        print("  ".join(c.upper().ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(r[c].ljust(widths[c]) for c in cols))
        print(f"logs: {s.home / 'logs'}/<service>.log")
        return 0 if all(r["health"] == "healthy" for r in rows) else 3
    elif args.action == "logs":
        for name in args.services or ["objectstore", "postgres", "kafka", "trino"]:
            print(f"==> {name} <==")
            print(manager.logs(s, name, args.lines), end="")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from lakehouse.generator.clickstream import GeneratorConfig, produce_events

    s = get_settings()
    config = GeneratorConfig(events=args.events, days=args.days, seed=args.seed, users=args.users)
    summary = produce_events(s, config, topic=args.topic or s.events_topic)
    print(f"generate: produced {summary.produced} events to {summary.topic} "
          f"({summary.first_day} .. {summary.last_day})")  # fmt: skip
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lakehouse.demo import run_demo

    return run_demo(get_settings(), events=args.events, days=args.days)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="A real lakehouse on one machine. Configuration comes from LAKEHOUSE_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop and inspect the local services",
                           description="Run the local stack (SeaweedFS, PostgreSQL, Kafka, Trino) as "
                           "processes on 127.0.0.1. Data survives down/up; downloads are cached.")  # fmt: skip
    stack.add_argument(
        "action",
        choices=["up", "down", "status", "logs", "fetch"],
        help="fetch: download everything (servers, jars) without starting anything",
    )
    stack.add_argument("services", nargs="*", help="only these services (default: all, in order)")
    stack.add_argument("-n", "--lines", type=int, default=40, help="log lines to show (logs)")
    stack.set_defaults(func=_stack)

    gen = sub.add_parser("generate", help="produce synthetic data")
    gen_sub = gen.add_subparsers(dest="what", required=True)
    ev = gen_sub.add_parser("events", help="clickstream sessions to the events topic in Kafka")
    ev.add_argument("--events", type=int, default=5000, help="number of events (default 5000)")
    ev.add_argument("--days", type=int, default=3, help="spread event times over the last N days")
    ev.add_argument("--users", type=int, default=300, help="number of distinct users")
    ev.add_argument("--seed", type=int, default=None, help="random seed for a repeatable stream")
    ev.add_argument("--topic", default=None, help="topic (default: LAKEHOUSE_EVENTS_TOPIC)")
    ev.set_defaults(func=_generate)

    demo = sub.add_parser("demo", help="stack up, generate events, materialize every asset, summarise")
    demo.add_argument("--events", type=int, default=5000)
    demo.add_argument("--days", type=int, default=3)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StackError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
