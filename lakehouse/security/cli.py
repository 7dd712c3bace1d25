"""`lakehouse security ...`: secrets, certificate and Trino's access files; who may read what."""

from __future__ import annotations

import argparse

from lakehouse.settings import get_settings


def _init(args: argparse.Namespace) -> int:
    from lakehouse import secrets_store
    from lakehouse.security import tls, trino_access

    s = get_settings()  # generates the secrets the environment does not set
    print(
        f"secrets: {secrets_store.secrets_path()} (mode 0600; an environment variable of the same name wins)"
    )
    renewed = tls.problem(tls.paths(s.tls_dir)) is not None
    tls.ensure(s.tls_dir, print)
    print(f"TLS certificate: {tls.paths(s.tls_dir).cert}")
    if renewed:
        print(
            "  a running Trino still serves the previous certificate: `lakehouse stack up trino` restarts it"
        )
    trino_access.install(s, s.home / "trino" / "etc", print)
    return 0


def _principals(args: argparse.Namespace) -> int:
    from lakehouse.security import pii
    from lakehouse.security.trino_access import principals, rules_source

    s = get_settings()
    print(f"Trino at https://{s.trino_host}:{s.trino_port}, rules {rules_source(s)}:")
    roles = {
        s.trino_user: "the pipelines: everything",
        s.trino_analyst_user: "gold; silver with PII masked",
        s.trino_bi_user: "gold, read only (Superset)",
        s.trino_merchant_user: "its own rows of gold.merchant_sales_daily",
    }
    for user in principals(s):
        print(f"  {user:<14} {roles[user]}")
    print("PII columns (dbt sources, meta.pii), masked for all but the platform principal:")
    for (layer, table), columns in sorted(pii.classified().items()):
        print(f"  {layer}.{table}: {', '.join(f'{c} ({k})' for c, k in sorted(columns.items()))}")
    return 0


def add_parser(sub) -> None:
    sec = sub.add_parser("security", help="secrets, TLS certificate, Trino principals and access rules",
                         description="Secrets come from LAKEHOUSE_* variables or the secrets file "
                         "(LAKEHOUSE_SECRETS_FILE, default .lakehouse/secrets.env, mode 0600), generated on first "
                         "use. Trino serves HTTPS with a certificate the stack makes, authenticates each principal "
                         "by password and applies lakehouse/security/access_rules.json with PII masks.")  # fmt: skip
    sec_sub = sec.add_subparsers(dest="what", required=True)
    init = sec_sub.add_parser("init", help="generate the secrets, the certificate and Trino's access files",
                              description="What `stack up` does before starting Trino; needed before "
                              "`docker compose --env-file .lakehouse/secrets.env up`.")  # fmt: skip
    init.set_defaults(func=_init)
    who = sec_sub.add_parser("principals", help="the Trino principals, what each may read, the PII columns")
    who.set_defaults(func=_principals)


def _forget(args: argparse.Namespace) -> int:
    from lakehouse.security.privacy import forget

    report = forget(get_settings(), args.customer_id)
    print("\n".join(report.lines()))
    return 0


def add_privacy_parser(sub) -> None:
    priv = sub.add_parser("privacy", help="data subjects' requests (forget a customer)")
    priv_sub = priv.add_subparsers(dest="what", required=True)
    forget = priv_sub.add_parser(
        "forget",
        help="anonymize a customer's personal data in every layer and vacuum the old files",
        description="Anonymizes the PII columns (dbt sources' meta.pii) of the customer in the source "
        "PostgreSQL, lands and applies that change, rewrites the customer's records in the raw change log and "
        "the CDC dead letters, anonymizes silver, and vacuums the files that held the clear values (time travel "
        "before this point is gone for those tables). Prints what changed and where the values remain until "
        "they expire (Kafka's retention, older backups, Delta log statistics).",
    )
    forget.add_argument("customer_id", type=int, help="the customer's id (customers.customer_id)")
    forget.set_defaults(func=_forget)
