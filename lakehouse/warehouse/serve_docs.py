"""Serve the dbt docs site the pipeline built (`make docs`) on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from lakehouse.settings import LakehouseSettings
from lakehouse.stack import process
from lakehouse.stack.errors import StackError


def docs_server(s: LakehouseSettings, port: int | None = None) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A server for the site (not started yet) and its URL; a clear error when there is nothing to serve
    or the port is taken."""
    site: Path = s.docs_dir
    if not (site / "index.html").exists():
        raise StackError(f"no dbt docs site in {site} yet",
                         fix="build it with the pipeline: `make demo`, or materialize gold/dbt_docs in the UI")  # fmt: skip
    port = port or s.docs_port
    owner = process.port_owner(port)
    if owner:
        raise StackError(f"port {port} for the dbt docs site is already in use by {owner}",
                         fix="stop that process, or choose another port with LAKEHOUSE_DOCS_PORT")  # fmt: skip
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    return server, f"http://127.0.0.1:{port}/index.html"
