"""The whole protocol under random sequences (Hypothesis stateful, on anvil).

Four traders and a deep-pocketed market maker deposit, withdraw and trade, through signed
orders, on both underlyings of the local deployment (config/local.yaml): the ETH and BTC
perps, three ETH options (one expires two hours after setup) and a BTC call, and three dated
futures (issue 13): an ETH future that expires 90 minutes after setup, a long-dated ETH one
and a long-dated BTC one. ETH's and BTC's spots and implied vols move, time jumps, and a
keeper sweeps (settles the expired option and future, starts every due auction and bids
until nothing is liquidatable).

The adversary (issue 11, "the class, not just the instances"): `attacker` and `accomplice`
collude, and trader 0 has named the attacker its operator.
  - `collude`: they trade any instrument (a perp, an option or a future, ETH or BTC) with
    each other at off-market prices (1 wei, near 0, the option's cap, far above it, far from
    the index), either side buying;
  - `attacker_levers`, `attacker_dumps`, `attacker_squeezed`: the attacker levers up in a
    perp or a future, a move of its underlying takes it under maintenance, and it closes
    that position to the accomplice at a price that hands over up to its whole MM (finding 1);
  - `dust_perp`: fills of a perp or a future of at most 1e-9 units at absurd prices
    (finding 3);
  - `operator_fills`: the attacker signs trader 0's orders or fills for trader 0 against the
    accomplice, off-market (refused: `clearing: operator price out of band`, finding 11) or
    at the mark;
  - `near_expiry`, `keeper_settles`: trading and withdrawing just before and after the
    short-dated option's or future's expiry, before it is settled (finding 2);
  - `cure`: a deposit into an account whose auction runs; `dust_deposit`: one unit of USDC or
    WBTC into a passive account, trader 0 or the attacker (finding 10: a stranger's new
    collateral is refused);
  - `vol_outage`: a crash while the ETH vol feed is stale or above the router's bound (5.0):
    users who need vol are refused with the oracle's reason; accounts that need no vol are
    liquidated through it (finding 10, see REQUIRE_FINDING_10);
  - `leave_before_the_bid`, `keeper_marks` (issue 15, the position dodge): the attacker
    levers up, a crash makes it insolvent, a keeper starts (or marks) its auction, and the
    maker leaves the side the deleveraging will charge before any bid, paying the exit
    charge; later fills of any rule pay it too while the auction stays open.
The insurance fund holds 3,000 USDC (``CM_STATEFUL_FUND``): too little for the larger
deficits, so the waterfall's later tiers (exit charges, deleveraging, socialization) run
besides the fund's payouts.
Passive accounts: `saver` holds only USDC; `holder` bought 1 ETH perp and 0.05 BTC perp from
the maker at setup and never trades again.

After every step:
  - conservation of cash, to the wei (SPECIFICATION.md, Vault): the vault's USDC in WAD is
    exactly `total`, and `total` equals the sum of every account's cash, plus each open perp's
    unsettled funding less its cost, less each open future's cost (realized into cash when
    flat or settled), plus each settled option's or future's payoff still owed, plus a
    rounding surplus that is never negative and grows by at most DUST_PER_BLOCK wei per
    block; each perp's and each future's sizes sum to zero, `positive_cash` covers every
    positive balance, the vault's `exit_charges` cover what the markets collected and have
    not spent, and no long-dated instrument expires within a run;
  - the engine's valuation: the vault's USDC (plus the WBTC dust at its price) covers the sum
    of every account's equity and the cash no account holds (the exit pool and the exit
    charges; perps, options and futures are zero-sum), and exceeds it by no
    more than the quantization of the option values (a lane unit per option unit opened, at
    the highest spot of the run), a few wei per step, and, for an expired instrument not yet
    settled, the grid's spread (finding 2: an option's short at its worst intrinsic value, a
    future's long at the least and its short at the greatest shocked spot);
  - after a sweep no account is below maintenance margin;
  - a live auction's price never rises: its multiplier d(t) only falls and, insolvent, its
    payment ramp only grows;
  - every loss is paid exactly: fund payout + socialized = loss, and the vault's
    `socialized_loss` is the sum of what was socialized;
  - (a) nobody who did not trade loses, beyond oracle moves and honest funding
    (`_adversary_gains_nothing`): the passive accounts' cash is exactly what was deposited,
    lowered only by a socialized loss and then by exactly its pro-rata share (the cash
    index); the holder's perp positions (size, cost, funding index) are untouched; each
    perp's premium EMA moves over a step by at most 2n/funding_notional per fill of notional
    n; the
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
(``make stateful-long``; 21,084 steps in 63 minutes with the adversary, before BTC and the
futures; figures in the README). With them a step sends about 15% more transactions, and the
invariants read through one raw JSON-RPC batch (`_batch`) instead of web3's, so the default
run takes about what it took before them (246 s for 1,736 steps executed, against 270 and
286 s for 1,710 and 1,698 before, on a shared 2-core machine).
"""

import os
import time
from dataclasses import astuple
from decimal import Decimal
from typing import NamedTuple

import ape
import pytest
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crossmargin.clients.sender import Call, TxSender
from crossmargin.model import margin as model
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
# the output of `Markets.instrument`: kind, underlying, strike, expiry, oi_cap, open_interest,
# settlement_price
INSTRUMENT_ABI = "(uint256,uint256,uint256,uint256,uint256,uint256,uint256)"
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
    # a fill growing a position past its underlying's notional cap (issue 14; 100M USD in the
    # local config, out of this test's reach, but a refusal if ever reached)
    "markets: position notional cap",
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
# the markets contract's kind of a call option
CALL = 2


# the least spot each underlying's moves leave (USD): far above the feeds' lower bounds
SPOT_FLOOR = {"ETH": 500, "BTC": 10_000}
# a risk array's lanes have 19 bits (`RiskModel`): an option's lane unit is its quantum
# shifted until the array's top value fits them
LANE_BITS = 19


def _signed128(word: int) -> int:
    """The int128 in the low 128 bits of ``word`` (two's complement)."""
    word &= 2**128 - 1
    return word - 2**128 if word >= 2**127 else word


class Instrument(NamedTuple):
    """What the machine knows of a listed instrument."""

    id: int
    kind: str  # "perp", "option" or "future"
    name: str  # the underlying's name, "ETH" or "BTC"
    underlying: int  # the underlying's engine id
    expiry: int = 0  # unix s (0 for a perp)
    strike: int = 0  # WAD USD (options)
    is_call: bool = False


class Protocol(RuleBasedStateMachine):
    cm = None
    admin = None
    maker = None
    traders = ()
    bidder = None
    chain = None
    instruments = {}  # id -> Instrument, every instrument the machine trades
    options = ()  # the ETH options (the third short-dated), then the BTC option
    futures = ()  # the short-dated ETH future, a long-dated ETH one, a long-dated BTC one
    tradable = ()  # every instrument, for the adversary's picks
    linear = ()  # the perps and the futures
    expiring = ()  # the instruments that expire during a run: an ETH option and an ETH future
    stats = None
    first_violation = None  # steps executed when invariant (b) first failed (before shrinking)

    @initialize()
    def start(self):
        self.snapshot = self.chain.snapshot()
        self.steps = 0
        self.spots = {"ETH": 3000, "BTC": 60000}  # the spot feeds' answers (USD)
        self.top_spots = dict(self.spots)  # the highest each spot feed answered in the run
        self.vols = {"ETH": "0.6", "BTC": "0.5"}
        self.swept = False
        self.quotes = {}  # account in auction -> (started_at, d, insolvent ramp) last seen
        self.losses = 0  # socialized, from LossCovered events
        self.loss_index = {}  # (instrument, longs) -> per-unit charge, from Deleveraged events
        # option units opened (both sides) per underlying, for the quantization bound
        self.option_units = {"ETH": 0, "BTC": 0}
        self.live = set()  # accounts whose auction a keeper started and nobody finished yet
        # expiring instrument -> its stored settlement price (WAD) once the keeper settled every
        # holder (0 if nobody held it at expiry: nobody can hold it after)
        self.settled = {}
        self.block0 = self.chain.blocks.head.number
        self.exit_charges = 0  # the vault's exit charges when the cash identity last read them
        self.surplus0 = self._cash_identity()[0]
        # (a): what passive accounts and the fund may lose (see `_adversary_gains_nothing`)
        index = self.view["index"]
        self.passive = {a: (self.view["cash"][account_id(a.address, 0)], index) for a in (self.saver, self.holder)}
        self.fund_prev, self.fund_index = self.view["fund"], index
        self.fund_out = 0  # WAD the fund paid out (Covered) during the step, each checked
        self.tips = {}  # (account, started_at) -> WAD of tips the fund paid the auction's starter
        self.ema_prev = self._ema()
        # how far the perp fills of the step may move each underlying's premium EMA
        self.ema_allowed = dict.fromkeys(self.ema_prev, 0)
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

    def _batch(self, reads) -> tuple[list[bytes], dict]:
        """Runs ``reads`` ((to, data) pairs) as calls at the latest block and reads that
        block's number and timestamp, in one raw JSON-RPC batch (web3's batch formats every
        request, about a millisecond each, which was most of an invariant's time)."""
        requests = [("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in reads]
        requests.append(("eth_getBlockByNumber", ["latest", False]))
        responses = self.chain.provider.web3.provider.make_batch_request(requests)
        assert isinstance(responses, list) and all("result" in r for r in responses), responses
        *results, block = (r["result"] for r in responses)
        head = {"number": int(block["number"], 16), "timestamp": int(block["timestamp"], 16)}
        return [bytes.fromhex(r.removeprefix("0x")) for r in results], head

    def _cash_identity(self) -> tuple[int, int]:
        """Reads, in one batch of calls, everything the cash identity needs (SPECIFICATION.md,
        Vault: conservation) and checks its exact parts; returns (rounding surplus R, head)."""
        raws, head = self._batch(Protocol.cash_reads)
        n = len(self._accounts())
        held, asset, positive = raws[:3]
        held = abi_decode(["uint256"], held)[0]
        total = abi_decode(["(uint256,uint256,uint256,uint256,bytes32,bytes32,uint256,uint256)"], asset)[0][3]
        positive = abi_decode(["uint256"], positive)[0]
        cash = [abi_decode(["int256"], r)[0] for r in raws[3 : 3 + n]]
        # as stored: option pairs, packed perp lines and future words, decoded as the model does
        positions = [
            (
                model.option_words(options),
                [astuple(model.perp_position(*line)) for line in perps],
                [model.future_line(word) for word in futures],
            )
            for options, perps, futures, _cap, _interval in (
                abi_decode([POSITIONS_ABI], r)[0] for r in raws[3 + n : 3 + 2 * n]
            )
        ]
        fund_held, index, pool, charges = (abi_decode(["uint256"], r)[0] for r in raws[3 + 2 * n : 7 + 2 * n])
        m = len(Protocol.tradable)
        interest = {
            instrument: abi_decode([INSTRUMENT_ABI], r)[0][5]
            for instrument, r in zip(Protocol.tradable, raws[7 + 2 * n : 7 + 2 * n + m], strict=True)
        }
        # the exit charges each market collected and has not spent are in the vault: a bid
        # never spends more of them than there are, and `release` forgets a market's only
        # once no charge is pending on it
        collected = sum(abi_decode(["uint256"], r)[0] for r in raws[7 + 2 * n + m :])
        assert charges >= collected, f"the vault holds {charges} wei of exit charges, markets collected {collected}"
        if charges > self.exit_charges:
            Protocol.stats["exit charges paid"] += 1
        self.exit_charges = charges
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
        # the exit pool is cash held back from leavers while a loss is pending, the exit
        # charges what positions leaving a side to be deleveraged paid: owed to a bidder or,
        # once no loss is pending, to the fund
        claims = sum(cash) + pool + charges
        sizes: dict[int, int] = {}  # perps by underlying, futures by instrument id
        longs = dict.fromkeys(Protocol.tradable, 0)  # long units held, by instrument id
        for options, perps, futures in positions:
            for underlying, size, cost, funding, cumulative, _ema, _updated in perps:
                sizes[underlying] = sizes.get(underlying, 0) + size
                longs[Protocol.perp_ids[underlying]] += max(size, 0)
                # the funding it would settle now (floored, as `_settle_funding`), less its cost
                claims += (-size * (cumulative - funding)) // WAD - cost
            for future in futures:
                # a future's cost is realized into cash when flat or settled; with a stored
                # settlement price, its payoff floor(size · P) is owed too
                key = ("future", future.instrument)
                sizes[key] = sizes.get(key, 0) + future.size
                longs[future.instrument] += max(future.size, 0)
                claims -= future.cost
                if self.settled.get(future.instrument):
                    claims += (future.size * self.settled[future.instrument]) // WAD
                elif future.instrument not in Protocol.expiring:
                    assert head["timestamp"] < future.expiry, "a long-dated future expired mid-run"
            for word in options:
                instrument = word & (2**32 - 1)
                longs[instrument] += max(_signed128(word >> 128), 0)
                # an option with a stored settlement price: its payoff is owed (floored, as
                # `settle`); the long-dated options of this test expire after any run
                if instrument in Protocol.expiring:
                    if self.settled.get(instrument):
                        size = _signed128(word >> 128)
                        claims += (size * self._intrinsic(instrument, self.settled[instrument])) // WAD
                else:
                    assert head["timestamp"] < Protocol.instruments[instrument].expiry, "an option expired mid-run"
        assert all(net == 0 for net in sizes.values()), f"perp or future sizes do not net to zero: {sizes}"
        # every instrument's open interest is the long units held
        assert interest == longs, f"open interest {interest}, long units held {longs}"
        surplus = total - claims
        assert surplus >= 0, f"claims exceed the vault's total by {-surplus} wei"
        return surplus, head["number"]

    def _changed(self):
        self.swept = False

    def _start(self, account: int):
        """The keeper starts ``account``'s auction; None (nothing sent) when the liquidation's
        own valuation finds it healthy: the views the keeper screens with value an expired,
        unsettled option or future at its worst case, a liquidation as live with no time
        left (stop 23), so such an account waits for its settlement."""
        try:
            receipt = self.cm.liquidator.start(self.bidder, account)
        except ape.exceptions.ContractLogicError as error:
            if "liquidator: account healthy" not in str(error):
                raise
            Protocol.stats["healthy when valued for liquidation"] += 1
            return None
        Protocol.stats["starts"] += 1
        return receipt

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
            underlying = name.removesuffix("/USD")
            if underlying in self.top_spots:
                self.top_spots[underlying] = max(self.top_spots[underlying], answer)
        assert self._send(self.admin, *calls)

    def _fresh_feeds(self):
        self._push(
            **{
                "ETH/USD": self.spots["ETH"],
                "ETH/IV": self.vols["ETH"],
                "BTC/USD": self.spots["BTC"],
                "BTC/IV": self.vols["BTC"],
                "USDC/USD": 1,
            }
        )

    def _index(self, instrument: int) -> int:
        """The spot (WAD USD) of ``instrument``'s underlying."""
        return self.spots[Protocol.instruments[instrument].name] * WAD

    def _trade(self, taker, instrument: int, size, price) -> bool:
        """The maker signs, the taker fills: ``size`` (units) > 0 means the maker buys."""
        return self._fill(self.maker, taker, instrument, to_wad(size), to_wad(price))

    def _fill(self, maker, taker, instrument: int, size: int, price: int, signer=None, sender=None) -> bool:
        """``maker``'s order (signed by ``signer``, default the maker) of ``size`` WAD units
        (> 0: the maker buys) at ``price`` (WAD) is filled for ``taker`` by ``sender``
        (default the taker). After a fill that went through, invariant (b): neither account
        is left at negative equity, valued in the fill's own block."""
        exchange = self.cm.exchange
        signer = signer or maker
        sender = sender or taker
        order = exchange.make_order(maker, instrument, size > 0, size_raw=abs(size), price_raw=max(price, 1))
        signature = exchange.sign(signer, order)
        args = (order.as_tuple(), signer.address, signature, abs(size), 0, taker.address)
        results = Protocol.senders[sender.address].execute([Call(exchange.contract.fill, args, key="fill")])
        [result] = results
        if result.status != "sent":
            assert result.status == "rejected" and result.reason in REFUSALS, result
            Protocol.stats["refused"] += 1
            return False
        Protocol.stats["sent"] += 1
        listed = Protocol.instruments[instrument]
        fills = Protocol.stats["fills"]
        fills[f"{listed.name} {listed.kind}"] = fills.get(f"{listed.name} {listed.kind}", 0) + 1
        if listed.kind == "perp":
            # finding 3: a fill of notional n moves the premium EMA by at most 2n/N (+1 wei)
            n = min(abs(size) * self.spots[listed.name], Protocol.funding_notional)
            self.ema_allowed[listed.underlying] += 2 * WAD * n // Protocol.funding_notional + 1
        elif listed.kind == "option":
            self.option_units[listed.name] += 2 * -(-abs(size) // WAD)
        ids = [account_id(maker.address, 0), account_id(taker.address, 0)]
        for who, m in zip((maker, taker), self.cm.engine.contract.margins(ids, block_id=result.block), strict=True):
            if m.equity < 0 and Protocol.first_violation is None:  # before shrinking: how soon
                Protocol.first_violation = Protocol.stats["steps"] + self.steps
            assert m.equity >= 0, (
                f"a fill left {who.address} at equity {m.equity} (price {price}, size {size}; "
                f"first seen after {Protocol.first_violation} steps)"
            )
        return True

    def _intrinsic(self, option: int, price: int) -> int:
        """An option's payoff per unit at ``price`` (WAD)."""
        listed = Protocol.instruments[option]
        return max(price - listed.strike, 0) if listed.is_call else max(listed.strike - price, 0)

    def _off_market(self, instrument: int, kind: int) -> int:
        """A colluders' price (WAD): near 0, an option's cap (a call is worth at most spot,
        a put its strike), far above it, or far from the index either way (a perp or a
        future)."""
        spot = self._index(instrument)
        listed = Protocol.instruments[instrument]
        if listed.kind != "option":
            return (1, spot // 100, spot // 2, spot * 9 // 10, spot * 11 // 10, spot * 2, spot * 10)[kind]
        cap = spot if listed.is_call else listed.strike
        return (1, 10**12, cap // 1000, cap // 10, cap, cap * 3, cap * 20)[kind]

    def _linear_size(self, account: int, instrument: int) -> int:
        """The account's size (WAD) in a perp or a future, 0 if none."""
        listed, clearing = Protocol.instruments[instrument], self.cm.clearing.contract
        if listed.kind == "perp":
            return clearing.perp_position(account, listed.underlying).size
        futures = (model.future_line(word) for word in clearing.positions(account).futures)
        return next((f.size for f in futures if f.instrument == instrument), 0)

    def _lane(self, name: str) -> int:
        """At most one lane unit (WAD USD) of an option on ``name`` over the run: its array's
        top value is at most the highest spot seen shocked by the grid's greatest shock (a
        call) or the strike (a put), and the shift is the least that fits it in LANE_BITS."""
        quantum = Protocol.quantum[name]
        strikes = [i.strike for i in Protocol.instruments.values() if i.kind == "option" and i.name == name]
        top = max(self.top_spots[name] * WAD * (10**6 + Protocol.shocks[name][1]) // 10**6, *strikes) // quantum
        return quantum << max(0, top.bit_length() - LANE_BITS)

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
                assert event.loss == event.fund_payout + event.deleveraged + event.socialized
                # a second of funding may pass between the view and the bid: 1e15 wei of slack
                assert event.loss <= max(-m.equity, 0) + m.maintenance + 10**15, (event, m)
                self.losses += event.socialized
                payout += event.fund_payout
            for charge in receipt.decode_logs(cm.clearing.contract.Deleveraged):
                side = (charge.instrument, charge.longs)
                self.loss_index[side] = self.loss_index.get(side, 0) + charge.per_unit
                Protocol.stats["deleveraged"] = Protocol.stats.get("deleveraged", 0) + 1
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

    @rule(
        trader=st.integers(0, 3),
        btc=st.booleans(),
        size=st.integers(-12, 12).filter(bool),
        skew=st.integers(-30, 30),
    )
    def trade_perp(self, trader, btc, size, skew):
        """A trader trades the ETH perp (up to 12 units) or the BTC perp (up to 0.6 units)
        with the maker, within 3% of the index."""
        name = "BTC" if btc else "ETH"
        price = self.spots[name] * (1000 + skew) // 1000
        self._trade(self.traders[trader], Protocol.perps[name], Decimal(size) / 20 if btc else size, price)
        self.steps += 1
        self._changed()

    @rule(trader=st.integers(0, 3), which=st.integers(0, 3), size=st.integers(-10, 10).filter(bool))
    def trade_option(self, trader, which, size):
        """A trader trades an ETH option (up to 10 units at 150) or the BTC call (up to one
        unit at 3,400) with the maker."""
        option = self.options[which]
        if Protocol.instruments[option].name == "BTC":
            self._trade(self.traders[trader], option, Decimal(size) / 10, 3400)
        else:
            self._trade(self.traders[trader], option, size, 150)
        self.steps += 1
        self._changed()

    @rule(
        trader=st.integers(0, 3),
        which=st.integers(0, 2),
        size=st.integers(-12, 12).filter(bool),
        skew=st.integers(-30, 30),
    )
    def trade_future(self, trader, which, size, skew):
        """A trader trades a dated future (an ETH one up to 12 units, the BTC one up to 0.6)
        with the maker, within 3% of the index; the short-dated one is refused once expired."""
        future = self.futures[which]
        btc = Protocol.instruments[future].name == "BTC"
        price = self._index(future) // WAD * (1000 + skew) // 1000
        self._trade(self.traders[trader], future, Decimal(size) / 20 if btc else size, price)
        self.steps += 1
        self._changed()

    def _levered_size(self, account: int, instrument: int, use: int) -> int:
        """The largest size (WAD, to 1e-6 units) of a perp or future that ``use`` percent of
        the account's initial-margin room allows: a unit needs about 21% of spot (1.3 x (15%
        + 1%))."""
        m = self.cm.engine.contract.margin(account)
        size = (m.equity - m.initial) * use // 100 * 100 // (self.spots[Protocol.instruments[instrument].name] * 21)
        return size - size % 10**12 if size > 0 else 0

    @rule(trader=st.integers(0, 3), which=st.integers(0, 4), long=st.booleans(), use=st.integers(50, 100))
    def lever_up(self, trader, which, long, use):
        """Opens the largest position in a perp or a future that initial margin allows (``use``
        percent of it): the accounts a price move then pushes under maintenance."""
        who, instrument = self.traders[trader], self.linear[which]
        size = self._levered_size(account_id(who.address, 0), instrument, use)
        if size > 0:
            self._fill(self.maker, who, instrument, -size if long else size, self._index(instrument))
        self.steps += 1
        self._changed()

    @rule(btc=st.booleans(), move=st.integers(-30, 30))
    def move_spot(self, btc, move):
        name = "BTC" if btc else "ETH"
        self.spots[name] = max(SPOT_FLOOR[name], self.spots[name] * (100 + move) // 100)
        self._push(**{f"{name}/USD": self.spots[name]})
        self.steps += 1
        self._changed()

    @rule(btc=st.booleans(), vol=st.sampled_from(["0.4", "0.6", "0.9", "1.2"]))
    def move_vol(self, btc, vol):
        name = "BTC" if btc else "ETH"
        self.vols[name] = vol
        self._push(**{f"{name}/IV": vol})
        self.steps += 1
        self._changed()

    @rule(seconds=st.integers(1, 3_000))
    def time_jump(self, seconds):
        self.chain.mine(timestamp=self.chain.pending_timestamp + seconds)
        self._fresh_feeds()  # rounds within their heartbeats
        self.steps += 1

    @rule(_=st.integers(0, 3))
    def sweep(self, _):
        """The keeper: settle the expired option and future, start every due auction, then
        buy each until it ends; again while an account is due (an insolvent bid's
        deleveraging charges the other side's holders, which may take one of them under
        maintenance: the keeper's next pass liquidates it)."""
        self._settle_expired()
        engine, liquidator = self.cm.engine.contract, self.cm.liquidator.contract
        ids = self._accounts()
        for _pass in range(5):
            due = [
                account
                for account, m in zip(ids, engine.margins(ids), strict=True)
                if m.equity < m.maintenance and not liquidator.in_auction(account)
            ]
            if not due and not any(liquidator.in_auction(a) for a in ids):
                break
            for account in due:
                self._start(account)
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
                if self._start(account) is not None:
                    self.live.add(account)
        self.steps += 1

    @rule(_=st.integers(0, 3))
    def keeper_marks(self, _):
        """A keeper marks every started auction whose account went insolvent since
        (`mark_insolvent`): the sides its deleveraging may charge get a pending charge, and
        until a bid ends the auction, a fill of a later step that takes units off such a side
        pays its exit charge (counted by the cash identity)."""
        engine, liquidator = self.cm.engine.contract, self.cm.liquidator.contract
        for account in sorted(self.live):
            if not liquidator.in_auction(account) or liquidator.auction(account)[2] != 0:
                continue
            if engine.margin(account).equity <= 0:
                receipt = self.cm.liquidator.mark_insolvent(self.bidder, account)
                Protocol.stats["marks"] += len(receipt.decode_logs(self.cm.clearing.contract.ChargePending))
        self.steps += 1

    @rule(_=st.integers(0, 3))
    def wait(self, _):
        """A block passes with nothing else happening (auction prices may only fall)."""
        self.chain.mine()
        self.steps += 1

    # ------------------------------------------------------------------ the adversary
    # `attacker` and `accomplice` collude; `attacker` is also the operator trader 0 named.

    @rule(
        which=st.integers(0, 8),
        kind=st.integers(0, 6),
        units=st.sampled_from([1, 10**12, WAD // 10, WAD, 5 * WAD, 40 * WAD]),
        buy=st.booleans(),
        attacker_makes=st.booleans(),
    )
    def collude(self, which, kind, units, buy, attacker_makes):
        """The colluders trade a perp, an option or a future (ETH or BTC) with each other at
        an off-market price, either way round."""
        instrument = self.tradable[which]
        maker, taker = (self.attacker, self.accomplice) if attacker_makes else (self.accomplice, self.attacker)
        self._fill(maker, taker, instrument, units if buy else -units, self._off_market(instrument, kind))
        self.steps += 1
        self._changed()

    @rule(which=st.integers(0, 4), long=st.booleans(), use=st.integers(50, 100))
    def attacker_levers(self, which, long, use):
        """The attacker opens the largest position in a perp or a future its initial margin
        allows (against the maker, at the index): the account a price move then pushes under
        maintenance."""
        instrument = self.linear[which]
        size = self._levered_size(account_id(self.attacker.address, 0), instrument, use)
        if size > 0:
            self._fill(self.maker, self.attacker, instrument, -size if long else size, self._index(instrument))
        self.steps += 1
        self._changed()

    @rule(which=st.integers(0, 4), share=st.integers(1, 100))
    def attacker_dumps(self, which, share):
        """The attacker closes its whole position in a perp or a future to the accomplice at a
        price that hands over ``share`` percent of its maintenance margin beyond the index
        (issue 11, finding 1: below MM, closing at E' >= E - MM left the fund a deficit).
        Only E' >= 0 and E' · MM >= E · MM' let it through now."""
        attacker, instrument = account_id(self.attacker.address, 0), self.linear[which]
        size = self._linear_size(attacker, instrument)
        if size != 0 and not self.cm.liquidator.contract.in_auction(attacker):
            m = self.cm.engine.contract.margin(attacker)
            give = m.maintenance * share // 100 * WAD // abs(size)
            index = self._index(instrument)
            price = index - give if size > 0 else index + give
            # the accomplice's order takes the other side: it buys what the attacker sells
            self._fill(self.accomplice, self.attacker, instrument, size, max(price, 1))
        self.steps += 1
        self._changed()

    @rule(which=st.integers(0, 4), long=st.booleans(), drop=st.integers(3, 30), share=st.integers(1, 100))
    def attacker_squeezed(self, which, long, drop, share):
        """Finding 1 played out in one step: the attacker levers up to its initial margin in
        a perp or a future, the oracle moves its underlying ``drop`` percent against it
        (under maintenance, maybe insolvent), and before any keeper it dumps that position to
        the accomplice, handing over ``share`` percent of its MM."""
        self.attacker_levers(which, long, 100)
        self.move_spot(Protocol.instruments[self.linear[which]].name == "BTC", -drop if long else drop)
        self.attacker_dumps(which, share)
        self.steps -= 2

    @rule(which=st.integers(0, 4), long=st.booleans(), drop=st.integers(20, 45), leave=st.integers(1, 100))
    def leave_before_the_bid(self, which, long, drop, leave):
        """The position dodge (issue 15) in one step: the attacker levers up in a perp or a
        future against the maker, the oracle moves its underlying ``drop`` percent against
        it, a keeper starts its auction (an insolvent start marks the sides the deleveraging
        may charge, if the fund cannot cover the reserve), and before any bid the maker, if
        it holds the side that gained, closes ``leave`` percent of it against a trader: it
        pays the exit charge (the cash identity and the deleveraging's split must hold)."""
        attacker, instrument = account_id(self.attacker.address, 0), self.linear[which]
        self.attacker_levers(which, long, 100)
        self.move_spot(Protocol.instruments[instrument].name == "BTC", -drop if long else drop)
        self.steps -= 2
        engine, liquidator = self.cm.engine.contract, self.cm.liquidator.contract
        m = engine.margin(attacker)
        if m.equity < m.maintenance and not liquidator.in_auction(attacker):
            receipt = self._start(attacker)
            if receipt is not None:
                Protocol.stats["marks"] += len(receipt.decode_logs(self.cm.clearing.contract.ChargePending))
                self.live.add(attacker)
        held = self._linear_size(account_id(self.maker.address, 0), instrument)
        size = abs(held) * leave // 100 // 10**12 * 10**12
        if size != 0 and (held < 0) == long:  # the maker is on the side that gained
            # the maker buys back a short (or sells a long) from trader 3, at the index
            self._fill(self.maker, self.traders[3], instrument, size if held < 0 else -size, self._index(instrument))
        self.steps += 1
        self._changed()

    @rule(which=st.integers(0, 4), units=st.integers(1, 10**9), kind=st.integers(0, 6), buy=st.booleans())
    def dust_perp(self, which, units, kind, buy):
        """A fill of a few wei (at most 1e-9 units) of a perp or a future at an absurd price:
        a perp's premium EMA, and funding with it, may move by at most 2 · notional /
        funding_notional (finding 3); a future has no funding to move."""
        instrument = self.linear[which]
        price = self._off_market(instrument, kind)
        self._fill(self.accomplice, self.attacker, instrument, units if buy else -units, price)
        self.steps += 1
        self._changed()

    @rule(
        which=st.integers(0, 8),
        signs=st.booleans(),
        kind=st.integers(0, 8),
        units=st.sampled_from([WAD // 10, WAD, 10 * WAD]),
        buy=st.booleans(),
    )
    def operator_fills(self, which, signs, kind, units, buy):
        """The attacker, trader 0's operator, trades trader 0's account against the
        accomplice: it signs trader 0's order (the accomplice fills it) or fills the
        accomplice's order for trader 0. Off-market prices are refused (finding 11); a fill
        that goes through is within the band of the index (a perp or a future) or the mark
        (an option)."""
        instrument = self.tradable[which]
        linear = Protocol.instruments[instrument].kind != "option"
        victim = self.traders[0]
        index = self._index(instrument)
        if kind < 7:
            price = self._off_market(instrument, kind)
        else:  # in band: the index, or an option's current mark (its array's lane 0)
            price = index if linear else self._mark(instrument)
        size = units if buy else -units
        if signs:
            ok = self._fill(victim, self.accomplice, instrument, size, price, signer=self.attacker)
        else:
            ok = self._fill(self.accomplice, victim, instrument, size, price, sender=self.attacker)
        if ok:
            Protocol.stats["operator fills"] += 1
            if linear:
                assert abs(price - index) <= index // 100, price
            else:
                mark = self._mark(instrument)
                assert abs(price - mark) <= max(mark, index // 100) // 10 + 1, (price, mark)
        self.steps += 1
        self._changed()

    def _mark(self, instrument: int) -> int:
        """The engine's current value per unit of an option (WAD): its array's lane 0."""
        engine = self.cm.engine.contract
        array = engine.risk_array(instrument)
        return (array[2][0] << array[1]) * Protocol.quantum[Protocol.instruments[instrument].name] if array[2] else 0

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

    @rule(future=st.booleans(), before=st.integers(-600, 600))
    def near_expiry(self, future, before):
        """Time runs to ``before`` seconds ahead of the short-dated option's or future's
        expiry (past it if negative), and the colluders try to trade it and withdraw around
        it."""
        instrument = Protocol.expiring[1 if future else 0]
        target = Protocol.instruments[instrument].expiry - before
        if target > self.chain.pending_timestamp:
            self.chain.mine(timestamp=target)
            self._fresh_feeds()
        price = self._off_market(instrument, before % 7)
        self._fill(self.accomplice, self.attacker, instrument, WAD, price)
        usdc = self.cm.token("USDC")
        self._send(
            self.attacker,
            Call(self.cm.vault.contract.withdraw, (usdc.address, usdc.units(1000), 0, self.attacker.address), key="w"),
        )
        self.steps += 1
        self._changed()

    @rule(_=st.integers(0, 3))
    def keeper_settles(self, _):
        """A keeper settles every account holding the short-dated option or future once it
        expired, at the first ETH/USD round at or after expiry (the sweep does it too)."""
        self._settle_expired()
        self.steps += 1
        self._changed()

    def _settle_expired(self):
        clearing = self.cm.clearing.contract
        for instrument in Protocol.expiring:
            listed = Protocol.instruments[instrument]
            if instrument in self.settled or self.chain.blocks.head.timestamp < listed.expiry:
                continue
            feed = Protocol.feeds[f"{listed.name}/USD"]
            if feed.latestRoundData()[3] < listed.expiry:
                self._fresh_feeds()
            hint = feed.latest_round()
            while hint > 2 and feed.getRoundData(hint - 1)[3] >= listed.expiry:
                hint -= 1
            for account in self._accounts():
                if listed.kind == "option":
                    held = clearing.option_size(account, instrument) != 0
                else:
                    held = any(word & (2**32 - 1) == instrument for word in clearing.positions(account).futures)
                if held:
                    clearing.settle(account, instrument, hint, sender=self.bidder)
                    Protocol.stats[f"settled {listed.kind}s"] += 1
            # every holder settled: no open interest is left
            listing = self.cm.markets.contract.instrument(instrument)
            assert listing.open_interest == 0, listing
            self.settled[instrument] = listing.settlement_price

    @rule(stale=st.booleans(), crash=st.integers(5, 40), trader=st.integers(0, 3))
    def vol_outage(self, stale, crash, trader):
        """A crash while the ETH vol feed is stale (no round for longer than its heartbeat
        and grace) or above the router's bound (6.0 > 5.0). Users are refused with the
        oracle's reason where they need vol; then a keeper liquidates every account that
        needs no vol, from its option-free subaccount 1: that must go through (finding
        10; the probe at setup says whether the engine has it);
        accounts holding options wait for a fresh vol round. Then the feed recovers."""
        self.spots["ETH"] = max(SPOT_FLOOR["ETH"], self.spots["ETH"] * (100 - crash) // 100)
        if stale:
            self.chain.mine(timestamp=self.chain.pending_timestamp + STALE_AFTER)
            self._push(
                **{
                    "ETH/USD": self.spots["ETH"],
                    "BTC/USD": self.spots["BTC"],
                    "BTC/IV": self.vols["BTC"],
                    "USDC/USD": 1,
                }
            )
        else:
            self._push(**{"ETH/USD": self.spots["ETH"], "ETH/IV": "6.0"})
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
                    if not liquidator.in_auction(account) and self._start(account) is None:
                        continue
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
        reads = Protocol.margin_reads + (Protocol.wbtc_reads if self.dusted else [])
        raws, head = self._batch(reads)
        equity = sum(m[0] for m in abi_decode(["(int256,uint256,uint256)[]"], raws[0])[0])
        held = abi_decode(["uint256"], raws[1])[0] * Protocol.usdc_scale
        # cash no account holds: what leavers gave up while a loss was pending (the exit pool)
        # and the exit charges, owed to a bidder or, once no loss is pending, to the fund
        equity += sum(abi_decode(["uint256"], r)[0] for r in raws[2:4])
        # option values are floored to their lanes: at most a lane unit per unit held, and
        # units held never exceed the units opened
        quantization = sum(units * self._lane(name) for name, units in self.option_units.items()) + 1
        if self.dusted:  # WBTC dust is equity the vault's USDC does not back: at BTC's spot
            equity -= sum(abi_decode(["uint256"], r)[0] for r in raws[4:]) * self.spots["BTC"]
        slack = held - equity
        assert slack >= 0, f"claims exceed the vault by {-slack} wei"
        now = head["timestamp"]
        for instrument in Protocol.expiring:
            listed = Protocol.instruments[instrument]
            if instrument in self.settled or now < listed.expiry:
                continue
            # finding 2: expired and unsettled, not zero-sum until settled. An option long
            # counts for nothing and a short owes its worst intrinsic value over the grid;
            # a future long counts at the grid's least spot and a short at its greatest
            units = cm.markets.contract.instrument(instrument).open_interest
            least, greatest = Protocol.shocks[listed.name]
            spot = self._index(instrument)
            if listed.kind == "option":
                worst = self._intrinsic(instrument, spot * (10**6 + greatest) // 10**6)
                quantization += units * worst // WAD + units
            else:
                quantization += units * spot // WAD * (greatest - least) // 10**6 + len(ids)
        assert slack <= quantization + DUST_PER_STEP * max(self.steps, 1), slack

    @invariant()
    def nothing_liquidatable_after_a_sweep(self):
        if not self.swept:
            return
        ids = self._accounts()
        engine = self.cm.engine.contract
        for account, m in zip(ids, engine.margins(ids), strict=True):
            if m.equity < m.maintenance:
                # the views value an expired, unsettled option or future at its worst case, a
                # liquidation as live with no time left: the liquidation's valuation decides
                bound = engine.refresh_bound.call(account, 1)
                assert bound.equity >= bound.maintenance, account

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

    def _ema(self) -> dict[int, int]:
        """Each perp's premium EMA (by underlying), from the passive holder's perp lines of the
        last batch (it holds the ETH and the BTC perp)."""
        return {line[0]: line[5] for line in self.view["perps"][account_id(self.holder.address, 0)]}

    def _adversary_gains_nothing(self):
        """Invariant (a), from the batch `_cash_identity` just read (run by
        `conservation_of_cash`, after every step).

        - Passive accounts, exactly: their cash is what they deposited (plus what others
          gave them), lowered only by socialized losses and then by exactly their pro-rata
          share: cash ``c`` written at index ``i`` is worth ``floor(c · index / i)``. The
          perp holder's positions (size, cost, funding index of its ETH and BTC perps) are
          untouched (nobody can trade, settle or liquidate them), so its equity moves only
          with the oracle's spots and the funding indices.
        - Funding at honest rates: over a step each perp's premium EMA (the funding rate
          before its clamp) moved by at most ``2 · n / funding_notional`` (+1 wei) per fill
          of notional ``n`` at the index (finding 3), so dust fills barely move it.
        - The insurance fund: its assets (tokens plus vault cash) fall over a step by no more
          than what it paid through `cover` (each payout checked in `_bid_out` against the
          account's deficit plus its insolvent ramp, tips at most one `keeper_tip` per
          auction), plus its cash's pro-rata share of a socialized loss.
        """
        view, index = self.view, self.view["index"]
        for who, (cash, written) in self.passive.items():
            assert view["cash"][account_id(who.address, 0)] == cash * index // written, who
        # the holder's perps, as read: its cost plus its share of each deleveraging charged
        # to its side (longs), rounded up once (its position is never written again)
        lines = view["perps"][account_id(self.holder.address, 0)]
        expected = {}
        for u, (size, cost, funding) in Protocol.holder_position.items():
            per_unit = self.loss_index.get((Protocol.perp_ids[u], size > 0), 0)
            expected[u] = (size, cost + -(-abs(size) * per_unit // WAD), funding)
        assert {line[0]: tuple(line[1:4]) for line in lines} == expected, lines
        ema = self._ema()
        for underlying, value in ema.items():
            moved = abs(value - self.ema_prev[underlying])
            assert moved <= self.ema_allowed[underlying], (underlying, value, self.ema_prev, self.ema_allowed)
        self.ema_prev, self.ema_allowed = ema, dict.fromkeys(ema, 0)
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
    insure(os.environ.get("CM_STATEFUL_FUND", "3000"))
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
    # the passive accounts: USDC only, and a 1 ETH perp and a 0.05 BTC perp long bought from
    # the maker at setup
    cm.vault.deposit(saver, "USDC", "20000")
    cm.vault.deposit(holder, "USDC", "100000")
    cm.trade(maker, holder, cm.markets.perp("ETH"), -1, 3000)
    cm.trade(maker, holder, cm.markets.perp("BTC"), "-0.05", 60000)
    Protocol.cm, Protocol.admin, Protocol.maker = cm, admin, maker
    Protocol.traders, Protocol.bidder, Protocol.chain = traders, keeper, chain
    Protocol.attacker, Protocol.accomplice, Protocol.saver, Protocol.holder = attacker, accomplice, saver, holder
    # the instruments: both perps; three ETH options (the third expires two hours after
    # setup: runs trade and withdraw around it) and a BTC call; an ETH future that expires 90
    # minutes after setup, a long-dated ETH one (a calendar spread against the perp) and a
    # long-dated BTC one
    underlyings = cm.manifest.underlyings
    Protocol.perps = {name: cm.markets.perp(name) for name in ("ETH", "BTC")}
    Protocol.perp_ids = {underlyings[name]: perp for name, perp in Protocol.perps.items()}
    Protocol.options = (
        list_option("ETH", True, "3000", 30),
        list_option("ETH", False, "2800", 30),
        list_option("ETH", True, "3000", 2 / 24),
        list_option("BTC", True, "60000", 30),
    )
    now = chain.pending_timestamp
    Protocol.futures = (
        cm.markets.list_future(admin, "ETH", now + 5_400),
        cm.markets.list_future(admin, "ETH", now + 60 * 86_400),
        cm.markets.list_future(admin, "BTC", now + 60 * 86_400),
    )
    markets = cm.markets.contract
    instruments = {}
    for name, perp in Protocol.perps.items():
        instruments[perp] = Instrument(perp, "perp", name, underlyings[name])
    for instrument in (*Protocol.options, *Protocol.futures):
        listed = markets.instrument(instrument)
        name = next(n for n, u in underlyings.items() if u == listed.underlying)
        kind = "future" if instrument in Protocol.futures else "option"
        instruments[instrument] = Instrument(
            instrument, kind, name, listed.underlying, listed.expiry, listed.strike, listed.kind == CALL
        )
    Protocol.instruments = instruments
    Protocol.linear = (Protocol.perps["ETH"], Protocol.perps["BTC"], *Protocol.futures)
    Protocol.tradable = (Protocol.perps["ETH"], *Protocol.options[:3], Protocol.perps["BTC"], Protocol.options[3])
    Protocol.tradable += Protocol.futures
    Protocol.expiring = (Protocol.options[2], Protocol.futures[0])
    assert len(Protocol.linear) == 5 and len(Protocol.tradable) == 9  # the rules' ranges
    holder_id = account_id(holder.address, 0)
    Protocol.holder_position = {
        underlyings[name]: tuple(cm.clearing.contract.perp_position(holder_id, underlyings[name]))
        for name in ("ETH", "BTC")
    }
    Protocol.fund_id = account_id(cm.fund.address, 0)
    Protocol.funding_notional = markets.funding_notional()
    Protocol.keeper_tip = cm.liquidator.contract.keeper_tip()
    engine = cm.engine.contract
    Protocol.quantum = {name: engine.underlyings(underlyings[name]).quantum for name in ("ETH", "BTC")}
    Protocol.shocks = {}
    for name in ("ETH", "BTC"):
        shocks = engine.grid(underlyings[name])[0]
        Protocol.shocks[name] = (min(shocks), max(shocks))
    Protocol.stats = {
        "steps": 0,
        "bids": 0,
        "starts": 0,
        "sent": 0,
        "refused": 0,
        "surplus": 0,
        "operator fills": 0,
        "settled options": 0,
        "settled futures": 0,
        "outage liquidations": 0,
        "marks": 0,
        "healthy when valued for liquidation": 0,
        "exit charges paid": 0,
        "fills": {},  # by underlying and kind
    }
    Protocol.senders = {who.address: TxSender(who) for who in (*traders, admin, attacker, accomplice)}
    Protocol.feeds = {
        name: cm.oracle.aggregator(name) for name in ("ETH/USD", "ETH/IV", "BTC/USD", "BTC/IV", "USDC/USD")
    }
    Protocol.feed_decimals = {name: feed.decimals() for name, feed in Protocol.feeds.items()}
    usdc = cm.token("USDC")
    Protocol.usdc_scale = 10 ** (18 - usdc.contract.decimals())
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
        (vault.exit_pool, ()),
        (vault.exit_charges, ()),
        *((markets.instrument, (i,)) for i in Protocol.tradable),
        *((clearing.collected, (i,)) for i in Protocol.linear),
    ]
    balance_of = vault.balance_of
    Protocol.wbtc_reads = [
        (vault.address, "0x" + bytes(balance_of.encode_input(*owner_sub, cm.token("WBTC").address)).hex())
        for owner_sub in ((to_checksum_address(f"{a >> 96:#042x}"), a & (2**96 - 1)) for a in ids)
    ]
    Protocol.cash_reads = [(m.contract.address, "0x" + bytes(m.encode_input(*args)).hex()) for m, args in calls]
    # the reads of the engine's valuation: every account's margin and the vault's USDC
    Protocol.margin_reads = [
        (m.contract.address, "0x" + bytes(m.encode_input(*args)).hex())
        for m, args in (
            (cm.engine.contract.margins, (ids,)),
            (usdc.contract.balanceOf, (vault.address,)),
            (vault.exit_pool, ()),
            (vault.exit_charges, ()),
        )
    ]
    machine = Protocol.TestCase
    machine.settings = settings(
        max_examples=max(1, STEPS // STEPS_PER_RUN),
        stateful_step_count=STEPS_PER_RUN,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    began = time.monotonic()
    # the chain's clock moves only when a rule moves it (`wait`, the outage's stale gap), not
    # with the wall clock: on a loaded machine seconds passed between a call's preflight and
    # its block, so a fill passed preflight and reverted mined on a price gone stale, and
    # Hypothesis could not replay it (a flaky failure). One second per block instead made
    # every in-band operator fill miss its band (the marks the machine reads aged a second a
    # block), so the clock stands still between rules
    chain.provider.make_request("anvil_setBlockTimestampInterval", [0])
    try:
        machine().runTest()
    finally:
        chain.provider.make_request("anvil_removeBlockTimestampInterval", [])
    steps = Protocol.stats["steps"]
    print(f"\nstateful protocol: {Protocol.stats} in {time.monotonic() - began:.0f} s")
    print(f"liquidation during a vol outage checked: {Protocol.vol_free} (needs finding 10)")
    # hypothesis ends some runs early (about 13% of the steps asked for): at least three
    # quarters of what was asked for are executed
    assert steps >= min(2000, STEPS * 3 // 4)
    if STEPS >= 1000:  # liquidation was exercised (a few hundred steps may see none)
        assert Protocol.stats["starts"] > 0 and Protocol.stats["bids"] > 0
