# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin clearinghouse
@notice Holds every account's positions, applies the trades the exchange matched, accrues
        and settles perp funding, and settles expired options and futures into vault cash. The
        instruments, their open interest and the market parameters live in the markets
        contract (`Markets.vy`), called once per fill, settlement and liquidation slice; the
        parameters read on every trade and valuation are copied here (`settings`). The margin
        engine values what this contract holds; after each trade both accounts must be above
        initial margin, unless the trade only reduces their risk.

        Cash flows (WAD USD), each rounded against the account it touches:
          option premium  the buyer pays ceil(|size|·price), the seller gets floor
          perp cost       cost += ceil(size·price); realized into cash when flat
          future cost     as a perp's (no funding); at expiry floor(size·P) − cost
          funding         owed = ceil(size·(F − F_position)), F the cumulative index
          expiry payoff   floor(size·intrinsic(settlement price))
          fees            as the exchange computed them, to the insurance and fee accounts
        So the sum of all cash and open positions never grows: the vault stays solvent.
@custom:security All state-changing entry points hold the lock. The clearinghouse calls
        the vault (`settle_cash`, `paused`), the oracle router, the markets contract and the
        margin engine; the engine calls back only the view `positions` (`@reentrant`).
        Settlement and trades that only reduce risk are never paused. Accounts in a
        liquidation auction cannot trade; the liquidator moves fractions of their
        positions to bidders (`transfer_fraction`), which is never paused either.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IEngine
from interfaces import IMarkets
from interfaces import IRiskEngine
from interfaces import IVault
from lib import fixed

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

implements: IEngine
implements: IClearinghouse


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_UNDERLYINGS: constant(uint256) = 16
# @dev Hard bound on option positions per account (the margin loop's bound).
MAX_OPTIONS: constant(uint256) = 128
# @dev Instrument kinds (see `Markets.vy`).
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3
FUTURE: constant(uint256) = 4
# @dev Most future positions per account (one slot each).
MAX_FUTURES: constant(uint256) = 16


struct PerpPosition:
    # signed size (WAD units)
    size: int256
    # signed cost of the open position (WAD USD): Σ size change × trade price, rounded up
    cost: int256
    # cumulative funding index when funding was last settled (WAD USD per unit)
    funding: int256


struct PackedPerp:
    # size (int128) in the low half, cost (int128) in the high half, two's complement
    line: uint256
    funding: int256


struct Funding:
    # cumulative funding per long unit (WAD USD); longs pay shorts while it rises
    cumulative: int256
    # EMA of the trade premium over the index (WAD fraction, signed)
    premium_ema: int256
    # time `cumulative` was last accrued (s)
    updated_at: uint256


# @dev The vault holding collateral and cash, and the oracle router.
VAULT: public(immutable(IVault))
ORACLE: public(immutable(IOracleRouter))
# @dev The margin engine valuing accounts (set once it is deployed).
engine: public(IRiskEngine)
# @dev The exchange allowed to call `trade`.
exchange: public(address)
# @dev The liquidator allowed to call `transfer_fraction`.
liquidator: public(address)
# @dev The markets contract: instruments, open interest and market parameters (set once).
markets: public(IMarkets)
# @dev A copy of the markets contract's settings word, pushed by it on every change.
# Most option positions an account may hold (<= MAX_OPTIONS).
# Funding: the capped EMA premium is paid per `funding_interval` (s), capped at
# `funding_cap` (WAD) per interval; the EMA moves over `ema_window` (s).
# The EMA moves by a fill's notional at the index over `funding_notional` (WAD USD), at
# most 1 (so dust cannot move it).
# @dev One word, read together on every trade and valuation: funding_interval (bits
# 0..31), ema_window (32..63), funding_cap (64..127), max_options (128..135),
# funding_notional (136..255).
settings: uint256

# @dev Perp instrument id of each underlying (written once, when the markets contract lists
# the perp), and the terms of each perp and future id, written once at its listing:
# underlying (bits 0..7) | kind PERP or FUTURE (8..15) | expiry (16..55, s; 0 for a perp).
# An option id has none: trades and settlements tell the kinds apart with one read.
perp_of: HashMap[uint256, uint256]
linear: HashMap[uint256, uint256]
# @dev Funding state of each underlying's perpetual, one word (`_get_funding`).
funding_words: HashMap[uint256, uint256]
# @dev Option positions per account, two to a slot (`_load_options`); never a zero size.
# Each half is instrument (bits 0..31) | underlying (32..39) | kind (40..47) | size (int80,
# 48..127); their count is in `masks`. A position is found by scanning them in memory:
# they are read anyway by the margin check that follows every change, and an index map
# would cost a slot per position.
option_pairs: HashMap[uint256, uint256[MAX_OPTIONS // 2]]
# @dev Perp positions by account and underlying, packed in two slots (`_get_perp`).
perps: HashMap[uint256, HashMap[uint256, PackedPerp]]
# @dev Future positions per account, one slot each, in no order (`_find_future`); never a
# zero size: instrument (bits 0..31) | underlying (32..39) | expiry (32 bits, s; < 2**32
# until 2106) | size (int88, 72..159) | cost (int96, 160..255) (lib/fixed.vy
# `_future_line`); their count is in `masks`. The margin check reads each word alone.
futures: HashMap[uint256, uint256[MAX_FUTURES]]
# @dev Per account, one word: bit u set iff its perp on underlying u has a size (bits
# 1..MAX_UNDERLYINGS); the number of option positions in bits 128..135, of future positions
# in bits 136..143.
masks: HashMap[uint256, uint256]


event Traded:
    maker: indexed(uint256)
    taker: indexed(uint256)
    instrument: indexed(uint256)
    size: int256
    price: uint256


event OptionSettled:
    account: indexed(uint256)
    instrument: indexed(uint256)
    size: int256
    settlement_price: uint256
    payoff: int256


event FutureSettled:
    account: indexed(uint256)
    instrument: indexed(uint256)
    size: int256
    settlement_price: uint256
    payoff: int256


event FundingSettled:
    account: indexed(uint256)
    underlying: indexed(uint256)
    amount: int256


event EngineSet:
    engine: indexed(address)


event ExchangeSet:
    exchange: indexed(address)


event LiquidatorSet:
    liquidator: indexed(address)


event MarketsSet:
    markets: indexed(address)


event PositionsTransferred:
    source: indexed(uint256)
    target: indexed(uint256)
    fraction: uint256


@deploy
def __init__(vault: IVault, oracle: IOracleRouter):
    """
    @dev The market parameters come from the markets contract (`set_markets`).
    """
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    ORACLE = oracle


# ---------------------------------------------------------------- trading


@external
def trade(fill: IEngine.Fill):
    """
    @notice Applies a matched trade: the maker's position changes by `fill.size`, the
            taker's by `-fill.size`; premiums, funding and fees move in cash; then both
            accounts must be above initial margin, unless the trade only reduces risk.
    @dev Only the exchange, which has checked the signed order. The markets contract checks
         the instrument, its open-interest cap and, for an operator's fill, the price band
         (`Markets.on_trade`).
    """
    assert msg.sender == self.exchange, "clearing: not exchange"
    assert fill.size != 0, "clearing: zero size"
    assert fill.price != 0, "clearing: zero price"
    assert fill.maker != fill.taker, "clearing: self trade"
    assert fill.insurance_fee <= fill.maker_fee + fill.taker_fee, "clearing: bad fee split"
    assert abs(fill.size) < 2**127, "clearing: size out of range"
    assert not staticcall VAULT.frozen(fill.maker) and not staticcall VAULT.frozen(fill.taker), "clearing: account in auction"

    operator_price: uint256 = 0
    if fill.operator_sides != 0:
        operator_price = fill.price
    # a perp or a future is known here by its terms; any other id is an option or not listed
    linear: uint256 = self.linear[fill.instrument]
    u: uint256 = linear & 255
    kind: uint256 = (linear >> 8) & 255
    maker_cash: int256 = -convert(fill.maker_fee, int256)
    taker_cash: int256 = -convert(fill.taker_fee, int256)
    maker_perp: PerpPosition = empty(PerpPosition)
    taker_perp: PerpPosition = empty(PerpPosition)
    cumulative: int256 = 0
    maker_slot: uint256 = 0
    taker_slot: uint256 = 0
    maker_words: DynArray[uint256, MAX_OPTIONS] = []
    taker_words: DynArray[uint256, MAX_OPTIONS] = []
    # the positions before the fill (an option's size only)
    if kind == PERP:
        cumulative = self._accrue_funding(u, fill.price, fill.size)
        maker_perp = self._get_perp(fill.maker, u)
        taker_perp = self._get_perp(fill.taker, u)
    elif kind == FUTURE:
        maker_slot, maker_perp = self._find_future(fill.maker, fill.instrument)
        taker_slot, taker_perp = self._find_future(fill.taker, fill.instrument)
    else:
        maker_words = self._load_options(fill.maker)
        taker_words = self._load_options(fill.taker)
        maker_perp.size = self._size_in(maker_words, fill.instrument)
        taker_perp.size = self._size_in(taker_words, fill.instrument)
    maker_old: int256 = maker_perp.size
    taker_old: int256 = taker_perp.size
    # reverts for an unknown or expired instrument
    terms: uint256 = extcall self.markets.on_trade(fill.instrument, fill.size, maker_old, taker_old, operator_price)
    if kind != 0:
        # a future's word head: instrument | underlying | expiry (see `futures`)
        head: uint256 = fill.instrument | (u << 32) | ((linear >> 16) << 40)
        maker_cash += self._trade_linear(fill.maker, head, u, kind, maker_slot, maker_perp, fill.size, fill.price, cumulative)
        taker_cash += self._trade_linear(fill.taker, head, u, kind, taker_slot, taker_perp, -fill.size, fill.price, cumulative)
    else:
        kind = terms & 255
        u = (terms >> 8) & 255
        self._store_options(
            fill.maker, maker_words, self._with_size(maker_words, fill.instrument, u, kind, maker_old + fill.size, True)
        )
        self._store_options(
            fill.taker, taker_words, self._with_size(taker_words, fill.instrument, u, kind, taker_old - fill.size, True)
        )
        # the buyer pays the premium rounded up, the seller receives it rounded down
        units: uint256 = convert(abs(fill.size), uint256)
        paid: int256 = convert(math._mul_div(units, fill.price, WAD, True), int256)
        received: int256 = convert(math._mul_div(units, fill.price, WAD, False), int256)
        if fill.size > 0:
            maker_cash -= paid
            taker_cash += received
        else:
            maker_cash += received
            taker_cash -= paid

    fees: uint256 = fill.maker_fee + fill.taker_fee
    entries: DynArray[IVault.CashDelta, 8] = [
        IVault.CashDelta(account=fill.maker, delta=maker_cash),
        IVault.CashDelta(account=fill.taker, delta=taker_cash),
    ]
    if fees != 0:
        entries.append(IVault.CashDelta(account=fill.insurance, delta=convert(fill.insurance_fee, int256)))
        entries.append(IVault.CashDelta(account=fill.recipient, delta=convert(fees - fill.insurance_fee, int256)))
    extcall VAULT.settle_cash(entries)

    paused: bool = staticcall VAULT.paused()
    self._check_trade(fill.maker, fill.instrument, kind, u, maker_old, maker_perp, maker_cash, paused)
    self._check_trade(fill.taker, fill.instrument, kind, u, taker_old, taker_perp, taker_cash, paused)
    log Traded(maker=fill.maker, taker=fill.taker, instrument=fill.instrument, size=fill.size, price=fill.price)


@external
def settle(account: uint256, instrument_id: uint256, round_hint: uint80):
    """
    @notice Settles `account`'s expired option or future into cash at the settlement price:
            the first oracle round at or after expiry (`round_hint`, see the oracle router).
            An option pays floor(size·intrinsic), a future floor(size·price) − cost (its
            cost was rounded against the account at each trade). Anyone may call it; it is
            never paused.
    @param round_hint Used only by the instrument's first settlement, which stores the price
           for every later one.
    @dev The markets contract checks the instrument has expired, stores its price and lowers
         the open interest by a long position (`Markets.settle`).
    """
    future: bool = (self.linear[instrument_id] >> 8) & 255 == FUTURE
    slot: uint256 = 0
    position: PerpPosition = empty(PerpPosition)
    words: DynArray[uint256, MAX_OPTIONS] = []
    if future:
        slot, position = self._find_future(account, instrument_id)
    else:
        words = self._load_options(account)
        position.size = self._size_in(words, instrument_id)
    terms: uint256 = 0
    price: uint256 = 0
    terms, price = extcall self.markets.settle(instrument_id, round_hint, position.size)
    size: int256 = position.size
    assert size != 0, "clearing: no position"
    # a future pays floor(size·price) − cost (its cost was rounded against the account at
    # each trade), an option floor(size·intrinsic): longs receive it rounded down, shorts
    # pay it rounded up
    kind: uint256 = terms & 255
    strike: uint256 = terms >> 56
    paid: uint256 = price
    if not future:
        paid = 0
        if kind == CALL and price > strike:
            paid = price - strike
        elif kind == PUT and strike > price:
            paid = strike - price
    payoff: int256 = fixed._floor_div(size * convert(paid, int256), IWAD) - position.cost
    if future:
        self._set_future(account, 0, slot, empty(PerpPosition))
        log FutureSettled(account=account, instrument=instrument_id, size=size, settlement_price=price, payoff=payoff)
    else:
        self._store_options(account, words, self._with_size(words, instrument_id, (terms >> 8) & 255, kind, 0, True))
        log OptionSettled(account=account, instrument=instrument_id, size=size, settlement_price=price, payoff=payoff)
    extcall VAULT.settle_cash([IVault.CashDelta(account=account, delta=payoff)])


@external
def transfer_fraction(source: uint256, target: uint256, fraction: uint256) -> (int256, int256):
    """
    @notice Moves `fraction` (WAD, <= 1) of every position of `source` to `target`: a
            bidder buying a slice of a liquidated account. Each size moved rounds toward
            zero (the source keeps the remainder); a perp's cost moves pro rata with it.
            Funding of the perps touched is settled first, and a bidder's perp or future
            that nets to zero realizes its cost; a future's cost moves like a perp's.
    @return The cash this settles for the source and the target (WAD, signed): the
            liquidator adds it through the vault's `transfer_fraction`, before the slice
            of cash moves.
    @dev Only the liquidator. Open interest can only fall (longs move, or net out against
         the bidder's shorts), so no cap applies; the bidder's position cap does. Its
         changes go to the markets contract in one call (`Markets.move_open_interest`).
    """
    assert msg.sender == self.liquidator, "clearing: not liquidator"
    assert fraction <= WAD, "clearing: bad fraction"
    f: int256 = convert(fraction, int256)
    # in memory, stored once at the end: the source keeps each word in place (f < 1:
    # |moved| < |size|) or is emptied (f = 1: every size moves); the target's words change
    # as `_with_size` would change them, each looked up once
    words: DynArray[uint256, MAX_OPTIONS] = self._load_options(source)
    held_words: DynArray[uint256, MAX_OPTIONS] = self._load_options(target)
    left: DynArray[uint256, MAX_OPTIONS] = words
    bought: DynArray[uint256, MAX_OPTIONS] = held_words
    moves: DynArray[uint256, MAX_OPTIONS + MAX_UNDERLYINGS + MAX_FUTURES] = []
    for i: uint256 in range(len(words), bound=MAX_OPTIONS):
        word: uint256 = words[i]
        size: int256 = fixed._word_size(word)
        # |size| < 2**79 and f <= 1e18: the product fits; `//` truncates toward zero
        moved: int256 = size * f // IWAD
        if moved == 0:
            continue
        left[i] = self._resized(word, size - moved)
        instrument_id: uint256 = word & (2**32 - 1)
        # the bidder's word for it (j = index + 1, 0 if none): most often at the same index
        # (a bidder that bought slices before holds them in the source's order), else among
        # the first len(held_words) words, where every word the bidder held stays (a removal
        # moves the last word in; a word appended here is another instrument, since the
        # source's are distinct): a fresh bidder searches nothing, so no loop is O(N²)
        j: uint256 = 0
        if i < len(bought) and bought[i] & (2**32 - 1) == instrument_id:
            j = i + 1
        else:
            for k: uint256 in range(min(len(held_words), len(bought)), bound=MAX_OPTIONS):
                if bought[k] & (2**32 - 1) == instrument_id:
                    j = k + 1
                    break
        held: int256 = 0
        if j == 0:
            assert len(bought) < (self.settings >> 128) & 255, "clearing: position cap"
            bought.append(self._resized(word, moved))
        else:
            held = fixed._word_size(bought[j - 1])
            if held + moved == 0:
                # netted out: the last word takes its place
                last: uint256 = bought.pop()
                if j <= len(bought):
                    bought[j - 1] = last
            else:
                bought[j - 1] = self._resized(word, held + moved)
        move: uint256 = self._oi_move(instrument_id, size, held, moved)
        if move != 0:
            moves.append(move)
    if fraction == WAD:
        left = []
    self._store_options(source, words, left)
    self._store_options(target, held_words, bought)
    source_cash: int256 = 0
    target_cash: int256 = 0
    mask: uint256 = self.masks[source]
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        position: PerpPosition = self._get_perp(source, u)
        moved: int256 = position.size * f // IWAD
        if moved == 0:
            continue
        cumulative: int256 = self._accrue_to_now(u)
        held: PerpPosition = self._get_perp(target, u)
        source_cash += self._settle_funding(source, u, position, cumulative)
        target_cash += self._settle_funding(target, u, held, cumulative)
        move: uint256 = self._oi_move(self.perp_of[u], position.size, held.size, moved)
        if move != 0:
            moves.append(move)
        realized: int256 = 0
        position, held, realized = self._split(position, held, moved)
        target_cash += realized
        position.funding = cumulative
        held.funding = cumulative
        self._put_perp(source, u, position)
        self._put_perp(target, u, held)
    # futures: the perps' rule without funding, last first: the source keeps each word in
    # place (f < 1) or removes it, the last word, as every size moves (f = 1)
    count: uint256 = (self.masks[source] >> 136) & 255
    for k: uint256 in range(count, bound=MAX_FUTURES):
        i: uint256 = count - 1 - k
        word: uint256 = self.futures[source][i]
        position: PerpPosition = empty(PerpPosition)
        position.size, position.cost = fixed._future_line(word)
        moved: int256 = position.size * f // IWAD
        if moved == 0:
            continue
        instrument_id: uint256 = word & (2**32 - 1)
        head: uint256 = word & (2**72 - 1)
        slot: uint256 = 0
        held: PerpPosition = empty(PerpPosition)
        slot, held = self._find_future(target, instrument_id)
        move: uint256 = self._oi_move(instrument_id, position.size, held.size, moved)
        if move != 0:
            moves.append(move)
        realized: int256 = 0
        position, held, realized = self._split(position, held, moved)
        target_cash += realized
        self._set_future(source, head, i + 1, position)
        self._set_future(target, head, slot, held)
    if len(moves) != 0:
        extcall self.markets.move_open_interest(moves)
    log PositionsTransferred(source=source, target=target, fraction=fraction)
    return source_cash, target_cash


# ---------------------------------------------------------------- views


@external
@view
@reentrant
def positions(account: uint256) -> IClearinghouse.Positions:
    """
    @notice Everything the margin engine values: the option positions as stored, two to a
            word (see `_half`; a zero half is no position), perp lines with their perp's
            funding state, and future positions as stored.
    @dev `@reentrant`: the engine reads it while this contract calls the engine. The stored
         pairs are returned as they are: half the words a full word per option would take
         in every caller's memory (MAX_OPTIONS = 128).
    """
    pairs: DynArray[uint256, MAX_OPTIONS // 2] = []
    lines: DynArray[IClearinghouse.PerpLine, MAX_UNDERLYINGS] = []
    settings: uint256 = self.settings
    mask: uint256 = self.masks[account]
    for p: uint256 in range((((mask >> 128) & 255) + 1) // 2, bound=MAX_OPTIONS // 2):
        pairs.append(self.option_pairs[account][p])
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        packed: PackedPerp = self.perps[account][u]
        lines.append(
            IClearinghouse.PerpLine(underlying=u, line=packed.line, funding=packed.funding, state=self.funding_words[u])
        )
    futures: DynArray[uint256, MAX_FUTURES] = []
    for i: uint256 in range((mask >> 136) & 255, bound=MAX_FUTURES):
        futures.append(self.futures[account][i])
    return IClearinghouse.Positions(
        options=pairs,
        perps=lines,
        futures=futures,
        funding_cap=(settings >> 64) & (2**64 - 1),
        funding_interval=settings & (2**32 - 1),
    )


@external
@view
def funding(underlying: uint256) -> Funding:
    """
    @notice Funding state of the underlying's perp: the cumulative index per long unit (WAD
            USD), the EMA premium (WAD fraction) and when the index was last accrued (s).
    """
    return self._get_funding(underlying)


@external
@view
def option_size(account: uint256, instrument_id: uint256) -> int256:
    """
    @notice Signed size (WAD units) of an option position.
    """
    return self._size_in(self._load_options(account), instrument_id)


@external
@view
def perp_mask(account: uint256) -> uint256:
    """
    @notice Bit u set iff the account holds a perp on underlying u.
    """
    return self.masks[account] & (2**128 - 1)


@external
@view
def option_ids(account: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @notice Instrument ids of the account's option positions.
    """
    ids: DynArray[uint256, MAX_OPTIONS] = []
    words: DynArray[uint256, MAX_OPTIONS] = self._load_options(account)
    for word: uint256 in words:
        ids.append(word & (2**32 - 1))
    return ids


@external
@view
def perp_position(account: uint256, underlying: uint256) -> PerpPosition:
    """
    @notice Signed size (WAD units), cost (WAD USD) and funding index at the last settlement
            (WAD USD per unit) of a perp position.
    """
    return self._get_perp(account, underlying)


# ---------------------------------------------------------------- owner


@external
def set_markets(markets: IMarkets):
    """
    @notice Sets the markets contract, once, and copies its settings word.
    """
    ownable._check_owner()
    assert self.markets.address == empty(address), "clearing: markets set"
    assert markets.address.is_contract, "clearing: markets not a contract"
    self.markets = markets
    self.settings = staticcall markets.settings()
    log MarketsSet(markets=markets.address)


@external
def set_engine(engine: IRiskEngine):
    ownable._check_owner()
    assert engine.address.is_contract, "clearing: engine not a contract"
    self.engine = engine
    log EngineSet(engine=engine.address)


@external
def set_liquidator(liquidator: address):
    ownable._check_owner()
    assert liquidator.is_contract, "clearing: liquidator not a contract"
    self.liquidator = liquidator
    log LiquidatorSet(liquidator=liquidator)


@external
def set_exchange(exchange: address):
    ownable._check_owner()
    assert exchange.is_contract, "clearing: exchange not a contract"
    self.exchange = exchange
    log ExchangeSet(exchange=exchange)


# ---------------------------------------------------------------- markets


@external
def open_linear(underlying: uint256, instrument_id: uint256, expiry: uint256):
    """
    @notice The markets contract listed `underlying`'s perp (`expiry` 0: its funding starts
            now) or a future on it expiring at `expiry` (s), as `instrument_id`.
    @dev Only the markets contract.
    """
    assert msg.sender == self.markets.address, "clearing: not markets"
    if expiry == 0:
        self.perp_of[underlying] = instrument_id
        self.linear[instrument_id] = underlying | (PERP << 8)
        self._put_funding(underlying, Funding(cumulative=0, premium_ema=0, updated_at=block.timestamp))
    else:
        self.linear[instrument_id] = underlying | (FUTURE << 8) | (expiry << 16)


@external
def set_settings(settings: uint256):
    """
    @notice The markets contract's settings word changed (see `settings`).
    @dev Only the markets contract.
    """
    assert msg.sender == self.markets.address, "clearing: not markets"
    self.settings = settings


# ---------------------------------------------------------------- internals


@internal
def _check_trade(
    account: uint256,
    instrument_id: uint256,
    kind: uint256,
    u: uint256,
    old_size: int256,
    old_perp: PerpPosition,
    cash_delta: int256,
    paused: bool,
):
    """
    @dev After a trade the account must be above initial margin with new risk open, or the
         trade must only reduce its risk: a lower MM, no lower `equity - MM`, equity >= 0
         and no lower equity per unit of MM than before. The before-state is valued by
         writing the old position back for a moment (warm slots) and subtracting the
         trade's cash change from the vault's cash.
    @custom:security Without the last two conditions an account under MM could close its
         book to an accomplice at any price that kept `equity - MM`, ending at negative
         equity (MM' = 0 only needs E' >= E - MM < 0): the fund paid the deficit.
    """
    after: IRiskEngine.Margin = extcall self.engine.refresh_margin(account)
    if not paused and after.equity >= convert(after.initial, int256) and staticcall self.engine.new_risk_open():
        return
    new_perp: PerpPosition = empty(PerpPosition)
    # the option (or future) words after the trade, and as they were before it
    words: DynArray[uint256, MAX_OPTIONS] = []
    before_words: DynArray[uint256, MAX_OPTIONS] = []
    slot: uint256 = 0
    # a future's word head: instrument | underlying | expiry (see `futures`)
    head: uint256 = instrument_id | (u << 32) | ((self.linear[instrument_id] >> 16) << 40)
    if kind == PERP:
        new_perp = self._get_perp(account, u)
        self._put_perp(account, u, old_perp)
    elif kind == FUTURE:
        slot, new_perp = self._find_future(account, instrument_id)
        self._set_future(account, head, slot, old_perp)
    else:
        words = self._load_options(account)
        before_words = self._with_size(words, instrument_id, u, kind, old_size, False)
        self._store_options(account, words, before_words)
    # an option held before the trade has a current array already (refresh_margin above)
    before: IRiskEngine.Margin = staticcall self.engine.margin_adjusted(account, cash_delta)
    if kind == PERP:
        self._put_perp(account, u, new_perp)
    elif kind == FUTURE:
        slot, old_perp = self._find_future(account, instrument_id)
        self._set_future(account, head, slot, new_perp)
    else:
        self._store_options(account, before_words, words)
    # the exception: MM falls, health (equity − MM) does not, equity stays >= 0, and equity
    # per unit of MM does not fall (E'·MM >= E·MM'); below MM the last binds, so a trade
    # can hand out at most the equity that backed the risk it removes (SPECIFICATION.md)
    after_mm: int256 = convert(after.maintenance, int256)
    before_mm: int256 = convert(before.maintenance, int256)
    if (
        after_mm < before_mm
        and after.equity - after_mm >= before.equity - before_mm
        and after.equity >= 0
        and after.equity * before_mm >= before.equity * after_mm
    ):
        return
    assert not paused, "clearing: paused"
    # surfaces the oracle's reason when new risk is closed
    open: bool = staticcall self.engine.check_new_risk()
    raise "clearing: insufficient margin"


@internal
def _trade_linear(
    account: uint256,
    head: uint256,
    u: uint256,
    kind: uint256,
    slot: uint256,
    old: PerpPosition,
    size: int256,
    price: uint256,
    cumulative: int256,
) -> int256:
    """
    @dev Adds a trade to a perp or future position `old` (a future's at `slot`, see
         `_find_future`, its word starting with `head`): a perp settles its funding to `cumulative` first; the cost
         grows by ceil(size·price) and is realized into cash once flat.
    @return The cash change (WAD).
    """
    position: PerpPosition = old
    cash: int256 = 0
    if kind == PERP:
        cash = self._settle_funding(account, u, position, cumulative)
        position.funding = cumulative
    position.size += size
    position.cost += fixed._ceil_div(size * convert(price, int256), IWAD)
    if position.size == 0:
        cash -= position.cost
        position.cost = 0
    if kind == PERP:
        self._put_perp(account, u, position)
    else:
        self._set_future(account, head, slot, position)
    return cash


@internal
@pure
def _split(position: PerpPosition, held: PerpPosition, moved: int256) -> (PerpPosition, PerpPosition, int256):
    """
    @dev Moves `moved` units of a perp or future position to `held`, its cost pro rata
         (rounded toward zero; all of it when all units move); a `held` that nets to zero
         realizes its cost.
    @return Both positions and the cash the target realizes (WAD).
    """
    cost: int256 = convert(math._mul_div(convert(abs(position.cost), uint256), convert(abs(moved), uint256), convert(abs(position.size), uint256), False), int256)
    if position.cost < 0:
        cost = -cost
    source: PerpPosition = position
    target: PerpPosition = held
    source.size -= moved
    source.cost -= cost
    target.size += moved
    target.cost += cost
    cash: int256 = 0
    if target.size == 0:
        cash = -target.cost
        target.cost = 0
    return source, target, cash


@internal
def _settle_funding(account: uint256, u: uint256, position: PerpPosition, cumulative: int256) -> int256:
    """
    @dev The funding `position` owes up to `cumulative`, rounded against the account.
    """
    cash: int256 = fixed._floor_div(-position.size * (cumulative - position.funding), IWAD)
    if cash != 0:
        log FundingSettled(account=account, underlying=u, amount=cash)
    return cash


@internal
@pure
def _oi_move(instrument_id: uint256, size: int256, held: int256, moved: int256) -> uint256:
    """
    @dev The change of open interest after `moved` units went from a position of `size` to
         one of `held`, as a word of `Markets.move_open_interest` (id in bits 0..31, signed
         change from bit 32); 0 when the long units are the same before and after, as when
         a bidder without a position buys a slice.
    """
    # each long is below 2**127: the change fits its 224 bits
    change: int256 = convert(self._long(size - moved) + self._long(held + moved), int256) - convert(
        self._long(size) + self._long(held), int256
    )
    if change == 0:
        return 0
    return instrument_id | (convert(convert(change, bytes32), uint256) << 32)


@internal
def _accrue_to_now(u: uint256) -> int256:
    """
    @dev Accrues the perp's funding to now at its current EMA (no trade, so the EMA does
         not move) and returns the cumulative index.
    """
    spot: uint256 = 0
    state: Funding = empty(Funding)
    cumulative: int256 = 0
    spot, state, cumulative = self._funding_now(u)
    self._put_funding(u, Funding(cumulative=cumulative, premium_ema=state.premium_ema, updated_at=block.timestamp))
    return cumulative


@internal
@view
def _funding_now(u: uint256) -> (uint256, Funding, int256):
    """
    @dev The index price, the stored funding state and the cumulative index accrued to now.
    """
    spot: uint256 = staticcall ORACLE.price(staticcall self.engine.spot_key(u))
    state: Funding = self._get_funding(u)
    settings: uint256 = self.settings
    cumulative: int256 = fixed._funding_now(
        state.cumulative,
        state.premium_ema,
        state.updated_at,
        spot,
        (settings >> 64) & (2**64 - 1),
        settings & (2**32 - 1),
        block.timestamp,
    )
    return spot, state, cumulative


@internal
@view
def _get_perp(account: uint256, u: uint256) -> PerpPosition:
    packed: PackedPerp = self.perps[account][u]
    position: PerpPosition = PerpPosition(size=0, cost=0, funding=packed.funding)
    position.size, position.cost = fixed._perp_line(packed.line)
    return position


@internal
def _put_perp(account: uint256, u: uint256, position: PerpPosition):
    assert abs(position.size) < 2**127 and abs(position.cost) < 2**127, "clearing: position out of range"
    line: uint256 = (convert(convert(position.cost, bytes32), uint256) << 128) | (
        convert(convert(position.size, bytes32), uint256) & (2**128 - 1)
    )
    self.perps[account][u] = PackedPerp(line=line, funding=position.funding)
    if position.size == 0:
        self.masks[account] &= ~(1 << u)
    else:
        self.masks[account] |= 1 << u


@internal
@view
def _get_funding(u: uint256) -> Funding:
    """
    @dev Unpacks cumulative (int128, bits 0..127), premium_ema (int80, 128..207) and
         updated_at (uint48, 208..255).
    """
    state: Funding = empty(Funding)
    state.cumulative, state.premium_ema, state.updated_at = fixed._funding_state(self.funding_words[u])
    return state


@internal
def _put_funding(u: uint256, state: Funding):
    assert abs(state.cumulative) < 2**127, "clearing: funding out of range"
    self.funding_words[u] = (
        (convert(convert(state.cumulative, bytes32), uint256) & (2**128 - 1))
        | ((convert(convert(state.premium_ema, bytes32), uint256) & (2**80 - 1)) << 128)
        | (state.updated_at << 208)
    )


@internal
def _accrue_funding(u: uint256, price: uint256, size: int256) -> int256:
    """
    @dev Accrues the perp's funding to now at the old EMA, then moves the EMA toward this
         trade's premium over the index by min(dt, window) / window times
         min(n, N) / N, n = |size|·index the fill's notional and N `funding_notional`.
    @return The cumulative funding index now (WAD USD per unit).
    @custom:security Weighting by time alone let one fill of 1 wei, after a quiet window,
         set the EMA to its +100% clamp and hold funding at its cap for hours. Now a fill
         of notional n < N moves the EMA by at most (n / N)·|premium − ema| <= 2·n / N,
         and only the first fill of a block moves it at all (dt = 0 after it). The
         notional is taken at the index, so an off-market price cannot inflate it.
    """
    spot: uint256 = 0
    state: Funding = empty(Funding)
    cumulative: int256 = 0
    spot, state, cumulative = self._funding_now(u)
    settings: uint256 = self.settings
    window: int256 = convert((settings >> 32) & (2**32 - 1), int256)
    dt: int256 = min(convert(block.timestamp - state.updated_at, int256), window)
    # |size| < 2**127 and spot <= the feed's bound (< 2**128): the product fits
    reference: uint256 = settings >> 136
    notional: int256 = convert(min(convert(abs(size), uint256) * spot // WAD, reference), int256)
    # a trade's premium counts at most +100% (it is never below -100%): the EMA fits its
    # 80 bits
    premium: int256 = min(fixed._floor_div((convert(price, int256) - convert(spot, int256)) * IWAD, convert(spot, int256)), IWAD)
    # |premium − ema| <= 2e18 < 2**61, dt <= 86,400 < 2**17, notional <= 1e30 < 2**100:
    # the product is below 2**178
    ema: int256 = state.premium_ema + fixed._floor_div(
        (premium - state.premium_ema) * dt * notional, window * convert(reference, int256)
    )
    self._put_funding(u, Funding(cumulative=cumulative, premium_ema=ema, updated_at=block.timestamp))
    return cumulative


@internal
@pure
def _resized(word: uint256, size: int256) -> uint256:
    """
    @dev `word` with its size replaced (see lib/fixed.vy `_word`).
    """
    return (word & (2**128 - 1)) | (convert(convert(size, bytes32), uint256) << 128)


@internal
@pure
def _size_in(words: DynArray[uint256, MAX_OPTIONS], instrument_id: uint256) -> int256:
    """
    @dev The size of `instrument_id` among an account's words, 0 if it holds none.
    """
    for word: uint256 in words:
        if word & (2**32 - 1) == instrument_id:
            return fixed._word_size(word)
    return 0


@internal
@view
def _with_size(
    words: DynArray[uint256, MAX_OPTIONS], instrument_id: uint256, u: uint256, kind: uint256, size: int256, capped: bool
) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev `words` with a position's size set: its word appended, updated, or removed (the
         last word takes its place). With `capped`, reverts "clearing: position cap" for a
         new position beyond `max_options` (not when a check puts back a position the
         account held before, which the cap may have been lowered below since).
    """
    slot: uint256 = 0
    for i: uint256 in range(len(words), bound=MAX_OPTIONS):
        if words[i] & (2**32 - 1) == instrument_id:
            slot = i + 1
            break
    result: DynArray[uint256, MAX_OPTIONS] = words
    if size == 0:
        if slot != 0:
            last: uint256 = result.pop()
            if slot <= len(result):
                result[slot - 1] = last
        return result
    word: uint256 = fixed._word(instrument_id, u, kind, size)
    if slot == 0:
        if capped:
            assert len(result) < (self.settings >> 128) & 255, "clearing: position cap"
        result.append(word)
    else:
        result[slot - 1] = word
    return result


@internal
@view
def _load_options(account: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev The account's option positions as full words (lib/fixed.vy `_word`).
    """
    return self._unpack_options(account, (self.masks[account] >> 128) & 255)


@internal
@view
def _unpack_options(account: uint256, count: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev Reads `count` halves from `option_pairs` as full words (lib/fixed.vy `_pair_word`).
    """
    words: DynArray[uint256, MAX_OPTIONS] = []
    pair: uint256 = 0
    for i: uint256 in range(count, bound=MAX_OPTIONS):
        if i % 2 == 0:
            pair = self.option_pairs[account][i // 2]
        words.append(fixed._pair_word(pair, i % 2))
    return words


@internal
@pure
def _half(word: uint256) -> uint256:
    """
    @dev A full word as a stored half (0 stays 0). Reverts "clearing: position out of range"
         for a size beyond int80.
    """
    size: int256 = fixed._word_size(word)
    assert size >= -2**79 and size < 2**79, "clearing: position out of range"
    return (word & (2**48 - 1)) | ((convert(convert(size, bytes32), uint256) & (2**80 - 1)) << 48)


@internal
def _store_options(account: uint256, old: DynArray[uint256, MAX_OPTIONS], new: DynArray[uint256, MAX_OPTIONS]):
    """
    @dev Stores `new` over `old` (the words as stored): writes only the slots whose halves
         changed, and the count if it changed. A half past the count is zero, so a slot
         emptied by a removal is cleared. Reverts "clearing: position out of range" for a
         size beyond int80.
    """
    n_old: uint256 = len(old)
    n_new: uint256 = len(new)
    for p: uint256 in range((max(n_old, n_new) + 1) // 2, bound=MAX_OPTIONS // 2):
        i: uint256 = 2 * p
        low: uint256 = 0
        high: uint256 = 0
        if i < n_new:
            low = new[i]
        if i + 1 < n_new:
            high = new[i + 1]
        changed: bool = False
        if i < n_old:
            changed = old[i] != low
        else:
            changed = low != 0
        if not changed:
            if i + 1 < n_old:
                changed = old[i + 1] != high
            else:
                changed = high != 0
        if changed:
            self.option_pairs[account][p] = self._half(low) | (self._half(high) << 128)
    if len(old) != len(new):
        self.masks[account] = (self.masks[account] & ~(255 << 128)) | (len(new) << 128)


@internal
@pure
def _long(size: int256) -> uint256:
    return convert(max(size, 0), uint256)


@internal
@view
def _find_future(account: uint256, instrument_id: uint256) -> (uint256, PerpPosition):
    """
    @dev The slot (1 + its index, 0 if none) and the size and cost of the account's future
         position in `instrument_id`.
    """
    position: PerpPosition = empty(PerpPosition)
    for i: uint256 in range((self.masks[account] >> 136) & 255, bound=MAX_FUTURES):
        word: uint256 = self.futures[account][i]
        if word & (2**32 - 1) == instrument_id:
            position.size, position.cost = fixed._future_line(word)
            return i + 1, position
    return 0, position


@internal
def _set_future(account: uint256, head: uint256, slot: uint256, position: PerpPosition):
    """
    @dev Stores a future position found at `slot` (see `_find_future`), its word starting
         with `head` (instrument | underlying | expiry, see `futures`): updated in place,
         appended, or removed when its size is 0 (the last word takes its place). Reverts
         "clearing: position cap" for a new position beyond MAX_FUTURES (a check putting
         back a position held before the trade always has the room its removal freed).
    """
    mask: uint256 = self.masks[account]
    count: uint256 = (mask >> 136) & 255
    if position.size == 0:
        if slot != 0:
            self.futures[account][slot - 1] = self.futures[account][count - 1]
            self.futures[account][count - 1] = 0
            self.masks[account] = mask - (1 << 136)
        return
    word: uint256 = self._future_word(head, position)
    if slot != 0:
        self.futures[account][slot - 1] = word
        return
    assert count < MAX_FUTURES, "clearing: position cap"
    self.futures[account][count] = word
    self.masks[account] = mask + (1 << 136)


@internal
@pure
def _future_word(head: uint256, position: PerpPosition) -> uint256:
    """
    @dev A future position as stored (see `futures`), after its `head`. Reverts "clearing:
         position out of range" for a size beyond int88 or a cost beyond int96.
    """
    # the bounds hold iff the fields give the values back
    word: uint256 = (
        head
        | ((convert(convert(position.size, bytes32), uint256) & (2**88 - 1)) << 72)
        | (convert(convert(position.cost, bytes32), uint256) << 160)
    )
    size: int256 = 0
    cost: int256 = 0
    size, cost = fixed._future_line(word)
    assert size == position.size and cost == position.cost, "clearing: position out of range"
    return word
