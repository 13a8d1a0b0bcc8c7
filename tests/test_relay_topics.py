"""The relay's topic checks around each batch (OutboxRelay._ensure_topics, _check_topics) ask the broker about the
batch's own topics only, however many others the cluster holds, and create nothing by asking: a missing topic is
made before the send, and a topic gone after the send (the memory-only broker restarted: it acks writes to
topics it no longer has) fails the batch, which stays unsent and goes out again once the topic is back. Against
the embedded broker."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.metadata import MetadataRequest

from shared.db import make_engine, make_sessionmaker
from shared.kafka import ensure_topics, make_admin, missing_topics
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, outbox_stats
from tests.conftest import Infra, read_topic

SCHEMA = "events"
KNOWN = "relay.topics.known.v1"
NEW = "relay.topics.new.v1"
OTHERS = 40


def _record_metadata(admin: AIOKafkaAdminClient) -> list[list[str]]:
    """The topics named in each metadata answer the admin client gets from the broker (its requests go through
    unchanged)."""
    answers: list[list[str]] = []
    send = admin._client.send

    async def recording(node_id: int, request: Any, **kw: Any) -> Any:
        response = await send(node_id, request, **kw)
        if isinstance(request, MetadataRequest):
            answers.append([t["topic"] for t in response.to_object()["topics"]])
        return response

    admin._client.send = recording
    return answers


async def _listed(bootstrap: str) -> set[str]:
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_relay_asks_only_about_its_batchs_topics_however_many_the_cluster_has(
    db_url: str, infra: Infra, topic_prefix: str
) -> None:
    bootstrap = infra.kafka.bootstrap
    await ensure_topics(bootstrap, [topic_prefix + KNOWN, *(f"{topic_prefix}other.{i}" for i in range(OTHERS))], 1)
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=bootstrap, topic_prefix=topic_prefix)
    answers = _record_metadata(await relay._admin_client())
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            messages = [OutboxMessage(t, f"KR-TOP-{i}", {"n": i}) for i, t in enumerate([KNOWN, NEW] * 5)]
            await enqueue(session, SCHEMA, messages)
        assert await relay.run_once() == 10
        assert (await outbox_stats(engine, SCHEMA))["backlog"] == 0
    finally:
        await relay.stop()
        await engine.dispose()
    batch = {topic_prefix + KNOWN, topic_prefix + NEW}
    assert len(await _listed(bootstrap)) > OTHERS  # the cluster's list, which the relay's checks no longer fetch
    # Before the send (NEW missing, then created) and after it: each answer named the batch's topics alone.
    assert len(answers) == 2 and all(set(a) == batch for a in answers), answers
    for topic, numbers in ((KNOWN, [0, 2, 4, 6, 8]), (NEW, [1, 3, 5, 7, 9])):
        got = await read_topic(bootstrap, topic_prefix + topic, at_least=5)
        assert sorted(m["value"]["n"] for m in got) == numbers


async def test_a_topic_deleted_during_the_send_fails_the_batch_and_is_not_recreated_by_the_check(
    db_url: str, infra: Infra, topic_prefix: str
) -> None:
    bootstrap = infra.kafka.bootstrap
    topic = topic_prefix + KNOWN
    deleted = 0

    class DeletedMidway(OutboxRelay):
        """The first batch's topic goes after its records were acked (as the memory-only broker's topics do when it
        restarts between the send and the check)."""

        async def _send(self, producer: Any, rows: Any) -> Any:
            nonlocal deleted
            futures = await super()._send(producer, rows)
            if not deleted:
                for future in futures:
                    await future
                await (await self._admin_client()).delete_topics([topic])
                deleted += 1
            return futures

    engine = make_engine(db_url, pool_size=2)
    relay = DeletedMidway(engine, SCHEMA, bootstrap=bootstrap, topic_prefix=topic_prefix)
    first = str(uuid.uuid4())
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await enqueue(session, SCHEMA, [OutboxMessage(KNOWN, "KR-DEL-1", {"id": first})])
        try:
            await relay.run_once()
            raise AssertionError("a batch whose topic vanished counted as sent")
        except RuntimeError as exc:
            assert "vanished" in str(exc) and topic in str(exc)
        assert deleted == 1
        assert (await outbox_stats(engine, SCHEMA))["backlog"] == 1  # rolled back: still unsent
        assert relay.published == 0
        # The check asked about the topic without making it again.
        assert topic not in await _listed(bootstrap)
        assert await missing_topics(await relay._admin_client(), [topic]) == {topic}
        # The next batch (on a new producer, as the run loop starts over after a failed batch) makes the topic
        # again and publishes the row.
        await relay._close_producer()
        assert await relay.run_once() == 1
        assert (await outbox_stats(engine, SCHEMA))["backlog"] == 0
    finally:
        await relay.stop()
        await engine.dispose()
    got = await read_topic(bootstrap, topic, at_least=1)
    assert [m["value"]["id"] for m in got] == [first]
