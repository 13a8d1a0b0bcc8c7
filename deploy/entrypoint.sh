#!/bin/sh
# registry|events|portal: serve that service on :8000 (workers are the same app; RELAY_ENABLED and
# CONSUMERS_ENABLED in their env choose what runs in-process). migrate: `batterytrace migrate`.
# bootstrap: `batterytrace db bootstrap` (the database roles; an administrator's step, before migrate).
# Anything else is run as given, e.g. `batterytrace --help`.
set -eu
case "${1:-}" in
  registry|events|portal)
    service="$1"; shift
    # Keep-alive 75 s: above a load balancer's usual 60 s idle timeout, so the balancer closes an idle
    # connection first, never uvicorn (5 s by default) one the balancer is about to reuse (a 502). As
    # `make dev` runs it (devtools/dev.py service_command); deploy/README.md "The image".
    exec uvicorn --factory "services.${service}.app:app" --host 0.0.0.0 --port 8000 --timeout-keep-alive 75 "$@" ;;
  migrate)
    shift
    exec batterytrace migrate "$@" ;;
  bootstrap)
    shift
    exec batterytrace db bootstrap "$@" ;;
  *)
    exec "$@" ;;
esac
