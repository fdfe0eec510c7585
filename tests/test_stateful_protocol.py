"""The whole protocol under random sequences (Hypothesis stateful, on anvil).

Four traders and a deep-pocketed market maker deposit, withdraw and trade the ETH perp and
two ETH options through signed orders; ETH's spot and implied vol move, time jumps, and a
keeper sweeps (starts every due auction and bids until nothing is liquidatable). After
every step:
  - conservation of cash, to the wei (SPECIFICATION.md, Vault): the vault's USDC in WAD is
    exactly `total`, and `total` equals the sum of every account's cash, plus each open perp's
    unsettled funding less its cost, plus a rounding surplus that is never negative and grows
    by at most DUST_PER_BLOCK wei per block; each perp's sizes sum to zero, and
    `positive_cash` covers every positive balance;
  - the engine's valuation: the vault's USDC covers the sum of every account's equity (the
    perps and options are zero-sum), and exceeds it by no more than the quantization of the
    option values plus a few wei per step;
  - after a sweep no account is below maintenance margin;
  - a live auction's price never rises: its multiplier d(t) only falls and, insolvent, its
    payment ramp only grows;
  - every loss is paid exactly: fund payout + socialized = loss, and the vault's
    `socialized_loss` is the sum of what was socialized.

Every user action goes through the SDK's `TxSender`: it is preflighted against the latest
state, so an action the protocol refuses (margin, balance, freeze) is checked by its exact
reason without being mined, and ape's per-transaction overhead (and its trace of every
revert) stays out of the loop.

Steps: ``CM_STATEFUL_STEPS`` steps asked for (default 2,600, which executes at least 2,000:
Hypothesis ends some runs early), in runs of ``STEPS_PER_RUN``; the long profile, at least
20,000 executed, is ``CM_STATEFUL_STEPS=23000 ape test -s tests/test_stateful_protocol.py``
(21,527 steps in 78 minutes when last run; figures in the README).
"""

import os
import time

from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crossmargin.sender import Call, TxSender
from crossmargin.units import WAD, account_id, to_units, to_wad

STEPS = int(os.environ.get("CM_STATEFUL_STEPS", "2600"))
STEPS_PER_RUN = 25
# rounding the vault keeps per step (premium ceil/floor, perp cost ceil, funding floor,
# socialization floors), generously bounded
DUST_PER_STEP = 10**3
# the rounding surplus of the cash identity may grow by at most this many wei per block (one
# transaction each on anvil): a wei per rounded amount (premium, perp cost, each funding
# settlement, each positive balance at a socialization), generously bounded
DUST_PER_BLOCK = 64
# the output of `Clearinghouse.positions`
POSITIONS_ABI = "(uint256[],(uint256,int256,int256,int256,int256,int256,uint256)[],uint256,uint256)"
# Reasons a user action may be refused with; anything else fails the test.
REFUSALS = (
    "clearing: insufficient margin",
    "vault: insufficient margin",
    "vault: insufficient balance",
    "vault: account in auction",
    "clearing: account in auction",
)


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
        self.option_units = 0  # option units opened (both sides), for the quantization bound
        self.live = set()  # accounts whose auction a keeper started and nobody finished yet
        self.block0 = self.chain.blocks.head.number
        self.surplus0 = self._cash_identity()[0]

    def teardown(self):
        # every run ends with a keeper sweep: whatever the run left due is liquidated
        try:
            self.sweep(0)
            self.nothing_liquidatable_after_a_sweep()
            self.socialized_loss_is_the_sum_of_losses()
        finally:
            self.chain.restore(self.snapshot)
        Protocol.stats["steps"] += self.steps

    # ------------------------------------------------------------------ helpers

    def _accounts(self):
        actors = (self.maker, *self.traders, self.bidder)
        ids = [account_id(a.address, 0) for a in actors]
        ids.append(account_id(self.cm.fund.address, 0))
        ids.append(account_id(self.admin.address, 0))
        return ids

    def _cash_identity(self) -> tuple[int, int]:
        """Reads, in one batch of calls, everything the cash identity needs (SPECIFICATION.md,
        Vault: conservation) and checks its exact parts; returns (rounding surplus R, head)."""
        web3 = self.chain.provider.web3
        with web3.batch_requests() as batch:
            for to, data in Protocol.cash_reads:
                batch.add(web3.eth.call({"to": to, "data": data}))
            batch.add(web3.eth.get_block("latest"))
            raws = batch.execute()
        head = raws.pop()
        n = len(self._accounts())
        held, asset, positive = (bytes(r) for r in raws[:3])
        held = abi_decode(["uint256"], held)[0]
        total = abi_decode(["(uint256,uint256,uint256,uint256,bytes32,bytes32,uint256,uint256)"], asset)[0][3]
        positive = abi_decode(["uint256"], positive)[0]
        cash = [abi_decode(["int256"], bytes(r))[0] for r in raws[3 : 3 + n]]
        positions = [abi_decode([POSITIONS_ABI], bytes(r))[0] for r in raws[3 + n : 3 + 2 * n]]
        assert held * Protocol.usdc_scale == total, f"vault holds {held} USDC units, total {total} WAD"
        assert positive >= sum(max(c, 0) for c in cash), "positive_cash below the positive balances"
        claims = sum(cash)
        sizes: dict[int, int] = {}
        for options, perps, _cap, _interval in positions:
            for underlying, size, cost, funding, cumulative, _ema, _updated in perps:
                sizes[underlying] = sizes.get(underlying, 0) + size
                # the funding it would settle now (floored, as `_settle_funding`), less its cost
                claims += (-size * (cumulative - funding)) // WAD - cost
            for word in options:
                instrument = word & (2**32 - 1)
                # options of this test expire after any run; past expiry a payoff is owed
                assert head["timestamp"] < Protocol.expiries[instrument], "an option expired mid-run"
        assert all(net == 0 for net in sizes.values()), f"perp sizes do not net to zero: {sizes}"
        surplus = total - claims
        assert surplus >= 0, f"claims exceed the vault's total by {-surplus} wei"
        return surplus, head["number"]

    def _changed(self):
        self.swept = False

    def _send(self, who, *calls: Call) -> bool:
        """Sends ``calls`` from ``who``; a refusal with one of REFUSALS is a legitimate
        outcome (preflighted, never mined). Returns whether all went through."""
        results = Protocol.senders[who.address].execute(calls)
        for result in results:
            if result.status != "sent":
                assert result.status == "rejected" and result.reason in REFUSALS, result
                Protocol.stats["refused"] += 1
                return False
        Protocol.stats["sent"] += 1
        return True

    def _push(self, **answers):
        """Publishes new rounds on the mock feeds (human units), pipelined."""
        calls = []
        for name, answer in answers.items():
            feed = Protocol.feeds[name]
            calls.append(Call(feed.push, (to_units(answer, Protocol.feed_decimals[name]),), key=f"push:{name}"))
        assert self._send(self.admin, *calls)

    def _fresh_feeds(self):
        self._push(**{"ETH/USD": self.spot, "ETH/IV": self.vol, "BTC/USD": 60000, "BTC/IV": "0.5", "USDC/USD": 1})

    def _trade(self, taker, instrument: int, size: int, price) -> bool:
        """The maker signs, the taker fills: ``size`` > 0 means the maker buys."""
        exchange = self.cm.exchange
        order = exchange.make_order(self.maker, instrument, size > 0, to_wad(abs(size)), to_wad(price))
        signature = exchange.sign(self.maker, order)
        args = (order.as_tuple(), order.owner, signature, to_wad(abs(size)), 0, taker.address)
        return self._send(taker, Call(exchange.contract.fill, args, key="fill"))

    # ------------------------------------------------------------------ rules

    @rule(trader=st.integers(0, 3), amount=st.integers(100, 5_000))
    def deposit(self, trader, amount):
        who = self.traders[trader]
        usdc = self.cm.token("USDC")
        # the traders hold plenty of USDC and approved the vault at setup
        assert self._send(
            who, Call(self.cm.vault.contract.deposit, (usdc.address, usdc.units(amount), 0, who.address), key="deposit")
        )
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), amount=st.integers(1, 20_000))
    def withdraw(self, trader, amount):
        who = self.traders[trader]
        usdc = self.cm.token("USDC")
        self._send(
            who,
            Call(self.cm.vault.contract.withdraw, (usdc.address, usdc.units(amount), 0, who.address), key="withdraw"),
        )
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), size=st.integers(-12, 12).filter(bool), skew=st.integers(-30, 30))
    def trade_perp(self, trader, size, skew):
        price = self.spot * (1000 + skew) // 1000
        self._trade(self.traders[trader], self.cm.clearing.perp("ETH"), size, price)
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), which=st.integers(0, 1), size=st.integers(-10, 10).filter(bool))
    def trade_option(self, trader, which, size):
        if self._trade(self.traders[trader], self.options[which], size, 150):
            self.option_units += 2 * abs(size)
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), long=st.booleans(), use=st.integers(50, 100))
    def lever_up(self, trader, long, use):
        """Opens the largest perp position initial margin allows (``use`` percent of it):
        the accounts a price move then pushes under maintenance."""
        who = self.traders[trader]
        m = self.cm.engine.contract.margin(account_id(who.address, 0))
        room = (m.equity - m.initial) * use // 100
        # a perp unit needs about 21% of spot of initial margin (1.3 x (15% + 1%))
        size = int(room // (self.spot * 21 * 10**16))
        if size > 0:
            self._trade(who, self.cm.clearing.perp("ETH"), -size if long else size, self.spot)
        self.steps += 1
        self._changed()

    @rule(move=st.integers(-30, 30))
    def move_spot(self, move):
        self.spot = max(500, self.spot * (100 + move) // 100)
        self._push(**{"ETH/USD": self.spot})
        self.steps += 1
        self._changed()

    @rule(vol=st.sampled_from(["0.4", "0.6", "0.9", "1.2"]))
    def move_vol(self, vol):
        self.vol = vol
        self._push(**{"ETH/IV": vol})
        self.steps += 1
        self._changed()

    @rule(seconds=st.integers(1, 3_000))
    def time_jump(self, seconds):
        self.chain.mine(timestamp=self.chain.pending_timestamp + seconds)
        self._fresh_feeds()  # rounds within their heartbeats
        self.steps += 1

    @rule(_=st.integers(0, 3))
    def sweep(self, _):
        """The keeper: start every due auction, then buy each until it ends."""
        cm, engine, liquidator = self.cm, self.cm.engine.contract, self.cm.liquidator.contract
        ids = self._accounts()
        for account, m in zip(ids, engine.margins(ids), strict=True):
            if m.equity < m.maintenance and not liquidator.in_auction(account):
                cm.liquidator.start(self.bidder, account)
                Protocol.stats["starts"] += 1
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
        self.live = set()

    @rule(_=st.integers(0, 3))
    def keeper_starts(self, _):
        """A keeper starts every due auction; bidders come later (the curve runs)."""
        engine, liquidator = self.cm.engine.contract, self.cm.liquidator.contract
        ids = self._accounts()
        for account, m in zip(ids, engine.margins(ids), strict=True):
            if m.equity < m.maintenance and not liquidator.in_auction(account):
                self.cm.liquidator.start(self.bidder, account)
                Protocol.stats["starts"] += 1
                self.live.add(account)
        self.steps += 1

    @rule(_=st.integers(0, 3))
    def wait(self, _):
        """A block passes with nothing else happening (auction prices may only fall)."""
        self.chain.mine()
        self.steps += 1

    # ------------------------------------------------------------------ invariants

    @invariant()
    def conservation_of_cash(self):
        """The cash identity of SPECIFICATION.md (Vault: conservation), to the wei: the
        surplus is never negative (checked in `_cash_identity`) and grows by at most
        DUST_PER_BLOCK wei per block since the run began."""
        surplus, head = self._cash_identity()
        grown = surplus - self.surplus0
        assert grown <= DUST_PER_BLOCK * (head - self.block0), f"rounding surplus grew {grown} wei"
        Protocol.stats["surplus"] = max(Protocol.stats["surplus"], grown)

    @invariant()
    def conservation(self):
        cm = self.cm
        ids = self._accounts()
        equity = sum(m.equity for m in cm.engine.contract.margins(ids))
        held = cm.token("USDC").contract.balanceOf(cm.vault.address) * 10**12
        # option values are floored to their lanes: at most a lane (<= 1e-2 USD at these
        # prices) per unit held, and units held never exceed the units opened
        quantization = self.option_units * 10**16 + 1
        slack = held - equity
        assert slack >= 0, f"claims exceed the vault by {-slack} wei"
        assert slack <= quantization + DUST_PER_STEP * max(self.steps, 1), slack

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
        if not self.live:
            return
        liquidator = self.cm.liquidator.contract
        now = self.chain.blocks.head.timestamp
        for account in self.live:
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
        cm.token("USDC").mint(admin, who, "100000000")  # deposits draw from this
        cm.vault.approve(who, "USDC")
        cm.vault.deposit(who, "USDC", "5000")
    cm.token("USDC").mint(admin, maker, "50000000")
    cm.vault.deposit(maker, "USDC", "50000000")
    cm.token("USDC").mint(admin, keeper, "10000000")
    cm.vault.deposit(keeper, "USDC", "10000000")
    insure("100000")
    Protocol.cm, Protocol.admin, Protocol.maker = cm, admin, maker
    Protocol.traders, Protocol.bidder, Protocol.chain = traders, keeper, chain
    Protocol.options = (list_option("ETH", True, "3000", 30), list_option("ETH", False, "2800", 30))
    Protocol.stats = {"steps": 0, "bids": 0, "starts": 0, "sent": 0, "refused": 0, "surplus": 0}
    Protocol.senders = {who.address: TxSender(who) for who in (*traders, admin)}
    Protocol.feeds = {
        name: cm.oracle.aggregator(name) for name in ("ETH/USD", "ETH/IV", "BTC/USD", "BTC/IV", "USDC/USD")
    }
    Protocol.feed_decimals = {name: feed.decimals() for name, feed in Protocol.feeds.items()}
    usdc = cm.token("USDC")
    Protocol.usdc_scale = 10 ** (18 - usdc.contract.decimals())
    Protocol.expiries = {i: cm.clearing.contract.instrument(i).expiry for i in Protocol.options}
    # the reads of the cash identity, encoded once: the vault's USDC, its `total`,
    # `positive_cash`, then every account's cash and positions
    vault, clearing = cm.vault.contract, cm.clearing.contract
    ids = Protocol._accounts(Protocol)
    calls = [
        (usdc.contract.balanceOf, (vault.address,)),
        (vault.assets, (usdc.address,)),
        (vault.positive_cash, ()),
        *((vault.cash_of, (to_checksum_address(f"{a >> 96:#042x}"), a & (2**96 - 1))) for a in ids),
        *((clearing.positions, (a,)) for a in ids),
    ]
    Protocol.cash_reads = [(m.contract.address, "0x" + bytes(m.encode_input(*args)).hex()) for m, args in calls]
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
    print(f"\nstateful protocol: {Protocol.stats} in {time.monotonic() - began:.0f} s")
    # hypothesis ends some runs early (about 13% of the steps asked for): asking for 2,600
    # gives the 2,000 executed steps the default run promises
    assert steps >= min(2000, STEPS * 3 // 4)
    assert Protocol.stats["starts"] > 0 and Protocol.stats["bids"] > 0  # liquidation was exercised
