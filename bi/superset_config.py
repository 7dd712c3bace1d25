"""Superset's configuration in the local stack (SUPERSET_CONFIG_PATH points here).

Every value comes from the environment `lakehouse stack up` gives the Superset processes, which it builds
from the LAKEHOUSE_SUPERSET_* settings: nothing secret is written in this file or on a command line.
"""

import os
import re

from superset.utils.log import DBEventLogger

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_METADATA_URI"]

FEATURE_FLAGS = {
    # On by default in Superset: charts below the fold render only once scrolled to. The stack turns it off
    # (LAKEHOUSE_SUPERSET_DASHBOARD_VIRTUALIZATION) so a screenshot or a browser test sees every chart.
    "DASHBOARD_VIRTUALIZATION": os.environ.get("SUPERSET_DASHBOARD_VIRTUALIZATION", "false") == "true",
}

# Behind no proxy, on 127.0.0.1 only: no HTTPS redirect, and the login page must work over plain HTTP.
TALISMAN_ENABLED = False
SESSION_COOKIE_SECURE = False
ENABLE_PROXY_FIX = False

# Flask-Limiter keeps its counters in memory (one machine); say so instead of warning at every start.
RATELIMIT_STORAGE_URI = "memory://"

# A chart's query may take a while on a cold Trino.
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120


# Superset's event log saves each API request's form and JSON body in its `logs` table: an import's
# `passwords` field and a connection test's URI would sit there in clear. Scrub them before they are saved.
SECRET_KEYS = {"passwords", "password", "sqlalchemy_uri", "masked_encrypted_extra", "encrypted_extra",
               "ssh_tunnel_passwords", "ssh_tunnel_private_keys", "ssh_tunnel_private_key_passwords",
               "encrypted_extra_secrets", "access_token", "refresh_token"}  # fmt: skip
_URI_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def _scrub(value):
    if isinstance(value, dict):
        return {k: ("***" if k in SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _URI_PASSWORD.sub(r"\1***@", value)
    return value


class ScrubbingEventLogger(DBEventLogger):
    """Superset's database event log, without secrets in the records it saves."""

    def log(self, user_id, action, dashboard_id, duration_ms, slice_id, referrer, *args, **kwargs):
        for key in ("records", "curated_payload"):
            if kwargs.get(key):
                kwargs[key] = _scrub(kwargs[key])
        super().log(user_id, action, dashboard_id, duration_ms, slice_id, referrer, *args, **kwargs)


EVENT_LOGGER = ScrubbingEventLogger()
