"""``crossmargin preview ACCOUNT TRADE...`` (or ``ape run preview ...``): an account's margin
after a list of trades, without sending anything.

ACCOUNT is ``<owner address>/<subaccount>``, an owner address (subaccount 0) or a test-account
index (``2``) on dev networks. Each TRADE is ``INSTRUMENT:SIZE@PRICE`` in human units from the
account's own side (a positive size buys): INSTRUMENT is an instrument id or its name as
``cm.instruments()`` lists it (``"ETH perp"``, ``"ETH call 3200 2026-12-30"``). Prints equity,
IM, MM and health before and after, the IM each trade adds and the estimated liquidation
price per underlying (the engine's own valuation through the Lens's ``preview``; the
liquidation prices from the reference model).

    ape run preview 2 "ETH perp:1.5@3000" --network ethereum:devnet:node
    crossmargin preview 0xAb.../1 "ETH perp:-2@3000" "3:1@120" --json --network ethereum:sepolia:node
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal, InvalidOperation

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import account_label, console, emit_json, friendly_errors, json_option
from crossmargin.clients.protocol import Protocol
from crossmargin.units import SUB_BITS, account_id


def parse_account(value: str) -> int:
    """An account id from ``owner/sub``, ``owner`` or a test-account index."""
    owner, _, sub = value.partition("/")
    if owner.isdigit() and not sub:
        return account_id(accounts.test_accounts[int(owner)].address, 0)
    if not (owner.startswith("0x") and len(owner) == 42) or (sub and not sub.isdigit()):
        raise click.BadParameter(
            f"{value!r} is not <owner address>/<subaccount>, an address or a test-account index",
            param_hint="ACCOUNT",
        )
    subaccount = int(sub or 0)
    if subaccount >= 2**SUB_BITS:
        raise click.BadParameter(f"subaccount {subaccount} is above 2**{SUB_BITS} - 1", param_hint="ACCOUNT")
    return account_id(owner, subaccount)


def parse_trade(value: str) -> tuple[int | str, Decimal, Decimal]:
    """``INSTRUMENT:SIZE@PRICE`` as ``(instrument, size, price)``."""
    instrument, colon, rest = value.rpartition(":")
    size, at, price = rest.partition("@")
    try:
        if not (colon and at and instrument):
            raise InvalidOperation
        parsed = (int(instrument) if instrument.isdigit() else instrument, Decimal(size), Decimal(price))
    except InvalidOperation:
        raise click.BadParameter(
            f"{value!r} is not INSTRUMENT:SIZE@PRICE (e.g. 'ETH perp:1.5@3000')", param_hint="TRADE"
        ) from None
    return parsed


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.argument("account")
@click.argument("trades", nargs=-1, required=True)
@click.option("--maker", is_flag=True, help="Price the default fees at the maker rate (default: taker).")
@click.option("--no-liquidation-prices", is_flag=True, help="Skip the liquidation price estimates (faster).")
@json_option("Print one JSON document on stdout instead of the tables.")
@friendly_errors
def cli(account, trades, maker, no_liquidation_prices, as_json):
    account = parse_account(account)
    legs = [parse_trade(trade) for trade in trades]
    cm = Protocol.load()
    preview = cm.preview(account, legs, maker=maker, liquidation_prices=not no_liquidation_prices)
    document = {
        "account": account_label(account),
        "before": asdict(preview.before),
        "after": asdict(preview.after),
        "health": preview.health,
        "cash": preview.cash,
        "new_risk_open": preview.new_risk_open,
        "closed": preview.closed,
        "legs": [
            {
                "instrument": leg.name,
                "size": leg.size,
                "price": leg.price,
                "fee": leg.fee,
                "im_added": leg.initial_added,
            }
            for leg in preview.legs
        ],
        "liquidation_prices": {name: asdict(price) for name, price in preview.liquidation_prices.items()},
    }
    if as_json:
        emit_json(document)
        return
    table = Table(title=f"margin preview of {document['account']} (USD)")
    for column in ("", "equity", "IM", "MM", "health"):
        table.add_column(column, justify="right" if column else "left")
    for label, view in (("now", preview.before), ("after the trades", preview.after)):
        table.add_row(
            label, _usd(view.equity), _usd(view.initial), _usd(view.maintenance), _usd(view.maintenance_health)
        )
    console.print(table)
    legs_table = Table(title="trades (the account's side)")
    for column in ("instrument", "size", "price", "fee", "IM added"):
        legs_table.add_column(column, justify="left" if column == "instrument" else "right")
    for leg in preview.legs:
        legs_table.add_row(leg.name, f"{leg.size:,}", _usd(leg.price), _usd(leg.fee), _usd(leg.initial_added))
    console.print(legs_table)
    for name, price in preview.liquidation_prices.items():
        console.print(
            f"{name}: spot {_usd(price.spot)}, liquidation price estimate"
            f" below {_usd(price.below)}, above {_usd(price.above)}"
        )
    if preview.after.equity < preview.after.initial and preview.closed is None:
        console.print("[red]after the trades the account is below initial margin: a fill would revert[/]")
    elif preview.closed is not None:
        console.print(f"new risk is closed now ({preview.closed}): only risk-reducing trades go through")
