"""The offline margin simulator (issue 16): the reference model on a book file, no chain; the
same book traded on chain is valued by the engine to the wei."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossmargin import simulate as sim
from crossmargin.units import key

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "book.yaml"
WETH = {"symbol": "WETH", "amount": 1, "underlying": "ETH", "mm_haircut": "0.03", "im_haircut": "0.05"}


def book(**fields) -> sim.BookInput:
    return sim.BookInput.model_validate({"underlyings": {"ETH": {"spot": 3000, "vol": "0.6"}}, **fields})


def test_simulate__one_weth_alone__the_grid_and_its_contingency_haircut():
    result = sim.simulate(book(collateral=[WETH]))
    assert (Decimal(result["equity"]), Decimal(result["maintenance"]), Decimal(result["initial"])) == (3000, 540, 735)
    [eth] = result["underlyings"]
    # -15% under each vol move loses the same 450: the first is listed first
    assert [w["scenario"] for w in eth["worst"]] == [
        "spot -15%, vol up (weight 1)",
        "spot -15%, vol unchanged (weight 1)",
        "spot -15%, vol down (weight 1)",
    ]
    assert Decimal(eth["worst"][0]["weighted"]) == -450 and Decimal(eth["delta"]) == 1


def test_simulate__naked_short_put_far_out_of_the_money__the_tail_binds():
    result = sim.simulate(
        book(positions=[{"kind": "put", "underlying": "ETH", "strike": 1500, "days": 30, "size": -1}])
    )
    [eth] = result["underlyings"]
    assert eth["worst"][0]["scenario"] == "spot -66%, vol up (weight 0.21)"
    assert Decimal(result["initial"]) >= Decimal("0.03") * 3000


def test_simulate__concentration__large_perp_pays_the_add_on():
    eth = {"spot": 3000, "vol": "0.6", "concentration_free_usd": 2_000_000, "concentration_depth_usd": 4_000_000}
    small, large = (
        sim.simulate(
            sim.BookInput.model_validate(
                {
                    "underlyings": {"ETH": eth},
                    "positions": [{"kind": "perp", "underlying": "ETH", "size": n, "entry": 3000}],
                }
            )
        )
        for n in (10, 10_000)
    )
    assert Decimal(small["underlyings"][0]["concentration"]) == 0
    assert Decimal(large["initial"]) / 10_000 >= Decimal("1.5") * Decimal(small["initial"]) / 10


def test_simulate__book_traded_on_chain__equals_the_engine_to_the_wei(cm, admin, maker, taker, chain):
    """A short put and a long call, sold and bought on chain: the simulator, given the account's
    cash, the live spot and vol and each option's time to expiry from its array's epoch, returns
    the engine's equity, IM and MM exactly."""
    sub = 61
    for actor, amount in ((maker, "100000"), (taker, "1000000")):
        cm.token("USDC").mint(admin, actor, amount)
        cm.vault.deposit(actor, "USDC", amount, sub if actor == maker else 0)
    expiry = chain.pending_timestamp + 30 * 86_400
    put = cm.markets.list_option(admin, "ETH", False, 1700, expiry)
    call = cm.markets.list_option(admin, "ETH", True, 3300, expiry)
    cm.trade(maker, taker, put, "-2", "12", maker_subaccount=sub)
    cm.trade(maker, taker, call, "1", "90", maker_subaccount=sub)
    engine = cm.engine.contract
    eth = engine.underlying_ids(key("ETH"))
    opened = engine.epoch(eth)[3]
    listing = engine.underlyings(eth)
    spot, vol = cm.oracle.price("ETH/USD"), cm.oracle.price("ETH/IV")
    cash = cm.vault.balances(maker, sub).cash
    seconds = expiry - opened
    simulated = sim.simulate(
        sim.BookInput.model_validate(
            {
                "underlyings": {
                    "ETH": {
                        "spot": spot,
                        "vol": vol,
                        "concentration_free_usd": listing.concentration_free * 1000,
                        "concentration_depth_usd": listing.concentration_depth * 1000,
                    }
                },
                "cash": cash,
                "positions": [
                    {"kind": "put", "underlying": "ETH", "strike": 1700, "seconds": seconds, "size": -2},
                    {"kind": "call", "underlying": "ETH", "strike": 3300, "seconds": seconds, "size": 1},
                ],
            }
        )
    )
    on_chain = cm.engine.margin(maker, sub)
    assert (Decimal(simulated["equity"]), Decimal(simulated["initial"]), Decimal(simulated["maintenance"])) == (
        on_chain.equity,
        on_chain.initial,
        on_chain.maintenance,
    )


def test_simulate_cli__example_book__tables_and_json():
    runner = CliRunner()
    text = runner.invoke(sim.cli, [str(EXAMPLE)])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("equity 22,922.77  IM 1,820.05  MM 1,374.66")
    assert "spot -66%, vol up (weight 0.21)" in text.output
    as_json = runner.invoke(sim.cli, [str(EXAMPLE), "--json", "--worst", "1"])
    result = json.loads(as_json.output)
    assert [u["underlying"] for u in result["underlyings"]] == ["ETH", "BTC"]
    assert all(len(u["worst"]) == 1 for u in result["underlyings"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("underlyings: {ETH: {spot: 3000, vol: 0.6, sopt: 1}}", "underlyings.ETH.sopt: unknown key"),
        ("underlyings: {ETH: {spot: 3000}}", "underlyings.ETH.vol: Field required"),
        (
            "underlyings: {ETH: {spot: 3000, vol: 0.6}}\npositions: [{kind: call, underlying: ETH, size: 1, days: 3}]",
            "positions[0]: a call needs strike",
        ),
        (
            "underlyings: {ETH: {spot: 3000, vol: 0.6}}\npositions: [{kind: perp, underlying: SOL, size: 1, entry: 1}]",
            "positions[0].underlying: 'SOL' is not in underlyings (ETH)",
        ),
        (
            "underlyings: {ETH: {spot: 3000, vol: 0.6}}\npositions: [{kind: perp, underlying: ETH, size: 0, entry: 1}]",
            "positions[0]: size must not be 0",
        ),
    ],
)
def test_simulate_cli__bad_book__one_line_per_problem_no_traceback(tmp_path, text, message):
    path = tmp_path / "book.yaml"
    path.write_text(text)
    result = CliRunner().invoke(sim.cli, [str(path)])
    assert result.exit_code == 1
    assert f"Error: {path}: {message}" in result.output, result.output
    assert "Traceback" not in result.output


def test_simulate_cli__missing_file__says_so():
    result = CliRunner().invoke(sim.cli, ["no/such/book.yaml"])
    assert result.exit_code == 1 and "no/such/book.yaml" in result.output and "Traceback" not in result.output
