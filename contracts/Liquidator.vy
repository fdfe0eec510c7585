# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin liquidator
@notice Dutch auctions of accounts below maintenance margin (SPECIFICATION.md §7).

        Anyone starts an auction for an account with `equity − MM < 0`; the vault then
        freezes it (no trades, withdrawals or moves out; deposits that cure it stay open).
        A bidder buys a fraction f of every position, collateral and cash balance:
          solvent  (equity E > 0)   the bidder pays ceil(f·E·d(t)); d falls linearly from
                   `start_multiplier` (0.95) to `mid_multiplier` (0.70) over `first_phase`
                   (15 min), then to 0 over `second_phase` (12 h). f is capped at the
                   fraction that brings the account back to the buffer margin
                   (E − buffer·MM >= 0, buffer 1.15), unless E is below `small_account`
                   (then it may be taken whole while below the buffer). No account at or
                   above the buffer is sold, whatever its size: a cure stands. The account
                   pays the liquidation fee, min(f·E·fee, price), to the insurance fund;
                   the keeper that started the auction gets its tip (below) out of the
                   fees, each paying what it can until the whole tip is paid.
          insolvent (E <= 0)        the insurance fund pays the bidder
                   f·(−E + MM·min(t_i, ramp)/ramp) (in whole token units), t_i the time since the auction was
                   marked insolvent (`mark_insolvent`, or at start). The loss waterfall:
                   the fund pays what it can; the rest is charged to the other side of
                   the account's losing perps and futures (`Clearinghouse.deleverage`, a
                   loss index per market and side), and what that cannot carry is
                   socialized over every positive cash balance by the vault. The loss is
                   always paid in full: loss = fund + deleveraged + socialized. With
                   no fee to take it from, the fund pays the starting keeper's tip after
                   the loss, from what it has left (the rest stays owed).
        The starter's tip is min(`keeper_tip`, 5% of the maintenance requirement the start
        proved), recorded at the start: an auction pays a tip in proportion to the risk the
        account carried, so dust accounts are no faucet for the fund.
        A bid names the account, the fraction, a price limit (the most cash the bidder
        pays; negative when it is paid) and the bidder's subaccount, which must be at or
        above initial margin afterwards. The auction ends when the account is taken whole,
        or by `terminate` once it is back above the buffer. For a fixed portfolio the price
        never rises: d(t) only falls and the insolvent payment only grows.
        Standing bids: an account registers the multiplier at or below which it buys, the
        most fraction and cash it takes per auction and optionally the underlyings it
        accepts; anyone `execute`s it once d(t) reaches it (an insolvent auction at once)
        for `standing_tip`, paid by the bidder. A buyer that would end below initial margin
        makes the execution a skip (event, nothing moved), not a revert.
@custom:security All entry points hold the lock. No function is paused: liquidation goes on
        while the vault is paused and while new risk is closed (the margin reads it uses
        are never gated). Every bidder and account check uses the engine's stored-array
        valuation (`refresh_margin`), so a bid never prices off a stale risk array.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math
from ethereum.ercs import IERC20Detailed

from interfaces import IClearinghouse
from interfaces import IRiskEngine
from interfaces import IVault
from lib import accounts

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


interface IInsuranceFund:
    def cover(amount: uint256, recipient: address, subaccount: uint96) -> uint256: nonpayable
    def totalAssets() -> uint256: view


# @dev This contract's own view, read through a call so that its buffers stay out of
# `execute`'s memory (they would cost every execution about 2,000 gas of expansion).
interface ISelf:
    def underlyings(account: uint256) -> uint256: view


interface IMarginView:
    def margin(account: uint256) -> IRiskEngine.Margin: view
    def underlying_ids(name: bytes32) -> uint256: view


WAD: constant(uint256) = 10**18
# @dev The vault's cash entry for its exit charges (`Vault.exit_charges`).
EXIT_CHARGES: constant(uint256) = 0
# @dev Bit 0 of an engine hint: value with the oracle router's liquidation reads (a stale
#      round used as is, an answer out of bounds clamped into them) instead of reverting,
#      so a broken feed never blocks a start, a bid or the insolvent mark (`terminate`, which
#      frees the account, keeps the checked reads).
LIQUIDATION_READS: constant(uint256) = 1
# @dev Added to the buffer cap (WAD): MM is not exactly linear in f (per-position rounding),
# so the cap aims a little past the buffer instead of a hair short of it.
CAP_SLACK: constant(uint256) = 10**15

# @dev Parameter bounds.
MIN_START_MULTIPLIER: constant(uint256) = 5 * 10**17
MIN_PHASE: constant(uint256) = 60
MAX_FIRST_PHASE: constant(uint256) = 2 * 3_600
MAX_SECOND_PHASE: constant(uint256) = 7 * 86_400
MIN_RAMP: constant(uint256) = 5 * 60
MAX_RAMP: constant(uint256) = 86_400
MAX_BUFFER: constant(uint256) = 2 * 10**18
MAX_FEE: constant(uint256) = 2 * 10**17
MAX_TIP: constant(uint256) = 1_000 * 10**18
MAX_SMALL_ACCOUNT: constant(uint256) = 1_000_000 * 10**18

# @dev Auction record, one word: starter (160 bits, zeroed once its whole tip is paid) |
# started at (36, s: good until the year 4147) | marked insolvent at (36, 0 while solvent) |
# most still owed to the starter (24, in TIP_UNITs: at most 1,677 USD; less what was paid).
STARTED_SHIFT: constant(uint256) = 160
INSOLVENT_SHIFT: constant(uint256) = 196
OWED_SHIFT: constant(uint256) = 232
TIME_MASK: constant(uint256) = 2**36 - 1
OWED_MASK: constant(uint256) = 2**24 - 1
# @dev Unit of the owed tip in the record (WAD USD): 0.0001 USD.
TIP_UNIT: constant(uint256) = 10**14
# @dev The starter's tip is at most this share (WAD) of the maintenance requirement the start
# proved: a dust account's auction pays a dust tip (the fund pays it when insolvent).
TIP_SHARE: constant(uint256) = 5 * 10**16
M20: constant(uint256) = 2**20 - 1
M64: constant(uint256) = 2**64 - 1
M96: constant(uint256) = 2**96 - 1
M80: constant(uint256) = 2**80 - 1
M16: constant(uint256) = 2**16 - 1
# @dev Unit of the standing-bid tip in `terms` (WAD USD): 0.01 USD.
STANDING_TIP_UNIT: constant(uint256) = 10**16
STARTER_MASK: constant(uint256) = 2**160 - 1

# @dev A standing bid, one word per bidder account: multiplier (bits 0..63, WAD) | fraction
# per auction (64..127, WAD) | most cash per auction (128..223, WAD USD) | underlyings mask
# (224..255; 0 = any). Never 0 while registered (the fraction is not).
FRACTION_SHIFT: constant(uint256) = 64
CASH_SHIFT: constant(uint256) = 128
UNDERLYINGS_SHIFT: constant(uint256) = 224
# @dev Its use in one auction: the auction's start (bits 0..35, s) | fraction taken
# (36..99, WAD) | cash paid (100..255, WAD USD).
USED_FRACTION_SHIFT: constant(uint256) = 36
USED_CASH_SHIFT: constant(uint256) = 100
# @dev The one reason a standing bid is skipped instead of reverted: its buyer would end
# below initial margin (the revert `_bid` raises, caught from the self-call).
UNDER_MARGIN: constant(String[31]) = "liquidator: bidder under margin"
# @dev A standing bid's slice worth no more at the mark than its price and the tip.
STANDING_BELOW_TIP: constant(String[36]) = "liquidator: standing slice below tip"
MAX_STANDING_TIP: constant(uint256) = 100 * 10**18


# @dev The vault (freezes, moves collateral and cash, socializes), the clearinghouse (moves
# positions), the margin engine (values accounts) and the insurance fund (pays insolvent bids).
VAULT: public(immutable(IVault))
CLEARING: public(immutable(IClearinghouse))
ENGINE: public(immutable(IRiskEngine))
FUND: public(immutable(IInsuranceFund))
# @dev 10**(18 − decimals) of the settlement asset: fund payouts are in its token units.
SCALE: immutable(uint256)

# @dev The parameters in two words, read together by every bid (`_curve`, `_terms`):
# curve = start_multiplier (bits 0..63) | mid_multiplier (64..127) | first_phase
# (128..147) | second_phase (148..167) | insolvent_ramp (168..187) | liquidation_fee
# (192..255); terms = buffer (0..63) | keeper_tip (64..159) | small_account (160..239) |
# the tip a standing bid's account pays its executor (240..255, in 0.01 USD: <= 100 USD).
curve: uint256
terms: uint256
auctions: HashMap[uint256, uint256]
# @dev Standing bids by bidder account id (layout above; 0 = none).
standing_bids: HashMap[uint256, uint256]
# @dev The loss of an insolvent auction still reserved in the vault (WAD): −E + MM when it
# was found insolvent, less each slice's share (`Vault.pending_loss`).
reserved: public(HashMap[uint256, uint256])
# @dev What each standing bid took of each auction, by account then bidder (layout above):
# a start time other than the running auction's means nothing yet.
standing_usage: HashMap[uint256, HashMap[uint256, uint256]]


event AuctionStarted:
    account: indexed(uint256)
    keeper: indexed(address)
    equity: int256
    # the maintenance requirement the start proved the account below (with a hint, the
    # lower bound counted at the hinted scenarios)
    maintenance: uint256


event AuctionInsolvent:
    account: indexed(uint256)
    equity: int256


event Bid:
    account: indexed(uint256)
    bidder: indexed(uint256)
    # fraction bought (WAD), cash the bidder paid (negative: was paid), fee to the fund
    fraction: uint256
    price: int256
    fee: uint256
    equity: int256
    maintenance: uint256


event LossCovered:
    account: indexed(uint256)
    # loss paid to the bidder (WAD) = fund payout + deleveraged + socialized, exactly
    loss: uint256
    fund_payout: uint256
    deleveraged: uint256
    socialized: uint256


event KeeperTipped:
    account: indexed(uint256)
    keeper: indexed(address)
    tip: uint256


event AuctionEnded:
    account: indexed(uint256)
    equity: int256
    maintenance: uint256


event StandingBidSet:
    bidder: indexed(uint256)
    multiplier: uint256
    fraction: uint256
    max_cash: uint256
    underlyings: uint256


event StandingBidCancelled:
    bidder: indexed(uint256)


event StandingBidExecuted:
    account: indexed(uint256)
    bidder: indexed(uint256)
    executor: indexed(address)
    # tip to the executor (WAD USD); the slice itself is in the `Bid` event before it
    tip: uint256


event StandingBidSkipped:
    account: indexed(uint256)
    bidder: indexed(uint256)
    executor: indexed(address)
    reason: String[64]


event StandingTipSet:
    tip: uint256


event CurveSet:
    start_multiplier: uint256
    mid_multiplier: uint256
    first_phase: uint256
    second_phase: uint256
    insolvent_ramp: uint256


event TermsSet:
    buffer: uint256
    liquidation_fee: uint256
    keeper_tip: uint256
    small_account: uint256


@deploy
def __init__(vault: IVault, clearing: IClearinghouse, engine: IRiskEngine, fund: IInsuranceFund, settlement_asset: address):
    """
    @dev Defaults from SPECIFICATION.md: 0.95 → 0.70 over 15 min → 0 over 12 h, insolvent
         payment ramp 1 h, buffer 1.15, fee 5%, tip 5 USD, small accounts below 1,000 USD,
         standing-bid tip 1 USD.
    """
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    CLEARING = clearing
    ENGINE = engine
    FUND = fund
    SCALE = 10 ** (18 - convert(staticcall IERC20Detailed(settlement_asset).decimals(), uint256))
    self._set_curve(95 * 10**16, 70 * 10**16, 15 * 60, 12 * 3_600, 3_600)
    self._set_terms(115 * 10**16, 5 * 10**16, 5 * 10**18, 1_000 * 10**18)
    self._set_standing_tip(10**18)


# ---------------------------------------------------------------- auctions


@external
def start(account: uint256, hint: uint256 = 0):
    """
    @notice Starts the auction of an account below maintenance margin and freezes it. The
            caller is the keeper paid `keeper_tip` out of the first liquidation fee.
    @param hint Optional: byte u names underlying u's worst scenario (the engine's
           `refresh_bound`). The account must then be below the maintenance requirement
           counted at those scenarios, a lower bound of the real one: a wrong hint can
           only make the start fail, and a right one makes it cheaper. An insolvent
           account's loss is reserved from the whole requirement, valued again without
           the hint (a hint chosen to shrink it would let leavers escape their share).
    """
    assert self.auctions[account] == 0, "liquidator: already in auction"
    m: IRiskEngine.Margin = extcall ENGINE.refresh_bound(account, hint | LIQUIDATION_READS)
    assert m.equity < convert(m.maintenance, int256), "liquidator: account healthy"
    # the most the starter may be paid, from the requirement the start proved (no parameter
    # read: `keeper_tip` bounds it again when it is paid)
    owed: uint256 = min(m.maintenance * TIP_SHARE // WAD // TIP_UNIT, OWED_MASK)
    record: uint256 = (block.timestamp << STARTED_SHIFT) | (owed << OWED_SHIFT)
    if owed != 0:
        record |= convert(msg.sender, uint256)
    if m.equity <= 0:
        record |= block.timestamp << INSOLVENT_SHIFT
        if hint != 0:
            # the hinted requirement is a lower bound: the reserve is the whole −E + MM
            m = extcall ENGINE.refresh_bound(account, LIQUIDATION_READS)
        self._reserve(account, m)
    self.auctions[account] = record
    extcall VAULT.set_frozen(account, True)
    log AuctionStarted(account=account, keeper=msg.sender, equity=m.equity, maintenance=m.maintenance)


@external
def mark_insolvent(account: uint256):
    """
    @notice Starts the insolvent payment ramp of an auction whose account's equity fell to
            zero or below after it started (anyone may call it).
    """
    record: uint256 = self._record(account)
    assert (record >> INSOLVENT_SHIFT) & TIME_MASK == 0, "liquidator: already insolvent"
    m: IRiskEngine.Margin = extcall ENGINE.refresh_bound(account, LIQUIDATION_READS)
    assert m.equity <= 0, "liquidator: account solvent"
    self.auctions[account] = record | (block.timestamp << INSOLVENT_SHIFT)
    self._reserve(account, m)
    log AuctionInsolvent(account=account, equity=m.equity)


@external
def bid(account: uint256, fraction: uint256, max_price: int256, subaccount: uint96 = 0) -> (uint256, int256):
    """
    @notice Buys `fraction` (WAD, 0 < f <= 1; capped, see the notice) of the account into
            the caller's `subaccount`, which must be at or above initial margin afterwards.
    @param max_price Most cash (WAD) the bidder pays for the slice; a negative limit asks
           to be paid at least that much (insolvent auctions).
    @return The fraction bought and its price (WAD; negative when the bidder was paid).
    """
    return self._bid(account, msg.sender, subaccount, fraction, max_price, max_value(uint256), empty(address), 0)


@external
def execute(account: uint256, bidder: uint256) -> (uint256, int256):
    """
    @notice Executes `bidder`'s standing bid against `account`'s running auction (anyone
            may call it): once d(t) is at or below the bid's multiplier (an insolvent
            auction at once), it buys the least of the fraction the bid has left in this
            auction, the auction's cap and what the bid's cash left pays at d(t). The
            bidder's account pays the caller `standing_tip` (its account, subaccount 0).
            If the bidder's account would end below initial margin, nothing moves: the
            execution is skipped (`StandingBidSkipped`), not reverted.
    @param bidder The standing bid's account id (`owner << 96 | subaccount`).
    @return The fraction bought and its price (WAD; negative when the bidder was paid);
            (0, 0) when skipped.
    @custom:security The slice runs in a self-call (`fill_standing`, `@reentrant` and
            callable only by this contract) so that its revert can be caught; this call
            holds the lock throughout, so nothing else re-enters. Only the bidder-under-
            margin revert is a skip; any other (an out-of-gas included) is re-raised.
    """
    self._record(account)
    standing: uint256 = self.standing_bids[bidder]
    assert standing != 0, "liquidator: no standing bid"
    wanted: uint256 = standing >> UNDERLYINGS_SHIFT
    if wanted != 0:
        touched: uint256 = staticcall ISelf(self).underlyings(account)
        assert touched & ~wanted == 0, "liquidator: underlying not in bid"
    success: bool = False
    # a revert reason of up to 64 characters fits (every one of ours)
    response: Bytes[160] = b""
    success, response = raw_call(
        self,
        abi_encode(
            account, bidder, standing, msg.sender, method_id=method_id("fill_standing(uint256,uint256,uint256,address)")
        ),
        max_outsize=160,
        revert_on_failure=False,
    )
    if not success:
        if keccak256(response) != keccak256(abi_encode(UNDER_MARGIN, method_id=method_id("Error(string)"))):
            raw_revert(response)
        log StandingBidSkipped(account=account, bidder=bidder, executor=msg.sender, reason="bidder under margin")
        return 0, 0
    taken: uint256 = 0
    price: int256 = 0
    tip: uint256 = 0
    taken, price, tip = abi_decode(response, (uint256, int256, uint256))
    log StandingBidExecuted(account=account, bidder=bidder, executor=msg.sender, tip=tip)
    return taken, price


@external
@reentrant
def fill_standing(account: uint256, bidder: uint256, standing: uint256, executor: address) -> (uint256, int256, uint256):
    """
    @notice The body of `execute`, called only by this contract (under `execute`'s lock).
    @param standing The bidder's standing bid as `execute` read it.
    @return The fraction bought, its price and the executor's tip (WAD).
    """
    assert msg.sender == self, "liquidator: not self"
    started: uint256 = (self.auctions[account] >> STARTED_SHIFT) & TIME_MASK
    used: uint256 = self.standing_usage[account][bidder]
    if used & TIME_MASK != started:
        used = started
    used_fraction: uint256 = (used >> USED_FRACTION_SHIFT) & M64
    used_cash: uint256 = used >> USED_CASH_SHIFT
    limit: uint256 = (standing >> FRACTION_SHIFT) & M64
    max_cash: uint256 = (standing >> CASH_SHIFT) & M96
    assert used_fraction < limit, "liquidator: standing bid used"
    tip: uint256 = self._terms(240, M16) * STANDING_TIP_UNIT
    taken: uint256 = 0
    price: int256 = 0
    # each solvent slice pays at most the cash left; a bid registered again with less cash
    # than it already paid in this auction has none left
    taken, price = self._bid(
        account,
        accounts._owner(bidder),
        convert(bidder & M96, uint96),
        limit - used_fraction,
        convert(max_cash - min(used_cash, max_cash), int256),
        standing & M64,
        executor,
        tip,
    )
    if price > 0:
        used_cash += convert(price, uint256)
    self.standing_usage[account][bidder] = (
        started | ((used_fraction + taken) << USED_FRACTION_SHIFT) | (used_cash << USED_CASH_SHIFT)
    )
    return taken, price, tip


@external
def terminate(account: uint256):
    """
    @notice Ends an auction whose account is back at or above the buffer margin (by bids,
            deposits or prices), and unfreezes it. Anyone may call it.
    """
    self._record(account)
    m: IRiskEngine.Margin = extcall ENGINE.refresh_margin(account)
    assert m.equity >= convert(math._mul_div(m.maintenance, self._terms(0, M64), WAD, True), int256), "liquidator: below buffer"
    self._end(account, m.equity, m.maintenance)


# ---------------------------------------------------------------- standing bids


@external
def register(subaccount: uint96, multiplier: uint256, fraction: uint256, max_cash: uint256, underlyings: uint256):
    """
    @notice Registers (or replaces) the standing bid of the caller's `subaccount`: it buys
            once d(t) is at or below `multiplier`, at most `fraction` and `max_cash` per
            auction, only accounts whose positions and collateral touch no underlying
            outside `underlyings` (bit u = underlying id u; 0 = any).
    @param multiplier WAD, at most `start_multiplier`.
    @param fraction The most it takes of one auction (WAD, 0 < f <= 1): the sum of its
           slices' fractions, each of the account as it was at that slice.
    @param max_cash The most it pays in one auction (WAD USD, > 0, < 2**96).
    """
    assert multiplier <= self._curve(0, M64), "liquidator: multiplier above start"
    assert fraction != 0 and max_cash != 0, "liquidator: zero size"
    assert fraction <= WAD, "liquidator: bad fraction"
    assert max_cash <= M96 and underlyings < 2**32, "liquidator: out of bounds"
    bidder: uint256 = accounts._id(msg.sender, subaccount)
    self.standing_bids[bidder] = (
        multiplier | (fraction << FRACTION_SHIFT) | (max_cash << CASH_SHIFT) | (underlyings << UNDERLYINGS_SHIFT)
    )
    log StandingBidSet(bidder=bidder, multiplier=multiplier, fraction=fraction, max_cash=max_cash, underlyings=underlyings)


@external
def cancel(bidder: uint256):
    """
    @notice Cancels a standing bid; only its account's owner may.
    @param bidder The standing bid's account id.
    """
    assert accounts._owner(bidder) == msg.sender, "liquidator: not bid owner"
    assert self.standing_bids[bidder] != 0, "liquidator: no standing bid"
    self.standing_bids[bidder] = 0
    log StandingBidCancelled(bidder=bidder)


@external
@view
def standing_bid(bidder: uint256) -> (uint256, uint256, uint256, uint256):
    """
    @notice The standing bid of `bidder` (all zero when none): multiplier (WAD), fraction
            per auction (WAD), most cash per auction (WAD USD), underlyings mask.
    """
    standing: uint256 = self.standing_bids[bidder]
    return (
        standing & M64,
        (standing >> FRACTION_SHIFT) & M64,
        (standing >> CASH_SHIFT) & M96,
        standing >> UNDERLYINGS_SHIFT,
    )


@external
@view
@reentrant
def underlyings(account: uint256) -> uint256:
    """
    @notice Bit u set iff `account` holds a position on underlying u (option, perp,
            future) or collateral tracking it: what a standing bid's mask is checked
            against. `@reentrant`: `execute` reads it through a call; it reads only the
            clearinghouse's and the vault's reentrant views and the engine's ids.
    """
    return self._underlyings(account)


@external
@view
def standing_used(account: uint256, bidder: uint256) -> (uint256, uint256):
    """
    @notice What `bidder`'s standing bid took of `account`'s running auction: the sum of
            its fractions (WAD) and the cash it paid (WAD USD); zero when none.
    """
    record: uint256 = self.auctions[account]
    used: uint256 = self.standing_usage[account][bidder]
    if record == 0 or used & TIME_MASK != (record >> STARTED_SHIFT) & TIME_MASK:
        return 0, 0
    return (used >> USED_FRACTION_SHIFT) & M64, used >> USED_CASH_SHIFT


# ---------------------------------------------------------------- views


@external
@view
def start_multiplier() -> uint256:
    """
    @notice d at the start (WAD).
    """
    return self._curve(0, M64)


@external
@view
def mid_multiplier() -> uint256:
    """
    @notice d at the end of the first phase (WAD).
    """
    return self._curve(64, M64)


@external
@view
def first_phase() -> uint256:
    """
    @notice Length (s) of the fall from the start to the mid multiplier.
    """
    return self._curve(128, M20)


@external
@view
def second_phase() -> uint256:
    """
    @notice Length (s) of the fall from the mid multiplier to zero.
    """
    return self._curve(148, M20)


@external
@view
def insolvent_ramp() -> uint256:
    """
    @notice Time (s) over which the insolvent payment grows from −E to −E + MM.
    """
    return self._curve(168, M20)


@external
@view
def liquidation_fee() -> uint256:
    """
    @notice Liquidation fee (WAD fraction of the equity bought).
    """
    return self._curve(192, M64)


@external
@view
def buffer() -> uint256:
    """
    @notice Buffer margin factor (WAD, >= 1): a bid may restore E − buffer·MM >= 0, no more.
    """
    return self._terms(0, M64)


@external
@view
def keeper_tip() -> uint256:
    """
    @notice The largest starting keeper's tip (WAD USD); an auction's is at most 5% of the
            maintenance requirement its start proved (`tip_owed`).
    """
    return self._terms(64, M96)


@external
@view
def small_account() -> uint256:
    """
    @notice Accounts with less equity (WAD USD) may be taken whole.
    """
    return self._terms(160, M80)


@external
@view
def auction(account: uint256) -> (address, uint256, uint256):
    """
    @notice The auction of `account`: the keeper still owed its tip (empty once paid), the
            start time and the time it was marked insolvent (0 while solvent); all zero
            when there is none.
    """
    record: uint256 = self.auctions[account]
    return (
        convert(record & STARTER_MASK, address),
        (record >> STARTED_SHIFT) & TIME_MASK,
        (record >> INSOLVENT_SHIFT) & TIME_MASK,
    )


@external
@view
def tip_owed(account: uint256) -> uint256:
    """
    @notice What the starting keeper of `account`'s auction is still owed (WAD USD):
            min(`keeper_tip`, 5% of the maintenance requirement the start proved), 0 once
            paid or when there is no auction.
    """
    record: uint256 = self.auctions[account]
    if record & STARTER_MASK == 0:
        return 0
    return self._owed_units(record) * TIP_UNIT


@external
@view
def in_auction(account: uint256) -> bool:
    return self.auctions[account] != 0


@external
@view
def multiplier(elapsed: uint256) -> uint256:
    """
    @notice d(t) (WAD) `elapsed` seconds after the start; never rises.
    """
    return self._multiplier(elapsed)


@external
@view
def quote(account: uint256, fraction: uint256) -> (uint256, int256):
    """
    @notice What `bid(account, fraction, ...)` would buy and cost now, from the engine's
            view valuation (arrays computed in memory if stale): the fraction after the
            buffer cap and the price (WAD; negative when the bidder is paid, before any
            shortfall of socialization).
    """
    record: uint256 = self._record(account)
    m: IRiskEngine.Margin = staticcall IMarginView(ENGINE.address).margin(account)
    if m.equity > 0:
        equity: uint256 = convert(m.equity, uint256)
        d: uint256 = self._multiplier(block.timestamp - ((record >> STARTED_SHIFT) & TIME_MASK))
        cap: uint256 = self._cap(equity, m.maintenance, d)
        taken: uint256 = fraction
        if cap == 0 or equity >= self._terms(160, M80):
            taken = min(fraction, cap)
        return taken, convert(math._mul_div(taken * equity, d, WAD * WAD, True), int256)
    insolvent_at: uint256 = (record >> INSOLVENT_SHIFT) & TIME_MASK
    elapsed: uint256 = 0
    if insolvent_at != 0:
        elapsed = min(block.timestamp - insolvent_at, self._curve(168, M20))
    whole: uint256 = convert(-m.equity, uint256) + m.maintenance * elapsed // self._curve(168, M20)
    return fraction, -convert(whole * fraction // WAD // SCALE * SCALE, int256)


# ---------------------------------------------------------------- owner


@external
def set_curve(
    start_multiplier: uint256, mid_multiplier: uint256, first_phase: uint256, second_phase: uint256, insolvent_ramp: uint256
):
    """
    @notice Price curve: multipliers (WAD, 0.5 <= start <= 1, mid <= start), phases (s,
            first 1 min..2 h, second 1 min..7 days), insolvent ramp (s, 5 min..1 day).
            Running auctions follow the new curve.
    """
    ownable._check_owner()
    self._set_curve(start_multiplier, mid_multiplier, first_phase, second_phase, insolvent_ramp)


@external
def set_terms(buffer: uint256, liquidation_fee: uint256, keeper_tip: uint256, small_account: uint256):
    """
    @notice Buffer factor (WAD, 1..2), liquidation fee (WAD, <= 20%), keeper tip (WAD USD,
            <= 1,000), small-account cutoff (WAD USD, <= 1,000,000).
    """
    ownable._check_owner()
    self._set_terms(buffer, liquidation_fee, keeper_tip, small_account)


@external
@view
def standing_tip() -> uint256:
    """
    @notice What a standing bid's account pays whoever executes it (WAD USD).
    """
    return self._terms(240, M16) * STANDING_TIP_UNIT


@external
def set_standing_tip(tip: uint256):
    """
    @notice What a standing bid's account pays whoever executes it (WAD USD, <= 100;
            rounded down to 0.01 USD).
    """
    ownable._check_owner()
    self._set_standing_tip(tip)


# ---------------------------------------------------------------- internals


@internal
@view
def _curve(bit: uint256, mask: uint256) -> uint256:
    return (self.curve >> bit) & mask


@internal
@view
def _terms(bit: uint256, mask: uint256) -> uint256:
    return (self.terms >> bit) & mask


@internal
@view
def _record(account: uint256) -> uint256:
    record: uint256 = self.auctions[account]
    assert record != 0, "liquidator: no auction"
    return record


@internal
def _bid(
    account: uint256,
    owner: address,
    subaccount: uint96,
    fraction: uint256,
    max_price: int256,
    threshold: uint256,
    executor: address,
    tip_in: uint256,
) -> (uint256, int256):
    """
    @dev A bid of `(owner, subaccount)` (`bid` and `execute` share it). A standing bid
         passes its multiplier as `threshold` (a direct bid max_value): a solvent slice
         then needs d <= threshold and is cut to what `max_price` pays at d instead of
         reverting; its account pays `tip_in` to `(executor, 0)` before the margin check.
    """
    record: uint256 = self._record(account)
    assert fraction != 0 and fraction <= WAD, "liquidator: bad fraction"
    bidder: uint256 = accounts._id(owner, subaccount)
    assert bidder != account, "liquidator: bidder is liquidated"
    assert not staticcall VAULT.frozen(bidder), "liquidator: bidder in auction"

    m: IRiskEngine.Margin = extcall ENGINE.refresh_bound(account, LIQUIDATION_READS)
    taken: uint256 = fraction
    price: int256 = 0
    fee: uint256 = 0
    if m.equity > 0:
        equity: uint256 = convert(m.equity, uint256)
        d: uint256 = self._multiplier(block.timestamp - ((record >> STARTED_SHIFT) & TIME_MASK))
        # no account at or above the buffer is sold, whatever its size: a cure by deposit
        # stands until `terminate` (small accounts are exempt from the cap only below it)
        cap: uint256 = self._cap(equity, m.maintenance, d)
        assert cap != 0, "liquidator: account above buffer"
        if equity >= self._terms(160, M80):
            taken = min(fraction, cap)
        if threshold != max_value(uint256):
            assert d <= threshold, "liquidator: above standing multiplier"
            if d != 0:
                # rounded down, so that its price (rounded up) stays within the cash left
                taken = min(taken, math._mul_div(convert(max_price, uint256), WAD * WAD, equity * d, False))
            assert taken != 0, "liquidator: standing bid used"
        # the bidder pays rounded up; the fee rounds down and never exceeds the price
        cost: uint256 = math._mul_div(taken * equity, d, WAD * WAD, True)
        price = convert(cost, int256)
        assert price <= max_price, "liquidator: price limit"
        # a standing bid buys only a slice worth more at the mark than it pays with the
        # executor's tip: a dust auction cannot drain it tip by tip
        if tip_in != 0:
            assert taken * equity // WAD >= cost + tip_in, STANDING_BELOW_TIP
        fee = min(math._mul_div(taken * equity, self._curve(192, M64), WAD * WAD, False), cost)
        # the starter is paid out of each fee, in whole TIP_UNITs, until it has all it is
        # owed: a dust bid pays it nothing and voids nothing
        tip: uint256 = 0
        starter: address = convert(record & STARTER_MASK, address)
        if starter != empty(address):
            owed: uint256 = self._owed_units(record)
            tip = min(owed, fee // TIP_UNIT)
            if tip != 0:
                self.auctions[account] = self._with_owed(record, owed - tip)
                tip *= TIP_UNIT
                log KeeperTipped(account=account, keeper=starter, tip=tip)
        self._transfer(account, bidder, taken)
        entries: DynArray[IVault.CashDelta, 5] = [
            IVault.CashDelta(account=bidder, delta=-price - convert(tip_in, int256)),
            IVault.CashDelta(account=account, delta=convert(cost - fee, int256)),
            IVault.CashDelta(account=accounts._id(FUND.address, 0), delta=convert(fee - tip, int256)),
            IVault.CashDelta(account=accounts._id(starter, 0), delta=convert(tip, int256)),
        ]
        # a standing bid's tip to its executor rides in the same settlement
        if tip_in != 0:
            entries.append(IVault.CashDelta(account=accounts._id(executor, 0), delta=convert(tip_in, int256)))
        extcall VAULT.settle_cash(entries)
    else:
        insolvent_at: uint256 = (record >> INSOLVENT_SHIFT) & TIME_MASK
        ramp: uint256 = self._curve(168, M20)
        elapsed: uint256 = 0
        if insolvent_at != 0:
            elapsed = min(block.timestamp - insolvent_at, ramp)
        # the payment per whole account, then the slice's, both rounded down, the slice's to
        # whole token units of the settlement asset (what the fund pays in)
        whole: uint256 = convert(-m.equity, uint256) + m.maintenance * elapsed // ramp
        loss: uint256 = whole * taken // WAD // SCALE * SCALE
        assert -convert(loss, int256) <= max_price, "liquidator: price limit"
        # the waterfall: the fund, then the other side of the losing perps and futures
        # (charged before the slice moves, on the positions that lost it), then every
        # positive cash balance
        paid: uint256 = 0
        if loss != 0:
            paid = extcall FUND.cover(loss // SCALE, owner, subaccount) * SCALE
        deleveraged: uint256 = 0
        # the part of it the exit charges paid, out of the vault's `exit_charges`
        spent: uint256 = 0
        if loss > paid:
            deleveraged, spent = extcall CLEARING.deleverage(account, loss - paid, taken)
            if spent != 0:
                # taken out now, before the last slice's release can send them to the fund;
                # the bidder is paid all of `deleveraged` below
                extcall VAULT.settle_cash([IVault.CashDelta(account=EXIT_CHARGES, delta=-convert(spent, int256))])
        self._transfer(account, bidder, taken)
        # the slice's share of the reserve is released (all of it with the last slice)
        reserve: uint256 = self.reserved[account]
        released: uint256 = reserve
        if taken != WAD:
            released = reserve * taken // WAD
        self.reserved[account] = reserve - released
        socialized: uint256 = extcall VAULT.socialize(loss - paid - deleveraged, bidder, released)
        # socialization stops at the positive cash there is: re-check the limit
        price = -convert(paid + deleveraged + socialized, int256)
        assert price <= max_price, "liquidator: price limit"
        log LossCovered(
            account=account, loss=paid + deleveraged + socialized, fund_payout=paid, deleveraged=deleveraged, socialized=socialized
        )
        # no fee to take it from: the fund pays it, after the loss, from what is left
        # (never socialized; what it cannot pay stays owed)
        starter: address = convert(record & STARTER_MASK, address)
        if starter != empty(address):
            owed: uint256 = self._owed_units(record)
            ask: uint256 = owed * TIP_UNIT // SCALE
            if ask != 0:
                tip: uint256 = extcall FUND.cover(ask, starter, 0) * SCALE
                if tip != 0:
                    # tip <= owed · TIP_UNIT: a part-paid unit counts as paid (never overpaid)
                    self.auctions[account] = self._with_owed(record, owed - math._ceil_div(tip, TIP_UNIT))
                    log KeeperTipped(account=account, keeper=starter, tip=tip)
        # the deleveraged part is paid now; the side charged owes it in its positions' cost
        entries: DynArray[IVault.CashDelta, 2] = []
        if tip_in != 0 or deleveraged != 0:
            entries.append(IVault.CashDelta(account=bidder, delta=convert(deleveraged, int256) - convert(tip_in, int256)))
        if tip_in != 0:
            entries.append(IVault.CashDelta(account=accounts._id(executor, 0), delta=convert(tip_in, int256)))
        if len(entries) != 0:
            extcall VAULT.settle_cash(entries)

    after: IRiskEngine.Margin = extcall ENGINE.refresh_bound(bidder, LIQUIDATION_READS)
    assert after.equity >= convert(after.initial, int256), UNDER_MARGIN
    log Bid(
        account=account, bidder=bidder, fraction=taken, price=price, fee=fee, equity=m.equity, maintenance=m.maintenance
    )
    if taken == WAD:
        self._end(account, 0, 0)
    return taken, price


@internal
@view
def _underlyings(account: uint256) -> uint256:
    """
    @dev Bit u set iff the account holds a position (option, perp, future) on underlying u
         or collateral tracking it: the clearinghouse's stored position words (one call)
         and the vault's collateral lines (one call, one engine read per line).
    """
    held: IClearinghouse.Positions = staticcall CLEARING.positions(account)
    touched: uint256 = 0
    for word: uint256 in held.options:
        # two positions a word; a zero half is none
        for half: uint256 in [word & (2**128 - 1), word >> 128]:
            if half != 0:
                touched |= 1 << ((half >> 32) & 255)
    for line: IClearinghouse.PerpLine in held.perps:
        touched |= 1 << line.underlying
    for line: uint256 in held.futures:
        touched |= 1 << ((line >> 32) & 255)
    cash: int256 = 0
    lines: DynArray[IVault.Collateral, 16] = []
    cash, lines = staticcall VAULT.account_state(account)
    for line: IVault.Collateral in lines:
        if line.underlying != empty(bytes32):
            touched |= 1 << staticcall IMarginView(ENGINE.address).underlying_ids(line.underlying)
    return touched


@internal
def _set_standing_tip(tip: uint256):
    assert tip <= MAX_STANDING_TIP, "liquidator: out of bounds"
    units: uint256 = tip // STANDING_TIP_UNIT
    self.terms = (self.terms & ~(M16 << 240)) | (units << 240)
    log StandingTipSet(tip=units * STANDING_TIP_UNIT)


@internal
@view
def _owed_units(record: uint256) -> uint256:
    """
    @dev What the record's starter is still owed (TIP_UNITs): what the record holds (the
         share of MM at the start, less what was paid), at most the current `keeper_tip`.
    """
    return min((record >> OWED_SHIFT) & OWED_MASK, self._terms(64, M96) // TIP_UNIT)


@internal
@pure
def _with_owed(record: uint256, owed: uint256) -> uint256:
    """
    @dev The record with `owed` TIP_UNITs still owed; the starter is cleared once it is 0.
    """
    updated: uint256 = (record & ~(OWED_MASK << OWED_SHIFT)) | (owed << OWED_SHIFT)
    if owed == 0:
        return updated & ~STARTER_MASK
    return updated


@internal
def _transfer(account: uint256, bidder: uint256, fraction: uint256):
    # the cash the clearinghouse settles (funding, realized cost) goes in with the vault's slice
    source_settled: int256 = 0
    target_settled: int256 = 0
    source_settled, target_settled = extcall CLEARING.transfer_fraction(account, bidder, fraction)
    extcall VAULT.transfer_fraction(account, bidder, fraction, source_settled, target_settled)


@internal
def _reserve(account: uint256, m: IRiskEngine.Margin):
    """
    @dev Reserves an insolvent account's loss in the vault when it becomes known: −E + MM,
         the most its auction pays at the prices of now (`Vault.pending_loss`), so that cash
         leaving before the bids pays its share (`Vault._hold_back`); what the fund cannot
         cover of it marks the sides its deleveraging may charge, so that positions leaving
         them pay theirs (`Clearinghouse.mark`).
    """
    reserve: uint256 = convert(-m.equity, uint256) + m.maintenance
    self.reserved[account] = reserve
    extcall VAULT.reserve_loss(reserve, 0)
    # what the fund cannot cover of it may be deleveraged: whoever leaves a side that would
    # be charged pays its share on the way out (`Clearinghouse.mark`)
    covered: uint256 = staticcall FUND.totalAssets() * SCALE
    if reserve > covered:
        extcall CLEARING.mark(account, reserve - covered)


@internal
def _end(account: uint256, equity: int256, maintenance: uint256):
    if (self.auctions[account] >> INSOLVENT_SHIFT) & TIME_MASK != 0:
        extcall CLEARING.release(account)
    self.auctions[account] = 0
    reserve: uint256 = self.reserved[account]
    if reserve != 0:
        self.reserved[account] = 0
        extcall VAULT.reserve_loss(0, reserve)
    extcall VAULT.set_frozen(account, False)
    log AuctionEnded(account=account, equity=equity, maintenance=maintenance)


@internal
@view
def _multiplier(elapsed: uint256) -> uint256:
    """
    @dev d(t), rounded down (WAD).
    """
    start: uint256 = self._curve(0, M64)
    mid: uint256 = self._curve(64, M64)
    first: uint256 = self._curve(128, M20)
    # each drop rounds up, so d never sits above its line
    if elapsed < first:
        return start - math._mul_div(start - mid, elapsed, first, True)
    second: uint256 = self._curve(148, M20)
    if elapsed < first + second:
        return mid - math._mul_div(mid, elapsed - first, second, True)
    return 0


@internal
@view
def _cap(equity: uint256, maintenance: uint256, d: uint256) -> uint256:
    """
    @dev The fraction after which the account is back at the buffer: selling f leaves
         E·(1 − f·a), a = 1 − d + fee, against buffer·MM·(1 − f), so
         f = (buffer·MM − E) / (buffer·MM − a·E), rounded up, plus CAP_SLACK, at most 1.
         0 when the account is already at the buffer.
    """
    target: uint256 = math._mul_div(maintenance, self._terms(0, M64), WAD, True)
    if equity >= target:
        return 0
    a: uint256 = WAD - d + self._curve(192, M64)
    kept: uint256 = math._mul_div(equity, a, WAD, False)
    if kept >= target:
        # each slice costs the account more equity than buffer margin: sell it all
        return WAD
    return min(math._mul_div(target - equity, WAD, target - kept, True) + CAP_SLACK, WAD)


@internal
def _set_curve(
    start_multiplier: uint256, mid_multiplier: uint256, first_phase: uint256, second_phase: uint256, insolvent_ramp: uint256
):
    assert start_multiplier >= MIN_START_MULTIPLIER and start_multiplier <= WAD, "liquidator: out of bounds"
    assert mid_multiplier <= start_multiplier, "liquidator: out of bounds"
    assert first_phase >= MIN_PHASE and first_phase <= MAX_FIRST_PHASE, "liquidator: out of bounds"
    assert second_phase >= MIN_PHASE and second_phase <= MAX_SECOND_PHASE, "liquidator: out of bounds"
    assert insolvent_ramp >= MIN_RAMP and insolvent_ramp <= MAX_RAMP, "liquidator: out of bounds"
    self.curve = (
        start_multiplier
        | (mid_multiplier << 64)
        | (first_phase << 128)
        | (second_phase << 148)
        | (insolvent_ramp << 168)
        | (self.curve & (M64 << 192))
    )
    log CurveSet(
        start_multiplier=start_multiplier,
        mid_multiplier=mid_multiplier,
        first_phase=first_phase,
        second_phase=second_phase,
        insolvent_ramp=insolvent_ramp,
    )


@internal
def _set_terms(buffer: uint256, liquidation_fee: uint256, keeper_tip: uint256, small_account: uint256):
    assert buffer >= WAD and buffer <= MAX_BUFFER, "liquidator: out of bounds"
    assert liquidation_fee <= MAX_FEE, "liquidator: out of bounds"
    assert keeper_tip <= MAX_TIP, "liquidator: out of bounds"
    assert small_account <= MAX_SMALL_ACCOUNT, "liquidator: out of bounds"
    self.terms = buffer | (keeper_tip << 64) | (small_account << 160) | (self.terms & (M16 << 240))
    self.curve = (self.curve & ~(M64 << 192)) | (liquidation_fee << 192)
    log TermsSet(buffer=buffer, liquidation_fee=liquidation_fee, keeper_tip=keeper_tip, small_account=small_account)
