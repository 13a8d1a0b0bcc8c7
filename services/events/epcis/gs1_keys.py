"""GS1 keys in any URI form (EPC URI, EPC class URI, EPC ID pattern URI, GS1 Digital Link URI) → the one
constrained canonical GS1 Digital Link URI the EPCIS event hash uses (CBV 2.0 §8.9: the lowest level of
identification, no CPV, no query string). Pure.

Vendored from GS1's reference implementation of the event hash, `epcis-event-hash-generator` 1.9.3
(`dl_normaliser.py`, https://github.com/RalphTro/epcis-event-hash-generator), MIT License, Copyright (c)
2019-2023 Ralph Troeger: the regular expressions are its, unchanged (they are the algorithm's definition of
which URIs are GS1 keys); logging was removed, types added, and its one branch per EPC scheme is a table
(`_EPC_SCHEMES`: pattern, AI, how the key is made, what follows it) with the same results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache


def _percent_encode(input: str) -> str:
    """Function percent-encodes URL-unsafe characters in GS1 Digital Link URIs.

    Table 7-1 in the GS1 Digital Link Standard requires
    the following symbols to be percent-encoded:
    '!', space, '#', '%', '&', '(', ')', '*', '+', ',', '/', ':'
    EPC URIs already prohibit some of them (e.g. '#')
    Function 'webURIPercentEncoder' is called to ensure that
    data elements accommodating these symbols are percent-encoded.

    Parameters
    ----------
    input : str
        Character requiring percent-encoding.

    Returns
    -------
    str
        Percent-encoded equivalent of character.
    """

    return (
        input.replace("!", "%21")
        .replace("(", "%28")
        .replace(")", "%29")
        .replace("*", "%2A")
        .replace("+", "%2B")
        .replace(",", "%2C")
        .replace(":", "%3A")
    )


def check_digit(key_wo_checkdigit: str) -> int:
    """Returns check digit for GTIN-8, GTIN-12, GTIN-13, GLN, GTIN-14, SSCC, GSIN, GSRN, GSRN-P.
    For further details, see GS1 GenSpecs, section 7.9.1: Standard check digit calculations for GS1 data structures.

    Parameters
    ----------
    key_wo_checkdigit : str
        GS1 key without check digit.

    Returns
    -------
        str: Check digit for GS1 key.
    """

    # Reverse string
    key_wo_checkdigit = key_wo_checkdigit[::-1]
    # Alternatively fetch digits, multiply them by 3 or 1, and sum them up
    summation = 0
    for i in range(len(key_wo_checkdigit) - 1, -1, -1):
        if int(key_wo_checkdigit[i]) == 0:
            continue
        elif i % 2 != 0:
            summation += int(key_wo_checkdigit[i]) * 1
        else:
            summation += int(key_wo_checkdigit[i]) * 3
    # Subtract sum from nearest equal or higher multiple of ten
    checkdigit = math.ceil(summation / 10) * 10 - summation
    return checkdigit


# ---- EPC URIs (EPC, EPC class, EPC ID pattern): each scheme's key and what follows it ----
#: A key from an EPC URI: (uri, where its company prefix starts, the dot after it) → the key as the GS1 Digital Link
#: URI writes it, and what the URI has after the key's digits (its serial, lot or extension, if any).
_Key = Callable[[str, int, int], tuple[str, str]]
#: What the GS1 Digital Link URI writes after the key, from what the EPC URI has after it.
_Tail = Callable[[str], str]


def _gtin(uri: str, start: int, partition: int) -> tuple[str, str]:
    """A GTIN-14: the item reference's indicator digit, the company prefix, the rest of the item reference (13
    digits with the prefix), the check digit."""
    gs1companyprefix = uri[start:partition]
    itemref = uri[(partition + 1) : (partition + 1 + (13 - len(gs1companyprefix)))]
    raw_gtin = itemref[0:1] + gs1companyprefix + itemref[1:]
    return raw_gtin + str(check_digit(raw_gtin)), uri[start + 15 :]


def _reference(lead: str = "") -> _Key:
    """A key of the company prefix and a reference of 12 digits with it (GLN, GRAI, GDTI, GCN, PGLN), `lead` before
    them, and the check digit."""

    def key(uri: str, start: int, partition: int) -> tuple[str, str]:
        gs1companyprefix = uri[start:partition]
        raw = lead + gs1companyprefix + uri[(partition + 1) : (partition + 1 + (12 - len(gs1companyprefix)))]
        return raw + str(check_digit(raw)), uri[start + 14 :]

    return key


def _whole_reference(uri: str, start: int, partition: int) -> tuple[str, str]:
    """The company prefix and all that follows it (GSRN, GSRN-P, GSIN), and the check digit."""
    raw = uri[start:partition] + uri[(partition + 1) :]
    return raw + str(check_digit(raw)), ""


def _sscc(uri: str, start: int, partition: int) -> tuple[str, str]:
    """An SSCC: the extension digit, the company prefix, the serial reference, the check digit."""
    raw_sscc = uri[(partition + 1) : (partition + 2)] + uri[start:partition] + uri[(partition + 2) :]
    return raw_sscc + str(check_digit(raw_sscc)), ""


def _unchecked(uri: str, start: int, partition: int) -> tuple[str, str]:
    """The company prefix and its (percent-encoded) reference, no check digit (GIAI, GINC)."""
    return uri[start:partition] + _percent_encode(uri[(partition + 1) :]), ""


def _cpi(uri: str, start: int, partition: int) -> tuple[str, str]:
    """A CPID: the company prefix and the component/part reference up to the last dot (percent-encoded); after it,
    the serial."""
    separator = uri.rfind(".")
    return _percent_encode(uri[start:partition] + uri[(partition + 1) : separator]), uri[(separator + 1) :]


def _then(qualifier: str = "") -> _Tail:
    """The rest percent-encoded, after `qualifier` (the AI of a serial or lot: `/21/`, `/10/`, ...). Where the
    scheme allows only digits there (GCN, CPI serials), percent-encoding leaves them as they are."""
    return lambda rest: qualifier + _percent_encode(rest)


def _nothing(rest: str) -> str:
    return ""


def _sgln_extension(extension: str) -> str:
    return "" if extension == "0" else "/254/" + _percent_encode(extension)


def _itip(rest: str) -> str:
    """An ITIP's piece and total (two digits each, after the GTIN), then its serial."""
    return rest[0:2] + rest[3:5] + "/21/" + _percent_encode(rest[6:])


def _itip_pattern(rest: str) -> str:
    return rest[0:2] + rest[3:5]


#: The EPC URI schemes as the reference implementation matches them, in its order: the pattern, the GS1 AI of the
#: key, how the key is made, and what follows it. The company prefix starts after the pattern's
#: `^urn:epc:<id|class|idpat>:<scheme>:`, i.e. where its first group opens.
_EPC_SCHEMES: tuple[tuple[str, str, _Key, _Tail], ...] = (
    # EPC URIs
    (
        r"^urn:epc:id:sgtin:((\d{6}\.\d{7})|(\d{7}\.\d{6})|(\d{8}\.\d{5})|(\d{9}\.\d{4})|(\d{10}\.\d{3})|(\d{11}\.\d{2})|(\d{12}\.\d{1}))\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}$",
        "01",
        _gtin,
        _then("/21/"),
    ),
    (
        r"^urn:epc:id:sscc:((\d{6}\.\d{11}$)|(\d{7}\.\d{10}$)|(\d{8}\.\d{9}$)|(\d{9}\.\d{8}$)|(\d{10}\.\d{7}$)|(\d{11}\.\d{6}$)|(\d{12}\.\d{5}$))",
        "00",
        _sscc,
        _nothing,
    ),
    (
        r"^urn:epc:id:sgln:((\d{6}\.\d{6})|(\d{7}\.\d{5})|(\d{8}\.\d{4})|(\d{9}\.\d{3})|(\d{10}\.\d{2})|(\d{11}\.\d{1})|(\d{12}\.))\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}$",
        "414",
        _reference(),
        _sgln_extension,
    ),
    (
        r"^urn:epc:id:grai:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.\.))\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,16}$",
        "8003",
        _reference("0"),
        _then(),
    ),
    (
        r"^urn:epc:id:giai:(([\d]{6}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,24})|([\d]{7}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,23})|([\d]{8}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,22})|([\d]{9}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,21})|([\d]{10}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20})|([\d]{11}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,19})|([\d]{12}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,18}))$",
        "8004",
        _unchecked,
        _nothing,
    ),
    (
        r"^urn:epc:id:gsrn:(([\d]{6}\.[\d]{11}$)|([\d]{7}\.[\d]{10}$)|([\d]{8}\.[\d]{9}$)|([\d]{9}\.[\d]{8}$)|([\d]{10}\.[\d]{7}$)|([\d]{11}\.[\d]{6}$)|([\d]{12}\.[\d]{5}$))",
        "8018",
        _whole_reference,
        _nothing,
    ),
    (
        r"^urn:epc:id:gsrnp:(([\d]{6}\.[\d]{11}$)|([\d]{7}\.[\d]{10}$)|([\d]{8}\.[\d]{9}$)|([\d]{9}\.[\d]{8}$)|([\d]{10}\.[\d]{7}$)|([\d]{11}\.[\d]{6}$)|([\d]{12}\.[\d]{5}$))",
        "8017",
        _whole_reference,
        _nothing,
    ),
    (
        r"^urn:epc:id:gdti:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.\.))(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}$",
        "253",
        _reference(),
        _then(),
    ),
    (
        r"^urn:epc:id:cpi:((\d{6}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,24})|(\d{7}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,23})|(\d{8}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,22})|(\d{9}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,21})|(\d{10}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,20})|(\d{11}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,19})|(\d{12}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,18}))\.[\d]{1,12}$",
        "8010",
        _cpi,
        _then("/8011/"),
    ),
    (
        r"^urn:epc:id:sgcn:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.))\.[\d]{1,12}$",
        "255",
        _reference(),
        _then(),
    ),
    (
        r"^urn:epc:id:ginc:([\d]{6}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,24}|[\d]{7}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,23}|[\d]{8}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,22}|[\d]{9}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,21}|[\d]{10}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}|[\d]{11}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,19}|[\d]{12}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,18})$",
        "401",
        _unchecked,
        _nothing,
    ),
    (
        r"^urn:epc:id:gsin:(([\d]{6}\.[\d]{10}$)|([\d]{7}\.[\d]{9}$)|([\d]{8}\.[\d]{8}$)|([\d]{9}\.[\d]{7}$)|([\d]{10}\.[\d]{6}$)|([\d]{11}\.[\d]{5}$)|([\d]{12}\.[\d]{4}$))",
        "402",
        _whole_reference,
        _nothing,
    ),
    (
        r"^urn:epc:id:itip:(([\d]{6}\.[\d]{7})|([\d]{7}\.[\d]{6})|([\d]{8}\.[\d]{5})|([\d]{9}\.[\d]{4})|([\d]{10}\.[\d]{3})|([\d]{11}\.[\d]{2})|([\d]{12}\.[\d]{1}))\.[\d]{2}\.[\d]{2}\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}$",
        "8006",
        _gtin,
        _itip,
    ),
    (
        r"^urn:epc:id:upui:((\d{6}\.\d{7})|(\d{7}\.\d{6})|(\d{8}\.\d{5})|(\d{9}\.\d{4})|(\d{10}\.\d{3})|(\d{11}\.\d{2})|(\d{12}\.\d{1}))\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,28}$",
        "01",
        _gtin,
        _then("/235/"),
    ),
    (
        r"^urn:epc:id:pgln:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.))$",
        "417",
        _reference(),
        _nothing,
    ),
    # EPC Class URIs
    (
        r"^urn:epc:class:lgtin:(([\d]{6}\.[\d]{7})|([\d]{7}\.[\d]{6})|([\d]{8}\.[\d]{5})|([\d]{9}\.[\d]{4})|([\d]{10}\.[\d]{3})|([\d]{11}\.[\d]{2})|([\d]{12}\.[\d]{1}))\.(\%2[125-9A-Fa-f]|\%3[0-9A-Fa-f]|\%4[1-9A-Fa-f]|\%5[0-9AaFf]|\%6[1-9A-Fa-f]|\%7[0-9Aa]|[!\')(*+,.0-9:;=A-Za-z_-]){1,20}$",
        "01",
        _gtin,
        _then("/10/"),
    ),
    # EPC ID Pattern URIs
    (
        r"^urn:epc:idpat:sgtin:((\d{6}\.\d{7})|(\d{7}\.\d{6})|(\d{8}\.\d{5})|(\d{9}\.\d{4})|(\d{10}\.\d{3})|(\d{11}\.\d{2})|(\d{12}\.\d{1}))\.\*$",
        "01",
        _gtin,
        _nothing,
    ),
    (
        r"^urn:epc:idpat:grai:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.\.))\.\*$",
        "8003",
        _reference("0"),
        _nothing,
    ),
    (
        r"^urn:epc:idpat:gdti:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.\.))\.\*$",
        "253",
        _reference(),
        _nothing,
    ),
    (
        r"^urn:epc:idpat:sgcn:(([\d]{6}\.[\d]{6})|([\d]{7}\.[\d]{5})|([\d]{8}\.[\d]{4})|([\d]{9}\.[\d]{3})|([\d]{10}\.[\d]{2})|([\d]{11}\.[\d]{1})|([\d]{12}\.\.))\.\*$",
        "255",
        _reference(),
        _nothing,
    ),
    (
        r"^urn:epc:idpat:cpi:((\d{6}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,24})|(\d{7}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,23})|(\d{8}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,22})|(\d{9}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,21})|(\d{10}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,20})|(\d{11}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,19})|(\d{12}\.(\%2[3dfDF]|\%3[0-9]|\%4[1-9A-Fa-f]|\%5[0-9Aa]|[0-9A-Z-]){1,18}))\.\*$",
        "8010",
        _cpi,
        _nothing,
    ),
    (
        r"^urn:epc:idpat:itip:(([\d]{6}\.[\d]{7})|([\d]{7}\.[\d]{6})|([\d]{8}\.[\d]{5})|([\d]{9}\.[\d]{4})|([\d]{10}\.[\d]{3})|([\d]{11}\.[\d]{2})|([\d]{12}\.[\d]{1}))\.[\d]{2}\.[\d]{2}\.\*$",
        "8006",
        _gtin,
        _itip_pattern,
    ),
    (
        r"^urn:epc:idpat:upui:((\d{6}\.\d{7})|(\d{7}\.\d{6})|(\d{8}\.\d{5})|(\d{9}\.\d{4})|(\d{10}\.\d{3})|(\d{11}\.\d{2})|(\d{12}\.\d{1}))\.\*$",
        "01",
        _gtin,
        _nothing,
    ),
)
#: The schemes compiled, each with the literal start its pattern requires (`urn:epc:id:sgtin:`): a URI without it
#: cannot match, so it is never run through the pattern.
_EPC_COMPILED = tuple(
    (p[1 : p.index("(")], re.compile(p), p.index("(") - 1, ai, key, tail) for p, ai, key, tail in _EPC_SCHEMES
)


#: The constrained GS1 Digital Link URIs `normalise` answers; anything else is not a GS1 key.
_VALID_OUTPUTS = (
    r"https:\/\/id.gs1.org\/00\/(\d{18})$",
    r"https:\/\/id.gs1.org\/01\/(\d{14})\/21\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
    r"https:\/\/id.gs1.org\/01\/(\d{14})\/10\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
    r"https:\/\/id.gs1.org\/01\/(\d{14})$",
    r"https:\/\/id.gs1.org\/01\/(\d{14})\/235\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,28})$",
    r"https:\/\/id.gs1.org\/253\/(\d{13})([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,17})$",
    r"https:\/\/id.gs1.org\/255\/(\d{13})(\d{0,12})$",
    r"https:\/\/id.gs1.org\/401\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,30})$",
    r"https:\/\/id.gs1.org\/402\/(\d{17})$",
    r"https:\/\/id.gs1.org\/414\/(\d{13})$",
    r"https:\/\/id.gs1.org\/414\/(\d{13})\/254\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
    r"https:\/\/id.gs1.org\/417\/(\d{13})$",
    r"https:\/\/id.gs1.org\/8003\/(\d{14})([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,16})$",
    r"https:\/\/id.gs1.org\/8004\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,30})$",
    r"https:\/\/id.gs1.org\/8006\/(\d{18})\/21\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
    r"https:\/\/id.gs1.org\/8006\/(\d{18})\/10\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
    r"https:\/\/id.gs1.org\/8006\/(\d{18})$",
    r"https:\/\/id.gs1.org\/8010\/([\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30})\/8011/(\d{0,12})$",
    r"https:\/\/id.gs1.org\/8010\/([\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30})$",
    r"https:\/\/id.gs1.org\/8017\/(\d{18})$",
    r"https:\/\/id.gs1.org\/8018\/(\d{18})$",
)


def match(pattern: str, value: str) -> re.Match[str] | None:
    """`re.match` on the pattern compiled once (these are a fixed few; `re`'s own cache costs more per call)."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(pattern)
    return compiled.match(value)


_COMPILED: dict[str, re.Pattern[str]] = {}
#: What every URI the GS1 Digital Link pattern below matches contains: a key's `/<AI or its name>/` with four
#: digits after it, or a last path segment of ten letters (a compressed link).
_DL_NECESSARY = re.compile(
    r"/(01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402"
    r"|gsin|8003|grai|8004|giai)/\d{4}|/[A-Za-z_-]{10}$"
)


def normalise(uri: object) -> str | None:
    """The constrained canonical GS1 Digital Link URI of a GS1 key URI, None for any other value. Memoised: it
    is pure, and a document names the same locations, classes and parties again and again."""
    return _normalise(uri) if isinstance(uri, str) else None


@lru_cache(maxsize=1 << 16)
def _normalise(uri: str) -> str | None:
    """Function converts any standard URI conveying a GS1 Key in Canonical GS1 DL URI.

    Function 'normaliser' expects any URI to be used in EPCIS events
    that convey a GS1 key, i.e. EPC URIs, EPC Class URIs,
    EPC ID Pattern URIs, or GS1 Digital Link URIs.
    It returns a corresponding, constrained version of a
    canonical GS1 Digital Link URI, i.e. with
    the lowest level of identification and without CPV/query string.

    Parameters
    ----------
    uri : str
        Valid EPC URI, EPC Pattern URI, EPC Class URI, GS1 Digital Link URI.

    Returns
    -------
    str
        Constrained, canonicalised GS1 Digital Link URI equivalent.
    None
    """

    try:
        partition = uri.index(".")
    except ValueError:
        return None

    if uri.startswith("urn:epc:"):
        for prefix, pattern, start, ai, key, tail in _EPC_COMPILED:
            if uri.startswith(prefix) and pattern.match(uri) is not None:
                value, rest = key(uri, start, partition)
                return "https://id.gs1.org/" + ai + "/" + value + tail(rest)

    # GS1 DL URIs (the pattern backtracks a long way on a URI that is none: first what any match must contain)
    if _DL_NECESSARY.search(uri) is None or (
        match(
            r"^https?:(\/\/((([^\/?#]*)@)?([^\/?#:]*)(:([^\/?#]*))?))?((([^?#]*)(\/(01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402|gsin|8003|grai|8004|giai)\/)(\d{4}[^\/]+)(\/[^/]+\/[^/]+)?[/]?(\?([^?\n]*))?(#([^\n]*))?)|(\/[A-Za-z_-]{10}$))",
            uri,
        )
        is None
    ):
        return None

    # remove query string
    if uri.find("?") >= 0:
        uri = uri[: uri.index("?")]

    # replace short names for keys/key extensions with AIs
    uri = (
        uri.replace("/gtin/", "/01/")
        .replace("/itip/", "/8006/")
        .replace("/cpid/", "/8010/")
        .replace("/gln/", "/414/")
        .replace("/party/", "/417/")
        .replace("/gsrnp/", "/8017/")
        .replace("/gsrn/", "/8018/")
        .replace("/gcn/", "/255/")
        .replace("/sscc/", "/00/")
        .replace("/gdti/", "/253/")
        .replace("/ginc/", "/401/")
        .replace("/gsin/", "/402/")
        .replace("/grai/", "/8003/")
        .replace("/giai/", "/8004/")
        .replace("/cpv/", "/22/")
        .replace("/lot/", "/10/")
        .replace("/ser/", "/21/")
    )

    # prefix with canonical domain name
    if (
        match(
            r"^https:\/\/id.gs1.org\/(01|8006|8010|414|417|8017|8018|255|00|253|401|402|8003|8004)\/(\d{4}[^\/]+)(\/[^\/]+\/[^\/]+)?[\/]?(\?([^?\n]*))?(#([^\n]*))?|(\/[A-Za-z_-]{10}$)",
            uri,
        )
        is None
    ):
        for ai in (
            "00",
            "01",
            "253",
            "255",
            "401",
            "402",
            "414",
            "417",
            "8003",
            "8004",
            "8006",
            "8010",
            "8017",
            "8018",
        ):
            if uri.find(f"/{ai}/") != -1:
                uri = "https://id.gs1.org" + uri[(uri.find(f"/{ai}/")) :]
                break

    # ensure that all GTIN formats are padded to 14 digits
    if match(r"^https:\/\/id.gs1.org\/01\/\d{14}", uri) is None:
        if match(r"^https:\/\/id.gs1.org\/01\/\d{13}", uri) is not None:
            uri = uri.replace("/01/", "/01/0")
        elif match(r"^https:\/\/id.gs1.org\/01\/\d{12}", uri) is not None:
            uri = uri.replace("/01/", "/01/00")
        elif match(r"^https:\/\/id.gs1.org\/01\/\d{8}", uri) is not None:
            uri = uri.replace("/01/", "/01/000000")

    # remove cpv
    x = uri[(uri.find("/22/") + 4) :]

    # for 01/8006 only:
    if (
        match(
            r"https:\/\/id.gs1.org\/8006\/\d{18}\/22\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
        or match(
            r"https:\/\/id.gs1.org\/01\/\d{14}\/22\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
    ) is not None:
        uri = (uri[: (uri.find("/22/"))]) + (x[x.find("/") : -1])

    # for 01/8006 followed by other key qualifiers:
    if (
        match(
            r"https:\/\/id.gs1.org\/8006\/\d{18}\/22\/([\x2F\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
        or match(
            r"https:\/\/id.gs1.org\/01\/\d{14}\/22\/([\x2F\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
    ) is not None:
        uri = (uri[: (uri.find("/22/"))]) + (x[x.find("/") :])

    # take only lowest ID granularity level (i.e. if serial is present, omit lot)
    if (
        match(
            r"https:\/\/id.gs1.org\/8006\/\d{18}\/10\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})\/21\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
        or match(
            r"https:\/\/id.gs1.org\/01\/(\d{14})\/10\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})\/21\/([\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]{0,20})$",
            uri,
        )
    ) is not None:
        y = uri[(uri.find("/10/") + 4) :]
        uri = (uri[: (uri.find("/10/"))]) + (y[y.find("/") :])

    # ensure that output has a valid syntax
    if any(match(pattern, uri) is not None for pattern in _VALID_OUTPUTS):
        return uri
    return None
