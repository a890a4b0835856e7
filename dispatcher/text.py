"""What free text a caller gives may hold: no control characters. They break the log
lines and views the text reaches, and PostgreSQL text cannot hold NUL at all."""

from __future__ import annotations

import re

__all__ = ["CONTROL"]

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
