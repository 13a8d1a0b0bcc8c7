"""Attacks on the GS1 Digital Link resolver, the way a scanner-wielding outsider would try them: wrong check
digits, padded GTINs, serials that are percent-encoded, over-long, hold a `/`, or look like wildcards, and
statements that would scan `portal.aliases`."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from shared.db import asyncpg_dsn
from tests.test_resolver import GTIN, resolver  # noqa: F401  (the fixture)


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/01/08801234567894/21/R1", "gtin-check-digit"),  # last digit off by one
        ("/01/8801234567894/21/R1", "gtin-check-digit"),  # the GTIN-13 form, wrong too
        ("/01/0880123456789/21/R1", "gtin-check-digit"),  # 13 digits that are not a GTIN-13
        ("/01/088012345677/21/R1", "gtin-check-digit"),  # GTIN-12 whose check digit is 8
        ("/01/880123456789312/21/R1", "gtin-format"),  # 15 digits
        ("/01/0880123456789\uff13/21/R1", "gtin-format"),  # a full-width digit
        ("/01/08801234567893/21/" + "S" * 21, "serial-characters"),  # AI 21 is at most 20 characters
        ("/01/08801234567893/21/%FF", "serial-characters"),  # not UTF-8
        ("/01/08801234567893/21/R1%20", "serial-characters"),  # a space is outside GS1 set 82
        ("/01/08801234567893/21/%E2%82%AC", "serial-characters"),  # € is outside GS1 set 82
        ("/01/08801234567893/21/R1/22/x", "path-syntax"),
        ("/01/08801234567893/10/R1", "path-syntax"),  # a lot is not a serial
        ("/01/08801234567893/21/" + "%41" * 100, "path-length"),
    ],
)
async def test_malformed_digital_link_is_400_naming_the_rule(resolver, path, rule) -> None:  # noqa: F811
    r = await resolver.get(path)
    assert r.status_code == 400, (path, r.status_code)
    body = r.json()
    assert body["code"] == "invalid-digital-link" and body["errors"][0] == {
        "field": "path",
        "rule": rule,
        "message": body["errors"][0]["message"],
    }


@pytest.mark.parametrize(
    "path",
    [
        "/01/08801234567893/21/%25",  # a LIKE wildcard, encoded
        "/01/08801234567893/21/_",  # the other one
        "/01/08801234567893/21/R%25",
        "/01/08801234567893/21/R_",
        "/01/08801234567893/21/r1",  # serials are case-sensitive
        "/01/08801234567893/21/R1%21",  # R1! is another serial
        "/01/00000000000000/21/R1",  # a valid GTIN-14 nobody registered
        "/01/00000000/21/R1",  # GTIN-8 zero, padded: the same unknown GTIN
        "/01/012345678905",  # a valid GTIN-12 at product level, unknown
    ],
)
async def test_lookalike_or_unknown_link_is_404(resolver, path) -> None:  # noqa: F811
    r = await resolver.get(path)
    assert r.status_code == 404 and r.json()["code"] == "unknown-digital-link", (path, r.status_code)


async def test_percent_encoded_serial_is_the_same_serial(resolver) -> None:  # noqa: F811
    """`R%31` is `R1` (RFC 3986 equivalence): the resolver decodes, then looks up the canonical key."""
    r = await resolver.get(f"/01/{GTIN}/21/R%31")
    assert (r.status_code, r.headers["location"]) == (307, "http://testserver/ui/passport/R1")


def _plans(node: dict) -> list[dict]:
    return [node, *(p for child in node.get("Plans", []) for p in _plans(child))]


async def test_resolver_statements_are_exact_index_look_ups(resolver, db_url) -> None:  # noqa: F811
    """Plan-independent: each statement compares an indexed key with `=` and holds no pattern operator. By plan:
    with 5,000 more aliases and sequential scans priced out, each reads an index with an index condition."""
    from services.portal.resolver import repository as repo

    statements = [(repo.BY_KEY, [f"{GTIN}/%"]), (repo.BY_GTIN, [GTIN]), (repo.OF_BATTERY, ["R1"])]
    for sql, _ in statements:
        assert "= $1" in sql and not any(op in sql.upper() for op in (" LIKE ", " ~ ", "SIMILAR", "ILIKE"))
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(
            "INSERT INTO portal.aliases (value, scheme, battery_id) "
            "SELECT 'https://id.example.kr/01/08801234567893/21/S' || i, 'gs1_digital_link', 'KR-SEED-' || i "
            "FROM generate_series(1, 5000) i"
        )
        await conn.execute("ANALYZE portal.aliases")
        await conn.execute("SET enable_seqscan = off")
        for sql, args in statements:
            (plan,) = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            nodes = _plans(plan["Plan"])
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], (sql, nodes)
            reads = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")]
            assert reads and all("Index Cond" in n for n in reads), (sql, nodes)
    finally:
        await conn.close()
    # the wildcard-looking key matched nothing and the resolver answered the real key as before
    assert (await resolver.get(f"/01/{GTIN}/21/%25")).status_code == 404
