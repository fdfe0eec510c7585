"""Operator and trader tooling (issue 16): the scripts in scripts/ run as an operator runs
them (`ape run ...` in subprocesses against this session's anvil, as the `devnet` network on
its URI), the console's `cm`, the SDK's typed errors, the faucet and the gas margin.

Books: `trader` is short 10 ETH perp at 3,000 with 10,000 USDC against `maker` (1M USDC);
at ETH 3,500 it is below maintenance margin.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import click
import pytest
from ape import networks

from crossmargin.cli import FractionType
from crossmargin.clients.errors import (
    CrossmarginError,
    InvalidAmountError,
    MissingDeploymentError,
    NetworkRefusedError,
    NoDeployment,
    UnknownNameError,
    one_line,
)
from crossmargin.clients.protocol import Protocol, check_faucet_network
from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.ops.manifest import Manifest
from crossmargin.units import account_id

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"scripts_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def short_book(cm, create_account, maker, trader, admin):
    """`trader` short 10 ETH at 3,000, then ETH at 3,500: below maintenance."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    cm.trade(maker, trader, cm.markets.perp("ETH"), "10", "3000")
    cm.oracle.push(admin, "ETH/USD", "3500")
    cm.oracle.push(admin, "ETH/IV", "0.6")
    return account_id(trader.address, 0)


@pytest.fixture
def ape_run(cm, chain, tmp_path):
    """Runs `ape <args>` on this session's node as the `devnet` network, with this
    deployment's manifest (or none: ``deployed=False``); returns the finished process."""
    deployments = tmp_path / "deployments"
    cm.manifest.save(deployments / "devnet.json")
    network = f"ethereum:devnet:{chain.provider.uri}"

    def env(deployed: bool = True) -> dict:
        out = {**os.environ, "CROSSMARGIN_DEPLOYMENTS": str(deployments if deployed else tmp_path / "none")}
        out.update(COLUMNS="200", PYTHONUNBUFFERED="1", CROSSMARGIN_KEEPER_STATE_FILE=str(tmp_path / "bot.json"))
        return out

    def _run(*args: str, deployed: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        command = ["ape", *args, "--network", network]
        return subprocess.run(
            command, cwd=ROOT, env=env(deployed), input=stdin, capture_output=True, text=True, timeout=300
        )

    _run.network, _run.env, _run.state = network, env, tmp_path / "keeper.json"
    return _run


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 240) -> list[str]:
    """Reads the process's stdout until a line contains ``text`` (the 'ready' line)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r}:\n" + "\n".join(lines))


def stop(process: subprocess.Popen, lines: list[str]) -> list[str]:
    """SIGTERMs the process, waits for it, returns every line it printed."""
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    return [line for line in lines + out.splitlines() if line.strip()]


# ------------------------------------------------------------------ help


def test_scripts__every_option_of_every_command_has_help():
    missing = []

    def walk(command: click.Command, name: str) -> None:
        for param in command.get_params(click.Context(command)):
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{name} {'/'.join(param.opts)}")
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                walk(child, f"{name} {sub}")

    for path in SCRIPTS:
        walk(load_script(path).cli, path.stem)
    assert len(SCRIPTS) >= 7
    assert missing == []


# ------------------------------------------------------------------ --json


def test_status__json__one_document_with_the_due_account(short_book, ape_run, trader):
    result = ape_run("run", "status", "--json", "--no-model", "--state-file", str(ape_run.state))
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = result.stdout.splitlines()  # nothing else on stdout
    status = json.loads(line)
    assert status["network"] == "devnet"
    accounts = {a["account"]: a for a in status["accounts"]}
    account = accounts[f"{trader.address}/0"]  # ids as owner/subaccount, in full
    assert account["liquidatable"] is True and account["ratio"] < 1
    assert float(account["equity"]) < float(account["maintenance"])
    assert status["auctions"] == [] and float(status["fund"]["share_price"]) == 1


def test_keeper__json_once__one_document_per_sweep(short_book, ape_run, trader):
    args = ["--once", "--json", "--account", "4", "--threshold", "5%", "--state-file", str(ape_run.state)]
    result = ape_run("run", "keeper", "liquidate", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    sweep = json.loads(line)
    assert sweep["ok"] is True and [r["task"] for r in sweep["reports"]] == ["discover", "liquidate"]
    liquidation = sweep["reports"][1]
    assert liquidation["due"] == [f"{trader.address}/0"]
    assert [(a["kind"], a["status"]) for a in liquidation["actions"]][0] == ("start", "sent")


# ------------------------------------------------------------------ SIGTERM


def test_keeper_loop__sigterm__stops_cleanly(short_book, ape_run):
    args = ["ape", "run", "keeper", "liquidate", "--network", ape_run.network, "--account", "4"]
    args += ["--threshold", "none", "--interval", "3600", "--state-file", str(ape_run.state)]
    keeper = subprocess.Popen(
        args, cwd=ROOT, env=ape_run.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = wait_for_line(keeper, "liquidate:")  # the first sweep is done; now it waits
        lines = stop(keeper, lines)
    finally:
        keeper.kill()
    assert keeper.returncode == 0, "\n".join(lines)
    assert lines[-1] == f"keeper: stopped (SIGTERM); state saved to {ape_run.state}"
    assert not any("Traceback" in line for line in lines)
    assert json.loads(ape_run.state.read_text())["auctions"]  # the sweep's start was saved


@pytest.mark.slow  # a Silverback bot in a subprocess
def test_bot__sigterm__stops_cleanly(ape_run, tmp_path):
    args = ["silverback", "run", "bots.liquidation:bot", "--network", ape_run.network]
    bot = subprocess.Popen(
        args, cwd=ROOT, env=ape_run.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = wait_for_line(bot, "Startup complete")
        lines = stop(bot, lines)
    finally:
        bot.kill()
    assert bot.returncode == 0, "\n".join(lines)
    assert lines[-1].endswith("liquidation bot: stopped"), "\n".join(lines)
    assert any(f"liquidation bot: stopping (keeper state saved to {tmp_path / 'bot.json'})" in x for x in lines)
    assert not any("Traceback" in line for line in lines)


# ------------------------------------------------------------------ missing deployment, bad options


@pytest.mark.parametrize("command", [("status",), ("keeper", "liquidate", "--once")], ids=["status", "keeper"])
def test_command__no_manifest__one_line_with_the_file_and_the_fix(ape_run, tmp_path, command):
    result = ape_run("run", *command, deployed=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: no deployment manifest {tmp_path / 'none' / 'devnet.json'} for network 'devnet'; "
        "create it with `ape run deploy --network ethereum:devnet`"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_status__manifest_of_another_chain__one_line(cm, ape_run, tmp_path, stranger):
    """A manifest whose addresses hold no code here (e.g. from an ape-managed anvil that is gone)."""
    stale = Manifest(**{**vars(cm.manifest), "contracts": dict.fromkeys(cm.manifest.contracts, stranger.address)})
    stale.tokens = dict.fromkeys(cm.manifest.tokens, stranger.address)
    stale.save(tmp_path / "deployments" / "devnet.json")
    result = ape_run("run", "status")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: the contracts of {tmp_path / 'deployments' / 'devnet.json'} are not on this chain; "
        "deploy again with `ape run deploy --network ethereum:devnet`"
    ]


def test_keeper__bare_threshold_above_one__refused_with_the_percent_form(ape_run):
    result = ape_run("run", "keeper", "liquidate", "--once", "--threshold", "5")
    assert result.returncode == 2
    assert "Invalid value for '--threshold': 5 is above 1; give a fraction (0.05) or a percentage (5%)" in result.stderr


def test_keeper__unknown_account_alias__one_line(ape_run):
    result = ape_run("run", "keeper", "liquidate", "--once", "--account", "no-such-alias")
    assert result.returncode == 2
    assert "Invalid value for --account: unknown account alias 'no-such-alias'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("given", "expected"), [("0.05", "0.05"), ("5%", "0.05"), ("100%", "1"), ("0", "0"), ("none", None)]
)
def test_fraction_option__fraction_or_percent(given, expected):
    value = FractionType(allow_none=True).convert(given, None, None)
    assert (None if value is None else value.normalize()) == (None if expected is None else type(value)(expected))


@pytest.mark.parametrize("given", ["5", "-0.1", "150%", "five"])
def test_fraction_option__out_of_range__refused(given):
    with pytest.raises(click.BadParameter):
        FractionType().convert(given, None, None)


# ------------------------------------------------------------------ console


def test_console__no_deployment__message_and_cm_unusable(ape_run, tmp_path):
    session = "print('VAULT', cm.vault)\nprint('AFTER', bool(cm))\n"
    result = ape_run("console", deployed=False, stdin=session)
    out = result.stdout + result.stderr
    manifest = tmp_path / "none" / "devnet.json"
    assert f"crossmargin: no deployment manifest {manifest} for network 'devnet'" in out
    assert f"ERROR:    (MissingDeploymentError) no deployment manifest {manifest}" in out
    assert "AttributeError" not in out and "AFTER False" in out


def test_no_deployment_placeholder__every_use_raises_the_reason():
    cm = NoDeployment("no manifest here")
    with pytest.raises(MissingDeploymentError, match="no manifest here"):
        cm.vault.deposit(None, "USDC", "1")
    with pytest.raises(MissingDeploymentError, match="no manifest here"):
        cm()
    assert not cm and "no manifest here" in repr(cm)


# ------------------------------------------------------------------ SDK errors


@pytest.mark.parametrize("amount", ["-5", "0", "abc"])
def test_sdk__deposit_or_withdraw_not_positive__typed_error_naming_the_argument(cm, trader, amount):
    with pytest.raises(InvalidAmountError, match="^amount must be"):
        cm.vault.deposit(trader, "USDC", amount)
    with pytest.raises(InvalidAmountError, match="^amount must be"):
        cm.vault.withdraw(trader, "USDC", amount)


def test_sdk__trade_zero_size_or_negative_price__typed_error(cm, maker, trader):
    perp = cm.markets.perp("ETH")
    with pytest.raises(InvalidAmountError, match="^size must be a non-zero number, got 0"):
        cm.trade(maker, trader, perp, "0", "3000")
    with pytest.raises(InvalidAmountError, match="^price must be positive, got -1"):
        cm.trade(maker, trader, perp, "1", "-1")


def test_sdk__too_many_decimals__typed_error(cm, trader):
    with pytest.raises(InvalidAmountError, match="USDC amount 1.0000001"):
        cm.vault.deposit(trader, "USDC", "1.0000001")


def test_sdk__unknown_names__typed_error_listing_the_known_ones(cm, trader):
    for call in (lambda: cm.clearing.perp("SOL"), lambda: cm.markets.perp("SOL")):
        with pytest.raises(UnknownNameError, match=r"^unknown underlying 'SOL'; known: BTC, ETH$"):
            call()
    with pytest.raises(UnknownNameError, match="unknown underlying 'SOL'"):
        cm.clearing.perp_size(trader, "SOL")
    with pytest.raises(UnknownNameError, match=r"^unknown token 'DAI'; known: USDC, WBTC, WETH$"):
        cm.token("DAI")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch one
        cm.token("DAI")
    assert cm.clearing.perp("ETH") == cm.markets.perp("ETH")
    assert issubclass(InvalidAmountError, ValueError) and issubclass(UnknownNameError, CrossmarginError)


def test_revert__one_line_reason_and_no_call_trace_printed(cm, create_account, maker, trader, capsys):
    create_account(maker, {"USDC": "100000"})
    create_account(trader, {"USDC": "100"})
    capsys.readouterr()
    with pytest.raises(Exception) as failure:  # noqa: PT011 - ape's ContractLogicError, checked below
        cm.trade(maker, trader, cm.markets.perp("ETH"), "10", "3000", preflight=False)
    assert one_line(failure.value) == "clearing: insufficient margin"
    printed = capsys.readouterr()
    assert "Call trace" not in printed.out + printed.err


def test_revert_on_a_node_provider__no_undecoded_log_warnings(cm, chain, create_account, maker, trader, capsys):
    """On `ethereum:devnet:node` ape traced the failed fill with anvil's debug_traceCall,
    whose frames carry no log data: one "Failed to decode log data 'CashSettled'" warning
    per cash settlement, and ~120 lines of trace (crossmargin/ops/anvil.py)."""
    create_account(maker, {"USDC": "100000"})
    create_account(trader, {"USDC": "100"})
    capsys.readouterr()
    with networks.parse_network_choice(f"ethereum:devnet:{chain.provider.uri}"):
        with pytest.raises(Exception) as failure:  # noqa: PT011 - checked below
            cm.trade(maker, trader, cm.markets.perp("ETH"), "10", "3000", preflight=False)
    assert one_line(failure.value) == "clearing: insufficient margin"
    printed = capsys.readouterr()
    assert "Failed to decode" not in printed.out + printed.err
    assert "Call trace" not in printed.out + printed.err


# ------------------------------------------------------------------ faucet


def test_faucet__local_network__mints_the_mock_token(cm, trader, ape_run):
    before = cm.token("USDC").balance(trader)
    result = ape_run("run", "faucet", "USDC", "1234.5", "--to", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert cm.token("USDC").balance(trader) == before + Decimal("1234.5")
    cm.faucet(trader, "WETH", "2")
    assert cm.token("WETH").balance(trader) == 2


def test_faucet__other_network__refused_in_one_line(cm, trader, monkeypatch):
    for network in ("sepolia", "mainnet"):
        with pytest.raises(
            NetworkRefusedError, match=f"mock tokens on local, devnet, devnet-fork only, not on '{network}'"
        ):
            check_faucet_network(network)
    for network in ("local", "devnet", "devnet-fork"):
        check_faucet_network(network)
    # the SDK asks the same function about the connected network: with `local` off the list, refused
    monkeypatch.setattr("crossmargin.clients.protocol.FAUCET_NETWORKS", ("devnet",))
    with pytest.raises(NetworkRefusedError, match="not on 'local'"):
        cm.faucet(trader, "USDC", "1")
    monkeypatch.undo()
    with pytest.raises(InvalidAmountError):
        Protocol.faucet(cm, trader, "USDC", "-1")


# ------------------------------------------------------------------ gas


def test_gas__sdk_transaction_on_a_node_network__limit_at_least_1_3x_the_estimate(cm, chain, fund, trader):
    """Every network but `local` pads ape's estimate by 30% (ape-config.yaml); `local` (an
    ape-managed anvil) sends the block gas limit."""
    fund(trader, "USDC", "1000")
    usdc = cm.token("USDC")
    with networks.parse_network_choice(f"ethereum:devnet:{chain.provider.uri}") as provider:
        assert provider.network.name == "devnet"
        estimate = cm.vault.contract.deposit.estimate_gas_cost(usdc.address, usdc.units(500), 0, trader, sender=trader)
        receipt = cm.vault.deposit(trader, "USDC", "500")
        assert receipt.transaction.gas_limit >= estimate * 13 // 10
        assert receipt.transaction.gas_limit < provider.max_gas
    for name in ("devnet", "devnet-fork", "sepolia", "mainnet"):
        assert networks.ethereum.get_network(name).config.gas_limit.multiplier == 1.3
    local = cm.vault.deposit(trader, "USDC", "1")
    assert local.transaction.gas_limit == chain.provider.max_gas


# ------------------------------------------------------------------ keeper stop and settings


def test_keeper_run__stop__ends_after_the_round_and_saves(cm, keeper, tmp_path):
    state = tmp_path / "keeper.json"
    k = Keeper(cm, keeper, KeeperConfig(state_file=state, bid_threshold=None))
    rounds = []
    k.run(("discover", "liquidate"), interval=3600, on_reports=lambda reports: (rounds.append(reports), k.stop()))
    assert len(rounds) == 1 and [r.task for r in rounds[0]] == ["discover", "liquidate"]
    assert k.stopping and json.loads(state.read_text())["last_block"] == rounds[0][0].to_block
    assert k.run_once(("discover",)) == []  # stopped: no further task runs


def test_keeper_config__percent_threshold_from_env(monkeypatch):
    monkeypatch.setenv("CROSSMARGIN_KEEPER_BID_THRESHOLD", "5%")
    assert KeeperConfig.from_env().bid_threshold == Decimal("0.05")


def test_deploy__dry_run__prints_the_changes_sends_nothing(cm, chain, ape_run):
    """`ape run deploy --dry-run` on a deployed chain: each difference from the config (here
    the devnet config against this session's local deployment) as old -> new, nothing sent,
    no manifest written over."""
    before = chain.blocks.head.number
    result = ape_run("run", "deploy", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "dry run:" in out and "nothing sent, no manifest written" in out
    assert "would deploy Timelock" in out  # devnet is governed by a timelock; this deployment is not
    assert chain.blocks.head.number == before
    assert "Traceback" not in result.stdout + result.stderr


# ------------------------------------------------------------------ preview


def test_preview_command__prints_the_engines_margin_after_the_trades(cm, create_account, trader, ape_run):
    """`ape run preview` (= `crossmargin preview`): the account's margin after the trades,
    equal to the SDK's `cm.preview` (the Lens), as JSON; nothing is sent."""
    create_account(trader, {"USDC": "20000"})
    owner = f"{trader.address}/0"
    nonce = trader.nonce
    result = ape_run("run", "preview", owner, "ETH perp:2@3000", "--no-liquidation-prices", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout.strip().splitlines()[-1])
    expected = cm.preview(trader, [("ETH perp", "2", "3000")], liquidation_prices=False)
    assert document["account"] == owner
    assert Decimal(document["after"]["initial"]) == expected.after.initial
    assert Decimal(document["after"]["equity"]) == expected.after.equity
    assert [leg["instrument"] for leg in document["legs"]] == ["ETH perp"]
    assert trader.nonce == nonce  # nothing sent


def test_preview_command__bad_trade__one_line(cm, ape_run):
    result = ape_run("run", "preview", "2", "ETH perp 2 at 3000")
    assert result.returncode != 0
    assert "is not INSTRUMENT:SIZE@PRICE (e.g. 'ETH perp:1.5@3000')" in result.stderr
    assert "Traceback" not in result.stderr
