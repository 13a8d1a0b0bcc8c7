"""Filling the transparency log's tables directly (COPY, as the bench fills them), for the log's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import asyncpg


async def copy_log(
    conn: asyncpg.Connection,
    leaves: Sequence[bytes],
    nodes: Mapping[tuple[int, int], bytes],
    battery: Callable[[int], str],
) -> None:
    """Leaf i as battery(i)'s first event, and the tree's stored nodes (level, index) -> hash."""
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
        records=((*k, h) for k, h in nodes.items()),
    )
