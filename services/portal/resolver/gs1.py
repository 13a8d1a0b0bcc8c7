"""GS1 Digital Link request paths, pure (GS1 Digital Link URI Syntax 1.x §4; GS1-Conformant resolver 1.1 §6):
`/01/{gtin}` and `/01/{gtin}/21/{serial}` from the request's raw (still percent-encoded) path, so a `/`
inside a serial (sent as %2F) stays in the serial and an unencoded one is a path segment too many."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from shared.validation import RuleError

#: GS1 AI encodable character set 82 (General Specifications §7.11, Figure 7.11-1): what AI 21 may hold.
_CSET82 = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$")
#: The longest raw path worth reading (a GTIN and a 20-character serial, every character percent-encoded).
MAX_PATH = 256
#: What stays unencoded in a canonical serial: RFC 3986 unreserved characters and the sub-delimiters GS1
#: Digital Link leaves as they are; everything else (`/`, `%`, `"`, `<`, ...) is percent-encoded.
_SAFE = "-._~!$'()*+,;=:@"


class DigitalLinkError(RuleError):
    """Not a GS1 Digital Link the resolver serves: 400 with `rule` naming what failed."""


@dataclass(frozen=True, slots=True)
class Request:
    gtin: str  # GTIN-14, check digit verified
    serial: str | None  # decoded; None at product level

    @property
    def key(self) -> str:
        """The portal's Digital Link key (`services.portal.models.DIGITAL_LINK_KEY`): `<GTIN-14>/<serial>`."""
        return f"{self.gtin}/{canonical_serial(self.serial or '')}"

    def uri(self, root: str) -> str:
        """The canonical GS1 Digital Link URI on `root`."""
        tail = f"/21/{canonical_serial(self.serial)}" if self.serial is not None else ""
        return f"{root.rstrip('/')}/01/{self.gtin}{tail}"


def canonical_serial(serial: str) -> str:
    return quote(serial, safe=_SAFE)


def check_digit(body: str) -> int:
    """Mod-10 over the digits before the check digit, weights 3, 1, 3, ... from the right."""
    return (10 - sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body))) % 10) % 10


def gtin14(raw: str) -> str:
    """GTIN-8, -12, -13 or -14 as the GTIN-14 it stands for (left zero-padded), check digit verified."""
    if not raw.isascii() or not raw.isdigit() or len(raw) not in (8, 12, 13, 14):
        raise DigitalLinkError("gtin-format", "a GTIN is 8, 12, 13 or 14 digits")
    if check_digit(raw[:-1]) != int(raw[-1]):
        raise DigitalLinkError("gtin-check-digit", f"GTIN {raw} fails its check digit")
    return raw.zfill(14)


def parse(raw_path: str) -> Request:
    """`/01/{gtin}` or `/01/{gtin}/21/{serial}` (raw path, without the query)."""
    if len(raw_path) > MAX_PATH:
        raise DigitalLinkError("path-length", f"a Digital Link path is at most {MAX_PATH} characters here")
    parts = raw_path.strip("/").split("/")
    if len(parts) not in (2, 4) or parts[0] != "01" or (len(parts) == 4 and parts[2] != "21"):
        raise DigitalLinkError("path-syntax", "the resolver serves /01/{gtin} and /01/{gtin}/21/{serial}")
    gtin = gtin14(parts[1])
    if len(parts) == 2:
        return Request(gtin, None)
    try:
        serial = unquote(parts[3], errors="strict")
    except UnicodeDecodeError:
        raise DigitalLinkError("serial-characters", "a serial (AI 21) is GS1 character set 82") from None
    if not _CSET82.match(serial):
        raise DigitalLinkError("serial-characters", "a serial (AI 21) is 1 to 20 characters of GS1 set 82")
    return Request(gtin, serial)
