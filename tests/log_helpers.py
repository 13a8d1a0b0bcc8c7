"""Filling the transparency log's tables directly (COPY, as the bench fills them), for the log's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import asyncpg

from services.events.log.tree import storable


async def copy_log(
    conn: asyncpg.Connection,
    leaves: Sequence[bytes],
    nodes: Mapping[tuple[int, int], bytes],
    battery: Callable[[int], str],
) -> None:
    """Leaf i as battery(i)'s first event, and the tree's nodes (level, index) -> hash that the store keeps (as
    the sequencer stores them: from `tree.STORED_FROM` up)."""
    await conn.copy_records_to_table(
        "log_leaves",
        schema_name="events",
        columns=["leaf_index", "battery_id", "sequence", "leaf_hash"],
        records=((i, battery(i), 1, h) for i, h in enumerate(leaves)),
    )
    await conn.copy_records_to_table(
        "log_nodes",
        schema_name="events",
        columns=["level", "idx", "hash"],
        records=((*k, h) for k, h in storable(nodes).items()),
    )
