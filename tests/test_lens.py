"""The Lens (contracts/Lens.vy): the model's snapshot through one `eth_call` equals its
per-call path on a mixed book, the batch views equal the single views, their bounds revert
with a reason, and a snapshot's JSON-RPC calls do not grow with the options held.

The book (`crossmargin.tools.scale_bench`): 32 options (16 ETH, 16 BTC), short ETH and long BTC
perps, and WETH collateral that tracks ETH.
"""

from __future__ import annotations

import copy
from collections import Counter
from contextlib import contextmanager

import ape
import pytest
from ape import chain, project
from test_model import assert_model_matches, push, push_all

from crossmargin.clients.protocol import Protocol
from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.model import margin as model
from crossmargin.ops.deploy import deploy_lens
from crossmargin.tools.gas import EIP170_LIMIT, code_sizes
from crossmargin.tools.scale_bench import build_book, list_book, refresh_all
from crossmargin.units import account_id, key, to_wad

pytestmark = pytest.mark.slow

OPTIONS = 32


@pytest.fixture(scope="module")
def listed(cm, admin):
    return list_book(cm, admin, OPTIONS)


@pytest.fixture(scope="module")
def mixed_book(cm, admin, maker, taker, listed):
    """`maker`: 32 options, two perps, USDC and WETH collateral."""
    account = build_book(cm, admin, maker, taker, listed)
    cm.token("WETH").mint(admin, maker, "10")
    cm.vault.deposit(maker, "WETH", "10")
    return account


@pytest.fixture(scope="module")
def small_book(cm, admin, trader, taker, listed, mixed_book):
    """`trader`: 2 options and a perp, against `taker` (funded by `mixed_book`)."""
    cm.token("USDC").mint(admin, trader, "100000")
    cm.vault.deposit(trader, "USDC", "100000")
    cm.trade(trader, taker, cm.markets.perp("ETH"), "1", "3000")
    for _, instrument in listed[:2]:
        cm.trade(trader, taker, instrument, "0.5", "100")
    return account_id(trader.address)


@pytest.fixture(scope="module")
def wide_book(cm, admin, maker, taker, mixed_book):
    """Every underlying the engine can list (16): 14 more, each with mock spot (100) and vol
    (60%) feeds and a call, and `maker` long half a unit of each call on top of its book."""
    engine, router, markets = cm.engine.contract, cm.oracle.contract, cm.markets.contract
    expiry = chain.pending_timestamp + 30 * 86_400
    for n in range(engine.underlying_count() + 1, 17):
        name = f"U{n}"
        for feed, answer, low, high in ((f"{name}/USD", 100 * 10**8, 1, 10**6), (f"{name}/IV", 6 * 10**7, 0.05, 5)):
            aggregator = admin.deploy(project.MockAggregator, 8, feed, answer)
            router.set_feed(key(feed), aggregator, 3_600, to_wad(low), to_wad(high), sender=admin)
        cm.engine.list_underlying(admin, name, f"{name}/USD", f"{name}/IV")
        markets.list_option(engine.underlying_ids(key(name)), True, to_wad(100), expiry, to_wad(10**6), sender=admin)
        cm.trade(maker, taker, markets.instrument_count(), "0.5", "5")
    return mixed_book


def head() -> int:
    return chain.blocks.head.number


def assert_same_snapshot(cm, owner, liquidation: bool = False) -> tuple:
    block = head()
    through_lens = model.snapshot(cm, owner, block_id=block, liquidation=liquidation)
    per_call = model.snapshot_calls(cm, account_id(str(owner)), block, liquidation)
    assert through_lens == per_call
    return through_lens


@contextmanager
def rpc_counter():
    """Counts the JSON-RPC requests sent to the node, by method."""
    provider = chain.provider.web3.provider
    counts: Counter = Counter()
    original = provider.make_request

    def counted(method, params):
        counts[method] += 1
        return original(method, params)

    provider.make_request = counted
    try:
        yield counts
    finally:
        provider.make_request = original


# ---------------------------------------------------------------- snapshot


def test_snapshot__mixed_book__equals_per_call_path(cm, maker, mixed_book):
    state, underlyings, _params, now = assert_same_snapshot(cm, maker)
    assert len(state.options) == OPTIONS and len(state.perps) == 2
    assert sorted(underlyings) == [cm.manifest.underlyings["ETH"], cm.manifest.underlyings["BTC"]]
    assert any(line.underlying for line in state.collateral)
    assert now == chain.blocks.head.timestamp
    assert_model_matches(cm, maker)


def test_snapshot__stale_arrays_and_liquidation_reads__equal_per_call_path(cm, admin, maker, taker, listed, mixed_book):
    push(cm, admin, "ETH/USD", cm.oracle.contract.price(key("ETH/USD")) * 101 // 100)
    assert_same_snapshot(cm, maker)
    chain.mine(timestamp=chain.pending_timestamp + 2 * 86_400)  # every feed stale
    assert_same_snapshot(cm, maker, liquidation=True)


def test_snapshot__16_underlyings__equals_per_call_path_and_engine(cm, maker, wide_book):
    state, underlyings, _params, _now = assert_same_snapshot(cm, maker)
    assert sorted(underlyings) == list(range(1, 17))
    assert len(state.options) == OPTIONS + 14
    assert_model_matches(cm, maker, with_greeks=False)
    block = head()
    rows = cm.lens.underlyings(list(range(1, 17)), block_id=block)
    assert {r.id: model.underlying_state(r.id, r.listing, r[2:6], r[6:9], r.epoch) for r in rows} == underlyings


def test_snapshot__underlying_not_loaded__read_in_one_more_call(cm, maker, mixed_book, monkeypatch):
    """A touched underlying the Lens did not load (a position kind it does not know of) is
    read with `underlyings`: the result is the same."""
    full = cm.lens.snapshot
    monkeypatch.setattr(cm.lens, "snapshot", lambda *a, **k: full(*a, **k)._replace(underlyings=[]))
    block = head()
    with rpc_counter() as calls:
        through_lens = model.snapshot(cm, maker, block_id=block)
    assert calls["eth_call"] == 2
    assert through_lens == model.snapshot_calls(cm, account_id(maker.address), block)


def test_snapshot__empty_account__no_positions(cm, stranger):
    state, underlyings, _params, _now = assert_same_snapshot(cm, stranger)
    assert (state.cash, state.collateral, state.options, state.perps, underlyings) == (0, (), (), (), {})


def test_snapshot__rpc_calls__constant_in_options(cm, maker, trader, mixed_book, small_book):
    """Through the Lens a snapshot is one `eth_call` (and one head read), at 2 options as at
    32; the per-call path makes two per option more."""
    counts = {}
    for name, owner in (("small", trader), ("big", maker)):
        block = head()
        with rpc_counter() as lens_calls:
            model.snapshot(cm, owner, block_id=block)
        with rpc_counter() as per_call:
            model.snapshot_calls(cm, account_id(str(owner)), block)
        counts[name] = (lens_calls, per_call)
    small, big = counts["small"], counts["big"]
    assert big[0]["eth_call"] == small[0]["eth_call"] == 1
    assert sum(big[0].values()) == sum(small[0].values())
    assert big[1]["eth_call"] - small[1]["eth_call"] >= 2 * (OPTIONS - 2)
    print(f"JSON-RPC calls of a {OPTIONS}-option snapshot: per call {dict(big[1])}, lens {dict(big[0])}")


def test_snapshot__positions_over_bound__reverts(cm, admin, maker):
    mock = admin.deploy(project.MockPositions)
    c = cm.lens.contract
    lens = admin.deploy(project.Lens, c.VAULT(), c.ORACLE(), mock.address, c.MARKETS(), c.ENGINE())
    with ape.reverts("lens: positions too long"):
        lens.snapshot(account_id(maker.address))


# ---------------------------------------------------------------- batch views


def test_batch_views__equal_single_views(cm, maker, trader, mixed_book, small_book, listed, taker):
    ids = [i for _, i in listed] + [10**6]  # and one never listed
    markets, engine, clearing = cm.markets.contract, cm.engine.contract, cm.clearing.contract
    assert [tuple(r) for r in cm.lens.instruments(ids)] == [tuple(markets.instrument(i)) for i in ids]
    arrays = cm.lens.risk_arrays(ids)
    singles = [engine.risk_array(i) for i in ids]
    assert [(a.epoch, a.shift, list(a.lanes), a.unsettled) for a in arrays] == [
        (e, s, list(lanes), u) for e, s, lanes, u in singles
    ]
    assert cm.lens.array_epochs(ids) == [s[0] for s in singles]
    accounts = [mixed_book, small_book, account_id(taker.address), 12345]
    for i in ids[:3]:
        assert cm.lens.holders_sizes(i, accounts) == [clearing.option_size(a, i) for a in accounts]
    u_ids = [cm.manifest.underlyings["BTC"], cm.manifest.underlyings["ETH"]]
    block = head()
    rows = cm.lens.underlyings(u_ids, block_id=block)
    for u, row in zip(u_ids, rows, strict=True):
        reads = (row.spot, row.spot_round, row.vol, row.vol_round)
        epoch = row.epoch
        record = (epoch.spot_round, epoch.vol_round, epoch.epoch, epoch.opened_at, epoch.horizon)
        state = model.underlying_state(u, row.listing, reads, (row.shocks, row.moves, row.weights), record)
        assert state == model.load_underlying(cm, u, block)


def test_batch_views__after_refresh__epochs_move(cm, admin, maker, listed, mixed_book):
    ids = [i for _, i in listed]
    push(cm, admin, "BTC/USD", cm.oracle.contract.price(key("BTC/USD")) * 99 // 100)
    before = cm.lens.array_epochs(ids)
    refresh_all(cm, admin, listed)
    after = cm.lens.array_epochs(ids)
    assert after == [cm.engine.contract.risk_array(i)[0] for i in ids]
    assert after != before


def test_client__more_than_64_ids__split_into_calls(cm, listed, mixed_book):
    ids = [i for _, i in listed] * 3  # 96 ids: two calls
    assert cm.lens.array_epochs(ids) == cm.lens.array_epochs(ids[:OPTIONS]) * 3


@pytest.mark.parametrize("view", ["instruments", "risk_arrays", "array_epochs"])
def test_batch__65_ids__reverts(cm, view):
    method = getattr(cm.lens.contract, view)
    method(list(range(1, 65)))  # 64: the bound
    with ape.reverts("lens: batch too long"):
        method(list(range(1, 66)))


def test_holders_sizes__65_accounts__reverts(cm):
    cm.lens.contract.holders_sizes(1, list(range(64)))
    with ape.reverts("lens: batch too long"):
        cm.lens.contract.holders_sizes(1, list(range(65)))


def test_underlyings__17_ids__reverts(cm):
    with ape.reverts("lens: too many underlyings"):
        cm.lens.contract.underlyings([1] * 17, False)


# ---------------------------------------------------------------- deployment


def test_deploy_lens__alone__new_lens_same_stack(cm, deployment, admin, maker, mixed_book):
    manifest = copy.deepcopy(deployment.manifest)
    before = dict(manifest.contracts)
    run = deploy_lens(manifest, admin)
    assert run.sent == 1
    assert manifest.contracts["Lens"] != before["Lens"]
    assert {k: v for k, v in manifest.contracts.items() if k != "Lens"} == {
        k: v for k, v in before.items() if k != "Lens"
    }
    fresh = Protocol(manifest)
    block = head()
    assert model.snapshot(fresh, maker, block_id=block) == model.snapshot(cm, maker, block_id=block)


def test_protocol__manifest_without_lens__per_call_snapshot(cm, deployment, maker, mixed_book):
    manifest = copy.deepcopy(deployment.manifest)
    manifest.contracts.pop("Lens")
    old = Protocol(manifest)
    assert old.lens is None
    block = head()
    assert model.snapshot(old, maker, block_id=block) == model.snapshot(cm, maker, block_id=block)


# ---------------------------------------------------------------- keeper and status


def test_keeper__batch_reads__equal_per_id_reads(cm, maker, listed, mixed_book, small_book, tmp_path):
    k = Keeper(cm, None, KeeperConfig(dry_run=True, state_file=tmp_path / "k.json"))
    k.discover()
    ids = [i for _, i in listed]
    without = Keeper(copy.copy(cm), None, KeeperConfig(dry_run=True, state_file=tmp_path / "w.json"))
    without.cm.lens = None
    without.discover()
    assert [tuple(r) for r in k._instruments(ids)] == [tuple(r) for r in without._instruments(ids)]
    assert k._array_epochs(ids) == without._array_epochs(ids)
    accounts = sorted(k.state.accounts)
    assert k._holders_sizes(ids[0], accounts) == without._holders_sizes(ids[0], accounts)
    assert k.current_epochs() == without.current_epochs()
    assert k.snapshots([mixed_book]) == without.snapshots([mixed_book])


def test_status__big_book__listed_with_its_book(cm, admin, maker, mixed_book, small_book, tmp_path, run_status):
    """`ape run status` (its command run in-process on the test chain) lists the 32-option
    account with its book, one Lens call for its snapshot."""
    # new rounds first: a test before this one on the same worker may have moved the clock
    # past the feeds' heartbeats, and the status then leaves out accounts it cannot value
    push_all(cm, admin)
    # every account on the chain (other modules under xdist may have left accounts nearer
    # to liquidation than these two)
    out = run_status(top=1000, state_file=tmp_path / "none.json")
    # the book as held now: `wide_book` (a module fixture) may have added options on more
    # underlyings if a test that uses it ran first on this worker
    held = len(cm.clearing.contract.option_ids(mixed_book))
    assert held >= OPTIONS
    assert f"{held} opt · 2 perp · ETH BTC" in out, out
    assert "2 opt · 1 perp · ETH" in out


def test_lens__code_size__within_85_percent_of_eip170():
    [(_, size)] = code_sizes(("Lens",))
    assert size <= EIP170_LIMIT * 85 // 100
