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
from lib import book
from lib import fixed

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: book

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    book.VAULT,
    book.ORACLE,
    book.engine,
    book.exchange,
    book.liquidator,
    book.markets,
    book.perp_of,
    book.loss_index,
    book.pending_charge,
    book.collected,
)

implements: IEngine
implements: IClearinghouse


# @dev The contract whose code runs expiry settlement, the liquidation transfer and
# deleveraging in this contract's storage (delegatecall; see lib/book.vy).
MOVES: public(immutable(address))
# @dev Most sides one deleveraging charges: an account's perps and futures.
MAX_CHARGES: constant(uint256) = book.MAX_LINEAR
# @dev The vault's cash entry for its exit charges (`Vault.exit_charges`).
EXIT_CHARGES: constant(uint256) = 0


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

event PositionsTransferred:
    source: indexed(uint256)
    target: indexed(uint256)
    fraction: uint256

event Deleveraged:
    instrument: indexed(uint256)
    # the side charged: its longs (True) or its shorts
    longs: bool
    # what the index now charges that side in all (WAD USD) and per unit (WAD USD)
    amount: uint256
    per_unit: uint256
    open_interest: uint256
    # what the exit charges of those who left the side paid besides (WAD USD)
    from_exits: uint256


event ExitCharged:
    account: indexed(uint256)
    instrument: indexed(uint256)
    # what the account paid for the units it took off a side with a pending charge (WAD USD)
    amount: uint256


event ChargePending:
    instrument: indexed(uint256)
    # the side: its longs (True) or its shorts
    longs: bool
    # the most the insolvent auction may charge that side in all, and per unit (WAD USD)
    amount: uint256
    per_unit: uint256
    open_interest: uint256


event EngineSet:
    engine: indexed(address)


event ExchangeSet:
    exchange: indexed(address)


event LiquidatorSet:
    liquidator: indexed(address)


event MarketsSet:
    markets: indexed(address)


@deploy
def __init__(vault: IVault, oracle: book.IOracleRouter, moves: address):
    """
    @dev The market parameters come from the markets contract (`set_markets`); `moves` is a
         `ClearingMoves` deployed with the same vault and oracle.
    """
    ownable.__init__()
    ownable_2step.__init__()
    book.__init__(vault, oracle)
    assert moves.is_contract, "clearing: moves not a contract"
    MOVES = moves


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
    assert msg.sender == book.exchange, "clearing: not exchange"
    assert fill.size != 0, "clearing: zero size"
    assert fill.price != 0, "clearing: zero price"
    assert fill.maker != fill.taker, "clearing: self trade"
    assert fill.insurance_fee <= fill.maker_fee + fill.taker_fee, "clearing: bad fee split"
    assert abs(fill.size) < 2**127, "clearing: size out of range"
    assert not staticcall book.VAULT.frozen(fill.maker) and not staticcall book.VAULT.frozen(fill.taker), "clearing: account in auction"

    operator_price: uint256 = 0
    if fill.operator_sides != 0:
        operator_price = fill.price
    # a perp or a future is known here by its terms; any other id is an option or not listed
    linear: uint256 = book.linear[fill.instrument]
    u: uint256 = linear & 255
    kind: uint256 = (linear >> 8) & 255
    maker_cash: int256 = -convert(fill.maker_fee, int256)
    taker_cash: int256 = -convert(fill.taker_fee, int256)
    maker_perp: book.PerpPosition = empty(book.PerpPosition)
    taker_perp: book.PerpPosition = empty(book.PerpPosition)
    cumulative: int256 = 0
    maker_slot: uint256 = 0
    taker_slot: uint256 = 0
    maker_words: DynArray[uint256, book.MAX_OPTIONS] = []
    taker_words: DynArray[uint256, book.MAX_OPTIONS] = []
    # the positions before the fill (an option's size only)
    if kind == book.PERP:
        cumulative = self._accrue_funding(u, fill.price, fill.size)
        maker_perp = book._get_perp(fill.maker, u)
        taker_perp = book._get_perp(fill.taker, u)
    elif kind == book.FUTURE:
        maker_slot, maker_perp = book._find_future(fill.maker, fill.instrument)
        taker_slot, taker_perp = book._find_future(fill.taker, fill.instrument)
    else:
        maker_words = book._load_options(fill.maker)
        taker_words = book._load_options(fill.taker)
        maker_perp.size = book._size_in(maker_words, fill.instrument)
        taker_perp.size = book._size_in(taker_words, fill.instrument)
    maker_old: int256 = maker_perp.size
    taker_old: int256 = taker_perp.size
    # reverts for an unknown or expired instrument
    terms: uint256 = extcall book.markets.on_trade(fill.instrument, fill.size, maker_old, taker_old, operator_price)
    exits: uint256 = 0
    if kind != 0:
        # a future's word head: instrument | underlying | expiry (see `futures`)
        head: uint256 = fill.instrument | (u << 32) | (((linear >> 16) & book.EXPIRY_MASK) << 40)
        maker_cash += self._trade_linear(fill.maker, head, u, kind, maker_slot, maker_perp, fill.size, fill.price, cumulative)
        taker_cash += self._trade_linear(fill.taker, head, u, kind, taker_slot, taker_perp, -fill.size, fill.price, cumulative)
        if linear & book.PENDING_FLAG != 0:
            # leaving a side an open insolvent auction will charge pays its pending charge
            pending: uint256 = book.pending_charge[fill.instrument]
            maker_exit: uint256 = self._exit(fill.maker, fill.instrument, maker_old, fill.size, pending)
            taker_exit: uint256 = self._exit(fill.taker, fill.instrument, taker_old, -fill.size, pending)
            maker_cash -= convert(maker_exit, int256)
            taker_cash -= convert(taker_exit, int256)
            exits = maker_exit + taker_exit
            book.collected[fill.instrument] += exits
    else:
        kind = terms & 255
        u = (terms >> 8) & 255
        book._store_options(
            fill.maker, maker_words, book._with_size(maker_words, fill.instrument, u, kind, maker_old + fill.size, True)
        )
        book._store_options(
            fill.taker, taker_words, book._with_size(taker_words, fill.instrument, u, kind, taker_old - fill.size, True)
        )
        # the buyer pays the premium rounded up, the seller receives it rounded down
        units: uint256 = convert(abs(fill.size), uint256)
        paid: int256 = convert(math._mul_div(units, fill.price, book.WAD, True), int256)
        received: int256 = convert(math._mul_div(units, fill.price, book.WAD, False), int256)
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
    if exits != 0:
        entries.append(IVault.CashDelta(account=EXIT_CHARGES, delta=convert(exits, int256)))
    extcall book.VAULT.settle_cash(entries)

    paused: bool = staticcall book.VAULT.paused()
    self._check_trade(fill.maker, fill.instrument, kind, u, maker_old, maker_perp, maker_cash, paused)
    self._check_trade(fill.taker, fill.instrument, kind, u, taker_old, taker_perp, taker_cash, paused)
    log Traded(maker=fill.maker, taker=fill.taker, instrument=fill.instrument, size=fill.size, price=fill.price)


@external
def settle(account: uint256, instrument_id: uint256, round_hint: uint80):
    """
    @notice Settles `account`'s expired option or future into cash at the settlement price:
            the first oracle round at or after expiry (`round_hint`, see the oracle router).
            An option pays floor(size·intrinsic), a future floor(size·price) − cost. Anyone
            may call it; it is never paused.
    @dev Runs `ClearingMoves.settle` in this storage.
    """
    done: book.Settlement = abi_decode(raw_call(MOVES, msg.data, max_outsize=128, is_delegate_call=True), book.Settlement)
    if done.future:
        log FutureSettled(account=account, instrument=instrument_id, size=done.size, settlement_price=done.price, payoff=done.payoff)
    else:
        log OptionSettled(account=account, instrument=instrument_id, size=done.size, settlement_price=done.price, payoff=done.payoff)


@external
def transfer_fraction(source: uint256, target: uint256, fraction: uint256) -> (int256, int256):
    """
    @notice Moves `fraction` (WAD, <= 1) of every position of `source` to `target`: a bidder
            buying a slice of a liquidated account (only the liquidator).
    @return The cash this settles for the source and the target (WAD, signed).
    @dev Runs `ClearingMoves.transfer_fraction` in this storage.
    """
    settled: (int256, int256) = abi_decode(raw_call(MOVES, msg.data, max_outsize=64, is_delegate_call=True), (int256, int256))
    log PositionsTransferred(source=source, target=target, fraction=fraction)
    return settled


@external
def deleverage(account: uint256, amount: uint256, fraction: uint256) -> (uint256, uint256):
    """
    @notice Charges up to `amount` (WAD USD) of an insolvent slice's loss to the other side
            of the account's losing perps and futures (only the liquidator).
    @return The amount charged (WAD), and how much of it the exit charges paid (WAD): the
            liquidator takes that from the vault's `exit_charges`.
    @dev Runs `ClearingMoves.deleverage` in this storage.
    """
    charged: uint256 = 0
    spent: uint256 = 0
    charges: DynArray[book.Charge, MAX_CHARGES] = []
    charged, spent, charges = abi_decode(
        raw_call(MOVES, msg.data, max_outsize=128 + 192 * MAX_CHARGES, is_delegate_call=True),
        (uint256, uint256, DynArray[book.Charge, MAX_CHARGES]),
    )
    for charge: book.Charge in charges:
        log Deleveraged(
            instrument=charge.instrument,
            longs=charge.longs,
            amount=charge.amount,
            per_unit=charge.per_unit,
            open_interest=charge.open_interest,
            from_exits=charge.from_exits,
        )
    return charged, spent


@external
def mark(account: uint256, bound: uint256):
    """
    @notice An insolvent auction's loss became known: up to `bound` (WAD USD, what the fund
            cannot cover of it) may be charged to the other side of the account's losing
            perps and futures. Each such side gets a pending charge per unit, the most its
            share may cost a unit, which a trade taking units off it pays (`ExitCharged`)
            until `release` (only the liquidator).
    @dev Runs `ClearingMoves.mark` in this storage.
    """
    charges: DynArray[book.Charge, MAX_CHARGES] = abi_decode(
        raw_call(MOVES, msg.data, max_outsize=64 + 192 * MAX_CHARGES, is_delegate_call=True),
        DynArray[book.Charge, MAX_CHARGES],
    )
    for charge: book.Charge in charges:
        log ChargePending(
            instrument=charge.instrument,
            longs=charge.longs,
            amount=charge.amount,
            per_unit=charge.per_unit,
            open_interest=charge.open_interest,
        )


@external
def release(account: uint256):
    """
    @notice The insolvent auction of `account` ended: the pending charges it added are
            released (only the liquidator).
    @dev Runs `ClearingMoves.release` in this storage.
    """
    raw_call(MOVES, msg.data, is_delegate_call=True)


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
    pairs: DynArray[uint256, book.MAX_OPTIONS // 2] = []
    lines: DynArray[IClearinghouse.PerpLine, book.MAX_UNDERLYINGS] = []
    settings: uint256 = book.settings
    mask: uint256 = book.masks[account]
    for p: uint256 in range((((mask >> 128) & 255) + 1) // 2, bound=book.MAX_OPTIONS // 2):
        pairs.append(book.option_pairs[account][p])
    for u: uint256 in range(1, book.MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        packed: book.PackedPerp = book.perps[account][u]
        state: uint256 = book.funding_words[u]
        if state & book.LOSS_FLAG != 0:
            # the cost with the deleveraging it owes now, as `_get_perp` reads it
            position: book.PerpPosition = book._get_perp(account, u)
            packed.line = book._perp_word(position.size, position.cost)
        lines.append(
            IClearinghouse.PerpLine(underlying=u, line=packed.line, funding=packed.funding, state=state & ~book.LOSS_FLAG)
        )
    futures: DynArray[uint256, book.MAX_FUTURES] = []
    for i: uint256 in range((mask >> 136) & 255, bound=book.MAX_FUTURES):
        word: uint256 = book.futures[account][i]
        if settings & book.LOSS_FLAG != 0:
            word = book._future_word(word & (2**72 - 1), book._future_position(word))
        futures.append(word)
    return IClearinghouse.Positions(
        options=pairs,
        perps=lines,
        futures=futures,
        funding_cap=(settings >> 64) & (2**64 - 1),
        funding_interval=settings & (2**32 - 1),
    )


@external
@view
def funding(underlying: uint256) -> book.Funding:
    """
    @notice Funding state of the underlying's perp: the cumulative index per long unit (WAD
            USD), the EMA premium (WAD fraction) and when the index was last accrued (s).
    """
    return book._get_funding(underlying)


@external
@view
def option_size(account: uint256, instrument_id: uint256) -> int256:
    """
    @notice Signed size (WAD units) of an option position.
    """
    return book._size_in(book._load_options(account), instrument_id)


@external
@view
def perp_mask(account: uint256) -> uint256:
    """
    @notice Bit u set iff the account holds a perp on underlying u.
    """
    return book.masks[account] & (2**128 - 1)


@external
@view
def option_ids(account: uint256) -> DynArray[uint256, book.MAX_OPTIONS]:
    """
    @notice Instrument ids of the account's option positions.
    """
    ids: DynArray[uint256, book.MAX_OPTIONS] = []
    words: DynArray[uint256, book.MAX_OPTIONS] = book._load_options(account)
    for word: uint256 in words:
        ids.append(word & (2**32 - 1))
    return ids


@external
@view
def perp_position(account: uint256, underlying: uint256) -> book.PerpPosition:
    """
    @notice Signed size (WAD units), cost (WAD USD) and funding index at the last settlement
            (WAD USD per unit) of a perp position.
    """
    return book._get_perp(account, underlying)


# ---------------------------------------------------------------- owner


@external
def set_markets(markets: IMarkets):
    """
    @notice Sets the markets contract, once, and copies its settings word.
    """
    ownable._check_owner()
    assert book.markets.address == empty(address), "clearing: markets set"
    assert markets.address.is_contract, "clearing: markets not a contract"
    book.markets = markets
    book.settings = staticcall markets.settings()
    log MarketsSet(markets=markets.address)


@external
def set_engine(engine: IRiskEngine):
    ownable._check_owner()
    assert engine.address.is_contract, "clearing: engine not a contract"
    book.engine = engine
    log EngineSet(engine=engine.address)


@external
def set_liquidator(liquidator: address):
    ownable._check_owner()
    assert liquidator.is_contract, "clearing: liquidator not a contract"
    book.liquidator = liquidator
    log LiquidatorSet(liquidator=liquidator)


@external
def set_exchange(exchange: address):
    ownable._check_owner()
    assert exchange.is_contract, "clearing: exchange not a contract"
    book.exchange = exchange
    log ExchangeSet(exchange=exchange)


# ---------------------------------------------------------------- markets


@external
def open_linear(underlying: uint256, instrument_id: uint256, expiry: uint256):
    """
    @notice The markets contract listed `underlying`'s perp (`expiry` 0: its funding starts
            now) or a future on it expiring at `expiry` (s), as `instrument_id`.
    @dev Only the markets contract.
    """
    assert msg.sender == book.markets.address, "clearing: not markets"
    if expiry == 0:
        book.perp_of[underlying] = instrument_id
        book.linear[instrument_id] = underlying | (book.PERP << 8)
        book._put_funding(underlying, book.Funding(cumulative=0, premium_ema=0, updated_at=block.timestamp))
    else:
        book.linear[instrument_id] = underlying | (book.FUTURE << 8) | (expiry << 16)


@external
def set_settings(settings: uint256):
    """
    @notice The markets contract's settings word changed (see `settings`).
    @dev Only the markets contract.
    """
    assert msg.sender == book.markets.address, "clearing: not markets"
    book.settings = settings | (book.settings & book.LOSS_FLAG)


# ---------------------------------------------------------------- internals


@internal
def _check_trade(
    account: uint256,
    instrument_id: uint256,
    kind: uint256,
    u: uint256,
    old_size: int256,
    old_perp: book.PerpPosition,
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
    after: IRiskEngine.Margin = extcall book.engine.refresh_margin(account)
    if not paused and after.equity >= convert(after.initial, int256) and staticcall book.engine.new_risk_open():
        return
    new_perp: book.PerpPosition = empty(book.PerpPosition)
    # the option (or future) words after the trade, and as they were before it
    words: DynArray[uint256, book.MAX_OPTIONS] = []
    before_words: DynArray[uint256, book.MAX_OPTIONS] = []
    slot: uint256 = 0
    # a future's word head: instrument | underlying | expiry (see `futures`)
    head: uint256 = instrument_id | (u << 32) | (((book.linear[instrument_id] >> 16) & book.EXPIRY_MASK) << 40)
    if kind == book.PERP:
        new_perp = book._get_perp(account, u)
        book._put_perp(account, u, old_perp)
    elif kind == book.FUTURE:
        slot, new_perp = book._find_future(account, instrument_id)
        book._set_future(account, head, slot, old_perp)
    else:
        words = book._load_options(account)
        before_words = book._with_size(words, instrument_id, u, kind, old_size, False)
        book._store_options(account, words, before_words)
    # an option held before the trade has a current array already (refresh_margin above)
    before: IRiskEngine.Margin = staticcall book.engine.margin_adjusted(account, cash_delta)
    if kind == book.PERP:
        book._put_perp(account, u, new_perp)
    elif kind == book.FUTURE:
        slot, old_perp = book._find_future(account, instrument_id)
        book._set_future(account, head, slot, new_perp)
    else:
        book._store_options(account, before_words, words)
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
    open: bool = staticcall book.engine.check_new_risk()
    raise "clearing: insufficient margin"


@internal
def _trade_linear(
    account: uint256,
    head: uint256,
    u: uint256,
    kind: uint256,
    slot: uint256,
    old: book.PerpPosition,
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
    position: book.PerpPosition = old
    cash: int256 = 0
    if kind == book.PERP:
        cash = book._settle_funding(account, u, position, cumulative)
        position.funding = cumulative
    position.size += size
    position.cost += fixed._ceil_div(size * convert(price, int256), book.IWAD)
    if position.size == 0:
        cash -= position.cost
        position.cost = 0
    if kind == book.PERP:
        book._put_perp(account, u, position)
    else:
        book._set_future(account, head, slot, position)
    return cash


@internal
def _exit(account: uint256, instrument_id: uint256, old: int256, size: int256, pending: uint256) -> uint256:
    """
    @dev The exit charge of one side of a fill (`fixed._exit_charge`), logged.
    """
    charge: uint256 = fixed._exit_charge(old, size, pending)
    if charge != 0:
        log ExitCharged(account=account, instrument=instrument_id, amount=charge)
    return charge


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
    state: book.Funding = empty(book.Funding)
    cumulative: int256 = 0
    spot, state, cumulative = book._funding_now(u, False)
    settings: uint256 = book.settings
    window: int256 = convert((settings >> 32) & (2**32 - 1), int256)
    dt: int256 = min(convert(block.timestamp - state.updated_at, int256), window)
    # |size| < 2**127 and spot <= the feed's bound (< 2**128): the product fits
    # funding_notional is bits 136..254: bit 255 is LOSS_FLAG, set for good once a future
    # is deleveraged (left in, it froze every perp's EMA)
    reference: uint256 = (settings & ~book.LOSS_FLAG) >> 136
    notional: int256 = convert(min(convert(abs(size), uint256) * spot // book.WAD, reference), int256)
    # a trade's premium counts at most +100% (it is never below -100%): the EMA fits its
    # 80 bits
    premium: int256 = min(fixed._floor_div((convert(price, int256) - convert(spot, int256)) * book.IWAD, convert(spot, int256)), book.IWAD)
    # |premium − ema| <= 2e18 < 2**61, dt <= 86,400 < 2**17, notional <= 1e30 < 2**100:
    # the product is below 2**178
    ema: int256 = state.premium_ema + fixed._floor_div(
        (premium - state.premium_ema) * dt * notional, window * convert(reference, int256)
    )
    book._put_funding(u, book.Funding(cumulative=cumulative, premium_ema=ema, updated_at=block.timestamp))
    return cumulative
