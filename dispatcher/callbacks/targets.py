"""Which URLs the service may post events to.

A target is an absolute https URL (http only with FAX_CALLBACKS__ALLOW_HTTP, for
development), with no credentials in it, whose host resolves to public addresses only:
not loopback, private, link-local, multicast or reserved, unless
FAX_CALLBACKS__ALLOW_PRIVATE says so (tests). Otherwise anyone who may submit a fax could
make the service probe its own network. The check runs when a target is given and again
before each delivery, since a name may resolve elsewhere later; redirects are never
followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from config.settings import CallbackSettings
from dispatcher.errors import ValidationError

__all__ = ["MAX_URL_LENGTH", "check_target"]

MAX_URL_LENGTH = 2048


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValidationError("callback_url", f"{host} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]


def check_target(url: str, settings: CallbackSettings, field: str = "callback_url") -> str:
    """``url`` if events may be posted to it; else ``ValidationError`` saying why."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(field, f"at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(field, f"not a URL: {exc}") from None
    schemes = ("https", "http") if settings.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise ValidationError(field, f"must be an {' or '.join(schemes)} URL")
    if not parts.hostname:
        raise ValidationError(field, "must name a host")
    if parts.username or parts.password:
        raise ValidationError(field, "must not carry credentials")
    if settings.allow_private:
        return url
    default_port = 443 if parts.scheme == "https" else 80
    for address in _addresses(parts.hostname, port or default_port):
        if not address.is_global or address.is_multicast:
            raise ValidationError(field, f"{parts.hostname} is on a {_kind(address)} address")
    return url


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What an address that is not public is, in words."""
    for kind in ("loopback", "link_local", "multicast", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "reserved"
