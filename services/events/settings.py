"""The events service's settings (env prefix BT_EVENTS_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.events.lifecycle.plausibility import Tolerances
from services.events.lifecycle.rules import DESIGNATED_BODIES
from shared.settings import ServiceSettings


class EventsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BT_EVENTS_", extra="ignore")
    registry_url: str = Field("http://127.0.0.1:8001", description="Registry base URL for read-through.")
    batch_max_items: int = 5_000
    occurred_at_max_ahead_s: float = Field(
        5.0, ge=0, description="Seconds an event's occurred_at may be ahead of the server's clock (client skew)."
    )
    plausibility_recovery_tolerance_pct: float = Field(
        5.0, ge=0, le=100, description="How far (%) recovered kg of a material may exceed the registered content."
    )
    plausibility_input_mass_band_pct: float = Field(
        25.0, ge=0, le=100, description="A RECYCLED input mass within ± this share (%) of the registered mass."
    )
    plausibility_soh_rise_margin_pct: float = Field(
        3.0, ge=0, le=100, description="SoH points a reading may exceed the previous one by without REMANUFACTURED."
    )
    plausibility_await_registration: bool = Field(
        True,
        description="A RECYCLED whose recovered material the events service knows no content for because the "
        "battery's ledger began from the registry's public read (its registration not yet consumed from "
        "battery.registry.v1) is answered 503 `registration-pending` (Retry-After) instead of being accepted and "
        "flagged `unchecked` for good. Off only where no registration stream reaches this service.",
    )
    kc_designated_bodies: list[str] = Field(
        default_factory=lambda: list(DESIGNATED_BODIES),
        min_length=1,
        description="The inspection bodies designated for KC 10031 safety inspections (SAFETY_INSPECTED data.body).",
    )
    correction_window_days: float = Field(
        30.0,
        gt=0,
        description="Days within which the poster of a final-state event (RECYCLED, DISPOSED) may declare it in "
        "error itself; an authority may at any time.",
    )
    consumer_group: str = "batterytrace-events"
    verify_interval_s: float = Field(300.0, gt=0, description="Seconds between background hash-chain sweeps.")
    verify_rate_per_s: float = Field(
        2_000.0, gt=0, description="Most ledger events per second a background sweep re-hashes (bounds its CPU)."
    )
    verify_period_s: float = Field(
        3_600.0,
        gt=0,
        description="A sweep is paced to go through the whole ledger in about this many seconds (at least 500 "
        "events per second, at most verify_rate_per_s): every chain re-verified about once per period.",
    )
    verifier_enabled: bool = Field(True, description="Run the periodic hash-chain verifier in this process.")
    log_enabled: bool = Field(True, description="Run the transparency log's sequencer and checkpointer here.")
    log_origin: str = Field("batterytrace.kr/log", description="The log's name: checkpoint origin and key name.")
    log_signing_key_file: Path | None = Field(
        None,
        description="C2SP signed-note signer key (PRIVATE+KEY+<origin>+...) of the log. Unset: a key made per "
        "process (dev only: checkpoints then change key with every restart).",
    )
    vin_pseudonym_key_file: Path | None = Field(
        None,
        description="File holding the HMAC-SHA-256 key (64 hex digits) of VIN pseudonyms: a VIN enters the ledger, "
        "the log and Kafka only as its pseudonym. Unset: a key made per process (dev only: pseudonyms then "
        "change with every restart). Keep it secret and never rotate it without re-keying `events.vins`.",
    )
    log_checkpoint_interval_s: float = Field(10.0, gt=0, description="Seconds between checkpoints while events arrive.")
    log_sequencer_interval_s: float = Field(
        0.25,
        gt=0,
        description="Seconds between polls of the log's queue while events arrive (a backlog is taken at once). "
        "Each poll is one transaction whatever it takes, so fewer, larger ones cost capture less; the tree is "
        "signed every log_checkpoint_interval_s anyway.",
    )
    log_witness_keys: list[str] = Field(
        default_factory=list, description="Verifier keys of the witnesses whose cosignatures are accepted."
    )

    def plausibility_tolerances(self) -> Tolerances:
        return Tolerances(
            self.plausibility_recovery_tolerance_pct,
            self.plausibility_input_mass_band_pct,
            self.plausibility_soh_rise_margin_pct,
            self.plausibility_await_registration,
        )
