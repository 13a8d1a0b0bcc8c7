"""The rules of EPCIS subscriptions, pure: a GS1 query schedule as a cron expression and its next run, which
webhook destinations are allowed, the `GS1-Signature` of a delivery, and the retry backoff. No I/O.

Schedule (GS1 REST binding `QueryScheduleSubscription`; EPCIS 2.0 §8.2.5.3): `second`, `minute`, `hour`,
`dayOfMonth`, `month`, `dayOfWeek` (1 = Monday … 7 = Sunday), each a comma-separated list of numbers and ranges
(`5`, `1,5`, `[1-5]`; also `1-5`, `*`, `*/15`, `0/30` as cron has them). Every given field must match (dayOfMonth
AND dayOfWeek). A field finer than the finest given one is its lowest value (`{"hour": "1", "minute": "5"}` is
01:05:00 daily, not every second of that minute); a coarser one left out matches any value."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from croniter import croniter

from shared.problems import EpcisFieldException

#: GS1 field → (lowest, highest) value.
FIELDS: dict[str, tuple[int, int]] = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "dayOfMonth": (1, 31),
    "month": (1, 12),
    "dayOfWeek": (1, 7),
}
#: Finest first; a field left out that is finer than the finest given one takes its lowest value.
_GRAIN = ("second", "minute", "hour", "dayOfMonth", "month")
_ELEMENT = re.compile(r"^(?:\[(\d{1,2})-(\d{1,2})\]|(\d{1,2})-(\d{1,2})|(\d{1,2})|\*|(\*|\d{1,2})/(\d{1,2}))$")


class SubscriptionControlsException(EpcisFieldException):
    rule = "subscription-controls"


def _values(name: str, raw: Any) -> list[int]:
    lo, hi = FIELDS[name]
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    if not text:
        raise SubscriptionControlsException(f"schedule.{name}", "must be a non-empty string")
    out: set[int] = set()
    for item in text.split(","):
        m = _ELEMENT.match(item.strip())
        if m is None:
            raise SubscriptionControlsException(f"schedule.{name}", f"'{item[:20]}' is not a number, range or step")
        a1, b1, a2, b2, one, start, step = m.groups()
        if one is not None:
            first, last, by = int(one), int(one), 1
        elif a1 is not None or a2 is not None:
            first, last, by = int(a1 or a2), int(b1 or b2), 1
        elif step is not None:
            first, last, by = (lo if start == "*" else int(start)), hi, int(step)
        else:
            first, last, by = lo, hi, 1
        if not (lo <= first <= hi and lo <= last <= hi) or first > last or by < 1:
            raise SubscriptionControlsException(f"schedule.{name}", f"'{item[:20]}' is outside {lo}-{hi}")
        out.update(range(first, last + 1, by))
    return sorted(out)


def cron_of(schedule: Mapping[str, Any]) -> str:
    """The schedule as a croniter expression (`minute hour dayOfMonth month dayOfWeek second`)."""
    unknown = sorted(set(schedule) - set(FIELDS))
    if unknown:
        raise SubscriptionControlsException(f"schedule.{unknown[0]}", "is not a schedule field")
    given = {k: _values(k, v) for k, v in schedule.items()}
    if not given:
        raise SubscriptionControlsException("schedule", "names no field (second, minute, hour, ...)")
    finest = min((_GRAIN.index(k) for k in given if k in _GRAIN), default=len(_GRAIN) - 2)
    if "dayOfWeek" in given and finest > _GRAIN.index("dayOfMonth"):
        finest = _GRAIN.index("dayOfMonth")
    fields: dict[str, str] = {}
    for k in FIELDS:
        if k in given:
            values = [0 if (k == "dayOfWeek" and v == 7) else v for v in given[k]]
            fields[k] = ",".join(str(v) for v in sorted(set(values)))
        elif k in _GRAIN and _GRAIN.index(k) < finest and not (k == "dayOfMonth" and "dayOfWeek" in given):
            fields[k] = str(FIELDS[k][0])
        else:
            fields[k] = "*"
    return " ".join(fields[k] for k in ("minute", "hour", "dayOfMonth", "month", "dayOfWeek", "second"))


def next_run(schedule: Mapping[str, Any], after: datetime) -> datetime:
    """The first time after `after` the schedule matches (UTC)."""
    nxt: datetime = croniter(cron_of(schedule), after, day_or=False).get_next(datetime)
    return nxt


# ---- webhook destinations ----


def check_dest_form(dest: Any) -> str:
    """`dest` is an absolute http(s) URL with a host and no credentials in it."""
    if not isinstance(dest, str) or len(dest) > 2048:
        raise SubscriptionControlsException("dest", "must be a URL of at most 2048 characters")
    try:
        parts = urlsplit(dest)
        port = parts.port
    except ValueError:
        raise SubscriptionControlsException("dest", "is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise SubscriptionControlsException("dest", "must be an http or https URL")
    if not parts.hostname:
        raise SubscriptionControlsException("dest", "names no host")
    if parts.username is not None or parts.password is not None:
        raise SubscriptionControlsException("dest", "must not carry credentials (use signatureToken)")
    if port == 0:
        raise SubscriptionControlsException("dest", "port 0 is not a destination")
    return dest


def is_public_address(address: str) -> bool:
    """A global unicast address: not loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved,
    unspecified; IPv4-mapped and 6to4/Teredo IPv6 judged by the IPv4 address inside."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return is_public_address(str(inner))
    return ip.is_global and not ip.is_multicast


def refuse_unless_public(addresses: Iterable[str]) -> None:
    """Every address a destination's host resolves to must be public (else a subscriber could make the portal
    POST to its own network: SSRF). Checked at subscription and again before each delivery, on the addresses
    the delivery connects to."""
    found = list(addresses)
    if not found:
        raise SubscriptionControlsException("dest", "its host does not resolve")
    for a in found:
        if not is_public_address(a):
            raise SubscriptionControlsException("dest", "resolves to a loopback, private or reserved address")


# ---- delivery ----


def signature(token: str, body: bytes) -> str:
    """`GS1-Signature` header value: `sha256=` and the lowercase hex HMAC-SHA256 of the exact body bytes under
    the subscription's `signatureToken` (the binding leaves the scheme to the implementation and names HMAC
    with SHA-256 as its example)."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempts` (1, 2, ...): exponential with full jitter, capped."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
