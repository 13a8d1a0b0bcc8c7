"""The checkpoint consumer: battery.log.checkpoints.v1 into the portal's checkpoint read model. Its own
consumer group; idempotent (upserts keyed by tree size and witness), offsets committed after the commit. A
message whose note does not verify, one signed by another key than the log's (the `log_key` setting, else the
key of the first checkpoint received), or a second root for a tree size already seen (a forked log), is
dead-lettered and changes nothing."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.portal.log import repository as repo
from services.portal.log.projection import Checkpoint, InvalidCheckpoint, read
from services.portal.settings import PortalSettings
from shared.contract.streams import LOG_CHECKPOINT, TOPIC_LOG_CHECKPOINTS, CloudEvent, LogCheckpointData
from shared.kafka import BatchHandler, ConsumerSpec, PoisonMessage, Records


def decode(records: Records) -> list[Checkpoint]:
    out = []
    for rec in records:
        try:
            ce = CloudEvent.from_bytes(rec.value or b"")
        except (ValueError, ValidationError) as exc:
            raise PoisonMessage(f"not a CloudEvent: {exc}") from None
        if ce.type != LOG_CHECKPOINT:
            continue  # a newer kind of log message: skipped (UNKNOWN_TYPE_RULE)
        try:
            data = LogCheckpointData.model_validate(ce.data)
            out.append(read(data, datetime.fromisoformat(ce.time) if ce.time else None))
        except (ValidationError, InvalidCheckpoint, ValueError) as exc:
            raise PoisonMessage(f"checkpoint {ce.id}: {exc}") from None
    return out


def handler(sessionmaker: async_sessionmaker[AsyncSession], log_key: str | None = None) -> BatchHandler:
    async def handle(records: Records) -> None:
        checkpoints = decode(records)
        async with sessionmaker() as session, session.begin():
            await repo.lock(session)
            for cp in checkpoints:
                pinned = log_key or await repo.first_log_key(session)
                if pinned is not None and cp.log_key != pinned:
                    raise PoisonMessage(
                        f"checkpoint of tree size {cp.tree_size} is signed by {cp.log_key}, not by the log's key {pinned}"
                    )
                stored = await repo.store(session, cp)
                if stored != cp.root_hash:
                    raise PoisonMessage(
                        f"checkpoint of tree size {cp.tree_size} with root {cp.root_hash}, but {stored} was "
                        "published for that size before: the log forked"
                    )

    return handle


def consumer(settings: PortalSettings) -> ConsumerSpec:
    return ConsumerSpec(
        name="portal.log",
        group=f"{settings.consumer_group}-log",
        topics=(TOPIC_LOG_CHECKPOINTS,),
        handler=lambda sessionmaker: handler(sessionmaker, settings.log_key),
    )
