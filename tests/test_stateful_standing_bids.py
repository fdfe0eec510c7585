"""Standing bids under random sequences (Hypothesis state machine).

Three traders short the ETH perp against a maker; four standing bidders (one too poor to
carry a slice: its executions are skipped) register, re-register and cancel bids while the
price moves, time passes, auctions start, the keeper bids directly now and then, cured
accounts are terminated and anyone executes standing bids. Steps:
  - `register` / `cancel` (a cancel without a bid reverts `liquidator: no standing bid`);
  - `move` (ETH between 2,900 and 4,300, fresh rounds), `wait` (1 s .. 1 h, fresh rounds);
  - `start` every account below maintenance; `cure` (a deposit) then `terminate`;
  - `execute` a standing bid on a running auction; `direct_bid` by the keeper.

Checked at each execution: the slice is the model's (`standing_terms`: fraction and price to
the wei, from the `Bid` event's equity and MM and the block's time); a solvent slice is
bought at d(t) <= the bid's multiplier; the bid's fractions and cash in one auction never
pass its limits; the buyer is at or above initial margin after it; the executor is paid the
tip; a skipped execution moves nothing (every balance, position and the usage identical, no
tip). A revert is one of the expected reasons. After every step:
  - conservation of cash, to the wei (SPECIFICATION.md, Vault): the vault's USDC is `total`,
    and `total` = Σ cash + Σ open perps' (unsettled funding − cost) + R, 0 <= R, R growing
    by at most 64 wei per block; the perp's sizes net to zero;
  - a running auction's price never rises: d(t) only falls (insolvent: the ramp only grows).
"""

from __future__ import annotations

import ape
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sizes import examples

from crossmargin.model import margin as model
from crossmargin.model.auction import AuctionParams, StandingBid, multiplier, standing_terms
from crossmargin.units import WAD, account_id, key, to_wad

TRADERS = 3
BIDDERS = 4  # the last one is poor
# Reasons an execution may revert with besides the model's (the account or bidder state).
EXECUTE_REFUSALS = (
    "liquidator: no auction",
    "liquidator: no standing bid",
    "liquidator: bidder in auction",
    "liquidator: underlying not in bid",
    "liquidator: account above buffer",
    "liquidator: above standing multiplier",
    "liquidator: standing bid used",
    "liquidator: standing slice below tip",
)
DUST_PER_BLOCK = 64


def _reason(error: Exception) -> str:
    return getattr(error, "revert_message", None) or str(error)


class StandingBids(RuleBasedStateMachine):
    cm = None
    chain = None
    actors: dict = {}

    @initialize(
        price=st.integers(3300, 4200),
        bids=st.lists(
            st.tuples(st.integers(0, 95), st.integers(1, 100), st.integers(1, 20_000)),
            min_size=BIDDERS,
            max_size=BIDDERS,
        ),
    )
    def setup(self, price, bids):
        """Every bidder registered, the price moved and the due auctions started: even the
        simplest run executes standing bids."""
        self.snapshot = self.chain.snapshot()
        self.params = AuctionParams.read(self.cm.liquidator.contract)
        self.bids: dict[int, StandingBid] = {}
        self.last_d: dict[int, tuple[int, int]] = {}  # account -> (start, last d seen)
        self.surplus: tuple[int, int] | None = None  # (R, block)
        self.stats = self.actors["stats"]
        for who, (mult, fraction, cash) in enumerate(bids):
            # the first and the poor bidder buy from the start: every run executes and skips
            self.register(who, 95 if who in (0, BIDDERS - 1) else mult, fraction, cash, "any")
        self._push(price)
        self.start()
        self.sweep()

    def teardown(self):
        self.chain.restore(self.snapshot)

    # ------------------------------------------------------------------ helpers

    def _push(self, price: int):
        cm, admin = self.cm, self.actors["admin"]
        cm.oracle.push(admin, "ETH/USD", str(price))
        cm.oracle.push(admin, "ETH/IV", "0.6")
        cm.oracle.push(admin, "USDC/USD", "1")
        self.price = price

    def _all_ids(self) -> list[int]:
        return self.actors["ids"]

    def _cash(self, account: int) -> int:
        return self.cm.vault.contract.account_state(account)[0]

    def _state(self, ids) -> dict:
        """Cash and perp position of each account (what a skipped execution must not change)."""
        clearing = self.cm.clearing.contract
        u = self.actors["eth"]
        out = {}
        for a in ids:
            p = clearing.perp_position(a, u)
            out[a] = (self._cash(a), p.size, p.cost)
        return out

    def _running(self) -> list[int]:
        return [a for a in self.actors["traders"] if self.cm.liquidator.contract.in_auction(a)]

    # ------------------------------------------------------------------ rules

    @rule(
        who=st.integers(0, BIDDERS - 1),
        mult=st.integers(0, 95),
        fraction=st.integers(1, 100),
        cash=st.integers(1, 20_000),
        mask=st.sampled_from(["any", "eth", "btc"]),
    )
    def register(self, who, mult, fraction, cash, mask):
        owner, sub = self.actors["bidders"][who]
        underlyings = {"any": 0, "eth": 1 << self.actors["eth"], "btc": 1 << self.actors["btc"]}[mask]
        bid = StandingBid(mult * 10**16, fraction * 10**16, to_wad(cash), underlyings)
        self.cm.liquidator.contract.register(sub, bid.multiplier, bid.fraction, bid.max_cash, underlyings, sender=owner)
        self.bids[account_id(owner.address, sub)] = bid

    @rule(who=st.integers(0, BIDDERS - 1))
    def cancel(self, who):
        owner, sub = self.actors["bidders"][who]
        bidder = account_id(owner.address, sub)
        if bidder not in self.bids:
            with ape.reverts("liquidator: no standing bid"):
                self.cm.liquidator.cancel(owner, bidder)
            return
        self.cm.liquidator.cancel(owner, bidder)
        del self.bids[bidder]

    @rule(price=st.integers(2900, 4300))
    def move(self, price):
        self._push(price)

    @rule(seconds=st.sampled_from([1, 30, 120, 400, 900, 3_000, 3_600]))
    def wait(self, seconds):
        self.chain.mine(timestamp=self.chain.pending_timestamp + seconds)
        self._push(self.price)

    @rule()
    def start(self):
        engine, keeper = self.cm.engine.contract, self.actors["keeper"]
        for account in self.actors["traders"]:
            m = engine.margin(account)
            if m.equity < m.maintenance and not self.cm.liquidator.contract.in_auction(account):
                self.cm.liquidator.start(keeper, account)

    @rule(who=st.integers(0, TRADERS - 1))
    def cure(self, who):
        """The owner deposits enough to be back above the buffer; the auction is terminated."""
        account = self.actors["traders"][who]
        if not self.cm.liquidator.contract.in_auction(account):
            return
        owner = self.actors["trader_owner"]
        self.cm.token("USDC").mint(self.actors["admin"], owner, "30000")
        self.cm.vault.deposit(owner, "USDC", "30000", who)
        m = self.cm.engine.contract.margin(account)
        if m.equity * WAD >= m.maintenance * self.params.buffer:
            self.cm.liquidator.terminate(self.actors["keeper"], account)
            self.last_d.pop(account, None)

    @rule(who=st.integers(0, TRADERS - 1), fraction=st.integers(1, 30))
    def direct_bid(self, who, fraction):
        account = self.actors["traders"][who]
        if not self.cm.liquidator.contract.in_auction(account):
            return
        try:
            self.cm.liquidator.bid(self.actors["keeper"], account, fraction / 100, "1000000", subaccount=1)
        except ape.exceptions.ContractLogicError as error:
            assert _reason(error) in ("liquidator: account above buffer", "liquidator: bidder under margin")

    @rule()
    def sweep(self):
        """A keeper's sweep: every standing bid on every running auction."""
        for who in range(TRADERS):
            for bidder_index in range(BIDDERS):
                self.execute(who, bidder_index)

    @rule(who=st.integers(0, TRADERS - 1), bidder_index=st.integers(0, BIDDERS - 1))
    def execute(self, who, bidder_index):
        cm, liquidator = self.cm, self.cm.liquidator.contract
        account = self.actors["traders"][who]
        owner, sub = self.actors["bidders"][bidder_index]
        bidder = account_id(owner.address, sub)
        executor = account_id(self.actors["executor"].address, 0)
        bid = self.bids.get(bidder)
        _starter, started, insolvent_at = liquidator.auction(account)
        used_before = tuple(liquidator.standing_used(account, bidder))
        watched = [account, bidder, executor, *self.actors["others"]]
        before = self._state(watched)
        try:
            receipt = cm.liquidator.execute(self.actors["executor"], account, bidder)
        except ape.exceptions.ContractLogicError as error:
            reason = _reason(error)
            assert reason in EXECUTE_REFUSALS, reason
            self.stats["reverted"] += 1
            return
        assert bid is not None
        skipped = receipt.decode_logs(liquidator.StandingBidSkipped)
        if skipped:
            assert skipped[0].reason == "bidder under margin"
            assert self._state(watched) == before, "a skipped execution moved something"
            assert tuple(liquidator.standing_used(account, bidder)) == used_before
            self.stats["skipped"] += 1
            return
        [b] = receipt.decode_logs(liquidator.Bid)
        [done] = receipt.decode_logs(liquidator.StandingBidExecuted)
        elapsed = receipt.timestamp - started
        if b.equity <= 0:
            since = receipt.timestamp - insolvent_at if insolvent_at else None
            terms = standing_terms(
                bid, used_before[0], used_before[1], b.equity, b.maintenance, elapsed, since, self.params
            )
            assert b.fraction == terms.fraction and b.price >= terms.price  # socialization short of it
        else:
            d = multiplier(elapsed, self.params)
            assert d <= bid.multiplier, "bought above its multiplier"
            terms = standing_terms(bid, used_before[0], used_before[1], b.equity, b.maintenance, elapsed, p=self.params)
            assert (b.fraction, b.price, b.fee) == (terms.fraction, terms.price, terms.fee)
        # its limits in this auction
        assert used_before[0] + b.fraction <= bid.fraction
        assert used_before[1] + max(b.price, 0) <= bid.max_cash
        if liquidator.in_auction(account):
            assert tuple(liquidator.standing_used(account, bidder)) == (
                used_before[0] + b.fraction,
                used_before[1] + max(b.price, 0),
            )
        after = cm.engine.contract.margin(bidder)
        assert after.equity >= after.initial, "the buyer ended under initial margin"
        assert done.tip == liquidator.standing_tip()
        if executor != bidder:
            assert self._cash(executor) >= before[executor][0] + done.tip
        self.stats["executed"] += 1
        if b.fraction == WAD:
            self.last_d.pop(account, None)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def price_never_rises(self):
        liquidator = self.cm.liquidator.contract
        now = self.chain.blocks.head.timestamp
        for account in self.actors["traders"]:
            _keeper, started, _insolvent = liquidator.auction(account)
            if started == 0:
                self.last_d.pop(account, None)
                continue
            d = multiplier(now - started, self.params)
            previous = self.last_d.get(account)
            if previous is not None and previous[0] == started:
                assert d <= previous[1], "d(t) rose"
            self.last_d[account] = (started, d)

    @invariant()
    def conservation_of_cash(self):
        cm = self.cm
        vault, clearing = cm.vault.contract, cm.clearing.contract
        usdc = cm.token("USDC").contract
        held = usdc.balanceOf(vault.address) * self.actors["scale"]
        total = vault.assets(usdc.address)[3]
        assert held == total, f"vault holds {held}, total {total}"
        claims, sizes = 0, 0
        for a in self._all_ids():
            claims += self._cash(a)
            for line in clearing.positions(a).perps:
                p = model.perp_position(line.underlying, line.line, line.funding, line.state)
                sizes += p.size
                claims += (-p.size * (p.cumulative - p.funding)) // WAD - p.cost
        assert sizes == 0, "perp sizes do not net to zero"
        surplus = held - claims
        assert surplus >= 0, f"claims exceed the vault's USDC by {-surplus} wei"
        head = self.chain.blocks.head.number
        if self.surplus is not None:
            grown = surplus - self.surplus[0]
            assert grown <= DUST_PER_BLOCK * max(1, head - self.surplus[1]), f"surplus grew by {grown} wei"
        self.surplus = (surplus, head)


@pytest.mark.slow
def test_standing_bids__random_sequences(
    cm, chain, admin, keeper, maker, trader, operator, taker, stranger, accounts, insure
):
    insure("100000")
    usdc = cm.token("USDC")

    def deposit(actor, amount, sub=0):
        usdc.mint(admin, actor, amount)
        cm.vault.approve(actor, "USDC")
        cm.vault.deposit(actor, "USDC", amount, sub)

    deposit(maker, "2000000")
    # the traders: subaccounts 0..2 of `trader`
    for sub, size in enumerate(("10", "6", "14")):
        deposit(trader, "10000", sub)
        cm.trade(maker, trader, cm.markets.perp("ETH"), size, "3000", taker_subaccount=sub)
    bidders = [(operator, 0), (taker, 0), (stranger, 0), (operator, 7)]
    for (owner, sub), amount in zip(bidders, ("200000", "50000", "20000", "150"), strict=True):
        deposit(owner, amount, sub)
    deposit(keeper, "100000", 1)  # the keeper's own bidding account
    traders = [account_id(trader.address, sub) for sub in range(TRADERS)]
    ids = [account_id(a.address, s) for a, s in bidders]
    others = [account_id(maker.address, 0), account_id(cm.fund.address, 0), account_id(keeper.address, 1)]
    executor = accounts[8]
    engine = cm.engine.contract
    stats = {"executed": 0, "skipped": 0, "reverted": 0}
    StandingBids.cm, StandingBids.chain = cm, chain
    StandingBids.actors = {
        "admin": admin,
        "keeper": keeper,
        "executor": executor,
        "traders": traders,
        "trader_owner": trader,
        "bidders": bidders,
        "others": others,
        "ids": sorted(
            set(traders + ids + others + [account_id(executor.address, 0), account_id(keeper.address, 0)])
            | {account_id(admin.address, 0)}
        ),
        "eth": engine.underlying_ids(key("ETH")),
        "btc": engine.underlying_ids(key("BTC")),
        "scale": 10 ** (18 - usdc.contract.decimals()),
        "stats": stats,
    }
    StandingBids.price = 3000
    machine = StandingBids.TestCase
    machine.settings = settings(
        max_examples=examples(12), stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine().runTest()
    print(f"standing bids: {stats}")
    assert stats["executed"] > 0 and stats["skipped"] > 0
