"""``ape run crash``: a market crash on a ~50-account book and who pays for it (issue 15).

Deploys the stack on a local node, builds a mixed book on ETH and BTC (perps on both sides,
dated futures, delta-hedged option books, passive USDC-only depositors and a few standing
bidders), funds the insurance fund, applies one oracle round of ETH −35%, BTC −25% and
implied vol doubled, runs the keeper until nothing is liquidatable, and prints the loss
waterfall: accounts auctioned, their losses, what the fund paid, what deleveraging charged
(and to whom), what was socialized, and what the passive depositors lost.
(`crossmargin/tools/crash.py`; the table of one run is in docs/waterfall.md.)
"""

import json
from decimal import Decimal

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import console, friendly_errors, resolve_sender
from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import load_config
from crossmargin.ops.deploy import deploy
from crossmargin.tools.crash import CrashConfig, CrashReport, run_crash


def _usd(value) -> str:
    return f"{value:,.2f}"


def print_report(report: CrashReport) -> None:
    w = report.waterfall
    s = report.summary()
    c = report.config
    table = Table(
        title=(
            f"crash: ETH {c.eth_move:+.0%}, BTC {c.btc_move:+.0%}, implied vol x{c.vol_factor}; "
            f"{s['accounts']} accounts, insurance fund {_usd(report.fund_before)} USDC"
        )
    )
    table.add_column("")
    table.add_column("value", justify="right")
    rows = (
        ("accounts auctioned", f"{s['accounts_auctioned']} ({s['insolvent_accounts']} insolvent)"),
        ("losses of insolvent slices (USD)", _usd(s["losses"])),
        ("  paid by the insurance fund", _usd(s["fund_paid"])),
        (
            "  deleveraged (the other side)",
            f"{_usd(s['deleveraged'])}  ({s['accounts_charged_by_deleveraging']} accounts)",
        ),
        ("  socialized (positive cash)", _usd(s["socialized"])),
        ("fund's shortfall (all socialized before the waterfall)", _usd(s["deleveraged"] + s["socialized"])),
        ("  loss = fund + deleveraged + socialized, every slice", "to the wei" if s["every_slice_exact"] else "NO"),
        ("socialized from accounts never auctioned", _usd(s["socialized_from_healthy_accounts"])),
        (
            f"passive USDC depositors ({s['passive_depositors']}) lost",
            f"{_usd(s['passive_depositors_lost'])} of {_usd(s['passive_deposits'])}",
        ),
        (
            "standing bids executed (max lag after due)",
            f"{s['standing_bids_executed']} ({s['standing_bid_max_lag_s']} s)",
        ),
        ("keeper sweeps (step s)", f"{s['keeper_sweeps']} ({c.step_seconds})"),
        ("liquidatable accounts left", str(s["liquidatable_left"])),
    )
    for row in rows:
        table.add_row(*row)
    console.print(table)

    slices = Table(title="insolvent accounts (USD, summed over their slices)")
    for column in ("account", "loss", "fund", "deleveraged", "socialized"):
        slices.add_column(column, justify="left" if column == "account" else "right")
    for account, covered in w.by_account().items():
        slices.add_row(
            report.name(account),
            _usd(covered.loss),
            _usd(covered.fund),
            _usd(covered.deleveraged),
            _usd(covered.socialized),
        )
    console.print(slices)

    payers = Table(title="who paid the deleveraging (USD owed through the loss index)")
    for column in ("account", "charged", "socialized share", "auctioned"):
        payers.add_column(column, justify="left" if column == "account" else "right")
    auctioned = set(w.auctioned)
    for account, paid in sorted(w.deleveraging_paid().items(), key=lambda kv: -kv[1]):
        payers.add_row(
            report.name(account),
            _usd(paid),
            _usd(w.socialized_shares.get(account, Decimal(0))),
            "yes" if account in auctioned else "no",
        )
    console.print(payers)
    sides = Table(title="loss index charges (Clearinghouse.Deleveraged; loss_index now)")
    for column in ("market", "side", "charges", "charged", "per unit", "loss index now"):
        sides.add_column(column, justify="left" if column in ("market", "side") else "right")
    instrument_of = {c.name: c.instrument for c in w.charges}
    for name, longs, n, amount, per_unit in w.sides():
        index = w.loss_index[instrument_of[name]][0 if longs else 1]
        sides.add_row(name, "longs" if longs else "shorts", str(n), _usd(amount), f"{per_unit:,.4f}", f"{index:,.4f}")
    console.print(sides)
    console.print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items()))


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.option(
    "--accounts", "count", type=click.IntRange(8, 120), default=50, show_default=True, help="Accounts in the book."
)
@click.option("--fund", type=Decimal, default=Decimal(20_000), show_default=True, help="Insurance fund deposit (USDC).")
@click.option("--eth-move", type=Decimal, default=Decimal("-0.35"), show_default=True, help="ETH spot move (fraction).")
@click.option("--btc-move", type=Decimal, default=Decimal("-0.25"), show_default=True, help="BTC spot move (fraction).")
@click.option("--vol-factor", type=Decimal, default=Decimal(2), show_default=True, help="Factor on both implied vols.")
@click.option("--seed", type=int, default=15, show_default=True, help="Random seed of the book.")
@click.option("--step", type=int, default=120, show_default=True, help="Chain seconds between keeper sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@friendly_errors
def cli(network, count, fund, eth_move, btc_move, vol_factor, seed, step, as_json):
    admin = resolve_sender(None)
    t = accounts.test_accounts
    owner, keeper_account, lp = t[2], t[4], t[9]
    config = CrashConfig(
        accounts=count,
        fund=fund,
        eth_move=eth_move,
        btc_move=btc_move,
        vol_factor=vol_factor,
        seed=seed,
        step_seconds=step,
    )
    if as_json:
        cm = Protocol(deploy(load_config(network.name), admin).manifest)
        report = run_crash(cm, admin, owner, keeper_account, lp, config)
        out = {k: (f"{v:f}" if isinstance(v, Decimal) else v) for k, v in report.summary().items()}
        out["config"] = {k: str(v) for k, v in vars(config).items()}
        out["waterfall"] = report.waterfall.to_json(report.name)
        click.echo(json.dumps(out, indent=2))
        return
    console.rule("[bold]crossmargin crash run")
    with console.status("deploying the stack"):
        cm = Protocol(deploy(load_config(network.name), admin).manifest)
    with console.status("building the book") as status:

        def progress(line: str) -> None:
            console.print(f"  {line}")
            status.update(line)

        report = run_crash(cm, admin, owner, keeper_account, lp, config, log=progress)
    if not console.is_terminal:
        console.width = 120
    print_report(report)
