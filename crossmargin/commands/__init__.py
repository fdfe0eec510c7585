"""The ``crossmargin`` command (installed with the package), and the same commands for
``ape run`` (``scripts/<name>.py`` re-exports each ``cli``)::

    crossmargin status --network ethereum:sepolia:node
    crossmargin keeper liquidate --network ethereum:devnet:node --account 4 --once
    crossmargin preview 2 "ETH perp:1.5@3000" --network ethereum:devnet:node
    crossmargin faucet USDC 10000 --to 2 --network ethereum:devnet:node
    crossmargin simulate book.yaml                # offline: no chain, no deployment

Each command that reads the chain takes ape's ``--network`` and finds the network's
deployment manifest as the SDK does (``crossmargin.ops.manifest``): ``$CROSSMARGIN_DEPLOYMENTS``,
``./deployments`` (the checkout's in a checkout), then the manifests bundled with the package.
"""

from __future__ import annotations

import click

from crossmargin.commands import faucet, keeper, preview, status
from crossmargin.simulate import cli as simulate

__all__ = ["main"]


# One line each in `crossmargin --help` (the commands' own help is their module docstring).
SHORT_HELP = {
    "status": (status.cli, "Accounts nearest to liquidation, live auctions, the insurance fund."),
    "keeper": (keeper.cli, "Run the keepers (liquidate, settle, refresh, prices) in a loop."),
    "preview": (preview.cli, "An account's margin after a list of trades, nothing sent."),
    "faucet": (faucet.cli, "Mint mock tokens on a local or devnet network."),
    "simulate": (simulate, "Price a hypothetical portfolio offline with the reference model."),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crossmargin")
def main() -> None:
    """crossmargin: the operator's and trader's commands on a deployment (the same as `ape run
    status|keeper|preview|faucet`) and the offline margin simulator. `crossmargin COMMAND --help` for
    each one's options."""


for _name, (_command, _help) in SHORT_HELP.items():
    _command.short_help = _help
    main.add_command(_command, _name)
