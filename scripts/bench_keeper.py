"""``ape run bench_keeper``: how long a keeper takes to screen 1,000 accounts and start every
due auction after a price crash.

On a fresh ape-managed anvil: deploys the stack; deposits USDC into ``--accounts``
subaccounts of one owner (1,000-5,000 USDC each); a ``--risky`` share of them also goes long
10 ETH perp at 3,000 against one market maker's order (8,000-13,000 USDC, above initial
margin); then ETH crashes to ``--price``. Timed: discovery of the accounts from events, and
the keeper's ``liquidate`` (screen every account through ``engine.margins``, start every due
auction). The set-up uses the keeper's own pipelined sender, so it takes about a minute.

The anvil it starts runs without ``--steps-tracing``, which ape-foundry always passes: with
it anvil keeps every step of every transaction in memory, and the ~1,400 margin-checked
transactions of the set-up grew it past 22 GB until the kernel killed it. A keeper talks to
a node that does not trace, so the figure is also the realistic one.
"""

from __future__ import annotations

import random
import time

import click
from ape import accounts, chain, networks
from ape_foundry.provider import FoundryProvider
from rich.table import Table

from crossmargin.cli import console, resolve_sender
from crossmargin.clients.protocol import Protocol
from crossmargin.clients.sender import Call, TxSender
from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.ops.config import load_config
from crossmargin.ops.deploy import deploy
from crossmargin.units import SUB_BITS, to_wad

RISKY_SIZE = 10  # ETH long per risky account


def send_all(sender: TxSender, calls: list[Call], what: str) -> None:
    began = time.monotonic()
    results = sender.execute(calls)
    failed = [r for r in results if r.status != "sent"]
    if failed:
        raise click.ClickException(f"{what}: {len(failed)} failed, first: {failed[0].key} {failed[0].reason}")
    console.print(f"  {what}: {len(results)} transactions in {time.monotonic() - began:.1f} s")


def anvil_without_step_tracing() -> None:
    """Makes ape-foundry start anvil without ``--steps-tracing`` (see the module docstring)."""
    build_command = FoundryProvider.build_command

    def without_tracing(self) -> list[str]:
        return [arg for arg in build_command(self) if arg != "--steps-tracing"]

    FoundryProvider.build_command = without_tracing


@click.command(help=__doc__)
@click.option("--accounts", "count", type=int, default=1000, show_default=True, help="Subaccounts deposited into.")
@click.option("--risky", type=float, default=0.25, show_default=True, help="Share of accounts with a perp.")
@click.option("--price", default="2300", show_default=True, help="ETH price after the crash.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed of the deposits and risky picks.")
def cli(count, risky, price, seed):
    anvil_without_step_tracing()
    with networks.parse_network_choice("ethereum:local:foundry") as provider:
        bench(provider.network, count, risky, price, seed)


def bench(network, count, risky, price, seed):
    rng = random.Random(seed)
    admin = resolve_sender(None)
    owner, maker, keeper_account = accounts.test_accounts[1], accounts.test_accounts[2], accounts.test_accounts[4]
    console.rule("[bold]keeper benchmark")
    with console.status("deploying"):
        cm = Protocol(deploy(load_config(network.name), admin).manifest)
    usdc = cm.token("USDC")
    vault, exchange = cm.vault.contract, cm.exchange.contract

    risky_subs = set(rng.sample(range(count), int(count * risky)))
    deposits = {
        sub: rng.randint(8_000, 13_000) if sub in risky_subs else rng.randint(1_000, 5_000) for sub in range(count)
    }
    maker_deposit = 20_000_000
    usdc.mint(admin, admin, sum(deposits.values()) + maker_deposit)
    cm.vault.approve(admin, "USDC")
    console.print(f"set-up: {count} accounts, {len(risky_subs)} long {RISKY_SIZE} ETH at 3,000")
    funder = TxSender(admin)
    send_all(
        funder,
        [
            Call(vault.deposit, (usdc.address, usdc.units(d), sub, owner.address), f"deposit:{sub}")
            for sub, d in deposits.items()
        ]
        + [Call(vault.deposit, (usdc.address, usdc.units(maker_deposit), 0, maker.address), "deposit:maker")],
        "deposits",
    )
    perp = cm.markets.perp("ETH")
    total = to_wad(RISKY_SIZE * len(risky_subs))
    order = cm.exchange.make_order(maker, perp, False, size_raw=total, price=3000, ttl=86_400)
    signature = cm.exchange.sign(maker, order)
    fills = [
        Call(exchange.fill, (order.as_tuple(), maker.address, signature, to_wad(RISKY_SIZE), sub), f"fill:{sub}")
        for sub in sorted(risky_subs)
    ]
    send_all(TxSender(owner), fills, "fills")

    cm.oracle.push(admin, "ETH/USD", price)
    cm.oracle.push(admin, "ETH/IV", "0.6")
    console.print(f"ETH crashed to {price}")

    keeper = Keeper(cm, keeper_account, KeeperConfig(bid_threshold=None))
    began = time.monotonic()
    discovery = keeper.discover()
    discover_s = time.monotonic() - began
    began = time.monotonic()
    report = keeper.liquidate()
    liquidate_s = time.monotonic() - began
    if not report.ok:
        raise click.ClickException(report.summary())

    started = report.count("sent", "start")
    owned = [a for a in keeper.state.accounts if a >> SUB_BITS == int(owner.address, 16)]
    in_auction = sum(cm.liquidator.contract.in_auction(a) for a in report.due)
    table = Table(title=f"keeper: screen {len(owned)} accounts and start every due auction (anvil, {chain.chain_id})")
    for column in ("accounts", "due", "started", "seconds", "discovery s", "ms per start"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{report.screened:,}",
        f"{len(report.due):,}",
        f"{started:,}",
        f"{liquidate_s:.2f}",
        f"{discover_s:.2f}",
        f"{1000 * liquidate_s / max(started, 1):.1f}",
    )
    console.print(table)
    console.print("  of which: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items()))
    console.print(
        f"{discovery.known} accounts known ({len(owned)} benchmark subaccounts + maker/fees); "
        f"{in_auction}/{len(report.due)} due accounts now in auction; target <= 10 s: "
        + ("[green]met[/]" if liquidate_s <= 10 else "[red]missed[/]")
    )
    if started != len(report.due) or in_auction != len(report.due):
        raise click.ClickException("not every due auction was started")
