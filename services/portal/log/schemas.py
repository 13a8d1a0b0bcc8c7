from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.access import Ministry


class Cosigner(BaseModel):
    witness: str = Field(description="The witness's key name, e.g. molit.go.kr/witness.")
    ministry: Ministry | None = Field(description="The ministry the witness stands for, if its name tells one.")


class LatestCheckpoint(BaseModel):
    tree_size: int
    root_hash: str = Field(description="The tree's root, 64 hex characters.")
    origin: str = Field(description="The log's name (checkpoint origin).")
    log_key: str = Field(description="The log's note verifier key: check `note` with it.")
    published_at: datetime | None = Field(description="When the events service signed or last re-published it.")
    received_at: datetime
    cosigned_by: list[Cosigner]
    ministries: list[Ministry] = Field(description="The ministries whose witnesses cosigned it.")
    note: str = Field(description="The signed note with the cosignatures the portal has seen.")
