"""Who may do what in Trino: principals with passwords, and file-based access control with PII masks.

Principals (each a `LAKEHOUSE_TRINO_*_USER`, passwords generated into the secrets file):
- `platform`: the pipelines (Dagster, dbt, the demo, the benchmarks): everything;
- `analyst`: gold, and silver with every PII column masked;
- `bi`: Superset's service account: gold, read only;
- `merchant_<id>`: that merchant's rows of `gold.merchant_sales_daily`, through a row filter.

The rules are `lakehouse/security/access_rules.json` (Trino's own format; `LAKEHOUSE_TRINO_ACCESS_RULES`
to use another file). `stack up` checks them (JSON, known sections and fields, regular expressions, every
principal covered) and refuses a bad file with its line and the reason, leaving the rules Trino runs with
untouched; Trino re-reads the installed file every few seconds. The PII columns classified in the dbt
sources get a column mask in every table rule that lets a principal other than `platform` read their table.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

from lakehouse.secrets_store import write_private
from lakehouse.security import pii
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

RULES = Path(__file__).resolve().parent / "access_rules.json"
REFRESH = "5s"
SECTIONS = {
    "catalogs": ({"user", "role", "group", "catalog", "allow"}, {"allow"}),
    "schemas": ({"user", "role", "group", "catalog", "schema", "owner"}, {"owner"}),
    "tables": (
        {
            "user",
            "role",
            "group",
            "catalog",
            "schema",
            "table",
            "privileges",
            "columns",
            "filter",
            "filter_environment",
        },
        {"privileges"},
    ),  # fmt: skip
    "functions": ({"user", "role", "group", "catalog", "schema", "function", "privileges"}, {"privileges"}),
    "procedures": ({"user", "role", "group", "catalog", "schema", "procedure", "privileges"}, {"privileges"}),
    "queries": ({"user", "role", "group", "queryOwner", "allow"}, {"allow"}),
    "system_information": ({"user", "role", "allow"}, {"allow"}),
    "impersonation": ({"original_user", "original_role", "new_user", "allow"}, {"new_user"}),
    "system_session_properties": ({"user", "role", "group", "property", "allow"}, {"allow"}),
    "catalog_session_properties": ({"user", "role", "group", "catalog", "property", "allow"}, {"allow"}),
    "authorization": (
        {"original_user", "original_group", "original_role", "new_user", "new_role", "allow"},
        set(),
    ),
}
CATALOG_ACCESS = {"all", "read-only", "none", True, False}
COLUMN_FIELDS = {"name", "allow", "mask", "mask_environment"}
REGEX_FIELDS = {"user", "role", "group", "catalog", "schema", "table", "function", "procedure", "property",
                "queryOwner", "original_user", "original_role", "new_user"}  # fmt: skip
TABLE_PRIVILEGES = {"SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"}


def principals(s: LakehouseSettings) -> dict[str, str]:
    """{Trino user: password} of every principal of the platform."""
    return {
        s.trino_user: s.trino_password,
        s.trino_analyst_user: s.trino_analyst_password,
        s.trino_bi_user: s.trino_bi_password,
        s.trino_merchant_user: s.trino_merchant_password,
    }


def password_file(s: LakehouseSettings, existing: str = "") -> str:
    """Trino's password file (`user:bcrypt`); a line whose hash still matches its password is kept as it is
    (bcrypt is slow on purpose, and an unchanged file is not re-read by Trino)."""
    import bcrypt

    kept = dict(line.split(":", 1) for line in existing.splitlines() if ":" in line)
    lines = []
    for user, password in principals(s).items():
        old = kept.get(user, "")
        try:
            same = bool(old) and bcrypt.checkpw(password.encode(), old.replace("$2y$", "$2b$", 1).encode())
        except ValueError:
            same = False
        digest = old if same else bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
        lines.append(f"{user}:{digest.replace('$2b$', '$2y$', 1)}")  # Trino reads the $2y$ spelling
    return "".join(f"{line}\n" for line in lines)


def _where(text: str, needle: str, start: int = 0) -> int:
    """The line of the first `needle` in the text at or after `start` (to point at a bad rule)."""
    at = text.find(needle, start)
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def _rule_lines(text: str, section: str, count: int) -> list[int]:
    """The line each rule of a section starts on (best effort: the n-th `{` after the section's name)."""
    lines, at = [], text.find(f'"{section}"')
    for _ in range(count):
        at = text.find("{", at + 1)
        lines.append(text.count("\n", 0, at) + 1 if at >= 0 else 0)
    return lines


def check_rules(text: str, source: Path, s: LakehouseSettings) -> dict:
    """The rules as Trino will read them; a bad file raises StackError naming the line and the reason."""
    fix = f"correct {source} (Trino keeps running with the rules it has until then)"
    try:
        rules = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackError(f"{source} line {exc.lineno} column {exc.colno}: {exc.msg}", fix=fix) from None
    if not isinstance(rules, dict):
        raise StackError(f"{source} line 1: the rules must be a JSON object of sections", fix=fix)
    for section, entries in rules.items():
        line = _where(text, '"' + section + '"')
        if section not in SECTIONS:
            raise StackError(f"{source} line {line}: unknown section {section!r} "
                             f"(known: {', '.join(SECTIONS)})", fix=fix)  # fmt: skip
        if not isinstance(entries, list):
            raise StackError(f"{source} line {line}: {section} must be a list of rules",
                             fix=fix)  # fmt: skip
        allowed, required = SECTIONS[section]
        for rule, line in zip(entries, _rule_lines(text, section, len(entries)), strict=True):
            where = f"{source} line {line} ({section} rule)"
            if not isinstance(rule, dict):
                raise StackError(f"{where}: a rule must be a JSON object", fix=fix)
            unknown = set(rule) - allowed
            if unknown:
                raise StackError(f"{where}: unknown field {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(allowed))})",
                                 fix=fix)  # fmt: skip
            missing = required - set(rule)
            if missing:
                raise StackError(f"{where}: missing the required field {sorted(missing)[0]!r}", fix=fix)
            for key in REGEX_FIELDS & set(rule):
                try:
                    re.compile(rule[key])
                except (re.error, TypeError) as exc:
                    raise StackError(
                        f"{where}: {key} {rule[key]!r} is not a regular expression ({exc})", fix=fix
                    ) from None
            if section == "catalogs" and rule["allow"] not in CATALOG_ACCESS:
                raise StackError(f"{where}: allow {rule['allow']!r} is not all, read-only or none", fix=fix)
            for column in rule.get("columns", []) if section == "tables" else []:
                if not isinstance(column, dict) or "name" not in column or set(column) - COLUMN_FIELDS:
                    raise StackError(f"{where}: a column constraint needs a name and only {', '.join(sorted(COLUMN_FIELDS))}",
                                     fix=fix)  # fmt: skip
            if section == "tables":
                bad = set(rule["privileges"]) - TABLE_PRIVILEGES
                if bad:
                    raise StackError(f"{where}: unknown privilege {sorted(bad)[0]!r} (known: {', '.join(sorted(TABLE_PRIVILEGES))})",
                                     fix=fix)  # fmt: skip
    table_rules = rules.get("tables", [])
    for user in principals(s):
        if not any(re.fullmatch(rule.get("user", ".*"), user) for rule in table_rules):
            raise StackError(f"{source}: no table rule matches the principal {user!r}, which could then read nothing",
                             fix=f"add a rule for {user!r} to {source}, or change the LAKEHOUSE_TRINO_*_USER setting")  # fmt: skip
    return rules


def _matches(rule: dict, field: str, value: str) -> bool:
    return re.fullmatch(rule.get(field, ".*"), value) is not None


def with_masks(rules: dict, s: LakehouseSettings, classified: dict | None = None) -> dict:
    """The rules with a column mask on every PII column for every table rule that lets a principal other than
    `platform` read a table holding them: a rule of its own for that table, put just before the broader
    rule it narrows (Trino takes the first rule that matches)."""
    classified = pii.classified() if classified is None else classified
    result = copy.deepcopy(rules)
    tables: list[dict] = []
    for rule in result.get("tables", []):
        # every rule that grants SELECT, but the platform's own (a catch-all one too: whoever reaches it);
        # its schema is not looked at (prefixed schemas, `dev_silver`, ...): a mask on a table of another
        # layer with the same name and no such column is never asked for
        reads = "SELECT" in rule.get("privileges", []) and rule.get("user") != re.escape(s.trino_user)
        for (_layer, table), columns in sorted(classified.items()):
            if not (reads and _matches(rule, "table", table)):
                continue
            named = {c.get("name") for c in rule.get("columns", [])}
            masked = [{"name": c, "mask": pii.mask(c)} for c in sorted(columns) if c not in named]
            tables.append({**rule, "table": re.escape(table), "columns": [*rule.get("columns", []), *masked]})
        tables.append(rule)
    result["tables"] = tables
    return result


def rules_source(s: LakehouseSettings) -> Path:
    return s.trino_access_rules or RULES


def install(s: LakehouseSettings, etc: Path, log) -> None:
    """Check the rules and the principals, then write what Trino reads: the password file, the rules with
    their masks, and the two plugin configurations. A refused rules file leaves the installed one as it is."""
    source = rules_source(s)
    if not source.exists():
        raise StackError(f"the Trino access rules {source} do not exist",
                         fix="unset LAKEHOUSE_TRINO_ACCESS_RULES or point it at a rules file")  # fmt: skip
    for user in principals(s):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", user):
            raise StackError(f"the Trino principal {user!r} has characters a password file cannot hold",
                             fix="use letters, digits, '_', '.' and '-' in LAKEHOUSE_TRINO_*_USER")  # fmt: skip
    rules = with_masks(check_rules(source.read_text(), source, s), s)
    _private(etc / "rules.json", json.dumps(rules, indent=2) + "\n", 0o644)
    existing = (etc / "password.db").read_text() if (etc / "password.db").exists() else ""
    _private(etc / "password.db", password_file(s, existing), 0o600)
    _private(etc / "access-control.properties",
             f"access-control.name=file\nsecurity.config-file={etc / 'rules.json'}\nsecurity.refresh-period={REFRESH}\n",
             0o644)  # fmt: skip
    _private(etc / "password-authenticator.properties",
             f"password-authenticator.name=file\nfile.password-file={etc / 'password.db'}\nfile.refresh-period={REFRESH}\n",
             0o644)  # fmt: skip
    log(f"  trino: {len(principals(s))} principals, access rules from {source}")


def _private(path: Path, text: str, mode: int) -> None:
    """Write a file Trino reads (it may read it at any moment: atomically); unchanged, it is left alone."""
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return
    write_private(path, text, mode)
