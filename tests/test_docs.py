"""The documentation site (docs/, mkdocs.yml; issue 16): it builds with `mkdocs build
--strict`, its numbers are the model's, and its commands and code run as written.

- the worked margin example (docs/margin-example.md) is recomputed here with the reference
  model from its book (examples/hedged_call.yaml): every table and every number of the page
  must be what the model gives, so the page cannot drift from the engine;
- the units page's examples are doctests; the trader's guide's Python blocks run, in order,
  against this session's deployment;
- every `python -m crossmargin.simulate ...` command of the docs runs; every `ape run NAME`,
  `silverback run NAME`, `make TARGET` and repository path the docs name exists (the
  commands that need a chain run in tests/test_cli.py, through the same scripts);
- no page, nor SPECIFICATION.md or README.md, links to a file outside the repository.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from decimal import Decimal
from pathlib import Path

import ape
import click
import pytest
import yaml
from click.testing import CliRunner

from crossmargin import simulate as sim
from crossmargin.keeper import KeeperConfig
from crossmargin.model import margin as model
from crossmargin.units import from_wad

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
EXAMPLE = ROOT / "examples" / "hedged_call.yaml"
EXAMPLE_PAGE = DOCS / "margin-example.md"


# ---------------------------------------------------------------- the worked example


def usd(value: Decimal) -> str:
    """A USD amount as the page writes it: exact, thousands separated, at least 2 decimals."""
    value = value.normalize()
    if value.as_tuple().exponent > -2:
        value = value.quantize(Decimal("0.01"))
    return f"{value:,f}"


def percent(millionths: int) -> str:
    return f"{millionths / 10_000:+g}%"


def fraction(wad: int) -> str:
    return f"{from_wad(wad).normalize():f}"


VOL_MOVES = {model.VOL_UP: "up", model.VOL_NONE: "unchanged", model.VOL_DOWN: "down"}


def worked_example() -> dict[str, str]:
    """The page's blocks, each exactly as the page must state it, from the model."""
    book = sim.load_book(EXAMPLE)
    state, underlyings, params, _names = sim._state(book)
    [u] = underlyings.values()
    [call] = state.options
    [perp] = state.perps
    ctx = model.context(u, params, sim.NOW)
    words = model.compute_array(call, ctx, params)
    shift = model.array_shift(words)
    unit = u.quantum << shift
    lanes = model.lanes(words, len(u.grid))
    [risk] = model.risk(state, underlyings, params, sim.NOW)
    m = model.margin(state, underlyings, params, sim.NOW)
    exposure = model.floor_div(perp.size * u.spot, model.WAD)

    # the scenario vols of a 30-day option (compute_array's formulas)
    tau = call.expiry - sim.NOW
    p = model.fixed.pow(model.TERM_BASE * model.WAD // max(tau, model.TERM_FLOOR), u.term_exponent)
    vol_up = u.vol * (model.WAD + u.vol_up * p // model.WAD) // model.WAD
    vol_down = u.vol * max(u.vol_floor, model.WAD - min(u.vol_down * p // model.WAD, model.WAD)) // model.WAD
    vols = {model.VOL_UP: vol_up, model.VOL_NONE: u.vol, model.VOL_DOWN: vol_down}
    assert p == model.WAD, "the page's p = 1 holds for a 30-day option"
    blocks = {
        "vols": (
            f"- vol up: `{fraction(u.vol)} × (1 + {fraction(u.vol_up)} × 1) = {fraction(vol_up)}`\n"
            f"- vol down: `{fraction(u.vol)} × max({fraction(u.vol_floor)}, 1 − {fraction(u.vol_down)} × 1)"
            f" = {fraction(vol_down)}`"
        ),
        "unit": f"`{usd(from_wad(u.quantum))} × 2^{shift} = {usd(from_wad(unit))}` USD",
    }

    rows = ["| # | spot shock | spot | vol | lane | call value (USD) |", "|---:|---:|---:|---:|---:|---:|"]
    for s, scenario in enumerate(u.grid):
        spot = u.spot * (model.MILLION + scenario.shock) // model.MILLION
        rows.append(
            f"| {s} | {percent(scenario.shock)} | {usd(from_wad(spot))} | {fraction(vols[scenario.move])} "
            f"({VOL_MOVES[scenario.move]}) | {lanes[s]:,} | {usd(from_wad(lanes[s] * unit))} |"
        )
    blocks["array"] = "\n".join(rows)

    rows = [
        "| # | scenario | call PnL | perp PnL | PnL | weight | PnL × weight |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s, scenario in enumerate(u.grid):
        call_pnl = call.size * ((lanes[s] - lanes[0]) * unit) // model.WAD
        perp_pnl = model.floor_div(exposure * scenario.shock, model.MILLION)
        assert call_pnl + perp_pnl == risk.pnl[s]  # what the engine's risk view returns
        weighted = model.weighted(risk.pnl[s], scenario)
        mark = "**" if s == risk.worst_scenario else ""
        rows.append(
            f"| {s} | spot {percent(scenario.shock)}, vol {VOL_MOVES[scenario.move]} | {usd(from_wad(call_pnl))} | "
            f"{usd(from_wad(perp_pnl))} | {usd(from_wad(risk.pnl[s]))} | {scenario.weight / 10**6:g} | "
            f"{mark}{usd(from_wad(weighted))}{mark} |"
        )
    blocks["pnl"] = "\n".join(rows)

    worst = u.grid[risk.worst_scenario]
    perp_addon = model.mul_div(abs(perp.size) * u.spot, u.perp_rate, model.WAD * model.WAD, True)
    quantization = model.mul_div(abs(call.size) << shift, u.quantum, model.WAD, True)
    call_value = lanes[0] * unit * call.size // model.WAD
    perp_pnl = exposure - perp.cost
    assert m.maintenance == risk.loss + perp_addon + quantization
    assert m.initial == model.mul_div(m.maintenance, params.im_factor, model.WAD, True)
    assert m.equity == state.cash + call_value + perp_pnl
    cash, spot = usd(from_wad(state.cash)), f"{from_wad(u.spot).normalize():,f}"
    blocks["summary"] = "\n".join(
        [
            "| step | how | USD |",
            "|---|---|---:|",
            f"| worst loss L | scenario {risk.worst_scenario}: spot {percent(worst.shock)}, "
            f"vol {VOL_MOVES[worst.move]} | {usd(from_wad(risk.loss))} |",
            f"| perp add-on | `{fraction(abs(perp.size))} × {spot} × {fraction(u.perp_rate * 100)}%` | "
            f"{usd(from_wad(perp_addon))} |",
            "| short-option add-on | no net short option | 0.00 |",
            f"| quantization add-on | one lane unit per option unit: `1 × {usd(from_wad(unit))}` | "
            f"{usd(from_wad(quantization))} |",
            f"| **MM** | L + add-ons | **{usd(from_wad(m.maintenance))}** |",
            f"| **IM** | `{fraction(params.im_factor)} × MM`, rounded up | **{usd(from_wad(m.initial))}** |",
            f"| equity | cash + call value + perp PnL: `{cash} + {usd(from_wad(call_value))} + "
            f"{usd(from_wad(perp_pnl))}` | {usd(from_wad(m.equity))} |",
            f"| initial health | equity − IM | {usd(from_wad(m.equity - m.initial))} |",
            f"| maintenance health | equity − MM | {usd(from_wad(m.equity - m.maintenance))} |",
        ]
    )
    # the Greeks and the call's price at the live spot and vol, as the prose rounds them
    [g] = model.greeks(state, underlyings, params, sim.NOW)
    args = (u.spot, call.strike, u.vol, tau, params.rate, True)
    call_delta = from_wad(model.fixed.bs_greeks(*args)[0])
    blocks["call delta"] = f"the call's delta is about\n  {call_delta:.2f})"
    blocks["call price"] = f"Black-Scholes\ncalculator gives {from_wad(model.fixed.bs_price(*args)):.2f}"
    blocks["vega"] = (
        f"vega ({from_wad(g.vega):,.2f} USD per 1.00 of vol), not delta (the book's delta is\n"
        f"  {from_wad(g.delta):.4f})"
    )
    return blocks


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*\.\d+")


def test_margin_example__page_states_the_models_numbers():
    page = EXAMPLE_PAGE.read_text()
    blocks = worked_example()
    for name, block in blocks.items():
        assert block in page, f"docs/margin-example.md: block {name!r} is not the model's; it should read:\n{block}"
    # prose too: every number of the page with decimals is one of the model's
    stated = set(NUMBER.findall("\n".join(blocks.values())))
    stray = [n for n in NUMBER.findall(page) if n not in stated]
    assert not stray, f"docs/margin-example.md states numbers the model does not give: {stray}"


def test_margin_example__simulator_prints_the_pages_totals():
    result = CliRunner().invoke(sim.cli, [str(EXAMPLE), "--json", "--worst", "1"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    summary = worked_example()["summary"]
    for key in ("equity", "initial", "maintenance", "initial_health", "maintenance_health"):
        assert usd(Decimal(out[key])) in summary, key
    assert usd(Decimal(out["underlyings"][0]["loss"])) in summary


def test_trading_guide__book_and_its_margin_as_the_page_states():
    page = (DOCS / "trading.md").read_text()
    path = ROOT / "examples" / "long_perp.yaml"
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if "positions" in b]
    assert yaml.safe_load(block) == yaml.safe_load(path.read_text())
    result = sim.simulate(sim.load_book(path))
    assert f"maintenance margin is **{usd(Decimal(result['maintenance']))[:-3]} USD**" in page
    assert f"initial margin 1.3 times that, **{usd(Decimal(result['initial']))[:-3]} USD**" in page


# ---------------------------------------------------------------- code and commands


def test_units_page__examples_run_as_doctests():
    failures, tried = doctest.testfile(str(DOCS / "units.md"), module_relative=False, verbose=False)
    assert tried > 5 and failures == 0


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def run_blocks(cm, page: str) -> dict:
    """A page's Python blocks as a console user pastes them, in order, with `cm` and
    `accounts` as `ape console` binds them (the deployer is test account 0, the faucet's
    minter); returns the names they left."""
    namespace = {"cm": cm, "accounts": ape.accounts}
    for block in python_blocks(DOCS / page):
        exec(compile(block, f"docs/{page}", "exec"), namespace)  # noqa: S102 - the page's own code
    return namespace


def test_quickstart__console_blocks_run(cm):
    trader = run_blocks(cm, "quickstart.md")["trader"]
    assert cm.vault.balances(trader).cash == Decimal(1000)


def test_trading_guide__python_blocks_run_in_order(cm):
    trader = run_blocks(cm, "trading.md")["trader"]
    [position] = cm.positions(trader)
    assert (position.name, position.size) == ("ETH perp", Decimal("2.5"))
    assert cm.vault.balances(trader).cash < Decimal(9000)  # 1,000 withdrawn, fees paid


def test_operations__funding_the_bidder_and_a_standing_bid_run(cm):
    keeper = run_blocks(cm, "operations.md")["keeper"]
    assert cm.vault.balances(keeper, 1).cash == Decimal(50_000)
    bid = cm.liquidator.standing_bid(cm.vault.account_id(keeper, 1))
    assert bid.active and bid.fraction == 25 * 10**16


def shell_lines(page: Path) -> list[str]:
    """The commands of a page's ``sh`` blocks, without comments and prompts."""
    lines = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", page.read_text(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip().removesuffix("&").strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_docs__simulator_commands_run_as_written():
    simulator = "python -m crossmargin.simulate"
    commands = sorted({c for page in PAGES for c in shell_lines(page) if c.startswith(simulator)})
    assert commands, "the docs show the simulator"
    for command in commands:
        argv = [sys.executable, *command.split()[1:]]
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert "equity" in result.stdout


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_docs__every_command_names_something_that_exists():
    text = "\n".join(page.read_text() for page in PAGES)
    problems = []
    for name in set(re.findall(r"\bape run ([a-z_]+)", text)):
        if not (ROOT / "scripts" / f"{name}.py").exists():
            problems.append(f"ape run {name}: no scripts/{name}.py")
    for name in set(re.findall(r"\bsilverback run ([a-z_]+)", text)):
        if not (ROOT / "bots" / f"{name}.py").exists():
            problems.append(f"silverback run {name}: no bots/{name}.py")
    for target in set(re.findall(r"`make ([a-z][\w-]*)", text)) | {
        t for p in PAGES for c in shell_lines(p) for t in re.findall(r"^make ([a-z][\w-]*)", c)
    }:
        if target not in makefile_targets():
            problems.append(f"make {target}: no such Makefile target")
    for module in set(re.findall(r"python -m ([\w.]+)", text)):
        if not (ROOT / (module.replace(".", "/") + ".py")).exists():
            problems.append(f"python -m {module}: no such module")
    for path in set(re.findall(r"`((?:examples|config|scripts|bots|tests|crossmargin|contracts)/[\w./-]+)`", text)):
        if "<" not in path and not (ROOT / path).exists():
            problems.append(f"{path}: no such file")
    keeper_fields = {f.name.upper() for f in fields(KeeperConfig)}
    for name in set(re.findall(r"CROSSMARGIN_KEEPER_([A-Z_]+)", text)):
        if name not in keeper_fields | {"PRICES", "PRICES_CRON", "CRASH_AFTER", "FIELD"}:
            problems.append(f"CROSSMARGIN_KEEPER_{name}: no such keeper setting")
    assert not problems, "\n".join(problems)


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", ["SPECIFICATION.md", "README.md", *[str(p.relative_to(ROOT)) for p in PAGES]])
def test_docs__links_stay_inside_the_repository(document):
    path = ROOT / document
    text = path.read_text()
    assert "/work/" not in text
    # any relative path in the text (a link or not) stays inside the repository
    for climb in re.findall(r"(?:\.\./)+[\w.-]*", text):
        assert (path.parent / climb).resolve().is_relative_to(ROOT), f"{document}: {climb} points outside"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the same page
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{document}: {target} points outside the repository"
        assert resolved.exists(), f"{document}: {target} does not exist"


# ---------------------------------------------------------------- the site


def test_docs_site__builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    for page in ("index.html", "margin-example/index.html", "api/protocol/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    assert "Protocol" in (tmp_path / "site" / "api" / "protocol" / "index.html").read_text()


# ---------------------------------------------------------------- README commands

README = ROOT / "README.md"
# each placeholder of the README's commands, as a user would fill it in
PLACEHOLDERS = {"<alias>": "deployer", "<owner>/<sub>": "2/0", "--network ...": "--network ethereum:devnet:node"}


def readme_commands() -> list[str]:
    """Every command the README shows: its ``sh`` blocks, and the ``ape run`` /
    ``crossmargin`` commands quoted inline (alternatives ``a|b`` and optional ``[--x]`` each
    spelled out)."""
    commands = set(shell_lines(README))
    text = README.read_text()
    commands |= set(re.findall(r"`((?:ape run|crossmargin) [^`]+)`", text))
    out = []
    for command in sorted(commands):
        for name, value in PLACEHOLDERS.items():
            command = command.replace(name, value)
        command = re.sub(r"\s*\.\.\.$", "", command)
        options = re.findall(r"\[([^\]]+)\]", command)
        bare = re.sub(r"\s*\[[^\]]+\]", "", command)
        variants = [bare] + [f"{bare} {o}" for o in options]
        for variant in variants:
            match = re.search(r"\b(\w+(?:\|\w+)+)\b", variant)
            if match:
                out += [variant.replace(match.group(1), alt) for alt in match.group(1).split("|")]
            else:
                out.append(variant)
    return out


def click_command(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a README command runs, and its arguments."""
    import importlib.util

    from crossmargin.commands import main

    if argv[:2] == ["ape", "run"]:
        spec = importlib.util.spec_from_file_location(f"readme_{argv[2]}", ROOT / "scripts" / f"{argv[2]}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.cli, argv[3:]
    return main, argv[1:]


def parse(cli: click.Command, args: list[str], parent: click.Context | None = None) -> None:
    """Parses ``args`` as ``cli`` would, down to the subcommand; raises click's usage error."""
    ctx = cli.make_context(cli.name or "cli", list(args), parent=parent)
    if isinstance(cli, click.Group):
        rest = [*ctx.protected_args, *ctx.args]
        assert rest, f"{cli.name}: no subcommand"
        name, sub, remaining = cli.resolve_command(ctx, rest)
        parse(sub, remaining, ctx)


def test_readme__every_command_exists_and_parses_as_written(monkeypatch):
    """Each command of the README names a make target, a script or a `crossmargin`
    command that exists, and its options parse as written (click, nothing run). The ones
    that need a chain run in tests/test_cli.py and tests/test_deploy.py; `make demo` and
    `make test` are CI's two commands."""
    import shlex

    import crossmargin.cli

    # `--json` is eager: parsing it would send the shared console to stderr for the tests after
    monkeypatch.setattr(crossmargin.cli, "to_stderr", lambda: None)
    commands = readme_commands()
    assert len(commands) > 20
    checked = set()
    for command in commands:
        # an account alias is the user's (`ape accounts import`); here a test account stands in
        command = re.sub(r"--account (?!\d)\S+", "--account TEST::0", command)
        argv = shlex.split(command)
        while "=" in argv[0]:  # an environment setting before the command
            argv.pop(0)
        if argv[0] == "make":
            assert argv[1] in makefile_targets(), command
        elif argv[:2] == ["silverback", "run"]:
            assert (ROOT / "bots" / f"{argv[2]}.py").exists(), command
        elif argv[:2] == ["ape", "run"] or argv[0] == "crossmargin":
            cli, args = click_command(argv)
            if not args and isinstance(cli, click.Group) or argv[0] == "crossmargin" and len(args) == 1:
                continue  # a command named in the text, not run as written
            try:
                parse(cli, args)
            except click.exceptions.Exit:
                pass  # --help
            except click.ClickException as error:
                raise AssertionError(f"{command}: {error.format_message()}") from None
            checked.add(argv[2] if argv[0] == "ape" else args[0])
        elif argv[:2] == ["ape", "console"] or argv[:2] == ["pip", "install"] or argv[0] in ("export", "uv"):
            continue
        else:
            raise AssertionError(f"{command}: not a command this test knows")
    assert {"deploy", "keeper", "status", "preview", "faucet", "simulate", "bench_keeper"} <= checked
