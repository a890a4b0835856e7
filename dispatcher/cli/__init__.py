"""``faxctl``: the operator's and batch script's command line.

Each command group lives in its own module and registers itself on ``app``.
Exit codes: 0 ok, 1 unexpected failure, 2 bad usage or invalid input,
3 not found, 4 conflict (illegal transition, idempotency conflict).
"""

from __future__ import annotations

from dispatcher.cli import api as _api  # noqa: F401
from dispatcher.cli import bench as _bench  # noqa: F401
from dispatcher.cli import bulk as _bulk  # noqa: F401
from dispatcher.cli import callbacks as _callbacks  # noqa: F401
from dispatcher.cli import catalogue as _catalogue  # noqa: F401  (registers commands)
from dispatcher.cli import db as _db  # noqa: F401
from dispatcher.cli import flower as _flower  # noqa: F401
from dispatcher.cli import jobs as _jobs  # noqa: F401
from dispatcher.cli import privacy as _privacy  # noqa: F401
from dispatcher.cli import providers as _providers  # noqa: F401
from dispatcher.cli import sandbox as _sandbox  # noqa: F401
from dispatcher.cli import stack as _stack  # noqa: F401
from dispatcher.cli import tenants as _tenants  # noqa: F401
from dispatcher.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
