"""``flask fogredis import-revocations``: carry revocations stored by the
flask-jwt-extended docs' Redis recipe (one key per ``jti``) over to FogRedis,
each with the time it had left, so that no revoked token is accepted again
after the switch."""

from __future__ import annotations

import click

from ._connections import translated
from .cli import command_state, fogredis_cli, reported_errors

_SCAN_COUNT = 1000


@fogredis_cli.command("import-revocations")
@click.option(
    "--pattern",
    required=True,
    help="SCAN pattern of the old keys, such as '*' or 'blocklist:*'.",
)
@click.option(
    "--strip",
    default="",
    metavar="TEXT",
    help="Text before the jti in the old keys' names (for 'blocklist:<jti>': 'blocklist:').",
)
def import_revocations(pattern: str, strip: str) -> None:
    """Revoke the jti of every key matching PATTERN for as long as that key
    has left to live (for ever if it never expires). Keys of FogRedis's own,
    keys without STRIP in front and keys that expire meanwhile are skipped.
    Running it again changes nothing. Not on Redis Cluster, where a
    revocation's place depends on the token's identity, which the old keys
    do not hold."""
    state = command_state()
    settings = state.settings
    if state.revocations.needs_identity:
        raise click.ClickException(
            "import-revocations cannot run on Redis Cluster: there a revocation is stored "
            "next to the token's identity, which the old keys do not name."
        )
    own = f"{settings.key_prefix}:"
    counts = {"imported": 0, "for ever": 0, "skipped": 0}
    client = state.client
    with reported_errors():
        with translated(settings):
            names = list(client.scan_iter(match=pattern, count=_SCAN_COUNT))
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name.startswith(own) or not name.startswith(strip) or name == strip:
                counts["skipped"] += 1
                continue
            with translated(settings):
                left_ms = int(client.pttl(name))
            if left_ms == -2:  # expired between SCAN and PTTL
                counts["skipped"] += 1
                continue
            seconds = None if left_ms < 0 else max(left_ms, 1) / 1000
            state.revocations.blocklist(name[len(strip) :], seconds)
            counts["imported"] += 1
            counts["for ever"] += seconds is None
    click.echo(
        f"Imported {counts['imported']} revocations ({counts['for ever']} for ever), "
        f"skipped {counts['skipped']} keys, from {len(names)} matching {pattern!r}."
    )
