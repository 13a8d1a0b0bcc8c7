"""`batterytrace log …` (witness, keygen) and `batterytrace verify`: what a ministry runs on its own machine to
hold the operator to its history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx
import orjson
import typer

from shared.contract import tlog
from shared.contract.proofs import verify_bundle, witness_step

log_app = typer.Typer(help="The transparency log: witness its checkpoints, make witness keys.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@log_app.command("keygen")
def keygen(
    name: Annotated[str, typer.Argument(help="The key's name, e.g. motie.go.kr/witness (no spaces, no '+').")],
    out: Annotated[Path, typer.Option(help="Where to write the signer key (kept secret, mode 0600).")],
) -> None:
    """Make an Ed25519 signed-note key. Writes the signer key to OUT and prints the verifier key, which the log's
    operator adds to BT_EVENTS_LOG_WITNESS_KEYS."""
    if out.exists():
        _fail(f"{out} exists; not overwritten")
    try:
        signer = tlog.Signer.generate(name)
    except tlog.LogError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(signer.encode() + "\n")
    out.chmod(0o600)
    typer.echo(signer.verifier().encode())


@log_app.command("witness")
def witness(
    url: Annotated[str, typer.Option(help="The events service's base URL.")],
    key: Annotated[Path, typer.Option(help="This witness's signer key file (see `batterytrace log keygen`).")],
    state: Annotated[Path, typer.Option(help="Directory holding the checkpoint this witness last accepted.")],
    token: Annotated[
        str | None, typer.Option(envvar="BT_TOKEN", help="Bearer token of an authority, to post the cosignature.")
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option(
            help="The log's verifier key. Default: the one pinned in STATE (fetched and pinned on first run)."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 10.0,
) -> None:
    """Fetch the newest checkpoint, verify the log's signature and its consistency with the checkpoint held in
    STATE, keep it, cosign it and post the cosignature. On a checkpoint that does not extend the held one
    (rewritten history, a fork, a restored backup) refuse: keep both as evidence and exit 2."""
    signer = tlog.Signer.decode(key.read_text())
    state.mkdir(parents=True, exist_ok=True)
    pinned = state / "log.key"
    held_path = state / "checkpoint"
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as http:
        if log_key is None:
            if pinned.exists():
                log_key = pinned.read_text().strip()
            else:
                log_key = http.get("/v1/log/key").raise_for_status().text.strip()
                typer.echo(f"pinned the log key on first use: {log_key}")
        verifier = tlog.Verifier.decode(log_key)
        pinned.write_text(log_key + "\n")
        r = http.get("/v1/log/checkpoint")
        if r.status_code != 200:
            _fail(f"no checkpoint from {url}: HTTP {r.status_code} {r.text[:200]}")
        try:
            new, note, _ = tlog.open_checkpoint(r.text, verifier)
        except tlog.LogError as exc:
            _fail(f"REFUSED: the checkpoint does not verify against the log key: {exc}", 2)
        held = None
        if held_path.exists():
            held, _, _ = tlog.open_checkpoint(held_path.read_text(), verifier)
        proof = None
        if held is not None and new.size > held.size:
            p = http.get("/v1/log/proof/consistency", params={"first": held.size, "second": new.size})
            if p.status_code == 200:
                proof = tlog.unhex(p.json()["proof"])
        step = witness_step(held, new, proof)
        if not step.accept:
            evidence = state / f"evidence-{time.strftime('%Y%m%dT%H%M%S')}"
            evidence.mkdir()
            (evidence / "held-checkpoint").write_text(held_path.read_text() if held_path.exists() else "")
            (evidence / "offered-checkpoint").write_text(r.text)
            _fail(f"REFUSED: {step.reason}. Both checkpoints kept in {evidence}.", 2)
        held_path.write_text(tlog.Note(note.text, note.signatures).encode())
        typer.echo(f"accepted: {step.reason}")
        line = signer.sign(note.text)
        if token is None:
            typer.echo("no --token: cosignature not posted")
            return
        c = http.post(
            "/v1/log/cosignatures",
            json={"tree_size": new.size, "signature": line},
            headers={"Authorization": f"Bearer {token}"},
        )
        if c.status_code != 200:
            _fail(f"cosignature refused: HTTP {c.status_code} {c.text[:300]}")
        typer.echo(f"cosigned checkpoint {new.size} as {signer.name}")


def verify_command(
    bundle: Annotated[Path, typer.Argument(help="A proof bundle (GET /v1/batteries/{id}/proof-bundle).")],
    log_key: Annotated[str, typer.Option(help="The log's verifier key (GET /v1/log/key), or a file holding it.")],
    witness_key: Annotated[
        list[str] | None, typer.Option(help="A witness's verifier key (or a file); repeat for several.")
    ] = None,
    lang: Annotated[str, typer.Option(help="ko or en.")] = "ko",
) -> None:
    """Verify a proof bundle with no server: every event's hash from its content, the battery's hash chain, each
    inclusion proof, and the checkpoint's signatures. Exit 0 when it verifies, 1 when it does not."""

    def key_of(value: str) -> tlog.Verifier:
        path = Path(value)
        return tlog.Verifier.decode(path.read_text() if path.is_file() else value)

    try:
        data = orjson.loads(bundle.read_bytes())
        verifier = key_of(log_key)
        witnesses = [key_of(k) for k in witness_key or []]
    except (OSError, orjson.JSONDecodeError, tlog.LogError) as exc:
        _fail(f"cannot read the bundle or a key: {exc}")
    verdict = verify_bundle(data, verifier, witnesses)
    typer.echo(verdict.report(lang))
    raise typer.Exit(0 if verdict.valid else 1)
