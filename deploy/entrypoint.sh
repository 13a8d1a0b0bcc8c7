#!/bin/sh
# registry|events|portal: serve that service on :8000 (workers are the same app; RELAY_ENABLED and
# CONSUMERS_ENABLED in their env choose what runs in-process). migrate: `batterytrace migrate`.
# bootstrap: `batterytrace db bootstrap` (the database roles; an administrator's step, before migrate).
# Anything else is run as given, e.g. `batterytrace --help`.
set -eu
case "${1:-}" in
  registry|events|portal)
    service="$1"; shift
    exec uvicorn --factory "services.${service}.app:app" --host 0.0.0.0 --port 8000 "$@" ;;
  migrate)
    shift
    exec batterytrace migrate "$@" ;;
  bootstrap)
    shift
    exec batterytrace db bootstrap "$@" ;;
  *)
    exec "$@" ;;
esac
