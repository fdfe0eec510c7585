# pragma version ~=0.4.3
"""
@title crossmargin clearinghouse book
@notice The clearinghouse's state and the position arithmetic every path that changes it
        shares: the trade path in `Clearinghouse.vy`, and the settlement, liquidation
        transfer and deleveraging paths in `ClearingMoves.vy`, which the clearinghouse runs
        in its own storage by delegatecall. Both contracts initialize this module in the
        same place, so their storage layouts are one (tests/test_clearing_layout.py).
"""

from snekmate.utils import math

from ..interfaces import IMarkets
from ..interfaces import IRiskEngine
from ..interfaces import IVault
from . import fixed


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool) -> (uint256, uint80, uint256, uint80): view


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
# @dev Set in a perp's funding word (bit 255, above its time) once its perp was
# deleveraged, and in the settings word (bit 255, above funding_notional) once any future
# was: only then do reads add the loss index.
LOSS_FLAG: constant(uint256) = 1 << 255
# @dev Set in a perp's or future's `linear` word (bit 255, above its expiry) while a
# deleveraging is pending on it (`pending_charge`): only then does a trade read it.
PENDING_FLAG: constant(uint256) = 1 << 255
# @dev The expiry field of a `linear` word, after its shift by 16.
EXPIRY_MASK: constant(uint256) = 2**40 - 1
# @dev Most perps and futures of one account: the sides one deleveraging charges.
MAX_LINEAR: constant(uint256) = MAX_UNDERLYINGS + MAX_FUTURES
M128: constant(uint256) = 2**128 - 1


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
# funding_notional (136..254); bit 255 is LOSS_FLAG (see `loss_index`), masked off where
# funding_notional is read.
settings: uint256

# @dev Perp instrument id of each underlying (written once, when the markets contract lists
# the perp), and the terms of each perp and future id, written once at its listing:
# underlying (bits 0..7) | kind PERP or FUTURE (8..15) | expiry (16..55, s; 0 for a perp).
# An option id has none: trades and settlements tell the kinds apart with one read.
perp_of: public(HashMap[uint256, uint256])
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
# @dev Deleveraging: the loss charged so far per unit of each perp's and future's longs
# (bits 0..127) and shorts (128..255), WAD USD per unit; it only grows (`deleverage`). A
# position's stored cost leaves out what it owed when it was written (`_framed`): its cost
# as read (`_get_perp`, `_find_future`, `positions`) adds what it owes now, rounded up, so
# every holder on a charged side pays its share when it next settles or closes. Read only
# for a perp whose funding word, or a future while the settings word, has LOSS_FLAG set.
loss_index: public(HashMap[uint256, uint256])
# @dev Exit charges: while an insolvent auction is open, the most per unit each side of its
# losing perps and futures may yet be charged (`ClearingMoves.mark`; WAD USD per unit,
# rounded up; longs in bits 0..127, shorts in 128..255; summed over open auctions). A trade
# shrinking a position on a side with a pending charge pays it per unit that leaves, into
# the vault's `exit_charges`, and the bids spend that first (`deleverage`), so leaving ahead
# of a visible deleveraging costs at least what staying would have.
pending_charge: public(HashMap[uint256, uint256])
# @dev Exit charges paid per instrument and not yet spent on its deleveraging (WAD USD);
# reset once nothing is pending on it.
collected: public(HashMap[uint256, uint256])
# @dev What `mark` added for each account in an insolvent auction, for `release`: per side,
# instrument (bits 0..31) | 1 << 32 for its longs | per-unit charge (128..255).
marked: HashMap[uint256, DynArray[uint256, MAX_LINEAR]]
# @dev Per account, one word: bit u set iff its perp on underlying u has a size (bits
# 1..MAX_UNDERLYINGS); the number of option positions in bits 128..135, of future positions
# in bits 136..143.
masks: HashMap[uint256, uint256]



# @dev A settlement, as `ClearingMoves.settle` returns it for the clearinghouse to log.
struct Settlement:
    future: bool
    size: int256
    price: uint256
    payoff: int256


# @dev One side of one instrument charged by `ClearingMoves.deleverage` (see the
# clearinghouse's `Deleveraged` event).
struct Charge:
    instrument: uint256
    # its longs (True) or its shorts
    longs: bool
    # what the loss index now charges that side in all and per unit (WAD USD)
    amount: uint256
    per_unit: uint256
    open_interest: uint256
    # what the exit charges paid of it besides (WAD USD; 0 for a pending charge, `mark`)
    from_exits: uint256


event FundingSettled:
    account: indexed(uint256)
    underlying: indexed(uint256)
    amount: int256



@deploy
def __init__(vault: IVault, oracle: IOracleRouter):
    VAULT = vault
    ORACLE = oracle


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
         not move) and returns the cumulative index. Only a liquidation's position transfer
         calls it: the index is read as a liquidation's valuation reads it (`_index`).
    """
    spot: uint256 = 0
    state: Funding = empty(Funding)
    cumulative: int256 = 0
    spot, state, cumulative = self._funding_now(u, True)
    self._put_funding(u, Funding(cumulative=cumulative, premium_ema=state.premium_ema, updated_at=block.timestamp))
    return cumulative


@internal
@view
def _funding_now(u: uint256, liquidation: bool) -> (uint256, Funding, int256):
    """
    @dev The index price (`_index`), the stored funding state and the cumulative index
         accrued to now.
    """
    spot: uint256 = self._index(u, liquidation)
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
def _index(u: uint256, liquidation: bool) -> uint256:
    """
    @dev The underlying's index price (WAD USD): the router's checked `price` for a trade;
         for a liquidation's moves (`liquidation`), as a liquidation's valuation reads it
         (a stale round used as is, an answer out of bounds clamped into them), so that a
         broken spot feed never blocks a start or a bid (SPECIFICATION.md, oracle router).
    """
    key: bytes32 = staticcall self.engine.spot_key(u)
    if not liquidation:
        return staticcall ORACLE.price(key)
    return (staticcall ORACLE.price_rounds(key, empty(bytes32), True))[0]


@internal
@view
def _get_perp(account: uint256, u: uint256) -> PerpPosition:
    """
    @dev A perp position, its cost with the deleveraging it owes now (see `loss_index`).
    """
    packed: PackedPerp = self.perps[account][u]
    position: PerpPosition = PerpPosition(size=0, cost=0, funding=packed.funding)
    position.size, position.cost = fixed._perp_line(packed.line)
    if position.size != 0 and self.funding_words[u] & LOSS_FLAG != 0:
        position.cost += self._owed_loss(self.perp_of[u], position.size, True)
    return position


@internal
def _put_perp(account: uint256, u: uint256, position: PerpPosition):
    """
    @dev Stores a perp position read by `_get_perp`, its cost framed (see `_owed_loss`).
    """
    cost: int256 = position.cost
    if position.size != 0 and self.funding_words[u] & LOSS_FLAG != 0:
        cost -= self._owed_loss(self.perp_of[u], position.size, False)
    self.perps[account][u] = PackedPerp(line=self._perp_word(position.size, cost), funding=position.funding)
    if position.size == 0:
        self.masks[account] &= ~(1 << u)
    else:
        self.masks[account] |= 1 << u


@internal
@pure
def _perp_word(size: int256, cost: int256) -> uint256:
    """
    @dev A perp line: size (int128, low half) and cost (int128, high half). Reverts
         "clearing: position out of range" beyond int128.
    """
    assert abs(size) < 2**127 and abs(cost) < 2**127, "clearing: position out of range"
    return (convert(convert(cost, bytes32), uint256) << 128) | (convert(convert(size, bytes32), uint256) & M128)


@internal
@view
def _owed_loss(instrument_id: uint256, size: int256, up: bool) -> int256:
    """
    @dev |size| times the loss index of the side `size` is on (WAD USD), rounded up (`up`,
         a cost as read) or down (a cost as stored): a position pays at least its exact
         share of every charge made while it was held, each read-and-store at most 1 wei more.
    """
    word: uint256 = self.loss_index[instrument_id]
    per_unit: uint256 = word >> 128
    if size > 0:
        per_unit = word & M128
    return convert(math._mul_div(convert(abs(size), uint256), per_unit, WAD, up), int256)


@internal
@view
def _get_funding(u: uint256) -> Funding:
    """
    @dev Unpacks cumulative (int128, bits 0..127), premium_ema (int80, 128..207) and
         updated_at (uint40, 208..247); bit 255 is LOSS_FLAG.
    """
    state: Funding = empty(Funding)
    state.cumulative, state.premium_ema, state.updated_at = fixed._funding_state(self.funding_words[u] & ~LOSS_FLAG)
    return state


@internal
def _put_funding(u: uint256, state: Funding):
    assert abs(state.cumulative) < 2**127, "clearing: funding out of range"
    self.funding_words[u] = (
        (convert(convert(state.cumulative, bytes32), uint256) & (2**128 - 1))
        | ((convert(convert(state.premium_ema, bytes32), uint256) & (2**80 - 1)) << 128)
        | (state.updated_at << 208)
        | (self.funding_words[u] & LOSS_FLAG)
    )


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
    for i: uint256 in range((self.masks[account] >> 136) & 255, bound=MAX_FUTURES):
        word: uint256 = self.futures[account][i]
        if word & (2**32 - 1) == instrument_id:
            return i + 1, self._future_position(word)
    return 0, empty(PerpPosition)


@internal
@view
def _future_position(word: uint256) -> PerpPosition:
    """
    @dev A stored future position's size and cost, its cost with the deleveraging it owes
         now (see `loss_index`).
    """
    position: PerpPosition = empty(PerpPosition)
    position.size, position.cost = fixed._future_line(word)
    if self.settings & LOSS_FLAG != 0:
        position.cost += self._owed_loss(word & (2**32 - 1), position.size, True)
    return position


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
    framed: PerpPosition = position
    if self.settings & LOSS_FLAG != 0:
        framed.cost -= self._owed_loss(head & (2**32 - 1), position.size, False)
    word: uint256 = self._future_word(head, framed)
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
