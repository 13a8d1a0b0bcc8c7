"""The portal's read models (schema `portal`), built only from the Kafka streams."""

from __future__ import annotations

from shared.db import metadata as make_metadata

SCHEMA = "portal"
metadata = make_metadata(SCHEMA)
