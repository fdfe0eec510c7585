"""Shared pieces of the ``ape run`` command-line scripts."""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from ape import accounts, networks
from ape.cli import account_option
from ape.logging import CLICK_ECHO_KWARGS, logger
from eth_utils import to_checksum_address
from rich.console import Console
from rich.table import Table

from crossmargin.clients.errors import one_line
from crossmargin.ops.manifest import Manifest
from crossmargin.units import MAX_SUBACCOUNT, SUB_BITS

console = Console()

# Networks on which the funded test accounts exist and mocks may be pushed.
DEV_NETWORKS = ("local", "devnet", "devnet-fork")


def is_dev_network() -> bool:
    return networks.provider.network.name in DEV_NETWORKS


def sender_option():
    """``--account ALIAS`` (or ``TEST::N``); on dev networks it defaults to test account 0."""
    option = account_option(prompt=False)

    def decorator(fn: Callable) -> Callable:
        fn = option(fn)
        fn.__click_params__[
            -1
        ].help = "Sending account: an alias of `ape accounts list` or TEST::N; default test account 0 on dev networks."
        return fn

    return decorator


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
    if value not in accounts.aliases:
        known = ", ".join(sorted(accounts.aliases)) or "none (`ape accounts import ALIAS` adds one)"
        hint = "; on dev networks a test-account index (e.g. 4)" if is_dev_network() else ""
        raise click.BadParameter(f"unknown account alias {value!r}; known: {known}{hint}", param_hint="--account")
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


class FractionType(click.ParamType):
    """A fraction from 0 to 1, given as ``0.05`` or as a percentage ``5%``; a bare number
    above 1 is refused (``5`` would mean 500%). ``none`` gives None when ``allow_none``."""

    name = "fraction"

    def __init__(self, allow_none: bool = False):
        self.allow_none = allow_none

    def convert(self, value: Any, param: Any, ctx: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        text = str(value).strip()
        if self.allow_none and text.lower() == "none":
            return None
        percent = text.endswith("%")
        try:
            number = Decimal(text.removesuffix("%").strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a fraction (e.g. 0.05) or a percentage (e.g. 5%)", param, ctx)
        if percent:
            number /= 100
        elif number > 1:
            self.fail(
                f"{value} is above 1; give a fraction (0.05) or a percentage ({value}%), not a bare percent", param, ctx
            )
        if not number.is_finite() or not 0 <= number <= 1:
            self.fail(f"{value} is not between 0 and 1 (0% and 100%)", param, ctx)
        return number


def friendly_errors(fn: Callable) -> Callable:
    """Ends a command with one line (``Error: clearing: insufficient margin``) instead of a
    traceback for any error but click's own; ``-v DEBUG`` logs the traceback too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # noqa: BLE001 - the boundary: one line, traceback at debug
            logger.debug(traceback.format_exc())
            raise click.ClickException(one_line(error)) from None

    return wrapper


def json_option(help_text: str):
    """``--json``: the command's output as JSON documents on stdout, everything else (the
    console, ape's log lines, even the provider's "Connecting" line) on stderr."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            to_stderr()
        return value

    return click.option("--json", "as_json", is_flag=True, is_eager=True, callback=callback, help=help_text)


def to_stderr() -> None:
    """Sends the shared console and every ape log line to stderr (``--json`` keeps stdout
    for the documents)."""
    console.stderr = True
    for level in ("error", "warning", "success", "info", "debug"):
        CLICK_ECHO_KWARGS[level] = {"err": True}  # ape's log handler holds this dict


def emit_json(document: Any) -> None:
    """Prints ``document`` as one line of JSON on stdout (Decimals as strings, ints as ints)."""
    click.echo(json.dumps(document, default=_json_default, sort_keys=True))


def account_label(account: int) -> str:
    """An account id in JSON output: ``<owner checksum address>/<subaccount>``."""
    owner = to_checksum_address((account >> SUB_BITS).to_bytes(20, "big"))
    return f"{owner}/{account & MAX_SUBACCOUNT}"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
