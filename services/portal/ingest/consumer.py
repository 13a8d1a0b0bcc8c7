"""The portal's main consumer: battery.registry.v1 and battery.lifecycle.v1 into the read models, in the
portal's consumer group (run by the app factory, replayed by a rebuild)."""

from __future__ import annotations

from services.portal.ingest import service
from services.portal.settings import PortalSettings
from shared.contract.streams import TOPIC_LIFECYCLE, TOPIC_REGISTRY, TOPIC_VINS
from shared.kafka import ConsumerSpec

NAME = "portal"


def consumer(settings: PortalSettings) -> ConsumerSpec:
    # Registry first: a fetch applies the registry facts before the lifecycle events that refer to them.
    return ConsumerSpec(
        name=NAME,
        group=settings.consumer_group,
        topics=(TOPIC_REGISTRY, TOPIC_LIFECYCLE, TOPIC_VINS),
        handler=service.handler,
        status_path="/v1/ops/consumer",
    )
