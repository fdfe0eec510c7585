"""Margin engine configuration: listing an underlying, its grid (the default read from code, a
custom one from storage), its risk parameters and the engine parameters. The risk model's
owner sets them; the risk model validates them and writes them into the engine, which takes
them from its current risk model only. Every bound has its exact reason, every setter its
event, and what is set reads back from the engine."""

import ape
import pytest

from crossmargin.model import margin as model
from crossmargin.tools.gas import storage_slots
from crossmargin.tools.worst_case import widest_grid
from crossmargin.units import WAD, account_id, key

NOT_OWNER = "ownable: caller is not the owner"
# the default risk parameters of `list_underlying` (quantum, vol up, vol down, vol floor,
# term exponent, short-option rate, perp rate)
DEFAULT_RISK = (10**12, 5 * 10**17, 3 * 10**17, 3 * 10**17, 3 * 10**17, 10**16, 10**16)


def default_lists() -> tuple[list[int], list[int], list[int]]:
    grid = model.default_grid()
    return [s.shock for s in grid], [s.move for s in grid], [s.weight for s in grid]


def risk_params(listing) -> tuple:
    """An `underlyings(u)` listing's risk parameters, in `set_risk_params` order."""
    return (
        listing.quantum,
        listing.vol_up,
        listing.vol_down,
        listing.vol_floor,
        listing.term_exponent,
        listing.short_option_rate,
        listing.perp_rate,
    )


def grid_of(engine, u: int) -> tuple:
    shocks, moves, weights = engine.grid(u)
    return tuple(model.Scenario(*s) for s in zip(shocks, moves, weights, strict=True))


@pytest.fixture
def eth(engine) -> int:
    return engine.underlying_ids(key("ETH"))


@pytest.fixture
def weth_book(create_account, trader) -> int:
    """An account holding only WETH: it touches ETH (the collateral tracks it)."""
    create_account(trader, {"WETH": "10"})
    return account_id(trader.address, 0)


# ------------------------------------------------------------------ list_underlying


def test_list_underlying__bad_input__reverts(engine, risk_model, admin, stranger):
    sol = (key("SOL"), key("SOL/USD"), key("SOL/IV"))
    with ape.reverts(NOT_OWNER):
        risk_model.list_underlying(*sol, sender=stranger)
    with ape.reverts("risk: zero key"):
        risk_model.list_underlying(b"", key("SOL/USD"), key("SOL/IV"), sender=admin)
    with ape.reverts("risk: zero key"):
        risk_model.list_underlying(key("SOL"), key("SOL/USD"), b"", sender=admin)
    # both oracle keys share one storage word: 17 bytes do not fit
    with ape.reverts("risk: key over 16 bytes"):
        risk_model.list_underlying(key("SOL"), key("SOL/USD:chainlink"), key("SOL/IV"), sender=admin)
    with ape.reverts("risk: key over 16 bytes"):
        risk_model.list_underlying(key("SOL"), key("SOL/USD"), key("SOL/IV:deribit-dvol"), sender=admin)
    with ape.reverts("risk: already listed"):
        risk_model.list_underlying(key("ETH"), key("ETH/USD"), key("ETH/IV"), sender=admin)


def test_list_underlying__sixteen_byte_keys__read_back_with_the_default_grid(engine, risk_model, admin):
    count = engine.underlying_count()
    spot16, vol = key("SOL/USD:chainlnk"), key("SOL/IV:deribit!")
    assert len(spot16.rstrip(b"\0")) == 16
    receipt = risk_model.list_underlying(key("SOL"), spot16, vol, sender=admin)
    u = engine.underlying_ids(key("SOL"))
    assert u == count + 1 == engine.underlying_count()
    listing = engine.underlyings(u)
    assert (listing.name, listing.spot_key, listing.vol_key) == (key("SOL"), spot16, vol)
    assert engine.spot_key(u) == spot16
    assert risk_params(listing) == DEFAULT_RISK
    assert listing.scenarios == 23
    assert grid_of(engine, u) == model.default_grid()
    [event] = receipt.decode_logs(risk_model.GridSet)
    assert (event.underlying, list(event.shocks), list(event.vol_moves), list(event.weights)) == (u, *default_lists())
    # the risk model logs the listing and its default parameters
    [listed] = receipt.decode_logs(risk_model.UnderlyingListed)
    assert (listed.underlying, listed.name, listed.spot_key, listed.vol_key) == (u, key("SOL"), spot16, vol)
    [params] = receipt.decode_logs(risk_model.RiskParamsSet)
    assert params.underlying == u and risk_params(params) == DEFAULT_RISK


def test_list_underlying__past_sixteen__reverts(engine, risk_model, admin):
    for n in range(engine.underlying_count(), 16):
        risk_model.list_underlying(key(f"U{n}"), key(f"U{n}/USD"), key(f"U{n}/IV"), sender=admin)
    assert engine.underlying_count() == 16
    with ape.reverts("risk: too many underlyings"):
        risk_model.list_underlying(key("U99"), key("U99/USD"), key("U99/IV"), sender=admin)


# ------------------------------------------------------------------ grid


def test_default_grid__extremes_fill_the_first_array_word():
    """The first eleven scenarios (one risk-array word) are the base and the ones that
    usually bind: ±15% at every vol, the tails (-66% and +200%, vol up, dampened to
    0.1386 / |shock|) and the unshocked spot with vol up and down."""
    grid = model.default_grid()
    assert grid[0] == model.Scenario(0, model.VOL_NONE, 10**6)
    assert {(s.shock, s.move) for s in grid[1:11]} == {
        *((shock, move) for shock in (-150_000, 150_000) for move in (0, 1, 2)),
        (-660_000, 2),
        (2_000_000, 2),
        (0, 0),
        (0, 2),
    }
    assert sorted((s.shock, s.move) for s in grid[11:]) == sorted(
        (shock, move) for shock in (-100_000, -50_000, 50_000, 100_000) for move in (0, 1, 2)
    )
    tails = {-660_000: 210_000, 2_000_000: 69_300}
    assert all(s.weight == tails.get(s.shock, 10**6) for s in grid)
    # a delta-one position loses 13.86% of its notional in either tail: less than at ±15%
    assert all(abs(s.shock) * s.weight // 10**6 == 138_600 for s in grid if s.shock in tails)


def test_set_grid__bad_grids__revert(engine, risk_model, admin, stranger, eth):
    shocks, moves, weights = default_lists()
    with ape.reverts(NOT_OWNER):
        risk_model.set_grid(eth, shocks, moves, weights, sender=stranger)
    for u in (0, engine.underlying_count() + 1):
        with ape.reverts("risk: unknown underlying"):
            risk_model.set_grid(u, shocks, moves, weights, sender=admin)
    with ape.reverts("risk: bad grid"):
        risk_model.set_grid(eth, [0], [1], [10**6], sender=admin)
    with ape.reverts("risk: bad grid"):
        risk_model.set_grid(eth, shocks, moves[:-1], weights, sender=admin)

    def bad(index: int, shock=None, move=None, weight=None):
        s, m, w = list(shocks), list(moves), list(weights)
        s[index] = s[index] if shock is None else shock
        m[index] = m[index] if move is None else move
        w[index] = w[index] if weight is None else weight
        return s, m, w

    cases = [
        (dict(index=0, shock=100), "risk: bad base scenario"),
        (dict(index=0, move=2), "risk: bad base scenario"),
        (dict(index=1, shock=-950_100), "risk: shock out of bounds"),
        (dict(index=1, shock=3_000_100), "risk: shock out of bounds"),
        (dict(index=1, move=3), "risk: bad vol move"),
        (dict(index=1, weight=0), "risk: weight out of bounds"),
        (dict(index=1, weight=1_000_100), "risk: weight out of bounds"),
        (dict(index=1, shock=-150_001), "risk: grid not in 0.01% steps"),
        (dict(index=1, weight=999_999), "risk: grid not in 0.01% steps"),
    ]
    for change, reason in cases:
        with ape.reverts(reason):
            risk_model.set_grid(eth, *bad(**change), sender=admin)
    # the bounds themselves are accepted
    risk_model.set_grid(eth, *bad(1, shock=-950_000, weight=100), sender=admin)
    risk_model.set_grid(eth, *bad(1, shock=3_000_000), sender=admin)
    assert grid_of(engine, eth)[1] == model.Scenario(3_000_000, moves[1], weights[1])


def test_set_grid__spot_levels__ten_accepted_eleven_revert(engine, risk_model, admin, eth):
    """A grid lists at most MAX_SPOT_LEVELS (10) runs of one nonzero shock: the logarithms
    a stale array costs, and so the worst liquidation's gas, stay bounded (test_worst_case)."""
    shocks, moves, weights = widest_grid()
    risk_model.set_grid(eth, shocks, moves, weights, sender=admin)
    assert grid_of(engine, eth) == tuple(model.Scenario(*lane) for lane in zip(shocks, moves, weights, strict=True))
    # an eleventh level: the last scenario (unshocked) gets a shock of its own
    shocks[-1] = 350_000
    with ape.reverts("risk: too many spot levels"):
        risk_model.set_grid(eth, shocks, moves, weights, sender=admin)
    # a zero shock is the base spot and no level; a run after it is one again (3 levels)
    risk_model.set_grid(eth, [0, -50_000, 0, -50_000, 50_000], [1, 0, 0, 2, 1], [10**6] * 5, sender=admin)
    assert engine.underlyings(eth).scenarios == 5


def test_set_grid__custom_from_storage__default_again_from_code(engine, risk_model, admin, keeper, eth, weth_book):
    """A custom grid costs a margin check one storage slot per 8 scenarios; set back to
    the default, the check reads none again. Risk parameters keep the grid as it is."""
    base = storage_slots(keeper, engine.margin, weth_book)
    shocks, moves, weights = default_lists()
    # the default grid's -66% tail at full weight: the WETH book's worst loss grows to 66%
    weights[7] = 10**6
    receipt = risk_model.set_grid(eth, shocks, moves, weights, sender=admin)
    [event] = receipt.decode_logs(risk_model.GridSet)
    assert (list(event.shocks), list(event.vol_moves), list(event.weights)) == (shocks, moves, weights)
    assert [tuple(s) for s in grid_of(engine, eth)] == list(zip(shocks, moves, weights, strict=True))
    assert storage_slots(keeper, engine.margin, weth_book) == base + 3
    risk = {r.underlying: r for r in engine.risk(weth_book)}[eth]
    assert risk.worst_scenario == 7

    # risk parameters leave the grid (and its storage flag) alone
    risk_model.set_risk_params(eth, *DEFAULT_RISK, sender=admin)
    assert [tuple(s) for s in grid_of(engine, eth)] == list(zip(shocks, moves, weights, strict=True))
    assert storage_slots(keeper, engine.margin, weth_book) == base + 3

    # 32 scenarios: four words
    more = 32 - len(shocks)
    risk_model.set_grid(eth, shocks + [-200_000] * more, moves + [1] * more, weights + [10**6] * more, sender=admin)
    assert engine.underlyings(eth).scenarios == 32
    assert storage_slots(keeper, engine.margin, weth_book) == base + 4

    risk_model.set_grid(eth, *default_lists(), sender=admin)
    assert grid_of(engine, eth) == model.default_grid()
    assert engine.underlyings(eth).scenarios == 23
    assert storage_slots(keeper, engine.margin, weth_book) == base
    assert {r.underlying: r for r in engine.risk(weth_book)}[eth].worst_scenario == 1


# ------------------------------------------------------------------ risk and engine parameters


def test_set_risk_params__bounds__revert_and_read_back(engine, risk_model, admin, stranger, eth):
    def with_(i: int, value: int):
        params = list(DEFAULT_RISK)
        params[i] = value
        return params

    with ape.reverts(NOT_OWNER):
        risk_model.set_risk_params(eth, *DEFAULT_RISK, sender=stranger)
    with ape.reverts("risk: unknown underlying"):
        risk_model.set_risk_params(0, *DEFAULT_RISK, sender=admin)
    cases = [
        (0, 10**6 - 1, "risk: quantum out of bounds"),
        (0, 10**16 + 1, "risk: quantum out of bounds"),
        (1, 5 * WAD + 1, "risk: vol shock out of bounds"),
        (2, WAD + 1, "risk: vol shock out of bounds"),
        (3, 10**16 - 1, "risk: vol floor out of bounds"),
        (3, WAD + 1, "risk: vol floor out of bounds"),
        (4, WAD + 1, "risk: exponent out of bounds"),
        (5, 2 * 10**17 + 1, "risk: add-on out of bounds"),
        (6, 2 * 10**17 + 1, "risk: add-on out of bounds"),
    ]
    for i, value, reason in cases:
        with ape.reverts(reason):
            risk_model.set_risk_params(eth, *with_(i, value), sender=admin)
    top = (10**16, 5 * WAD, WAD, WAD, WAD, 2 * 10**17, 2 * 10**17)
    receipt = risk_model.set_risk_params(eth, *top, sender=admin)
    [event] = receipt.decode_logs(risk_model.RiskParamsSet)
    assert event.underlying == eth
    listing = engine.underlyings(eth)
    assert risk_params(listing) == top
    assert listing.scenarios == 23 and grid_of(engine, eth) == model.default_grid()


def test_set_concentration__bounds_owner_event__rewrites_only_its_fields(
    engine, risk_model, admin, stranger, eth, weth_book
):
    """Thousands of USD, each below 2**24; the other risk parameters and a custom grid stay,
    and `set_risk_params` and `set_grid` keep the concentration fields in turn."""
    before = engine.underlyings(eth)
    # the local config's ETH defaults: free 2,000,000 USD, depth 4,000,000 USD
    assert (before.concentration_free, before.concentration_depth) == (2_000, 4_000)
    with ape.reverts(NOT_OWNER):
        risk_model.set_concentration(eth, 1, 1, sender=stranger)
    for unknown in (0, engine.underlying_count() + 1):
        with ape.reverts("risk: unknown underlying"):
            risk_model.set_concentration(unknown, 1, 1, sender=admin)
    for free, depth in ((2**24, 0), (0, 2**24)):
        with ape.reverts("risk: concentration out of bounds"):
            risk_model.set_concentration(eth, free, depth, sender=admin)
    shocks, moves, weights = default_lists()
    weights[7] = 10**6
    risk_model.set_grid(eth, shocks, moves, weights, sender=admin)
    custom = grid_of(engine, eth)
    top = 2**24 - 1
    receipt = risk_model.set_concentration(eth, top, top, sender=admin)
    [event] = receipt.decode_logs(risk_model.ConcentrationSet)
    assert (event.underlying, event.free, event.depth) == (eth, top, top)
    after = engine.underlyings(eth)
    assert (after.concentration_free, after.concentration_depth) == (top, top)
    assert risk_params(after) == risk_params(before) and grid_of(engine, eth) == custom
    assert {r.underlying: r for r in engine.risk(weth_book)}[eth].worst_scenario == 7
    risk_model.set_risk_params(eth, *DEFAULT_RISK[:-1], 2 * 10**16, sender=admin)
    risk_model.set_grid(eth, *default_lists(), sender=admin)
    after = engine.underlyings(eth)
    assert (after.concentration_free, after.concentration_depth, after.perp_rate) == (top, top, 2 * 10**16)
    assert after.scenarios == 23 and grid_of(engine, eth) == model.default_grid()
    risk_model.set_concentration(eth, 0, 0, sender=admin)
    assert (engine.underlyings(eth).concentration_free, engine.underlyings(eth).concentration_depth) == (0, 0)


def test_concentration__add_on__ceil_of_loss_times_excess_over_depth_capped_at_4x(
    cm, engine, risk_model, admin, eth, trader, weth_book
):
    """C_u = ceil(L_u · min(L_u − free, 4 · depth) / depth), added to MM and (times the IM
    factor) to IM; 0 at or below `free` and with depth 0; the model agrees. The 10 WETH
    book loses L = 15% of its 30,000 USD at the default grid."""
    risk_model.set_concentration(eth, 0, 0, sender=admin)
    plain = engine.margin(weth_book)
    loss = {r.underlying: r for r in engine.risk(weth_book)}[eth].loss
    thousand = 10**21
    assert loss >= 4 * thousand
    im_factor = engine.im_factor()
    mm_haircut = plain.maintenance - loss
    im_haircut = plain.initial - -(-loss * im_factor // WAD)
    whole = loss // thousand

    def addon(free: int, depth: int) -> int:
        return -(-loss * min(loss - free * thousand, 4 * depth * thousand) // (depth * thousand))

    cases = [
        (whole + 1, 1, 0),  # L <= free: nothing
        (whole + 5, 0, 0),
        (0, 0, 0),  # depth 0: off
        (whole - 1, 10, addon(whole - 1, 10)),
        (1, 3, addon(1, 3)),
        (0, 1, 4 * loss),  # capped: min(L, 4 · 1,000 USD) / 1,000 USD = 4
        (2, 1, addon(2, 1)),
    ]
    for free, depth, expected in cases:
        risk_model.set_concentration(eth, free, depth, sender=admin)
        m = engine.margin(weth_book)
        assert m.equity == plain.equity
        assert m.maintenance == loss + expected + mm_haircut, (free, depth)
        assert m.initial == -(-(loss + expected) * im_factor // WAD) + im_haircut, (free, depth)
        assert tuple(model.margin(*model.snapshot(cm, trader))) == tuple(m)


def test_set_params__bounds__revert_and_read_back(engine, risk_model, admin, stranger):
    with ape.reverts(NOT_OWNER):
        risk_model.set_params(13 * 10**17, 3_600, 0, sender=stranger)
    cases = [
        ((WAD - 1, 3_600, 0), "risk: im factor out of bounds"),
        ((3 * WAD + 1, 3_600, 0), "risk: im factor out of bounds"),
        ((WAD, 59, 0), "risk: array age out of bounds"),
        ((WAD, 86_401, 0), "risk: array age out of bounds"),
        ((WAD, 3_600, 2 * 10**17 + 1), "risk: rate out of bounds"),
    ]
    for args, reason in cases:
        with ape.reverts(reason):
            risk_model.set_params(*args, sender=admin)
    receipt = risk_model.set_params(3 * WAD, 86_400, 2 * 10**17, sender=admin)
    [event] = receipt.decode_logs(risk_model.ParamsSet)
    assert (event.im_factor, event.max_array_age, event.rate) == (3 * WAD, 86_400, 2 * 10**17)
    assert (engine.im_factor(), engine.max_array_age(), engine.rate()) == (3 * WAD, 86_400, 2 * 10**17)


# ------------------------------------------------------------------ risk model


def test_set_risk_model__owner_and_contract_only__wired_and_epochs_reopen(
    engine, risk_model, admin, stranger, keeper, eth, list_option
):
    """The deployment wires the engine and its risk model both ways; only the owner sets the
    model, only to a contract, and a new model ends every stored epoch (the rounds are
    cleared), so no array priced by the old one is used again."""
    assert engine.risk_model() == risk_model.address and risk_model.ENGINE() == engine.address
    with ape.reverts(NOT_OWNER):
        engine.set_risk_model(risk_model, sender=stranger)
    with ape.reverts("engine: risk model not a contract"):
        engine.set_risk_model(stranger, sender=admin)
    assert engine.refresh([list_option()], sender=keeper).return_value == 1  # opens ETH's epoch
    spot_round, _, number, _, _ = engine.epoch(eth)
    assert spot_round != 0
    receipt = engine.set_risk_model(risk_model, sender=admin)
    [event] = receipt.decode_logs(engine.RiskModelSet)
    assert event.risk_model == risk_model.address
    assert tuple(engine.epoch(eth))[:3] == (0, 0, number)


def test_configure__not_the_risk_model__reverts(engine, admin, stranger, eth):
    """The engine takes its configuration from its current risk model only: neither from
    its own owner nor from anyone else."""
    for sender in (admin, stranger):
        with ape.reverts("engine: not risk model"):
            engine.configure_underlying(key("SOL"), 1 << 128, sender=sender)
        with ape.reverts("engine: not risk model"):
            engine.configure_risk(eth, 10**12, 0, sender=sender)
        with ape.reverts("engine: not risk model"):
            engine.configure_grid(eth, 23, [0, 0, 0, 0], sender=sender)
        with ape.reverts("engine: not risk model"):
            engine.configure_params(WAD | (3_600 << 64), sender=sender)


@pytest.fixture
def deployer(accounts):
    """Deploys a replacement risk model: an account no test deploys from otherwise (ape
    remembers a contract's type by address across snapshots)."""
    return accounts[4]


def test_set_risk_model__replacement_configures__old_one_reverts(
    project, engine, risk_model, admin, deployer, keeper, eth, list_option
):
    """A new risk model keeps no configuration of its own: once the engine's owner sets it,
    it validates against the engine's listings and configures the engine, and the old
    model's calls revert."""
    new = deployer.deploy(project.RiskModel, engine)
    new.transfer_ownership(admin, sender=deployer)
    new.accept_ownership(sender=admin)
    assert new.owner() == admin.address
    with ape.reverts("engine: not risk model"):
        new.set_params(2 * WAD, 600, 10**17, sender=admin)

    engine.set_risk_model(new, sender=admin)
    with ape.reverts("engine: not risk model"):
        risk_model.set_params(2 * WAD, 600, 10**17, sender=admin)
    with ape.reverts("engine: not risk model"):
        risk_model.set_risk_params(eth, *DEFAULT_RISK, sender=admin)
    with ape.reverts("engine: not risk model"):
        risk_model.set_grid(eth, *default_lists(), sender=admin)
    with ape.reverts("engine: not risk model"):
        risk_model.list_underlying(key("SOL"), key("SOL/USD"), key("SOL/IV"), sender=admin)

    new.set_params(2 * WAD, 600, 10**17, sender=admin)
    assert (engine.im_factor(), engine.max_array_age(), engine.rate()) == (2 * WAD, 600, 10**17)
    top = (10**16, 5 * WAD, WAD, WAD, WAD, 2 * 10**17, 2 * 10**17)
    new.set_risk_params(eth, *top, sender=admin)
    assert risk_params(engine.underlyings(eth)) == top
    shocks, moves, weights = default_lists()
    weights[7] = 10**6
    new.set_grid(eth, shocks, moves, weights, sender=admin)
    assert [tuple(s) for s in grid_of(engine, eth)] == list(zip(shocks, moves, weights, strict=True))
    with ape.reverts("risk: already listed"):
        new.list_underlying(key("ETH"), key("ETH/USD"), key("ETH/IV"), sender=admin)
    new.list_underlying(key("SOL"), key("SOL/USD"), key("SOL/IV"), sender=admin)
    assert engine.underlying_ids(key("SOL")) == engine.underlying_count()
    # and it prices the arrays: the new rate's epoch is stored by a refresh
    assert engine.refresh([list_option()], sender=keeper).return_value == 1
