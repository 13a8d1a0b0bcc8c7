"""Secured Kafka: the security settings (protocol, SASL mechanism and credentials, TLS files, hostname
checking) are turned into client options in one place (`shared.kafka.client_options`) and reach every
client the system makes: each service's relay, consumers and admin clients, the stream report and the
operator commands. No client is built anywhere else. Against the embedded broker (plaintext on loopback)
every kind of client connects for real; the production topic policy (no topic created by a service)
holds against it too. Over TLS for real: a mutual-TLS listener in front of an embedded broker of its own, through
which the relay publishes, a group consumer reads and the stream report (kafka-python) lists topics, each
connection presenting the client certificate; another CA or no client certificate is refused. (SASL cannot be
exercised for real: the embedded broker's authentication needs users it cannot be given; its settings are
checked on every client instead.)"""

from __future__ import annotations

import ast
import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from services.cli.ops import ops_cluster, ops_kafka
from services.events.app import create_app as create_events
from services.events.settings import EventsSettings
from services.portal.app import create_app as create_portal
from services.portal.settings import PortalSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import RegistrySettings
from shared.contract.streams import TOPIC_REGISTRY
from shared.dlq import dlq_topics, read_dead_letters
from shared.kafka import (
    KafkaCluster,
    MissingTopics,
    client_options,
    ensure_topics,
    kafka_reachable,
    make_admin,
    make_consumer,
    make_producer,
    make_sync_admin,
    partitions_of,
)
from shared.outbox import OutboxMessage, enqueue
from shared.settings import KafkaSettings
from shared.streams import stream_report
from tests.conftest import eventually, read_topic, serve

ROOT = Path(__file__).resolve().parent.parent
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# ---- test PKI: a CA, and a client certificate it signed ----


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("batterytrace test CA", ca_key, "batterytrace test CA", ca_key, ca=True)
    cert = _cert("events", key, "batterytrace test CA", ca_key, ca=False)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass"),
    )
    return {
        "ca": _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": _pem(tmp_path / "client.pem", cert.public_bytes(serialization.Encoding.PEM)),
        "key": _pem(tmp_path / "client.key", key_pem),
        "password": _pem(tmp_path / "sasl-password", b"s3cret-from-a-file\n"),
        "ca_key": _pem(
            tmp_path / "ca.key",
            ca_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    }


def secured(pki: dict[str, Path], mechanism: str = "SCRAM-SHA-512", **kw: Any) -> dict[str, Any]:
    """SASL_SSL settings as deploy/ sets them: a per-service user, its password in a mounted file, mutual TLS."""
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": "events",
        "kafka_sasl_password_file": pki["password"],
        "kafka_ssl_cafile": pki["ca"],
        "kafka_ssl_certfile": pki["cert"],
        "kafka_ssl_keyfile": pki["key"],
        "kafka_ssl_key_password": "key-pass",
    } | kw


def client_config(client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> dict[str, Any]:
    """What an aiokafka client will connect with (its inner client's settings)."""
    inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
    return {
        "bootstrap_servers": inner._bootstrap_servers,
        "security_protocol": inner._security_protocol,
        "ssl_context": inner._ssl_context,
        "sasl_mechanism": inner._sasl_mechanism,
        "sasl_plain_username": inner._sasl_plain_username,
        "sasl_plain_password": inner._sasl_plain_password,
    }


def assert_secured(
    config: dict[str, Any], ca: Path, mechanism: str = "SCRAM-SHA-512", password: str | None = None
) -> None:
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == mechanism
    assert config["sasl_plain_username"] == "events"
    assert config["sasl_plain_password"] == (password or "s3cret-from-a-file")
    context: ssl.SSLContext = config["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    ca_subject = x509.load_pem_x509_certificate(ca.read_bytes()).subject.rfc4514_string()
    assert any(
        dict(part[0] for part in c["subject"]).get("commonName") == ca_subject.removeprefix("CN=")
        for c in context.get_ca_certs()
    ), "the configured CA is the one the context trusts"


async def closed(*clients: Any) -> None:
    for c in clients:
        if isinstance(c, AIOKafkaAdminClient):
            await c.close()
        else:
            await c.stop()


# ---- one place builds the options ----


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    options = client_options(KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"))
    assert options == {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_options_carry_mechanism_credentials_and_tls(pki: dict[str, Path], mechanism: str) -> None:
    options = client_options(KafkaSettings(kafka_bootstrap_servers="kafka:9093", **secured(pki, mechanism)))
    assert options["bootstrap_servers"] == "kafka:9093"
    assert_secured(options, pki["ca"], mechanism)


def test_the_password_setting_wins_over_the_file_and_is_never_printed(pki: dict[str, Path]) -> None:
    settings = KafkaSettings(**secured(pki, kafka_sasl_password="inline-pass"))
    assert client_options(settings)["sasl_plain_password"] == "inline-pass"
    assert "inline-pass" not in repr(settings) and "inline-pass" not in repr(KafkaCluster.from_settings(settings))


def test_hostname_checking_can_be_turned_off_but_certificates_are_still_verified(pki: dict[str, Path]) -> None:
    context = client_options(KafkaSettings(**secured(pki, kafka_ssl_check_hostname=False)))["ssl_context"]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_tls_without_sasl_carries_no_sasl_options(pki: dict[str, Path]) -> None:
    options = client_options(KafkaSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"]))
    assert options["security_protocol"] == "SSL" and isinstance(options["ssl_context"], ssl.SSLContext)
    assert not any(k.startswith("sasl") for k in options)


def test_sasl_plaintext_carries_no_tls_context(pki: dict[str, Path]) -> None:
    options = client_options(
        KafkaSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p")
    )
    assert "ssl_context" not in options and options["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    "bad",
    [
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": "p"},  # no user
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},  # no password
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_username": "u",
            "kafka_sasl_password": "p",
            "kafka_sasl_mechanism": "GSSAPI",
        },  # an unknown mechanism
        {"kafka_security_protocol": "TLS"},
        {"kafka_ssl_certfile": "/x/client.pem"},  # a certificate without its key
    ],
)
def test_incomplete_or_unknown_security_settings_refuse_to_start(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(**bad)


def test_a_wrong_key_password_fails_at_start_not_at_first_connection(pki: dict[str, Path]) -> None:
    with pytest.raises(ssl.SSLError):
        client_options(KafkaSettings(**secured(pki, kafka_ssl_key_password="wrong")))


# ---- the settings reach every client the system makes ----


async def test_every_client_of_every_service_carries_the_security_settings(
    make_settings: Callable[..., Any], pki: dict[str, Path]
) -> None:
    apps = [
        create_registry(make_settings(RegistrySettings, consumers_enabled=False, **secured(pki))),
        create_events(
            make_settings(
                EventsSettings, consumers_enabled=False, log_enabled=False, verifier_enabled=False, **secured(pki)
            )
        ),
        create_portal(make_settings(PortalSettings, consumers_enabled=False, **secured(pki))),
    ]
    seen_relays = seen_loops = 0
    for app in apps:
        async with serve(app):
            cluster: KafkaCluster = app.state.kafka
            assert_secured(dict(cluster.options), pki["ca"])
            relay = getattr(app.state, "relay", None)
            clients: list[Any] = []
            if relay is not None:  # the relay's producer and admin client
                seen_relays += 1
                assert relay.bootstrap is cluster
                clients += [make_producer(relay.bootstrap), make_admin(relay.bootstrap)]
            for loop in app.state.consumers.values():  # each consumer: group member, dead letters, replay
                seen_loops += 1
                assert loop.kafka is not None
                clients += [*loop.group_clients(), loop.replay_consumer()]
            clients.append(make_admin(cluster))  # readiness, topic creation
            for client in clients:
                assert_secured(client_config(client), pki["ca"])
            await closed(*clients)
    assert seen_relays == 2, "registry and events relay their outboxes"
    assert seen_loops >= 3, "the events intake and the portal's consumers"


async def test_the_operator_commands_take_the_security_settings_from_the_environment(
    pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in secured(pki, "SCRAM-SHA-256").items():
        monkeypatch.setenv(f"BT_{name.upper()}", str(value))
    cluster = ops_cluster("kafka:9093")
    assert cluster.bootstrap == "kafka:9093"
    clients = [make_producer(cluster), make_consumer(cluster, group_id="g"), make_admin(cluster)]
    for client in clients:
        assert_secured(client_config(client), pki["ca"], "SCRAM-SHA-256")
    await closed(*clients)
    # `portal rebuild` builds the portal's settings from the same environment
    settings = PortalSettings(database_url="postgresql+asyncpg://x/y", **dict(ops_kafka("kafka:9093", "p.")))
    assert_secured(client_options(settings), pki["ca"], "SCRAM-SHA-256")
    assert settings.kafka_topic_prefix == "p."


CLIENT_CLASSES = {
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "AIOKafkaAdminClient",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaProducer",
}


def test_no_kafka_client_is_built_outside_the_factories() -> None:
    """Every client the services, the CLI, the dev tools and the bench make comes from shared/kafka.py's
    factories (tests may build their own)."""
    builders: list[str] = []
    for folder in ("shared", "services", "devtools", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                    if name in CLIENT_CLASSES:
                        builders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert builders and all(b.startswith("shared/kafka.py:") for b in builders), builders


# ---- for real, against the embedded broker (plaintext on loopback) ----


async def test_every_kind_of_client_connects_to_the_embedded_broker_in_plaintext(
    make_settings: Callable[..., Any], topic_prefix: str
) -> None:
    settings = make_settings(RegistrySettings)
    assert settings.kafka_security_protocol == "PLAINTEXT"
    cluster = KafkaCluster.from_settings(settings)
    topic = topic_prefix + "security.plain"
    await ensure_topics(cluster, [topic, topic + ".dlq"], 2)
    assert await kafka_reachable(cluster)
    assert [tp.topic for tp in await partitions_of(cluster, [topic])] == [topic, topic]
    producer = make_producer(cluster)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n": 1}', key=b"k")
        await producer.send_and_wait(topic + ".dlq", b"{}", key=b"k", headers=[("dlq.source", b"x:0:0")])
    finally:
        await producer.stop()
    consumer = make_consumer(cluster, topic, group_id=topic_prefix + "g", auto_offset_reset="earliest")
    await consumer.start()
    try:
        got = await consumer.getone()
        assert (got.key, got.value) == (b"k", b'{"n": 1}')
    finally:
        await consumer.stop()
    assert await dlq_topics(cluster, topic_prefix) == [topic + ".dlq"]
    assert [d.source for d in await read_dead_letters(cluster, [topic + ".dlq"])] == ["x:0:0"]
    report = await stream_report(cluster, topic_prefix, {})  # kafka-python's admin client
    assert "error" not in report and {t["topic"] for t in report["topics"]} == {topic, topic + ".dlq"}
    admin = make_sync_admin(cluster)
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()


async def test_a_client_set_to_tls_does_not_speak_to_a_plaintext_broker(
    make_settings: Callable[..., Any], pki: dict[str, Path]
) -> None:
    """The setting changes the connection: a TLS client refuses the embedded broker's plaintext listener."""
    settings = make_settings(RegistrySettings, kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"])
    assert not await kafka_reachable(KafkaCluster.from_settings(settings), timeout_s=3)
    plain = make_settings(RegistrySettings)
    assert await kafka_reachable(KafkaCluster.from_settings(plain), timeout_s=3)


async def test_without_topic_creation_a_missing_topic_is_an_error_and_nothing_is_created(
    make_settings: Callable[..., Any], topic_prefix: str, infra: Any
) -> None:
    settings = make_settings(RegistrySettings, kafka_create_topics=False)
    cluster = KafkaCluster.from_settings(settings)
    with pytest.raises(MissingTopics, match="topics job"):
        await ensure_topics(cluster, [topic_prefix + "never.made"], 2)
    admin = make_admin(cluster)
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(topic_prefix)]
    finally:
        await admin.close()


async def test_the_relay_never_creates_a_topic_in_production_and_publishes_once_it_exists(
    make_settings: Callable[..., Any], topic_prefix: str, infra: Any
) -> None:
    settings = make_settings(RegistrySettings, kafka_create_topics=False, kafka_replication_factor=3)
    app = create_registry(settings)
    async with serve(app):
        async with app.state.sessionmaker() as session, session.begin():
            message = {"specversion": "1.0", "id": "m1", "type": "t", "source": "s", "data": {}}
            await enqueue(session, "registry", [OutboxMessage(topic=TOPIC_REGISTRY, key="k1", payload=message)])
        relay = app.state.relay
        await eventually(lambda: relay.last_error and "MissingTopics" in relay.last_error)
        assert relay.published == 0
        admin = make_admin(app.state.kafka)
        await admin.start()
        try:
            assert topic_prefix + TOPIC_REGISTRY not in await admin.list_topics()
        finally:
            await admin.close()
        # the topics job (here: the same admin call with the cluster's settings allowed to create) makes it
        await ensure_topics(infra.kafka.bootstrap, [topic_prefix + TOPIC_REGISTRY], 2)
        await eventually(lambda: relay.published == 1, timeout_s=20)
    got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC_REGISTRY, at_least=1)
    assert [m["value"]["id"] for m in got] == ["m1"]


# ---- for real over TLS: mutual TLS in front of the embedded broker ----


class TlsFront:
    """A TLS listener (server certificate from the test CA, client certificate required) in front of a plaintext
    embedded broker that advertises this listener: what a TLS listener of a real cluster looks like to a client.
    It records the client certificate of every connection it accepts."""

    def __init__(self, context: ssl.SSLContext, broker_port: int) -> None:
        self.context = context
        self.broker_port = broker_port
        self.clients: list[str] = []
        self.refused = 0
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port, ssl=self.context)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        self.clients.append(dict(part[0] for part in cert.get("subject", ())).get("commonName", ""))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def tls_broker(pki: dict[str, Path], tmp_path: Path) -> Any:
    """(bootstrap over TLS, the front) for a broker of its own advertising `localhost:<TLS port>`."""
    from devtools.embedded import free_port, tansu_binary, wait_port

    ca_key = serialization.load_pem_private_key(pki["ca_key"].read_bytes(), None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert("localhost", server_key, "batterytrace test CA", ca_key, ca=False)
    chain = _pem(tmp_path / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM))
    key = _pem(
        tmp_path / "server.key",
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    context.load_cert_chain(chain, key)
    context.verify_mode = ssl.CERT_REQUIRED
    broker_port, tls_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
        "--advertised-listener-url", f"tcp://localhost:{tls_port}", "--storage-engine", "memory://tansu/",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    front = TlsFront(context, broker_port)
    try:
        wait_port("127.0.0.1", broker_port)
        await front.start(tls_port)
        yield f"localhost:{tls_port}", front
    finally:
        await front.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


def tls_settings(pki: dict[str, Path], bootstrap: str, **kw: Any) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": pki["ca"],
        "kafka_ssl_certfile": pki["cert"],
        "kafka_ssl_keyfile": pki["key"],
        "kafka_ssl_key_password": "key-pass",
    } | kw


async def test_the_relay_consumers_and_ops_tools_work_over_mutual_tls(
    make_settings: Callable[..., Any], pki: dict[str, Path], tls_broker: Any, topic_prefix: str
) -> None:
    bootstrap, front = tls_broker
    settings = make_settings(RegistrySettings, **tls_settings(pki, bootstrap))
    app = create_registry(settings)
    async with serve(app) as client:
        assert (await client.get("/readyz")).json()["checks"]["kafka"] == "ok"  # the readiness admin client
        async with app.state.sessionmaker() as session, session.begin():
            message = {"specversion": "1.0", "id": "tls-1", "type": "t", "source": "s", "data": {}}
            await enqueue(session, "registry", [OutboxMessage(topic=TOPIC_REGISTRY, key="k1", payload=message)])
        await eventually(lambda: app.state.relay.published == 1, timeout_s=30)  # the relay's producer and admin
    cluster = KafkaCluster.from_settings(settings)
    topic = topic_prefix + TOPIC_REGISTRY
    got: list[bytes] = []

    def collect(_: Any) -> Any:
        async def handle(records: Any) -> None:
            got.extend(r.value for r in records)

        return handle

    from shared.kafka import ConsumerLoop, ConsumerSpec

    spec = ConsumerSpec(name="tls", group=topic_prefix + "tls", topics=(TOPIC_REGISTRY,), handler=collect)
    loop = ConsumerLoop.for_spec(spec, settings, None)  # type: ignore[arg-type]
    loop.start()  # a group member over TLS
    try:
        await eventually(lambda: got, timeout_s=30)
    finally:
        await loop.stop()
    assert orjson.loads(got[0])["id"] == "tls-1"
    report = await stream_report(cluster, topic_prefix, {})  # kafka-python's admin client over TLS
    assert "error" not in report and topic in {t["topic"] for t in report["topics"]}, report
    assert front.clients and set(front.clients) == {"events"}, "every connection presented the client certificate"


async def test_a_client_with_another_ca_or_without_its_certificate_is_refused(
    make_settings: Callable[..., Any], pki: dict[str, Path], tls_broker: Any, tmp_path: Path
) -> None:
    bootstrap, _ = tls_broker
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _pem(
        tmp_path / "other-ca.pem",
        _cert("another CA", other_key, "another CA", other_key, ca=True).public_bytes(serialization.Encoding.PEM),
    )
    good = KafkaCluster.from_settings(KafkaSettings(**tls_settings(pki, bootstrap)))
    assert await kafka_reachable(good, timeout_s=5)
    wrong_ca = KafkaSettings(**tls_settings(pki, bootstrap, kafka_ssl_cafile=other_ca))
    assert not await kafka_reachable(KafkaCluster.from_settings(wrong_ca), timeout_s=3)  # the broker is not trusted
    no_cert = KafkaSettings(
        kafka_bootstrap_servers=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"]
    )
    assert not await kafka_reachable(KafkaCluster.from_settings(no_cert), timeout_s=3)  # the broker refuses it
    # By IP the certificate still names the host (127.0.0.1 is in it); hostname checking is on.
    by_ip = KafkaSettings(**tls_settings(pki, bootstrap.replace("localhost", "127.0.0.1")))
    assert client_options(by_ip)["ssl_context"].check_hostname
