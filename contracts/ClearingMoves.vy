# pragma version ~=0.4.3
"""
@title crossmargin clearing moves
@notice The clearinghouse's position moves that are not trades: expiry settlement
        (`settle`), the liquidation transfer (`transfer_fraction`) and deleveraging
        (`deleverage`). The clearinghouse runs this code in its own storage by delegatecall
        (`Clearinghouse.MOVES`): both initialize lib/book.vy, its state and position
        arithmetic, in the same place, so every formula has one implementation and the two
        storage layouts are one (tests/test_clearing_layout.py). Called directly, every
        function reverts: it acts only in the clearinghouse's storage.
@custom:security No lock of its own: the clearinghouse's entry point holds the lock (the
        transient lock slot is shared under delegatecall), and `msg.sender` is the
        clearinghouse's caller, checked as the clearinghouse would.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IVault
from lib import book
from lib import fixed

# the clearinghouse's layout: the same modules in the same order
initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: book

exports: (book.VAULT, book.ORACLE)


# @dev This contract's own address: code running at it was called directly.
SELF: immutable(address)


@deploy
def __init__(vault: IVault, oracle: book.IOracleRouter):
    """
    @dev The clearinghouse's vault and oracle (this code reads them as immutables).
    """
    ownable.__init__()
    ownable_2step.__init__()
    book.__init__(vault, oracle)
    SELF = self


@external
def settle(account: uint256, instrument_id: uint256, round_hint: uint80) -> book.Settlement:
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
    assert self != SELF, "clearing: moves called directly"
    future: bool = (book.linear[instrument_id] >> 8) & 255 == book.FUTURE
    slot: uint256 = 0
    position: book.PerpPosition = empty(book.PerpPosition)
    words: DynArray[uint256, book.MAX_OPTIONS] = []
    if future:
        slot, position = book._find_future(account, instrument_id)
    else:
        words = book._load_options(account)
        position.size = book._size_in(words, instrument_id)
    terms: uint256 = 0
    price: uint256 = 0
    terms, price = extcall book.markets.settle(instrument_id, round_hint, position.size)
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
        if kind == book.CALL and price > strike:
            paid = price - strike
        elif kind == book.PUT and strike > price:
            paid = strike - price
    payoff: int256 = fixed._floor_div(size * convert(paid, int256), book.IWAD) - position.cost
    if future:
        book._set_future(account, 0, slot, empty(book.PerpPosition))
    else:
        book._store_options(account, words, book._with_size(words, instrument_id, (terms >> 8) & 255, kind, 0, True))
    extcall book.VAULT.settle_cash([IVault.CashDelta(account=account, delta=payoff)])
    return book.Settlement(future=future, size=size, price=price, payoff=payoff)


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
    assert self != SELF, "clearing: moves called directly"
    assert msg.sender == book.liquidator, "clearing: not liquidator"
    assert fraction <= book.WAD, "clearing: bad fraction"
    f: int256 = convert(fraction, int256)
    # in memory, stored once at the end: the source keeps each word in place (f < 1:
    # |moved| < |size|) or is emptied (f = 1: every size moves); the target's words change
    # as `_with_size` would change them, each looked up once
    words: DynArray[uint256, book.MAX_OPTIONS] = book._load_options(source)
    held_words: DynArray[uint256, book.MAX_OPTIONS] = book._load_options(target)
    left: DynArray[uint256, book.MAX_OPTIONS] = words
    bought: DynArray[uint256, book.MAX_OPTIONS] = held_words
    moves: DynArray[uint256, book.MAX_OPTIONS + book.MAX_UNDERLYINGS + book.MAX_FUTURES] = []
    for i: uint256 in range(len(words), bound=book.MAX_OPTIONS):
        word: uint256 = words[i]
        size: int256 = fixed._word_size(word)
        # |size| < 2**79 and f <= 1e18: the product fits; `//` truncates toward zero
        moved: int256 = size * f // book.IWAD
        if moved == 0:
            continue
        left[i] = book._resized(word, size - moved)
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
            for k: uint256 in range(min(len(held_words), len(bought)), bound=book.MAX_OPTIONS):
                if bought[k] & (2**32 - 1) == instrument_id:
                    j = k + 1
                    break
        held: int256 = 0
        if j == 0:
            assert len(bought) < (book.settings >> 128) & 255, "clearing: position cap"
            bought.append(book._resized(word, moved))
        else:
            held = fixed._word_size(bought[j - 1])
            if held + moved == 0:
                # netted out: the last word takes its place
                last: uint256 = bought.pop()
                if j <= len(bought):
                    bought[j - 1] = last
            else:
                bought[j - 1] = book._resized(word, held + moved)
        move: uint256 = book._oi_move(instrument_id, size, held, moved)
        if move != 0:
            moves.append(move)
    if fraction == book.WAD:
        left = []
    book._store_options(source, words, left)
    book._store_options(target, held_words, bought)
    source_cash: int256 = 0
    target_cash: int256 = 0
    mask: uint256 = book.masks[source]
    for u: uint256 in range(1, book.MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        position: book.PerpPosition = book._get_perp(source, u)
        moved: int256 = position.size * f // book.IWAD
        if moved == 0:
            continue
        cumulative: int256 = book._accrue_to_now(u)
        held: book.PerpPosition = book._get_perp(target, u)
        source_cash += book._settle_funding(source, u, position, cumulative)
        target_cash += book._settle_funding(target, u, held, cumulative)
        move: uint256 = book._oi_move(book.perp_of[u], position.size, held.size, moved)
        if move != 0:
            moves.append(move)
        realized: int256 = 0
        position, held, realized = book._split(position, held, moved)
        target_cash += realized
        position.funding = cumulative
        held.funding = cumulative
        book._put_perp(source, u, position)
        book._put_perp(target, u, held)
    # futures: the perps' rule without funding, last first: the source keeps each word in
    # place (f < 1) or removes it, the last word, as every size moves (f = 1)
    count: uint256 = (book.masks[source] >> 136) & 255
    for k: uint256 in range(count, bound=book.MAX_FUTURES):
        i: uint256 = count - 1 - k
        word: uint256 = book.futures[source][i]
        position: book.PerpPosition = book._future_position(word)
        moved: int256 = position.size * f // book.IWAD
        if moved == 0:
            continue
        instrument_id: uint256 = word & (2**32 - 1)
        head: uint256 = word & (2**72 - 1)
        slot: uint256 = 0
        held: book.PerpPosition = empty(book.PerpPosition)
        slot, held = book._find_future(target, instrument_id)
        move: uint256 = book._oi_move(instrument_id, position.size, held.size, moved)
        if move != 0:
            moves.append(move)
        realized: int256 = 0
        position, held, realized = book._split(position, held, moved)
        target_cash += realized
        book._set_future(source, head, i + 1, position)
        book._set_future(target, head, slot, held)
    if len(moves) != 0:
        extcall book.markets.move_open_interest(moves)
    return source_cash, target_cash


@external
def deleverage(
    account: uint256, amount: uint256, fraction: uint256
) -> (uint256, uint256, DynArray[book.Charge, book.MAX_LINEAR]):
    """
    @notice Charges what the insurance fund left of an insolvent slice's loss, `amount`
            (WAD USD), to the other side of the account's losing perps and futures: each
            losing position takes a share of it in proportion to its loss. In its market
            that share is paid first by the exit charges of those who left the side while
            the auction was open (`mark`), and the rest is spread over the side the account
            is not on, pro rata to size, by the side's loss index growing
            floor(rest / open interest) per unit.
    @param fraction The slice being bought (WAD): at most that share of the account's
           linear losses is charged.
    @return The amount charged (WAD), at most `amount` (the vault socializes the rest); the
            part of it the exit charges paid (WAD); each side charged, for the clearinghouse
            to log (`Deleveraged`).
    @dev Only the liquidator, before it moves the slice. A position's loss is
         max(0, cost − floor(size·spot)) at the index price (funding owed is left out: it is
         settled into cash on every touch). A market's open interest counts its longs, which
         are as many units as its shorts, so the side charged holds exactly that many.
    """
    assert self != SELF, "clearing: moves called directly"
    assert msg.sender == book.liquidator, "clearing: not liquidator"
    items: DynArray[uint256, book.MAX_LINEAR] = []
    losses: DynArray[uint256, book.MAX_LINEAR] = []
    total: uint256 = 0
    items, losses, total = self._losing(account)
    charged: uint256 = 0
    spent: uint256 = 0
    charges: DynArray[book.Charge, book.MAX_LINEAR] = []
    if total == 0:
        return charged, spent, charges
    spread: uint256 = min(amount, total * fraction // book.WAD)
    # the vault's exit charges, read once if any market has some (another market's
    # deleveraging may have spent what this one's count says)
    left: uint256 = max_value(uint256)
    for k: uint256 in range(len(items), bound=book.MAX_LINEAR):
        share: uint256 = spread * losses[k] // total
        instrument_id: uint256 = items[k] & (2**32 - 1)
        paid: uint256 = book.collected[instrument_id]
        if paid != 0 and share != 0:
            if left == max_value(uint256):
                left = staticcall book.VAULT.exit_charges()
            paid = min(paid, min(share, left))
            book.collected[instrument_id] -= paid
            left -= paid
        else:
            paid = 0
        charge: book.Charge = self._charge(items[k], share - paid)
        if charge.amount != 0 or paid != 0:
            charge.instrument = instrument_id
            charge.longs = items[k] >> 32 != 0
            charge.from_exits = paid
            charged += charge.amount + paid
            spent += paid
            charges.append(charge)
    return charged, spent, charges


@external
def mark(account: uint256, bound: uint256) -> DynArray[book.Charge, book.MAX_LINEAR]:
    """
    @notice The loss of an insolvent auction became known: each side its deleveraging may
            charge gets a pending charge per unit, ceil(share / open interest), its share
            being ceil(min(bound, Σ losses) · its loss / Σ losses): the most that side may
            pay for this account at the prices of now. A trade that takes units off the
            side pays it per unit (`fixed._exit_charge`) until `release`.
    @param bound What the fund cannot cover of the auction's reserved loss (WAD USD).
    @return Each side marked (`amount` its share), for the clearinghouse to log.
    @dev Only the liquidator, once per insolvent auction.
    """
    assert self != SELF, "clearing: moves called directly"
    assert msg.sender == book.liquidator, "clearing: not liquidator"
    items: DynArray[uint256, book.MAX_LINEAR] = []
    losses: DynArray[uint256, book.MAX_LINEAR] = []
    total: uint256 = 0
    items, losses, total = self._losing(account)
    marks: DynArray[uint256, book.MAX_LINEAR] = []
    charges: DynArray[book.Charge, book.MAX_LINEAR] = []
    spread: uint256 = min(bound, total)
    for k: uint256 in range(len(items), bound=book.MAX_LINEAR):
        instrument_id: uint256 = items[k] & (2**32 - 1)
        open_interest: uint256 = staticcall book.markets.open_interest(instrument_id)
        if open_interest == 0:
            continue
        share: uint256 = math._mul_div(spread, losses[k], total, True)
        per_unit: uint256 = math._mul_div(share, book.WAD, open_interest, True)
        if per_unit == 0:
            continue
        longs: bool = items[k] >> 32 != 0
        side: uint256 = 128
        if longs:
            side = 0
        word: uint256 = book.pending_charge[instrument_id]
        # at most 2**128 − 1 per unit in all (what `release` takes back is what was added):
        # a side of a few wei never makes the start revert
        per_unit = min(per_unit, book.M128 - ((word >> side) & book.M128))
        if per_unit == 0:
            continue
        pending: uint256 = ((word >> side) & book.M128) + per_unit
        book.pending_charge[instrument_id] = (word & ~(book.M128 << side)) | (pending << side)
        book.linear[instrument_id] |= book.PENDING_FLAG
        marks.append(items[k] | (per_unit << 128))
        charges.append(
            book.Charge(
                instrument=instrument_id, longs=longs, amount=share, per_unit=per_unit, open_interest=open_interest, from_exits=0
            )
        )
    book.marked[account] = marks
    return charges


@external
def release(account: uint256):
    """
    @notice Releases the pending charges `mark` added for `account`; a market with none
            left forgets its exit charges (what the vault holds of them goes to the fund
            once no loss is pending).
    @dev Only the liquidator, when the insolvent auction ends.
    """
    assert self != SELF, "clearing: moves called directly"
    assert msg.sender == book.liquidator, "clearing: not liquidator"
    for item: uint256 in book.marked[account]:
        instrument_id: uint256 = item & (2**32 - 1)
        side: uint256 = 128
        if (item >> 32) & 1 != 0:
            side = 0
        word: uint256 = book.pending_charge[instrument_id]
        word -= (item >> 128) << side
        book.pending_charge[instrument_id] = word
        if word == 0:
            book.linear[instrument_id] &= ~book.PENDING_FLAG
            book.collected[instrument_id] = 0
    book.marked[account] = []


@internal
@view
def _losing(
    account: uint256,
) -> (DynArray[uint256, book.MAX_LINEAR], DynArray[uint256, book.MAX_LINEAR], uint256):
    """
    @dev The account's losing perps (by underlying) and futures not yet expired (as
         stored), each as instrument (bits 0..31) | 1 << 32 if its longs pay (the account
         is short), with each one's loss at the index price (WAD USD) and their total.
    """
    items: DynArray[uint256, book.MAX_LINEAR] = []
    losses: DynArray[uint256, book.MAX_LINEAR] = []
    total: uint256 = 0
    mask: uint256 = book.masks[account]
    # the index price of each underlying, read once (index u; 0 until read)
    spots: uint256[book.MAX_UNDERLYINGS + 1] = empty(uint256[book.MAX_UNDERLYINGS + 1])
    for u: uint256 in range(1, book.MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        position: book.PerpPosition = book._get_perp(account, u)
        spots[u] = self._spot(u)
        loss: uint256 = self._loss(spots[u], position)
        if loss != 0:
            items.append(book.perp_of[u] | (convert(position.size < 0, uint256) << 32))
            losses.append(loss)
            total += loss
    for i: uint256 in range((mask >> 136) & 255, bound=book.MAX_FUTURES):
        word: uint256 = book.futures[account][i]
        # an expired future is left to the socialization: its holders settle at their
        # expiry in any order, so its open interest no longer counts the side charged
        if block.timestamp >= (word >> 40) & (2**32 - 1):
            continue
        position: book.PerpPosition = book._future_position(word)
        u: uint256 = (word >> 32) & 255
        if spots[u] == 0:
            spots[u] = self._spot(u)
        loss: uint256 = self._loss(spots[u], position)
        if loss != 0:
            items.append((word & (2**32 - 1)) | (convert(position.size < 0, uint256) << 32))
            losses.append(loss)
            total += loss
    return items, losses, total


@internal
@view
def _spot(u: uint256) -> uint256:
    """
    @dev The underlying's index price (WAD USD), as a liquidation reads it (`book._index`):
         `mark` and `deleverage` run inside a start or a bid, which a broken feed must
         never block.
    """
    return book._index(u, True)


@internal
@pure
def _loss(spot: uint256, position: book.PerpPosition) -> uint256:
    """
    @dev A perp's or future's loss at the index price `spot` (WAD USD):
         max(0, cost − floor(size·spot)).
    """
    value: int256 = fixed._floor_div(position.size * convert(spot, int256), book.IWAD) - position.cost
    return convert(max(-value, 0), uint256)


@internal
def _charge(item: uint256, share: uint256) -> book.Charge:
    """
    @dev Charges `share` (WAD USD) to one side of an instrument (see `deleverage`).
    @return The side and what its loss index now charges it: floor(per_unit·open_interest)
            <= share in all (0: nothing charged).
    """
    instrument_id: uint256 = item & (2**32 - 1)
    longs: bool = item >> 32 != 0
    open_interest: uint256 = staticcall book.markets.open_interest(instrument_id)
    if open_interest == 0 or share == 0:
        return empty(book.Charge)
    side: uint256 = 128
    if longs:
        side = 0
    word: uint256 = book.loss_index[instrument_id]
    # the index stops at 2**128 − 1 per unit: a share beyond it (a side of a few wei holding
    # a loss of thousands) is not charged, and the vault socializes it, so that no position
    # can make an insolvent account's bid revert
    per_unit: uint256 = min(share * book.WAD // open_interest, book.M128 - ((word >> side) & book.M128))
    charged: uint256 = per_unit * open_interest // book.WAD
    if charged == 0:
        return empty(book.Charge)
    index: uint256 = ((word >> side) & book.M128) + per_unit
    book.loss_index[instrument_id] = (word & ~(book.M128 << side)) | (index << side)
    # from now on reads add the index (a position stored before it first grew owed nothing)
    linear: uint256 = book.linear[instrument_id]
    if (linear >> 8) & 255 == book.PERP:
        book.funding_words[linear & 255] |= book.LOSS_FLAG
    else:
        book.settings |= book.LOSS_FLAG
    return book.Charge(
        instrument=instrument_id, longs=longs, amount=charged, per_unit=per_unit, open_interest=open_interest, from_exits=0
    )
