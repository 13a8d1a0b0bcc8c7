"""Named EPCIS queries and subscriptions: the rules across records (a query's parameters are those `/events`
takes, validated when it is made; a name belongs to its owner, whom alone it answers; a subscription's
controls), and the page a delivery sends. No SQL (the repository), no HTTP (router, delivery)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.epcis import query
from services.portal.epcis import service as epcis
from services.portal.subscriptions import repository as repo
from services.portal.subscriptions import rules
from services.portal.subscriptions.rules import SubscriptionControlsException
from shared.access import Ministry, Role
from shared.auth import Principal
from shared.contract.lifecycle import ts
from shared.problems import EpcisException, field_error

NAME = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
#: Parameters of `/events` that belong to one request, never to a stored query.
PAGING = ("nextPageToken",)
SUBSCRIPTION_FIELDS = frozenset({"dest", "signatureToken", "reportIfEmpty", "stream", "schedule", "initialRecordTime"})


class ValidationException(EpcisException):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            "ValidationException", f"{field}: {message}", errors=[field_error(field, "validation", message)]
        )


def not_found(what: str) -> EpcisException:
    return EpcisException("NoSuchNameException", f"No {what} of yours.", status=404)


def parameters(raw: Any) -> list[tuple[str, str]]:
    """A stored query's `query` object (GS1 query schema: parameter → value or list of values) as the
    (name, value) pairs `/events` parses; refused with the standard's exception when it is not one."""
    if not isinstance(raw, Mapping):
        raise ValidationException("query", "must be an object of SimpleEventQuery parameters")
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        if name in PAGING:
            raise query.QueryParameterException(name, "belongs to one request, not to a named query")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool):
                out.append((name, "true" if v else "false"))
            elif isinstance(v, str | int | float):
                out.append((name, str(v)))
            else:
                raise query.QueryParameterException(name, "values must be strings, numbers or booleans")
    return out


def parse(raw: Any, extensions: dict[str, str] | None = None) -> query.EventQuery:
    return query.parse(parameters(raw), extensions)


async def create_query(session: AsyncSession, principal: Principal, body: Any) -> str:
    if not isinstance(body, Mapping):
        raise ValidationException("body", "must be an object with `name` and `query`")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationException("name", "must be 1-128 characters of letters, digits and . _ ~ -")
    extra = sorted(set(body) - {"name", "query"})
    if extra:
        raise ValidationException(extra[0], "is not a field of a query definition")
    parse(body.get("query"))  # a bad query is refused now, with the exception `/events` would give
    if not await repo.add_query(session, principal.org, name, dict(body["query"]), datetime.now(UTC)):
        raise EpcisException("ResourceAlreadyExistsException", f"You have a query named '{name}' already.", status=409)
    return name


async def named_query(session: AsyncSession, principal: Principal, name: str) -> dict[str, Any]:
    """Only the owner's: another participant's query of that name is as absent as no query (404)."""
    found = await repo.query(session, principal.org, name)
    if found is None:
        raise not_found(f"query named '{name[:128]}'")
    return found


# ---- subscriptions ----


@dataclass(frozen=True)
class Controls:
    stream: bool
    schedule: dict[str, str] | None
    report_if_empty: bool
    initial_record_time: datetime | None


def controls(raw: Mapping[str, Any]) -> Controls:
    """`stream: true` or a `schedule` (never both, one of them), `reportIfEmpty`, `initialRecordTime`."""
    stream, schedule = raw.get("stream"), raw.get("schedule")
    if stream is not None and stream is not True:
        raise SubscriptionControlsException("stream", "must be true when given")
    if stream and schedule is not None:
        raise SubscriptionControlsException("schedule", "and stream are mutually exclusive")
    if not stream and schedule is None:
        raise SubscriptionControlsException("stream", "set stream to true or give a schedule")
    if schedule is not None:
        if not isinstance(schedule, Mapping):
            raise SubscriptionControlsException("schedule", "must be an object")
        rules.cron_of(schedule)
        schedule = {k: str(v) for k, v in schedule.items()}
    report = raw.get("reportIfEmpty", False)
    if not isinstance(report, bool):
        raise SubscriptionControlsException("reportIfEmpty", "must be true or false")
    initial = raw.get("initialRecordTime")
    when = None
    if initial is not None:
        if not isinstance(initial, str):
            raise SubscriptionControlsException("initialRecordTime", "must be a date-time")
        try:
            when = query.parse_time("initialRecordTime", initial)
        except query.QueryParameterException as exc:
            raise SubscriptionControlsException("initialRecordTime", exc.detail) from None
    return Controls(bool(stream), schedule, report, when)


async def create_subscription(session: AsyncSession, principal: Principal, name: str, body: Any) -> dict[str, Any]:
    """In production the router has checked that `dest` resolves to public addresses only (I/O)."""
    await named_query(session, principal, name)
    if not isinstance(body, Mapping):
        raise ValidationException("body", "must be an object")
    extra = sorted(set(body) - SUBSCRIPTION_FIELDS)
    if extra:
        raise SubscriptionControlsException(extra[0], "is not a subscription field")
    dest = rules.check_dest_form(body.get("dest"))
    token = body.get("signatureToken")
    if token is not None and (not isinstance(token, str) or not 16 <= len(token) <= 512):
        raise SubscriptionControlsException("signatureToken", "must be a string of 16 to 512 characters")
    c = controls(body)
    now = datetime.now(UTC)
    values = {
        "id": str(uuid.uuid4()),
        "owner": principal.org,
        "owner_role": principal.role.value,
        "owner_ministry": principal.ministry.value if principal.ministry else None,
        "query_name": name,
        "dest": dest,
        "signature_token": token,
        "report_if_empty": c.report_if_empty,
        "stream": c.stream,
        "schedule": c.schedule,
        "initial_record_time": c.initial_record_time,
        "created_at": now,
        # Without initialRecordTime: the events that arrive from now on ("the default value is the current time").
        "after_seq": 0 if c.initial_record_time is not None else await repo.last_seq(session),
        "next_run_at": rules.next_run(c.schedule, now) if c.schedule else None,
        "due_at": now if c.stream else rules.next_run(c.schedule or {}, now),
        "attempts": 0,
    }
    await repo.add_subscription(session, values)
    return values


def described(row: Mapping[str, Any]) -> dict[str, Any]:
    """A subscription as GS1's `AbstractQuerySubscriptionResponse` (never its signatureToken)."""
    out: dict[str, Any] = {
        "subscriptionID": row["id"],
        "queryName": row["query_name"],
        "dest": row["dest"],
        "createdAt": ts(row["created_at"]),
        "reportIfEmpty": row["report_if_empty"],
    }
    if row["stream"]:
        out["stream"] = True
    else:
        out["schedule"] = row["schedule"]
    for key, column in (("initialRecordTime", "initial_record_time"), ("lastNotifiedAt", "last_notified_at")):
        if row.get(column) is not None:
            out[key] = ts(row[column])
    if row.get("last_record_time") is not None:
        out["minRecordTime"] = ts(row["last_record_time"])
    return out


def owner_of(row: Mapping[str, Any]) -> Principal:
    """The subscription's owner, whose read rights filter every delivery (evaluated at delivery time)."""
    ministry = row.get("owner_ministry")
    return Principal(org=row["owner"], role=Role(row["owner_role"]), ministry=Ministry(ministry) if ministry else None)


async def next_page(
    session: AsyncSession,
    owner: Principal,
    stored: Mapping[str, Any],
    *,
    after_seq: int,
    initial_record_time: datetime | None,
    batch: int,
) -> epcis.Page:
    """The next events after the watermark that match the named query and that the owner may read now."""
    q = parse(stored["query"])
    return await epcis.search(session, owner, q, after_seq=after_seq, min_record_time=initial_record_time, batch=batch)
