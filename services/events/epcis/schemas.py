"""What the EPCIS capture interface answers (the documents themselves are checked by the EPCIS JSON Schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CaptureError(BaseModel):
    """One failing event: its position and eventID, the lifecycle problem (with its extra members, such as
    `current_state` and `allowed_events` for an illegal transition)."""

    model_config = ConfigDict(extra="allow")
    eventIndex: int = Field(description="Position of the event in the document's eventList.")
    eventID: str = Field(description="The event's eventID, as captured or as derived from its content.")
    status: int = Field(description="The HTTP status the event alone would have been answered with.")
    code: str = Field(description="The problem code (the last segment of its problem type).")
    detail: str = Field(description="What is wrong, in words.")
    batteryID: str | None = Field(None, description="The battery the event is about, when it names one.")
    lifecycleType: str | None = Field(None, description="The lifecycle event type the event maps to.")
    errors: list[dict[str, Any]] | None = Field(None, description="Per-field validation errors, with their paths.")


class CaptureJob(BaseModel):
    """EPCIS 2.0 capture job. `running` is always false when it can be read: capture finishes inside the
    request that creates the job."""

    captureID: str
    createdAt: datetime
    finishedAt: datetime | None
    running: bool
    success: bool
    status: Literal["running", "success", "failure"]
    captureErrorBehaviour: Literal["rollback", "proceed"]
    eventCount: int
    storedCount: int = Field(description="EPCIS events stored (0 after a rollback).")
    errors: list[CaptureError]


def job_out(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "captureID": job["capture_id"],
        "createdAt": job["created_at"],
        "finishedAt": job["finished_at"],
        "running": job["status"] == "running",
        "success": job["status"] == "success",
        "status": job["status"],
        "captureErrorBehaviour": job["behaviour"],
        "eventCount": job["event_count"],
        "storedCount": job["stored_count"],
        "errors": job["errors"] or [],
    }


EXAMPLE_DOCUMENT: dict[str, Any] = {
    "@context": [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        {"bt": "https://batterytrace.kr/voc/"},
    ],
    "type": "EPCISDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-11-02T10:30:00+09:00",
    "epcisBody": {
        "eventList": [
            {
                "type": "ObjectEvent",
                "eventID": "urn:uuid:6f1c3a52-3c55-4a4b-9f0e-3f3a1d2b9c10",
                "eventTime": "2026-11-02T10:30:00+09:00",
                "eventTimeZoneOffset": "+09:00",
                "action": "OBSERVE",
                "bizStep": "inspecting",
                "epcList": ["urn:epc:id:sgtin:8801234.056789.P000001"],
                "bizLocation": {"id": "urn:epc:id:sgln:8801234.00001.0"},
                "bt:region": "KR-11",
                "sensorElementList": [
                    {
                        "sensorReport": [
                            {
                                "type": "https://batterytrace.kr/voc/measurement/StateOfHealth",
                                "value": 91.5,
                                "uom": "P1",
                            },
                            {"type": "https://batterytrace.kr/voc/measurement/CycleCount", "value": 420},
                        ]
                    }
                ],
            }
        ]
    },
}
