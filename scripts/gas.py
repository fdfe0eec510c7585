"""``ape run gas``: gas of every state-changing entry point, and contract sizes vs EIP-170.

Runs on a fresh ape-managed anvil. `total` is the receipt's gasUsed (21,000 base and
calldata included); `execution` excludes both, as anvil's gas report does.

Every block is one second after the one before it, whatever the wall clock does: option
values (hence the arrays' gas) depend on the time to expiry and perp funding on the time
between fills, so on a faster or slower machine the figures would otherwise move by a few
thousand gas from run to run. Execution gas is identical across runs; totals differ only by
the zero bytes of the order signatures in the fill rows' calldata.
"""

from pathlib import Path

import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import console, resolve_sender
from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import load_config
from crossmargin.ops.deploy import deploy
from crossmargin.tools.benchmarks import listing_benchmark, margin_benchmark
from crossmargin.tools.gas import EIP170_LIMIT, code_sizes, measure
from crossmargin.tools.liquidation_bench import liquidation_benchmark
from crossmargin.tools.scale_bench import liquidation_at_size_benchmark
from crossmargin.tools.worst_case import worst_case_benchmark

DEPLOYABLES = (
    "Vault",
    "OracleRouter",
    "MarginEngine",
    "RiskModel",
    "Clearinghouse",
    "ClearingMoves",
    "Markets",
    "Exchange",
    "Liquidator",
    "InsuranceFund",
    "Timelock",
    "Lens",
)


def run_benchmark(cm: Protocol, admin, trader, operator):
    rows = []
    for symbol, amount in (("USDC", "5000"), ("WBTC", "1"), ("WETH", "10")):
        cm.token(symbol).mint(admin, trader, amount)
        cm.vault.approve(trader, symbol)
        # another account deposits first, so the rows below price a typical vault, not an empty one
        cm.token(symbol).mint(admin, admin, amount)
        cm.vault.deposit(admin, symbol, amount)
    usdc, weth, wbtc = cm.token("USDC"), cm.token("WETH"), cm.token("WBTC")
    vault = cm.vault.contract

    rows.append(
        measure(
            "deposit USDC (6 dec), new account", vault.deposit(usdc.address, usdc.units(1000), 0, trader, sender=trader)
        )
    )
    rows.append(
        measure("deposit USDC (6 dec), repeat", vault.deposit(usdc.address, usdc.units(1000), 0, trader, sender=trader))
    )
    rows.append(
        measure(
            "deposit WETH (18 dec), new asset", vault.deposit(weth.address, weth.units(5), 0, trader, sender=trader)
        )
    )
    rows.append(
        measure("deposit WETH (18 dec), repeat", vault.deposit(weth.address, weth.units(1), 0, trader, sender=trader))
    )
    rows.append(
        measure(
            "deposit WBTC (8 dec), new asset", vault.deposit(wbtc.address, wbtc.units("0.5"), 0, trader, sender=trader)
        )
    )
    rows.append(
        measure(
            "deposit WBTC (8 dec), repeat", vault.deposit(wbtc.address, wbtc.units("0.25"), 0, trader, sender=trader)
        )
    )
    rows.append(
        measure(
            "withdraw USDC, 2 collaterals checked",
            vault.withdraw(usdc.address, usdc.units(100), 0, trader, sender=trader),
        )
    )
    rows.append(
        measure("withdraw WETH, partial", vault.withdraw(weth.address, weth.units(1), 0, trader, sender=trader))
    )
    rows.append(measure("move WETH to a new subaccount", vault.move(weth.address, weth.units(1), 0, 1, sender=trader)))
    rows.append(measure("move WETH, repeat", vault.move(weth.address, weth.units(1), 0, 1, sender=trader)))
    rows.append(
        measure("withdraw WETH, whole balance", vault.withdraw(weth.address, weth.units(2), 1, trader, sender=trader))
    )
    rows.append(measure("set_operator", vault.set_operator(0, operator, True, sender=trader)))
    rows.append(measure("oracle push (mock feed)", cm.oracle.push(admin, "ETH/USD", "3100")))
    return rows


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.option("--markdown", type=click.Path(path_type=Path), help="Also write the tables as markdown here.")
def cli(network, markdown):
    chain.provider.make_request("anvil_setBlockTimestampInterval", [1])
    admin = resolve_sender(None)
    trader, operator = accounts.test_accounts[1], accounts.test_accounts[2]
    cm = Protocol(deploy(load_config(network.name), admin).manifest)
    rows = run_benchmark(cm, admin, trader, operator)
    rows += margin_benchmark(cm, admin, accounts.test_accounts[3], accounts.test_accounts[4])
    rows += liquidation_benchmark(
        cm, admin, accounts.test_accounts[7], accounts.test_accounts[8], accounts.test_accounts[9]
    )
    rows += liquidation_at_size_benchmark(cm, admin, accounts.test_accounts[7], accounts.test_accounts[8], trader)
    # last: it lists underlyings up to MAX_UNDERLYINGS (the rows above have the deployment's)
    rows += listing_benchmark(cm, admin, operator, admin)
    # a second stack, of 16 underlyings: the largest account, every array stale
    rows += worst_case_benchmark(
        load_config(network.name),
        admin,
        accounts.test_accounts[5],
        accounts.test_accounts[6],
        accounts.test_accounts[9],
    )

    table = Table(title="gas per entry point (anvil)")
    for column in ("action", "total gas", "execution gas", "cold-read floor / note"):
        table.add_column(column, justify="right" if "gas" in column else "left")
    for row in rows:
        table.add_row(row.action, f"{row.total:,}", f"{row.execution:,}", row.note)
    console.print(table)

    sizes = code_sizes(DEPLOYABLES)
    size_table = Table(title=f"runtime code size (EIP-170 limit {EIP170_LIMIT:,} bytes)")
    for column in ("contract", "bytes", "of limit"):
        size_table.add_column(column, justify="left" if column == "contract" else "right")
    for name, size in sizes:
        size_table.add_row(name, f"{size:,}", f"{100 * size / EIP170_LIMIT:.1f}%")
    console.print(size_table)

    if markdown:
        lines = ["| action | total gas | execution gas | cold-read floor / note |", "|---|---:|---:|---|"]
        lines += [f"| {r.action} | {r.total:,} | {r.execution:,} | {r.note} |" for r in rows]
        lines += ["", f"| contract | runtime bytes | of EIP-170 ({EIP170_LIMIT:,}) |", "|---|---:|---:|"]
        lines += [f"| {n} | {s:,} | {100 * s / EIP170_LIMIT:.1f}% |" for n, s in sizes]
        markdown.write_text("\n".join(lines) + "\n")
        console.print(f"written to {markdown}")
