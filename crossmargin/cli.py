"""Shared pieces of the ``ape run`` command-line scripts."""

from __future__ import annotations

from typing import Any

import click
from ape import accounts, networks
from ape.cli import account_option
from rich.console import Console
from rich.table import Table

from crossmargin.manifest import Manifest

console = Console()

# Networks on which the funded test accounts exist and mocks may be pushed.
DEV_NETWORKS = ("local", "devnet", "devnet-fork")


def is_dev_network() -> bool:
    return networks.provider.network.name in DEV_NETWORKS


def sender_option():
    """``--account ALIAS`` (or ``TEST::N``); on dev networks it defaults to test account 0."""
    return account_option(prompt=False)


def resolve_sender(account: Any | None) -> Any:
    if account is not None:
        return account
    if is_dev_network():
        return accounts.test_accounts[0]
    raise click.UsageError("--account is required on this network")


def load_account(value: str | None, default_index: int | None = None) -> Any:
    """An ape account from ``--account``: an alias of ``ape accounts``, ``TEST::N``, or on dev
    networks a bare test-account index (``4``). ``None`` gives test account ``default_index``
    on dev networks (or None). A keyfile account is unlocked once, with autosign on, so a
    long-running keeper does not prompt for every transaction."""
    if value is None:
        if default_index is not None and is_dev_network():
            return accounts.test_accounts[default_index]
        return None
    if value.isdigit() or value.upper().startswith("TEST::"):
        if not is_dev_network():
            raise click.BadParameter("test accounts exist only on dev networks", param_hint="--account")
        return accounts.test_accounts[int(value.split("::")[-1])]
    account = accounts.load(value)
    if hasattr(account, "set_autosign"):
        account.set_autosign(True)
    return account


def contracts_table(manifest: Manifest, title: str) -> Table:
    """The deployed addresses of a manifest, as a rich table."""
    table = Table(title=title)
    table.add_column("contract")
    table.add_column("address")
    for name, address in sorted(manifest.contracts.items()):
        table.add_row(name, address)
    return table
