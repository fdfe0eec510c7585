"""``ape run deploy --network ...``: deploy (or find) the stack and write the manifest."""

import click
from ape import networks
from ape.cli import ConnectedProviderCommand

from crossmargin.cli import console, contracts_table, resolve_sender, sender_option
from crossmargin.config import load_config
from crossmargin.deploy import deploy
from crossmargin.manifest import Manifest, find_manifest, manifest_path


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@sender_option()
def cli(account):
    network = networks.provider.network.name
    sender = resolve_sender(account)
    config = load_config(network)
    existing = find_manifest(network)
    manifest = Manifest.load(existing) if existing.exists() else None
    if manifest is not None:
        manifest.network = network
    console.print(f"[bold]crossmargin deploy[/] on [cyan]{network}[/] from {sender.address}")
    run = deploy(config, sender, manifest, log=lambda line: console.print(f"  {line}"))
    out = manifest_path(network)
    run.manifest.save(out)

    console.print(contracts_table(run.manifest, f"crossmargin on {network} (chain {run.manifest.chain_id})"))
    console.print(f"{run.sent} transactions sent; manifest written to {out}")
