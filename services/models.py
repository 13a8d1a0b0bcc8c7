"""Every table of every service, for Alembic: importing this module declares them all on one metadata."""

from __future__ import annotations

from services.events import models as events
from services.events.epcis import models as events_epcis
from services.events.lifecycle import models as events_lifecycle
from services.events.log import models as events_log
from services.events.participants import models as events_participants
from services.events.recalls import models as events_recalls
from services.events.vins import models as events_vins
from services.portal import models as portal
from services.portal.epcis import models as portal_epcis
from services.portal.ingest import models as portal_ingest
from services.portal.log import models as portal_log
from services.portal.passports import models as portal_passports
from services.portal.recalls import models as portal_recalls
from services.portal.subscriptions import models as portal_subscriptions
from services.portal.ui import models as portal_ui
from services.portal.vehicles import models as portal_vehicles
from services.portal.views import models as portal_views
from services.registry import models as registry
from services.registry.amendments import models as registry_amendments
from services.registry.batteries import models as registry_batteries
from services.registry.catalog import models as registry_catalog
from services.registry.participants import models as registry_participants
from services.registry.recalls import models as registry_recalls
from shared.db import Base

#: Imported for what importing them does: declaring their tables on `metadata`.
MODULES = (
    registry,
    registry_participants,
    registry_catalog,
    registry_batteries,
    registry_amendments,
    registry_recalls,
    events,
    events_lifecycle,
    events_log,
    events_participants,
    events_epcis,
    events_vins,
    events_recalls,
    portal,
    portal_ingest,
    portal_passports,
    portal_views,
    portal_epcis,
    portal_log,
    portal_subscriptions,
    portal_ui,
    portal_vehicles,
    portal_recalls,
)
#: The schemas the migrations own, one per service.
SCHEMAS = (registry.SCHEMA, events.SCHEMA, portal.SCHEMA)

metadata = Base.metadata
