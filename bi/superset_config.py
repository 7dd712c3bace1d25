"""Superset's configuration in the local stack (SUPERSET_CONFIG_PATH points here).

Every value comes from the environment `lakehouse stack up` gives the Superset processes, which it builds
from the LAKEHOUSE_SUPERSET_* settings: nothing secret is written in this file or on a command line.
"""

import os

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
