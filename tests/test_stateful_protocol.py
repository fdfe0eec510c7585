"""The whole protocol under random sequences (Hypothesis stateful, on anvil).

Four traders and a deep-pocketed market maker deposit, withdraw and trade the ETH perp and
three ETH options (one expires two hours after setup) through signed orders; ETH's spot and
implied vol move, time jumps, and a keeper sweeps (settles the expired option, starts every
due auction and bids until nothing is liquidatable).

The adversary (issue 11, "the class, not just the instances"): `attacker` and `accomplice`
collude, and trader 0 has named the attacker its operator.
  - `collude`: they trade the perp or an option with each other at off-market prices (1 wei,
    near 0, the option's cap, far above it, far from the mark), either side buying;
  - `attacker_levers`, `attacker_dumps`, `attacker_squeezed`: the attacker levers up, a price
    move takes it under maintenance, and it closes its book to the accomplice at a price
    that hands over up to its whole MM (finding 1);
  - `dust_perp`: perp fills of at most 1e-9 units at absurd prices (finding 3);
  - `operator_fills`: the attacker signs trader 0's orders or fills for trader 0 against the
    accomplice, off-market (refused: `clearing: operator price out of band`, finding 11) or
    at the mark;
  - `near_expiry`, `keeper_settles`: trading and withdrawing just before and after the
    short-dated option's expiry, before it is settled (finding 2);
  - `cure`: a deposit into an account whose auction runs; `dust_deposit`: one unit of USDC or
    WBTC into a passive account, trader 0 or the attacker (finding 10: a stranger's new
    collateral is refused);
  - `vol_outage`: a crash while the ETH vol feed is stale or above the router's bound (5.0):
    users who need vol are refused with the oracle's reason; accounts that need no vol are
    liquidated through it (finding 10, see REQUIRE_FINDING_10).
Passive accounts: `saver` holds only USDC; `holder` bought 1 ETH perp from the maker at setup
and never trades again.

After every step:
  - conservation of cash, to the wei (SPECIFICATION.md, Vault): the vault's USDC in WAD is
    exactly `total`, and `total` equals the sum of every account's cash, plus each open perp's
    unsettled funding less its cost, plus each settled option's payoff still owed, plus a
    rounding surplus that is never negative and grows by at most DUST_PER_BLOCK wei per
    block; each perp's sizes sum to zero, and `positive_cash` covers every positive balance;
  - the engine's valuation: the vault's USDC (plus the WBTC dust at its price) covers the sum
    of every account's equity (the perps and options are zero-sum), and exceeds it by no
    more than the quantization of the option values plus a few wei per step;
  - after a sweep no account is below maintenance margin;
  - a live auction's price never rises: its multiplier d(t) only falls and, insolvent, its
    payment ramp only grows;
  - every loss is paid exactly: fund payout + socialized = loss, and the vault's
    `socialized_loss` is the sum of what was socialized;
  - (a) nobody who did not trade loses, beyond oracle moves and honest funding
    (`_adversary_gains_nothing`): the passive accounts' cash is exactly what was deposited,
    lowered only by a socialized loss and then by exactly its pro-rata share (the cash
    index); the holder's perp position (size, cost, funding index) is untouched; the premium
    EMA moves over a step by at most 2n/funding_notional per fill of notional n; the
    insurance fund's assets fall only by what it paid through `cover`, each loss payout at
    most the account's deficit plus its insolvent ramp (<= MM) and at most one keeper tip per
    auction, plus its own cash's share of a socialized loss;
  - (b) no trade leaves an account at negative equity: after every fill that went through,
    both accounts are valued in the fill's block (`_fill`).
With the risk-reducing rule of finding 1 reverted (the last two conditions of
`Clearinghouse._check_trade`), (b) fails within a few hundred steps (first seen after 54
and 156 steps in two runs at CM_STATEFUL_STEPS=300: `attacker_squeezed` dumps at E' < 0).

Every user action goes through the SDK's `TxSender`: it is preflighted against the latest
state, so an action the protocol refuses (margin, balance, freeze, oracle) is checked by its
exact reason (REFUSALS) without being mined, and ape's per-transaction overhead (and its
trace of every revert) stays out of the loop.

Steps: ``CM_STATEFUL_STEPS`` steps asked for (default 1,900: the adversary's invariants cost
about 40% more per step, so the CI run takes about the time 2,600 steps took before; it
executes at least 1,425: Hypothesis ends some runs early), in runs of ``STEPS_PER_RUN``; the
long profile, at least 20,000 executed, is
``CM_STATEFUL_STEPS=23000 ape test -s tests/test_stateful_protocol.py``
(``make stateful-long``; 21,084 steps in 63 minutes with the adversary; figures in the README).
"""

import os
import time
from dataclasses import astuple

import pytest
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crossmargin.model import margin as model
from crossmargin.sender import Call, TxSender
from crossmargin.units import WAD, account_id, to_units, to_wad

STEPS = int(os.environ.get("CM_STATEFUL_STEPS", "1900"))
STEPS_PER_RUN = 25
# rounding the vault keeps per step (premium ceil/floor, perp cost ceil, funding floor,
# socialization floors), generously bounded
DUST_PER_STEP = 10**3
# the rounding surplus of the cash identity may grow by at most this many wei per block (one
# transaction each on anvil): a wei per rounded amount (premium, perp cost, each funding
# settlement, each positive balance at a socialization), generously bounded
DUST_PER_BLOCK = 64
# the output of `Clearinghouse.positions`
POSITIONS_ABI = "(uint256[],(uint256,uint256,int256,uint256)[],uint256[],uint256,uint256)"
# Reasons a user action may be refused with; anything else fails the test.
REFUSALS = (
    "clearing: insufficient margin",
    "vault: insufficient margin",
    "vault: insufficient balance",
    "vault: account in auction",
    "clearing: account in auction",
    # the adversary's: an operator's fill priced off the mark (issue 11, finding 11), a trade
    # of the short-dated option after its expiry, an action needing the ETH vol feed while it
    # is stale or above the router's bound (5.0), and a stranger's first deposit of a
    # collateral into someone else's account (finding 10)
    "markets: operator price out of band",
    "markets: instrument expired",
    "oracle: stale price",
    "oracle: price out of bounds",
    "vault: new collateral from a stranger",
)
# Finding 10 (issue 11, "a valuation reads only the feeds its positions need", merged into
# main at 2392b0b): an account holding no option is valued, started and bid on while the ETH
# vol feed is stale or out of bounds. `vol_outage` checks that where the deployed engine has
# the rule, probed once at setup (it values the passive perp holder with the vol feed above
# its bound); with REQUIRE_FINDING_10 a probe that fails is itself a failure, so a regression
# cannot switch the check off.
REQUIRE_FINDING_10 = True
# the oracle's heartbeat (3,600 s) plus its grace (300 s): a round older is stale
STALE_AFTER = 3_901


def _signed128(word: int) -> int:
    """The int128 in the low 128 bits of ``word`` (two's complement)."""
    word &= 2**128 - 1
    return word - 2**128 if word >= 2**127 else word


class Protocol(RuleBasedStateMachine):
    cm = None
    admin = None
    maker = None
    traders = ()
    bidder = None
    chain = None
    options = ()
    stats = None
    first_violation = None  # steps executed when invariant (b) first failed (before shrinking)

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
        self.settled_price = 0  # the short-dated option's stored settlement price (WAD)
        self.block0 = self.chain.blocks.head.number
        self.surplus0 = self._cash_identity()[0]
        # (a): what passive accounts and the fund may lose (see `_adversary_gains_nothing`)
        index = self.view["index"]
        self.passive = {a: (self.view["cash"][account_id(a.address, 0)], index) for a in (self.saver, self.holder)}
        self.fund_prev, self.fund_index = self.view["fund"], index
        self.fund_out = 0  # WAD the fund paid out (Covered) during the step, each checked
        self.tips = {}  # (account, started_at) -> WAD of tips the fund paid the auction's starter
        self.ema_prev = self._ema()
        self.ema_allowed = 0  # how far the perp fills of the step may move the premium EMA
        self.dusted = False  # a WBTC dust deposit happened (the conservation bound counts it)

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
        actors = (self.maker, *self.traders, self.bidder, self.attacker, self.accomplice, self.saver, self.holder)
        ids = [account_id(a.address, 0) for a in actors]
        ids.append(account_id(self.cm.fund.address, 0))
        ids.append(account_id(self.admin.address, 0))
        ids.append(account_id(self.bidder.address, 1))  # the keeper's vol-free bidding account
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
        # as stored: option pairs and packed perp lines, decoded as the model decodes them
        positions = [
            (model.option_words(options), [astuple(model.perp_position(*line)) for line in perps])
            for options, perps, _futures, _cap, _interval in (
                abi_decode([POSITIONS_ABI], bytes(r))[0] for r in raws[3 + n : 3 + 2 * n]
            )
        ]
        fund_held, index = (abi_decode(["uint256"], bytes(r))[0] for r in raws[3 + 2 * n :])
        # what the adversary's invariants read, from the same batch
        ids = self._accounts()
        self.view = {
            "cash": dict(zip(ids, cash, strict=True)),
            "perps": dict(zip(ids, (p[1] for p in positions), strict=True)),
            "fund": fund_held * Protocol.usdc_scale + cash[ids.index(Protocol.fund_id)],
            "index": index,
        }
        assert held * Protocol.usdc_scale == total, f"vault holds {held} USDC units, total {total} WAD"
        assert positive >= sum(max(c, 0) for c in cash), "positive_cash below the positive balances"
        claims = sum(cash)
        sizes: dict[int, int] = {}
        for options, perps in positions:
            for underlying, size, cost, funding, cumulative, _ema, _updated in perps:
                sizes[underlying] = sizes.get(underlying, 0) + size
                # the funding it would settle now (floored, as `_settle_funding`), less its cost
                claims += (-size * (cumulative - funding)) // WAD - cost
            for word in options:
                instrument = word & (2**32 - 1)
                # an option with a stored settlement price: its payoff is owed (floored, as
                # `settle`); the long options of this test expire after any run
                if instrument == Protocol.short_dated:
                    if self.settled_price:
                        size = _signed128(word >> 128)
                        claims += (size * self._intrinsic(self.settled_price)) // WAD
                else:
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
                if not (result.status == "rejected" and result.reason in REFUSALS):
                    # printed too: when Hypothesis cannot replay a failing run against the
                    # chain (FlakyStrategyDefinition), this line is all that tells why
                    print(f"\nunexpected outcome: {result}", flush=True)
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
        return self._fill(self.maker, taker, instrument, to_wad(size), to_wad(price))

    def _fill(self, maker, taker, instrument: int, size: int, price: int, signer=None, sender=None) -> bool:
        """``maker``'s order (signed by ``signer``, default the maker) of ``size`` WAD units
        (> 0: the maker buys) at ``price`` (WAD) is filled for ``taker`` by ``sender``
        (default the taker). After a fill that went through, invariant (b): neither account
        is left at negative equity, valued in the fill's own block."""
        exchange = self.cm.exchange
        signer = signer or maker
        sender = sender or taker
        order = exchange.make_order(maker, instrument, size > 0, abs(size), max(price, 1))
        signature = exchange.sign(signer, order)
        args = (order.as_tuple(), signer.address, signature, abs(size), 0, taker.address)
        results = Protocol.senders[sender.address].execute([Call(exchange.contract.fill, args, key="fill")])
        [result] = results
        if result.status != "sent":
            assert result.status == "rejected" and result.reason in REFUSALS, result
            Protocol.stats["refused"] += 1
            return False
        Protocol.stats["sent"] += 1
        if instrument == self.eth_perp:
            # finding 3: a fill of notional n moves the premium EMA by at most 2n/N (+1 wei)
            n = min(abs(size) * self.spot, Protocol.funding_notional)
            self.ema_allowed += 2 * WAD * n // Protocol.funding_notional + 1
        ids = [account_id(maker.address, 0), account_id(taker.address, 0)]
        for who, m in zip((maker, taker), self.cm.engine.contract.margins(ids, block_id=result.block), strict=True):
            if m.equity < 0 and Protocol.first_violation is None:  # before shrinking: how soon
                Protocol.first_violation = Protocol.stats["steps"] + self.steps
            assert m.equity >= 0, (
                f"a fill left {who.address} at equity {m.equity} (price {price}, size {size}; "
                f"first seen after {Protocol.first_violation} steps)"
            )
        return True

    def _intrinsic(self, price: int) -> int:
        """The short-dated option's payoff per unit at ``price`` (WAD)."""
        strike = Protocol.short_strike
        return max(price - strike, 0) if Protocol.short_is_call else max(strike - price, 0)

    def _off_market(self, instrument: int, kind: int) -> int:
        """A colluders' price (WAD): near 0, the option's cap (a call is worth at most spot,
        a put its strike), far above it, or far from the mark either way."""
        spot = self.spot * WAD
        if instrument == self.eth_perp:
            return (1, spot // 100, spot // 2, spot * 9 // 10, spot * 11 // 10, spot * 2, spot * 10)[kind]
        cap = spot if instrument != Protocol.short_dated or Protocol.short_is_call else Protocol.short_strike
        return (1, 10**12, cap // 1000, cap // 10, cap, cap * 3, cap * 20)[kind]

    def _bid_out(self, account: int, subaccount: int = 0):
        """A keeper bids for all of ``account`` (from its ``subaccount``) until the auction
        ends; checks what the fund pays (invariant (a)): a loss payout at most the account's
        deficit plus its insolvent ramp (<= MM), and at most one keeper tip per auction."""
        cm, engine, liquidator = self.cm, self.cm.engine.contract, self.cm.liquidator.contract
        fund = cm.fund.contract
        for _ in range(20):
            if not liquidator.in_auction(account):
                return
            auction = (account, liquidator.auction(account)[1])  # an account may be auctioned again
            m = engine.margin(account)
            if m.equity >= -(-m.maintenance * 115 // 100):  # the buffer, rounded up as on chain
                cm.liquidator.terminate(self.bidder, account)
                return
            if m.equity <= 0 and liquidator.auction(account)[2] == 0:
                cm.liquidator.mark_insolvent(self.bidder, account)
                m = engine.margin(account)
            receipt = liquidator.bid(account, WAD, 2**200, subaccount, sender=self.bidder)
            payout = 0
            for event in receipt.decode_logs(liquidator.LossCovered):
                assert event.loss == event.fund_payout + event.socialized
                # a second of funding may pass between the view and the bid: 1e15 wei of slack
                assert event.loss <= max(-m.equity, 0) + m.maintenance + 10**15, (event, m)
                self.losses += event.socialized
                payout += event.fund_payout
            paid = sum(e.paid for e in receipt.decode_logs(fund.Covered)) * Protocol.usdc_scale
            assert paid >= payout
            self.tips[auction] = self.tips.get(auction, 0) + paid - payout
            assert self.tips[auction] <= Protocol.keeper_tip, f"the fund tipped {self.tips[auction]} for one auction"
            self.fund_out += paid
            Protocol.stats["bids"] += 1

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
        self._trade(self.traders[trader], self.cm.markets.perp("ETH"), size, price)
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), which=st.integers(0, 2), size=st.integers(-10, 10).filter(bool))
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
            self._trade(who, self.cm.markets.perp("ETH"), -size if long else size, self.spot)
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
        """The keeper: settle the expired option, start every due auction, then buy each
        until it ends."""
        self._settle_expired()
        cm, engine, liquidator = self.cm, self.cm.engine.contract, self.cm.liquidator.contract
        ids = self._accounts()
        for account, m in zip(ids, engine.margins(ids), strict=True):
            if m.equity < m.maintenance and not liquidator.in_auction(account):
                cm.liquidator.start(self.bidder, account)
                Protocol.stats["starts"] += 1
        for account in ids:
            self._bid_out(account)
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

    # ------------------------------------------------------------------ the adversary
    # `attacker` and `accomplice` collude; `attacker` is also the operator trader 0 named.

    @rule(
        which=st.integers(0, 3),
        kind=st.integers(0, 6),
        units=st.sampled_from([1, 10**12, WAD // 10, WAD, 5 * WAD, 40 * WAD]),
        buy=st.booleans(),
        attacker_makes=st.booleans(),
    )
    def collude(self, which, kind, units, buy, attacker_makes):
        """The colluders trade the perp or an option with each other at an off-market
        price, either way round."""
        instrument = (self.eth_perp, *self.options)[which]
        maker, taker = (self.attacker, self.accomplice) if attacker_makes else (self.accomplice, self.attacker)
        if self._fill(maker, taker, instrument, units if buy else -units, self._off_market(instrument, kind)):
            if instrument != self.eth_perp:
                self.option_units += 2 * -(-units // WAD)
        self.steps += 1
        self._changed()

    @rule(long=st.booleans(), use=st.integers(50, 100))
    def attacker_levers(self, long, use):
        """The attacker opens the largest perp position its initial margin allows (against
        the maker, at the index): the account a price move then pushes under maintenance."""
        m = self.cm.engine.contract.margin(account_id(self.attacker.address, 0))
        size = int((m.equity - m.initial) * use // 100 // (self.spot * 21 * 10**16))
        if size > 0:
            self._trade(self.attacker, self.eth_perp, -size if long else size, self.spot)
        self.steps += 1
        self._changed()

    @rule(share=st.integers(1, 100))
    def attacker_dumps(self, share):
        """The attacker closes its whole perp to the accomplice at a price that hands over
        ``share`` percent of its maintenance margin beyond the index (issue 11, finding 1:
        below MM, closing at E' >= E - MM left the fund a deficit). Only E' >= 0 and
        E' · MM >= E · MM' let it through now."""
        attacker = account_id(self.attacker.address, 0)
        size = self.cm.clearing.contract.perp_position(attacker, self.eth).size
        if size != 0 and not self.cm.liquidator.contract.in_auction(attacker):
            m = self.cm.engine.contract.margin(attacker)
            give = m.maintenance * share // 100 * WAD // abs(size)
            price = self.spot * WAD - give if size > 0 else self.spot * WAD + give
            # the accomplice's order takes the other side: it buys what the attacker sells
            self._fill(self.accomplice, self.attacker, self.eth_perp, size, max(price, 1))
        self.steps += 1
        self._changed()

    @rule(long=st.booleans(), drop=st.integers(3, 30), share=st.integers(1, 100))
    def attacker_squeezed(self, long, drop, share):
        """Finding 1 played out in one step: the attacker levers up to its initial margin, the
        oracle moves ``drop`` percent against it (under maintenance, maybe insolvent), and
        before any keeper it dumps its book to the accomplice, handing over ``share`` percent
        of its MM."""
        self.attacker_levers(long, 100)
        self.move_spot(-drop if long else drop)
        self.attacker_dumps(share)
        self.steps -= 2

    @rule(units=st.integers(1, 10**9), kind=st.integers(0, 6), buy=st.booleans())
    def dust_perp(self, units, kind, buy):
        """A perp fill of a few wei (at most 1e-9 units) at an absurd price: the premium EMA,
        and funding with it, may move by at most 2 · notional / funding_notional (finding 3)."""
        price = self._off_market(self.eth_perp, kind)
        self._fill(self.accomplice, self.attacker, self.eth_perp, units if buy else -units, price)
        self.steps += 1
        self._changed()

    @rule(
        which=st.integers(0, 3),
        signs=st.booleans(),
        kind=st.integers(0, 8),
        units=st.sampled_from([WAD // 10, WAD, 10 * WAD]),
        buy=st.booleans(),
    )
    def operator_fills(self, which, signs, kind, units, buy):
        """The attacker, trader 0's operator, trades trader 0's account against the
        accomplice: it signs trader 0's order (the accomplice fills it) or fills the
        accomplice's order for trader 0. Off-market prices are refused (finding 11); a fill
        that goes through is within the band of the mark."""
        instrument = (self.eth_perp, *self.options)[which]
        victim = self.traders[0]
        if kind < 7:
            price = self._off_market(instrument, kind)
        else:  # in band: the index, or an option's current mark (its array's lane 0)
            price = self.spot * WAD if instrument == self.eth_perp else self._mark(instrument)
        size = units if buy else -units
        if signs:
            ok = self._fill(victim, self.accomplice, instrument, size, price, signer=self.attacker)
        else:
            ok = self._fill(self.accomplice, victim, instrument, size, price, sender=self.attacker)
        if ok:
            Protocol.stats["operator fills"] += 1
            if instrument == self.eth_perp:
                assert abs(price - self.spot * WAD) <= self.spot * WAD // 100, price
            else:
                mark = self._mark(instrument)
                self.option_units += 2 * -(-units // WAD)
                assert abs(price - mark) <= max(mark, self.spot * WAD // 100) // 10 + 1, (price, mark)
        self.steps += 1
        self._changed()

    def _mark(self, instrument: int) -> int:
        """The engine's current value per unit of an option (WAD): its array's lane 0."""
        engine = self.cm.engine.contract
        array = engine.risk_array(instrument)
        return (array[2][0] << array[1]) * Protocol.quantum if array[2] else 0

    @rule(amount=st.integers(1, 5_000))
    def cure(self, amount):
        """The accomplice deposits USDC into an account whose auction is running (a cure:
        once the buffer holds, nobody may buy it, `terminate` ends it)."""
        if self.live:
            account = sorted(self.live)[amount % len(self.live)]
            owner = to_checksum_address(f"{account >> 96:#042x}")
            usdc = self.cm.token("USDC")
            call = Call(self.cm.vault.contract.deposit, (usdc.address, usdc.units(amount), 0, owner), key="cure")
            assert self._send(self.accomplice, call)
            self._gift(owner, amount * 10**18)
        self.steps += 1
        self._changed()

    @rule(whom=st.integers(0, 3), wbtc=st.booleans())
    def dust_deposit(self, whom, wbtc):
        """The accomplice drops one unit of USDC (1e-6 USD) or WBTC (1 satoshi) into another
        account: a passive one, trader 0 or the attacker. WBTC adds the BTC feeds to the
        account's valuation, so after finding 10 only its owner or operators may add it."""
        who = (self.saver, self.holder, self.traders[0], self.attacker)[whom]
        token = self.cm.token("WBTC" if wbtc else "USDC")
        call = Call(self.cm.vault.contract.deposit, (token.address, 1, 0, who.address), key="dust")
        if self._send(self.accomplice, call):
            if wbtc:
                self.dusted = True
            else:
                self._gift(who.address, Protocol.usdc_scale)
        self.steps += 1
        self._changed()

    def _gift(self, owner: str, wad: int):
        """A deposit credited a passive account's cash: it is rewritten at today's index."""
        for who, (cash, index) in self.passive.items():
            if who.address == owner:
                now = self.cm.vault.contract.cash_index()
                self.passive[who] = (cash * now // index + wad, now)

    @rule(before=st.integers(-600, 600))
    def near_expiry(self, before):
        """Time runs to ``before`` seconds ahead of the short-dated option's expiry (past it
        if negative), and the colluders try to trade it and withdraw around it."""
        target = Protocol.expiries[Protocol.short_dated] - before
        if target > self.chain.pending_timestamp:
            self.chain.mine(timestamp=target)
            self._fresh_feeds()
        price = self._off_market(Protocol.short_dated, before % 7)
        if self._fill(self.accomplice, self.attacker, Protocol.short_dated, WAD, price):
            self.option_units += 2
        usdc = self.cm.token("USDC")
        self._send(
            self.attacker,
            Call(self.cm.vault.contract.withdraw, (usdc.address, usdc.units(1000), 0, self.attacker.address), key="w"),
        )
        self.steps += 1
        self._changed()

    @rule(_=st.integers(0, 3))
    def keeper_settles(self, _):
        """A keeper settles every account holding the short-dated option once it expired,
        at the first ETH/USD round at or after expiry (the sweep does it too)."""
        self._settle_expired()
        self.steps += 1
        self._changed()

    def _settle_expired(self):
        instrument = Protocol.short_dated
        expiry = Protocol.expiries[instrument]
        if not self.settled_price and self.chain.blocks.head.timestamp >= expiry:
            feed = Protocol.feeds["ETH/USD"]
            if feed.latestRoundData()[3] < expiry:
                self._fresh_feeds()
            hint = feed.latest_round()
            while hint > 2 and feed.getRoundData(hint - 1)[3] >= expiry:
                hint -= 1
            clearing = self.cm.clearing.contract
            for account in self._accounts():
                if clearing.option_size(account, instrument) != 0:
                    clearing.settle(account, instrument, hint, sender=self.bidder)
                    Protocol.stats["settled"] += 1
            self.settled_price = self.cm.markets.contract.instrument(instrument).settlement_price

    @rule(stale=st.booleans(), crash=st.integers(5, 40), trader=st.integers(0, 3))
    def vol_outage(self, stale, crash, trader):
        """A crash while the ETH vol feed is stale (no round for longer than its heartbeat
        and grace) or above the router's bound (6.0 > 5.0). Users are refused with the
        oracle's reason where they need vol; then a keeper liquidates every account that
        needs no vol, from its option-free subaccount 1: that must go through (finding
        10; the probe at setup says whether the engine has it);
        accounts holding options wait for a fresh vol round. Then the feed recovers."""
        self.spot = max(500, self.spot * (100 - crash) // 100)
        if stale:
            self.chain.mine(timestamp=self.chain.pending_timestamp + STALE_AFTER)
            self._push(**{"ETH/USD": self.spot, "BTC/USD": 60000, "BTC/IV": "0.5", "USDC/USD": 1})
        else:
            self._push(**{"ETH/USD": self.spot, "ETH/IV": "6.0"})
        who = self.traders[trader]
        usdc = self.cm.token("USDC")
        self._send(who, Call(self.cm.vault.contract.withdraw, (usdc.address, usdc.units(100), 0, who.address), key="w"))
        self._trade(who, self.options[0], 1, 150)
        if Protocol.vol_free:
            cm, engine, liquidator = self.cm, self.cm.engine.contract, self.cm.liquidator.contract
            clearing = cm.clearing.contract
            for account in self._accounts():
                if account == account_id(self.bidder.address, 1) or clearing.option_ids(account):
                    continue
                m = engine.margin(account)  # must not revert: it reads no vol
                if m.equity < m.maintenance:
                    if not liquidator.in_auction(account):
                        cm.liquidator.start(self.bidder, account)
                        Protocol.stats["starts"] += 1
                    self._bid_out(account, 1)
                    Protocol.stats["outage liquidations"] += 1
                    self.live.discard(account)
        self._fresh_feeds()
        self.steps += 1
        self._changed()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def conservation_of_cash(self):
        """The cash identity of SPECIFICATION.md (Vault: conservation), to the wei: the
        surplus is never negative (checked in `_cash_identity`) and grows by at most
        DUST_PER_BLOCK wei per block since the run began."""
        surplus, head = self._cash_identity()
        self._adversary_gains_nothing()
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
        if self.dusted:  # WBTC dust is equity the vault's USDC does not back: at 60,000 USD
            web3 = self.chain.provider.web3
            with web3.batch_requests() as batch:
                for to, data in Protocol.wbtc_reads:
                    batch.add(web3.eth.call({"to": to, "data": data}))
                equity -= sum(abi_decode(["uint256"], bytes(r))[0] for r in batch.execute()) * 60_000
        slack = held - equity
        assert slack >= 0, f"claims exceed the vault by {-slack} wei"
        expired = Protocol.expiries[Protocol.short_dated]
        if not self.settled_price and self.chain.blocks.head.timestamp >= expired:
            # finding 2: expired and unsettled, a long counts for nothing and a short owes its
            # worst intrinsic value over the grid (+30% spot at most): not zero-sum until settled
            units = cm.markets.contract.instrument(Protocol.short_dated).open_interest
            quantization += units * self._intrinsic(self.spot * WAD * 13 // 10) // WAD + units
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

    def _ema(self) -> int:
        """The ETH perp's premium EMA, from the passive holder's perp line of the last batch."""
        [line] = self.view["perps"][account_id(self.holder.address, 0)]
        return line[5]

    def _adversary_gains_nothing(self):
        """Invariant (a), from the batch `_cash_identity` just read (run by
        `conservation_of_cash`, after every step).

        - Passive accounts, exactly: their cash is what they deposited (plus what others
          gave them), lowered only by socialized losses and then by exactly their pro-rata
          share: cash ``c`` written at index ``i`` is worth ``floor(c · index / i)``. The
          perp holder's position (size, cost, funding index) is untouched (nobody can trade,
          settle or liquidate it), so its equity moves only with the oracle's spot and the
          funding index.
        - Funding at honest rates: over a step the premium EMA (the funding rate before its
          clamp) moved by at most ``2 · n / funding_notional`` (+1 wei) per fill of notional
          ``n`` at the index (finding 3), so dust fills barely move it.
        - The insurance fund: its assets (tokens plus vault cash) fall over a step by no more
          than what it paid through `cover` (each payout checked in `_bid_out` against the
          account's deficit plus its insolvent ramp, tips at most one `keeper_tip` per
          auction), plus its cash's pro-rata share of a socialized loss.
        """
        view, index = self.view, self.view["index"]
        for who, (cash, written) in self.passive.items():
            assert view["cash"][account_id(who.address, 0)] == cash * index // written, who
        [line] = view["perps"][account_id(self.holder.address, 0)]
        assert tuple(line[1:4]) == Protocol.holder_position, line
        ema = line[5]
        assert abs(ema - self.ema_prev) <= self.ema_allowed, (ema, self.ema_prev, self.ema_allowed)
        self.ema_prev, self.ema_allowed = ema, 0
        shared = 0
        if index != self.fund_index:
            cash = view["cash"][Protocol.fund_id]
            shared = -(-max(cash, 0) * (self.fund_index - index) // index) + 2
        assets = view["fund"]
        assert assets >= self.fund_prev - self.fund_out - shared, (assets, self.fund_prev, self.fund_out, shared)
        self.fund_prev, self.fund_out, self.fund_index = assets, 0, index

    @invariant()
    def socialized_loss_is_the_sum_of_losses(self):
        assert self.cm.vault.contract.socialized_loss() == self.losses


@pytest.mark.slow
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
    cm.token("USDC").mint(admin, keeper, "1000000")
    cm.vault.deposit(keeper, "USDC", "1000000", 1)  # bids during a vol outage: holds no option
    insure("100000")
    # the adversary: two colluding accounts; trader 0 names the attacker its operator
    attacker, accomplice, saver, holder = (accounts.generate_test_account() for _ in range(4))
    for who in (attacker, accomplice, saver, holder):
        chain.set_balance(who.address, 10**22)
        cm.token("USDC").mint(admin, who, "100000000")
        cm.vault.approve(who, "USDC")
    cm.vault.deposit(attacker, "USDC", "5000")
    cm.vault.deposit(accomplice, "USDC", "50000")
    cm.token("WBTC").mint(admin, accomplice, "1")
    cm.vault.approve(accomplice, "WBTC")
    cm.vault.set_operator(traders[0], attacker)
    # the passive accounts: USDC only, and a 1 ETH perp long bought from the maker at setup
    cm.vault.deposit(saver, "USDC", "20000")
    cm.vault.deposit(holder, "USDC", "100000")
    cm.trade(maker, holder, cm.markets.perp("ETH"), -1, 3000)
    Protocol.cm, Protocol.admin, Protocol.maker = cm, admin, maker
    Protocol.traders, Protocol.bidder, Protocol.chain = traders, keeper, chain
    Protocol.attacker, Protocol.accomplice, Protocol.saver, Protocol.holder = attacker, accomplice, saver, holder
    # the third option expires two hours after setup: runs trade and withdraw around it
    Protocol.options = (
        list_option("ETH", True, "3000", 30),
        list_option("ETH", False, "2800", 30),
        list_option("ETH", True, "3000", 2 / 24),
    )
    Protocol.short_dated, Protocol.short_strike, Protocol.short_is_call = Protocol.options[2], 3000 * WAD, True
    Protocol.eth, Protocol.eth_perp = cm.manifest.underlyings["ETH"], cm.markets.perp("ETH")
    Protocol.holder_position = tuple(cm.clearing.contract.perp_position(account_id(holder.address, 0), Protocol.eth))
    Protocol.fund_id = account_id(cm.fund.address, 0)
    Protocol.funding_notional = cm.markets.contract.funding_notional()
    Protocol.keeper_tip = cm.liquidator.contract.keeper_tip()
    Protocol.quantum = cm.engine.contract.underlyings(Protocol.eth).quantum
    Protocol.stats = {
        "steps": 0,
        "bids": 0,
        "starts": 0,
        "sent": 0,
        "refused": 0,
        "surplus": 0,
        "operator fills": 0,
        "settled": 0,
        "outage liquidations": 0,
    }
    Protocol.senders = {who.address: TxSender(who) for who in (*traders, admin, attacker, accomplice)}
    Protocol.feeds = {
        name: cm.oracle.aggregator(name) for name in ("ETH/USD", "ETH/IV", "BTC/USD", "BTC/IV", "USDC/USD")
    }
    Protocol.feed_decimals = {name: feed.decimals() for name, feed in Protocol.feeds.items()}
    usdc = cm.token("USDC")
    Protocol.usdc_scale = 10 ** (18 - usdc.contract.decimals())
    Protocol.expiries = {i: cm.markets.contract.instrument(i).expiry for i in Protocol.options}
    # the probe of finding 10: is a perp-only account valued with ETH's vol above its bound?
    probe = chain.snapshot()
    Protocol.feeds["ETH/IV"].push(to_units("6.0", Protocol.feed_decimals["ETH/IV"]), sender=admin)
    try:
        cm.engine.contract.margin(account_id(holder.address, 0))
        Protocol.vol_free = True
    except Exception:  # noqa: BLE001 - the engine reads the vol feed: "oracle: price out of bounds"
        Protocol.vol_free = False
    chain.restore(probe)
    assert Protocol.vol_free or not REQUIRE_FINDING_10, "finding 10 regressed: a perp-only account needs vol"
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
        (usdc.contract.balanceOf, (cm.fund.address,)),
        (vault.cash_index, ()),
    ]
    balance_of = vault.balance_of
    Protocol.wbtc_reads = [
        (vault.address, "0x" + bytes(balance_of.encode_input(*owner_sub, cm.token("WBTC").address)).hex())
        for owner_sub in ((to_checksum_address(f"{a >> 96:#042x}"), a & (2**96 - 1)) for a in ids)
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
    print(f"liquidation during a vol outage checked: {Protocol.vol_free} (needs finding 10)")
    # hypothesis ends some runs early (about 13% of the steps asked for): at least three
    # quarters of what was asked for are executed
    assert steps >= min(2000, STEPS * 3 // 4)
    if STEPS >= 1000:  # liquidation was exercised (a few hundred steps may see none)
        assert Protocol.stats["starts"] > 0 and Protocol.stats["bids"] > 0
