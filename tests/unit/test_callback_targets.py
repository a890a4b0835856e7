"""Which callback targets are refused: not https, credentials in the URL, or an address
on the service's own network (loopback, private, link-local, reserved, multicast)."""

from __future__ import annotations

import pytest

from config.settings import CallbackSettings
from dispatcher.callbacks.targets import check_target
from dispatcher.errors import ValidationError

STRICT = CallbackSettings()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://93.184.216.34/hook", "https"),
        ("ftp://93.184.216.34/hook", "https"),
        ("https:///hook", "host"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://172.16.5.5/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://0.0.0.0/hook", "private"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://100.64.0.1/hook", "reserved"),
        ("https://93.184.216.34:99999/hook", "not a URL"),
        ("https://" + "a" * 2050 + ".example/", "2048"),
    ],
)
def test_a_target_off_the_public_https_web_is_refused(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_target(url, STRICT)
    assert refused.value.field == "callback_url"
    assert says in refused.value.reason


def test_a_public_https_address_is_accepted() -> None:
    assert check_target(" https://93.184.216.34/hook?x=1 ", STRICT) == (
        "https://93.184.216.34/hook?x=1"
    )


def test_settings_open_http_and_private_targets_for_development() -> None:
    relaxed = CallbackSettings(allow_http=True, allow_private=True)
    assert check_target("http://127.0.0.1:8080/hook", relaxed) == "http://127.0.0.1:8080/hook"
    with pytest.raises(ValidationError, match="https or http"):
        check_target("ftp://127.0.0.1/hook", relaxed)
