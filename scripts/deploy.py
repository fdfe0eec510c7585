"""``ape run deploy --network ...``: deploy (or find) the stack and write the manifest
(``deployments/<network>.json``) and the ABI of every deployed contract next to it
(``deployments/<network>.abi/<Contract>.json``, for clients in other languages).

``--lens-only`` deploys a new Lens (view only) over the manifest's contracts and records it.
``--dry-run`` sends nothing and writes nothing: it prints each change deploy would make, old
value -> new value (and stops at the first contract it would deploy).
A config with an unknown key or an out-of-bound value stops before anything is sent, with
the file, the key and the reason.
"""

import click
from ape import networks
from ape.cli import ConnectedProviderCommand

from crossmargin.cli import console, contracts_table, friendly_errors, resolve_sender, sender_option
from crossmargin.ops.config import ConfigError, load_config
from crossmargin.ops.deploy import deploy, deploy_lens
from crossmargin.ops.manifest import Manifest, abi_dir, find_manifest, manifest_path


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@sender_option()
@click.option("--lens-only", is_flag=True, help="Deploy a new Lens over the existing manifest, nothing else.")
@click.option("--dry-run", is_flag=True, help="Send nothing: print each change (old -> new) deploy would make.")
@friendly_errors
def cli(account, lens_only, dry_run):
    network = networks.provider.network.name
    sender = resolve_sender(account)
    try:
        config = load_config(network)
    except ConfigError as error:
        raise click.ClickException(f"the config is invalid, nothing was sent:\n{error}") from None
    existing = find_manifest(network)
    manifest = Manifest.load(existing) if existing.exists() else None
    if manifest is not None:
        manifest.network = network
    console.print(f"[bold]crossmargin deploy[/] on [cyan]{network}[/] from {sender.address}")
    log = lambda line: console.print(f"  {line}")  # noqa: E731
    if dry_run:
        run = deploy(config, sender, manifest, log=log, dry_run=True)
        if run.stopped:
            console.print(f"dry run: would deploy {run.stopped}; nothing after it was compared")
        console.print(f"dry run: {len(run.changes)} change(s), nothing sent, no manifest written")
        return
    if lens_only:
        if manifest is None:
            raise click.ClickException(f"no manifest for {network!r}: deploy the stack first")
        run = deploy_lens(manifest, sender, log=log)
    else:
        run = deploy(config, sender, manifest, log=log)
    out = manifest_path(network)
    run.manifest.save(out)
    abis = run.manifest.write_abis(out)

    console.print(contracts_table(run.manifest, f"crossmargin on {network} (chain {run.manifest.chain_id})"))
    console.print(f"{run.sent} transactions sent; manifest written to {out}, {len(abis)} ABIs to {abi_dir(out)}/")
