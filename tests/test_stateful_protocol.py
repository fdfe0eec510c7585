"""The whole protocol under random sequences (Hypothesis stateful, on anvil).

Four traders and a deep-pocketed market maker deposit, withdraw and trade the ETH perp and
two ETH options through signed orders; ETH's spot and implied vol move, time jumps, and a
keeper sweeps (starts every due auction and bids until nothing is liquidatable). After
every step:
  - conservation: the vault's USDC, in WAD, covers the sum of every account's equity (the
    perps and options are zero-sum; every rounding favours the vault), and exceeds it by no
    more than the quantization of the option values plus a few wei per step;
  - after a sweep no account is below maintenance margin;
  - a live auction's price never rises: its multiplier d(t) only falls and, insolvent, its
    payment ramp only grows;
  - every loss is paid exactly: fund payout + socialized = loss, and the vault's
    `socialized_loss` is the sum of what was socialized.

Steps: ``CM_STATEFUL_STEPS`` (default 50) split into runs of ``STEPS_PER_RUN``; the long
profile is ``CM_STATEFUL_STEPS=20000 ape test tests/test_stateful_protocol.py``. Known gap:
a step costs seconds on anvil today (ape fetches a full trace of every refused transaction),
so the default is far below the 2,000 steps the issue asks for; preflighting each action
with an eth_call (as the keeper's sender does) is the next step.
"""

import os
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crossmargin.units import WAD, account_id

STEPS = int(os.environ.get("CM_STATEFUL_STEPS", "50"))
STEPS_PER_RUN = 50
# rounding the vault keeps per step (premium ceil/floor, perp cost ceil, funding floor,
# socialization floors), generously bounded
DUST_PER_STEP = 10**3


class Protocol(RuleBasedStateMachine):
    cm = None
    admin = None
    maker = None
    traders = ()
    bidder = None
    chain = None
    options = ()
    stats = None

    @initialize()
    def start(self):
        self.snapshot = self.chain.snapshot()
        self.steps = 0
        self.spot = 3000
        self.vol = "0.6"
        self.swept = False
        self.quotes = {}  # account in auction -> (started_at, d, insolvent ramp) last seen
        self.losses = 0  # socialized, from LossCovered events

    def teardown(self):
        self.chain.restore(self.snapshot)
        Protocol.stats["steps"] += self.steps

    # ------------------------------------------------------------------ helpers

    def _accounts(self):
        actors = (self.maker, *self.traders, self.bidder)
        ids = [account_id(a.address, 0) for a in actors]
        ids.append(account_id(self.cm.fund.address, 0))
        ids.append(account_id(self.admin.address, 0))
        return ids

    def _changed(self):
        self.swept = False

    def _send(self, send):
        """Sends a user action; a margin or freeze refusal is a legitimate outcome."""
        try:
            send()
            return True
        except Exception as error:  # noqa: BLE001 - reverts are checked by reason below
            reason = str(error)
            allowed = ("insufficient margin", "insufficient balance", "account in auction", "open interest cap")
            assert any(text in reason for text in allowed), reason
            return False

    def _fresh_feeds(self):
        self.cm.oracle.push(self.admin, "ETH/USD", str(self.spot))
        self.cm.oracle.push(self.admin, "ETH/IV", self.vol)
        self.cm.oracle.push(self.admin, "BTC/USD", "60000")
        self.cm.oracle.push(self.admin, "BTC/IV", "0.5")
        self.cm.oracle.push(self.admin, "USDC/USD", "1")

    # ------------------------------------------------------------------ rules

    @rule(trader=st.integers(0, 3), amount=st.integers(100, 20_000))
    def deposit(self, trader, amount):
        who = self.traders[trader]
        self.cm.token("USDC").mint(self.admin, who, str(amount))
        self.cm.vault.deposit(who, "USDC", str(amount))
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), amount=st.integers(1, 20_000))
    def withdraw(self, trader, amount):
        who = self.traders[trader]
        self._send(lambda: self.cm.vault.withdraw(who, "USDC", str(amount)))
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), size=st.integers(-20, 20), skew=st.integers(-30, 30))
    def trade_perp(self, trader, size, skew):
        if size == 0:
            return
        price = str(self.spot * (1000 + skew) // 1000)
        perp = self.cm.clearing.perp("ETH")
        self._send(lambda: self.cm.trade(self.maker, self.traders[trader], perp, str(size), price))
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), which=st.integers(0, 1), size=st.integers(-10, 10))
    def trade_option(self, trader, which, size):
        if size == 0:
            return
        instrument = self.options[which]
        self._send(lambda: self.cm.trade(self.maker, self.traders[trader], instrument, str(size), "150"))
        self.steps += 1
        self._changed()

    @rule(move=st.integers(-12, 12))
    def move_spot(self, move):
        self.spot = max(500, self.spot * (100 + move) // 100)
        self.cm.oracle.push(self.admin, "ETH/USD", str(self.spot))
        self.steps += 1
        self._changed()

    @rule(vol=st.sampled_from(["0.4", "0.6", "0.9", "1.2"]))
    def move_vol(self, vol):
        self.vol = vol
        self.cm.oracle.push(self.admin, "ETH/IV", vol)
        self.steps += 1
        self._changed()

    @rule(seconds=st.integers(1, 3_000))
    def time_jump(self, seconds):
        self.chain.mine(timestamp=self.chain.pending_timestamp + seconds)
        self._fresh_feeds()  # rounds within their heartbeats
        self.steps += 1

    @rule()
    def sweep(self):
        """The keeper: start every due auction, then buy each until it ends."""
        cm, engine, liquidator = self.cm, self.cm.engine.contract, self.cm.liquidator.contract
        ids = self._accounts()
        for account, m in zip(ids, engine.margins(ids), strict=True):
            if m.equity < m.maintenance and not liquidator.in_auction(account):
                cm.liquidator.start(self.bidder, account)
        for account in ids:
            for _ in range(20):
                if not liquidator.in_auction(account):
                    break
                m = engine.margin(account)
                if m.equity >= -(-m.maintenance * 115 // 100):  # the buffer, rounded up as on chain
                    cm.liquidator.terminate(self.bidder, account)
                    break
                if m.equity <= 0 and liquidator.auction(account)[2] == 0:
                    cm.liquidator.mark_insolvent(self.bidder, account)
                receipt = liquidator.bid(account, WAD, 2**200, 0, sender=self.bidder)
                for event in receipt.decode_logs(liquidator.LossCovered):
                    assert event.loss == event.fund_payout + event.socialized
                    self.losses += event.socialized
                Protocol.stats["bids"] += 1
        self.steps += 1
        self.swept = True

    @rule()
    def wait(self):
        """A block passes with nothing else happening (auction prices may only fall)."""
        self.chain.mine()
        self.steps += 1

    # ------------------------------------------------------------------ invariants

    @invariant()
    def conservation(self):
        cm = self.cm
        ids = self._accounts()
        equity = sum(m.equity for m in cm.engine.contract.margins(ids))
        held = cm.token("USDC").contract.balanceOf(cm.vault.address) * 10**12
        units = sum(abs(cm.clearing.contract.option_size(a, o)) for a in ids for o in self.options)
        quantization = 2 * units * 10**12 // WAD + 1  # lanes of 1e-6 USD per option unit
        slack = held - equity
        assert slack >= 0, f"claims exceed the vault by {-slack} wei"
        assert slack <= quantization * 10**6 + DUST_PER_STEP * max(self.steps, 1), slack

    @invariant()
    def nothing_liquidatable_after_a_sweep(self):
        if not self.swept:
            return
        ids = self._accounts()
        for account, m in zip(ids, self.cm.engine.contract.margins(ids), strict=True):
            assert m.equity >= m.maintenance, account

    @invariant()
    def auction_price_never_rises(self):
        """Per unit of equity (solvent) the price is d(t), which may only fall; insolvent,
        the payment's ramp may only grow."""
        liquidator = self.cm.liquidator.contract
        now = self.chain.blocks.head.timestamp
        for account in self._accounts():
            _, started_at, insolvent_at = liquidator.auction(account)
            if started_at == 0:
                self.quotes.pop(account, None)
                continue
            d = liquidator.multiplier(now - started_at)
            ramp = 0 if insolvent_at == 0 else min(now - insolvent_at, liquidator.insolvent_ramp())
            if account in self.quotes and self.quotes[account][0] == started_at:
                assert d <= self.quotes[account][1] and ramp >= self.quotes[account][2]
            self.quotes[account] = (started_at, d, ramp)

    @invariant()
    def socialized_loss_is_the_sum_of_losses(self):
        assert self.cm.vault.contract.socialized_loss() == self.losses


def test_protocol__random_sequences(cm, admin, maker, keeper, accounts, chain, list_option, insure):
    traders = (accounts[2], accounts[3], accounts[5], accounts[8])
    for who in traders:
        cm.token("USDC").mint(admin, who, "20000")
        cm.vault.deposit(who, "USDC", "20000")
    cm.token("USDC").mint(admin, maker, "50000000")
    cm.vault.deposit(maker, "USDC", "50000000")
    cm.token("USDC").mint(admin, keeper, "10000000")
    cm.vault.deposit(keeper, "USDC", "10000000")
    insure("100000")
    Protocol.cm, Protocol.admin, Protocol.maker = cm, admin, maker
    Protocol.traders, Protocol.bidder, Protocol.chain = traders, keeper, chain
    Protocol.options = (list_option("ETH", True, "3000", 30), list_option("ETH", False, "2800", 30))
    Protocol.stats = {"steps": 0, "bids": 0}
    machine = Protocol.TestCase
    machine.settings = settings(
        max_examples=max(1, STEPS // STEPS_PER_RUN),
        stateful_step_count=STEPS_PER_RUN,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    began = time.monotonic()
    machine().runTest()
    steps = Protocol.stats["steps"]
    print(f"\nstateful protocol: {steps} steps, {Protocol.stats['bids']} bids in {time.monotonic() - began:.0f} s")
    assert steps >= STEPS // 4  # hypothesis ends some runs early and skips no-op draws
