"""``crossmargin keeper [liquidate|settle|refresh|prices|all]`` (or ``ape run keeper ...``): run
the keepers in a loop.

Every subcommand discovers new accounts first, then runs its task every ``--interval``
seconds (``--once``: one round). ``all`` runs liquidation, settlement and risk refresh, and
on devnets with mock feeds the price mover too. The logic lives in ``crossmargin.keeper``.

    ape run keeper all --network ethereum:devnet:node --account 4 --threshold 5%
    ape run keeper liquidate --network ethereum:sepolia:node --account keeper --dry-run --once

``--json`` prints one JSON document per round on stdout (the reports of its tasks) and
everything else on stderr. SIGTERM or Ctrl-C ends the keeper after the task in progress (a
second one abandons it): the state is saved and the last line is ``keeper: stopped (...)``;
the exit code is 0.
"""

from __future__ import annotations

import signal
from pathlib import Path

import click
from ape import chain, networks
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import FractionType, account_label, console, emit_json, friendly_errors, json_option, load_account
from crossmargin.clients.protocol import Protocol
from crossmargin.keeper import Keeper, KeeperConfig, LiquidationReport, RefusedError, TaskReport

# Default keeper account on dev networks: test account 0, the deployer, which may also push
# the mock feeds (as `ape run deploy` and `ape run demo` use it).
DEFAULT_TEST_ACCOUNT = 0
STATUS_STYLE = {
    "sent": "green",
    "would-send": "cyan",
    "skipped": "dim",
    "rejected": "yellow",
    "reverted": "red",
    "error": "red",
}


def keeper_options(command):
    """The options every subcommand takes."""
    options = [
        click.option(
            "--account",
            "account",
            metavar="ALIAS|N",
            help="ape account alias (or TEST::N); on dev networks a test account index (default 0)",
        ),
        click.option("--dry-run", is_flag=True, help="Preflight every action, send nothing."),
        click.option("--once", is_flag=True, help="One round, then exit."),
        click.option("--interval", type=float, default=12.0, show_default=True, help="Seconds between rounds."),
        click.option(
            "--threshold",
            type=FractionType(allow_none=True),
            default="0.10",
            show_default=True,
            help="Least bid discount, as a fraction of the equity bought: 0.05 or 5% (a bare 5 is refused); "
            "'none' never bids.",
        ),
        click.option(
            "--max-fraction",
            type=FractionType(),
            default="1",
            show_default=True,
            help="Largest fraction of an account per bid: 0.5 or 50%.",
        ),
        click.option(
            "--bidder-subaccount",
            type=int,
            default=0,
            show_default=True,
            help="Subaccount of --account that bids (it needs vault cash to pay for what it buys).",
        ),
        click.option(
            "--state-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="JSON state (default .keeper/<network>.json).",
        ),
        click.option("--from-block", type=int, default=0, show_default=True, help="First block to discover from."),
        json_option("One JSON document per round on stdout (logs on stderr)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_keeper(account, dry_run, threshold, max_fraction, bidder_subaccount, state_file, from_block) -> Keeper:
    network = networks.provider.network.name
    sender = load_account(account, DEFAULT_TEST_ACCOUNT)
    if sender is None and not dry_run:
        raise click.UsageError("--account is required on this network (or use --dry-run)")
    config = KeeperConfig(
        dry_run=dry_run,
        bid_threshold=threshold,
        max_bid_fraction=max_fraction,
        bidder_subaccount=bidder_subaccount,
        state_file=state_file or Path(".keeper") / f"{network}.json",
        start_block=from_block,
    )
    keeper = Keeper(Protocol.load(), sender, config, log=lambda line: console.print(f"  [dim]{line}[/]"))
    who = sender.address if sender else "nobody (dry run)"
    mode = " [cyan]dry run[/]" if keeper.config.dry_run else ""
    console.print(f"[bold]crossmargin keeper[/] on [cyan]{network}[/] as {who}{mode}, state {config.state_file}")
    return keeper


def print_reports(reports: list[TaskReport], quiet_if_idle: bool) -> None:
    actions = [(r.task, a) for r in reports for a in r.actions]
    if actions:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("task", "action", "target", "status", "detail / tx"):
            table.add_column(column)
        for task, a in actions:
            style = STATUS_STYLE.get(a.status, "")
            table.add_row(task, a.kind, a.target, f"[{style}]{a.status}[/]", a.detail or (a.tx or ""))
        console.print(table)
    for r in reports:
        if r.errors or r.actions or not quiet_if_idle:
            colour = "green" if r.ok else "red"
            console.print(f"[{colour}]{r.summary()}[/]")
    if quiet_if_idle and not actions and all(r.ok for r in reports):
        console.print(f"[dim]{' | '.join(r.summary() for r in reports)}[/]")


def report_json(report: TaskReport) -> dict:
    """One task's report as plain JSON values (accounts as ``<owner address>/<subaccount>``)."""
    out = {
        "task": report.task,
        "ok": report.ok,
        "summary": report.summary(),
        "seconds": round(report.seconds, 3),
        "errors": report.errors,
        "metrics": report.metrics(),
        "actions": [
            {
                "kind": a.kind,
                "target": a.target,
                "status": a.status,
                "detail": a.detail,
                "tx": a.tx,
                "gas_used": a.gas_used,
            }
            for a in report.actions
        ],
    }
    if isinstance(report, LiquidationReport):
        out["due"] = [account_label(a) for a in report.due]
        out["degraded"] = report.degraded
    return out


def sweep_json(reports: list[TaskReport]) -> dict:
    """The JSON document of one round."""
    return {
        "network": networks.provider.network.name,
        "block": chain.blocks.head.number,
        "ok": all(r.ok for r in reports),
        "reports": [report_json(r) for r in reports],
    }


class Stopper:
    """SIGTERM and SIGINT end the keeper after the task in progress (a second signal
    abandons it); installed before the keeper is built, so a signal during start-up counts."""

    def __init__(self):
        self.keeper: Keeper | None = None
        self.signal: str | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # the second signal: abandon the task in progress
        self.signal = signal.Signals(signum).name
        if self.keeper is not None:
            self.keeper.stop()

    def attach(self, keeper: Keeper) -> None:
        self.keeper = keeper
        if self.signal is not None:
            keeper.stop()


def run(keeper: Keeper, tasks: tuple[str, ...], once: bool, interval: float, as_json: bool, stopper: Stopper) -> None:
    def show(reports: list[TaskReport], quiet_if_idle: bool) -> None:
        if as_json:
            emit_json(sweep_json(reports))
        else:
            print_reports(reports, quiet_if_idle)

    try:
        if once:
            show(keeper.run_once(tasks), quiet_if_idle=False)
            keeper.save()
        else:
            keeper.run(tasks, interval, on_reports=lambda reports: show(reports, quiet_if_idle=True))
    except KeyboardInterrupt:
        keeper.save()
        console.print(
            f"keeper: stopped ({stopper.signal or 'SIGINT'}, task abandoned); state saved to {keeper.config.state_file}"
        )
        return
    if stopper.signal is not None:
        console.print(f"keeper: stopped ({stopper.signal}); state saved to {keeper.config.state_file}")


def subcommand(name: str, tasks: tuple[str, ...], help_text: str):
    def decorator(fn):
        @cli.command(name=name, cls=ConnectedProviderCommand, help=help_text)
        @keeper_options
        @friendly_errors
        def command(once, interval, as_json, **options):
            stopper = Stopper()
            keeper = build_keeper(**options)
            stopper.attach(keeper)
            run(keeper, fn(keeper, tasks), once, interval, as_json, stopper)

        return command

    return decorator


@click.group(help=__doc__)
def cli():
    pass


@subcommand("liquidate", ("discover", "liquidate"), "Start due auctions, mark insolvent, terminate cured, bid.")
def liquidate(_keeper, tasks):
    return tasks


@subcommand("settle", ("discover", "settle"), "Settle expired options of known holders.")
def settle(_keeper, tasks):
    return tasks


@subcommand("refresh", ("discover", "refresh"), "Store stale risk arrays of held options.")
def refresh(_keeper, tasks):
    return tasks


@subcommand("prices", ("prices",), "Random-walk the mock feeds (devnets only).")
def prices(keeper, tasks):
    try:
        keeper.mock_feeds()
    except RefusedError as error:
        raise click.UsageError(f"refused: {error}") from None
    return tasks


@subcommand("all", ("discover", "liquidate", "settle", "refresh"), "Every task (and prices on devnets).")
def all_tasks(keeper, tasks):
    try:
        keeper.mock_feeds()
    except RefusedError as error:
        console.print(f"[dim]price mover off: {error}[/]")
        return tasks
    return ("prices", *tasks)
