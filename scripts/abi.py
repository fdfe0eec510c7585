"""``ape run abi``: write the compiled ABIs bundled with the SDK (``crossmargin/abi/*.json``).

Run it after changing a contract's interface; ``tests/test_package.py`` fails while the
bundled ABIs differ from the compiled contracts. ``--check`` only compares (exit 1 on a
difference). ``ape run deploy`` writes each deployment's own ABIs next to its manifest.
"""

import json

import click

from crossmargin.abi import BUNDLED, CONTRACTS, abi_json, write_abi
from crossmargin.cli import console


@click.command(help=__doc__)
@click.option("--check", is_flag=True, help="Compare only: exit 1 if a bundled ABI differs from the compiled one.")
def cli(check):
    stale = [name for name in CONTRACTS if not _same(name)]
    if check:
        if stale:
            raise click.ClickException(f"bundled ABIs out of date: {', '.join(stale)}; run `ape run abi`")
        console.print(f"{len(CONTRACTS)} bundled ABIs match the compiled contracts")
        return
    for name in CONTRACTS:
        write_abi(name, BUNDLED)
    console.print(f"wrote {len(CONTRACTS)} ABIs to {BUNDLED} ({len(stale)} changed: {', '.join(stale) or 'none'})")


def _same(name: str) -> bool:
    path = BUNDLED / f"{name}.json"
    return path.is_file() and json.loads(path.read_text()) == abi_json(name)
