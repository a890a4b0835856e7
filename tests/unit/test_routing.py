"""Routing rules: which providers, which numbers never, and when."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import CONFIG_DIR
from dispatcher.errors import ConfigurationError, ValidationError
from dispatcher.routing import load_routing
from dispatcher.validation import validate_fax
from tests.fixtures.documents import make_pdf

ROUTING = load_routing(CONFIG_DIR / "routing.toml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    return path


def test_routes_pick_the_most_specific_rule(tmp_path: Path) -> None:
    routing = load_routing(
        write(
            tmp_path,
            '[routes]\ndefault = ["faxplus"]\nUS = ["interfax", "optum"]\n"+1202" = ["optum"]\n',
        )
    )
    assert routing.route_for("+12025550100") == ("optum",)
    assert routing.route_for("+13125550100") == ("interfax", "optum")
    assert routing.route_for("+442079460000") == ("faxplus",)


def test_rejected_numbers_say_why() -> None:
    reason = ROUTING.reject_reason("+19005550100")
    assert reason is not None, "a premium-rate number is rejected"
    assert "premium" in reason
    assert ROUTING.reject_reason("+12025550100") is None


def test_a_route_keeps_only_providers_that_can_take_the_fax() -> None:
    # Optum faxes only to the US, so a UK number's route leaves it out.
    fax = validate_fax("+442079460000", [("a.pdf", make_pdf())], None)
    assert "optum" not in fax.route and fax.provider == fax.route[0]
    us = validate_fax("+12025550100", [("a.pdf", make_pdf())], None)
    assert us.route == ("interfax", "faxplus", "optum")


def test_a_named_provider_is_the_whole_route() -> None:
    fax = validate_fax("+12025550100", [("a.pdf", make_pdf())], "optum")
    assert fax.route == ("optum",)
    with pytest.raises(ValidationError, match="optum does not fax to GB"):
        validate_fax("+442079460000", [("a.pdf", make_pdf())], "optum")


WEEKDAYS = (
    '[routes]\ndefault = ["interfax"]\n[[window]]\nprefix = "+33"\n'
    'days = ["mon", "tue", "wed", "thu", "fri"]\nstart = "08:00"\nend = "20:00"\n'
)


def test_a_number_inside_its_window_may_go_now(tmp_path: Path) -> None:
    routing = load_routing(write(tmp_path, WEEKDAYS))
    # Wednesday 10:00 UTC is 11:00 in Paris.
    assert routing.opens_at("+33142685300", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)) is None


def test_a_number_outside_its_window_waits_for_the_next_opening(tmp_path: Path) -> None:
    routing = load_routing(write(tmp_path, WEEKDAYS))
    # Friday 21:00 Paris time: the next opening is Monday 08:00 Paris (07:00 UTC).
    friday_night = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    assert routing.opens_at("+33142685300", friday_night) == datetime(
        2026, 11, 30, 7, 0, tzinfo=UTC
    )
    # Early Tuesday: later the same day.
    early = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    assert routing.opens_at("+33142685300", early) == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    # Numbers the window does not cover may go at any time.
    assert routing.opens_at("+12025550100", friday_night) is None


def test_bad_routing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="default"):
        load_routing(write(tmp_path, '[routes]\nUS = ["interfax"]\n'))
    with pytest.raises(ConfigurationError, match="routes"):
        load_routing(write(tmp_path, '[routes]\ndefault = ["nope"]\n'))
