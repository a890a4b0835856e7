"""The retention tests of ``test_retention.py`` again, with the documents in the object
store (the test S3 server): encrypted objects, and none left after the purge."""

from __future__ import annotations

import pytest

from tests.integration.test_retention import (
    STACK_ENV,
    test_a_producer_purges_an_ended_fax_at_once,
    test_an_ended_fax_is_purged_everywhere_and_its_record_stays,
)

__all__ = [
    "STACK_ENV",
    "test_a_producer_purges_an_ended_fax_at_once",
    "test_an_ended_fax_is_purged_everywhere_and_its_record_stays",
]

pytestmark = pytest.mark.e2e

#: The stack's worker stores and reads documents in a bucket of the test S3 server.
STACK_OBJECT_STORE = True
