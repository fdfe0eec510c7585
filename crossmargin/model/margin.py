"""Bit-exact Python model of ``contracts/MarginEngine.vy`` (SPECIFICATION.md §6).

Every function returns exactly the integers the engine returns for the same inputs: the
valuation follows ``_book``, ``_context``, ``_margin``, ``_addons``, ``_scenario_pnl``,
``_weighted`` and ``_compute_array`` operation by operation, with the Black-Scholes and
power functions of :mod:`crossmargin.model.fixed`. Amounts are WAD (``10**18``) unless
named otherwise; grid shocks and weights are millionths; times are unix seconds.

Rounding, as in the contracts:

- ``fixed._floor_div`` (:func:`floor_div`) rounds signed quotients toward minus infinity;
- snekmate's ``math._mul_div(x, y, d, roundup)`` (:func:`mul_div`) floors or ceils ``x*y/d``;
- a bare ``//`` on ``uint256`` floors, on ``int256`` it truncates (:func:`fixed.sdiv`).

Keepers screen accounts with this model; ``tests/test_model.py`` checks it against the
chain on random portfolios. :func:`snapshot` loads every input from the deployed
contracts at one block.

    state, underlyings, params, now = snapshot(cm, trader, block_id=n)
    m = margin(state, underlyings, params, now)
    assert m.equity == cm.engine.contract.margin(account_id(str(trader)), block_id=n).equity
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from crossmargin.model import fixed

__all__ = [
    "ARRAY_WORDS",
    "CALL",
    "LANE_MASK",
    "PUT",
    "AccountState",
    "Collateral",
    "Context",
    "EngineParams",
    "EpochRecord",
    "FuturePosition",
    "Greeks",
    "Margin",
    "OptionPosition",
    "PerpPosition",
    "Scenario",
    "UnderlyingRisk",
    "UnderlyingState",
    "EXPIRY_BAND",
    "MAX_SHIFT",
    "addons",
    "array_epoch",
    "array_shift",
    "array_unsettled",
    "book",
    "ceil_div",
    "compute_array",
    "concentration",
    "context",
    "current_context",
    "default_grid",
    "from_lens",
    "floor_div",
    "future_line",
    "funding_now",
    "greeks",
    "lane",
    "lens_underlying",
    "lane_at",
    "lanes",
    "load_underlying",
    "margin",
    "mul_div",
    "option_price",
    "pack_array",
    "pack_grid",
    "risk",
    "scenario_hint",
    "scenario_pnl",
    "snapshot",
    "snapshot_calls",
    "underlying_state",
    "weighted",
    "with_epoch",
]

WAD = 10**18
MILLION = 10**6
MAX_UNDERLYINGS = 16
# Risk arrays: 19-bit lanes. Word 0 holds the epoch (bits 0-31), the array's shift (32-39)
# and the lanes of scenarios 0..10 (from bit 40); each further word 13 more lanes (from
# bit 0). A lane unit is ``quantum << shift`` wei, the shift the smallest that makes every
# lane fit. 23 scenarios take 2 words, 32 take 3.
LANE_BITS = 19
LANE_MASK = 2**19 - 1
FIRST_LANES = 11
LANES = 13
HEADER_BITS = 40
ARRAY_WORDS = 3
EPOCH_MASK = 2**32 - 1
# Flag bit of word 0: an expired option with no settlement price when the array was
# computed (every lane its worst intrinsic value over the grid; longs count for nothing).
UNSETTLED = 1 << 255
# An epoch record's horizon when no stored array set one (s).
NO_HORIZON = 2**24 - 1
MAX_SHIFT = 103
# The largest spot move (millionths) assumed between an expiry and its settlement.
EXPIRY_BAND = 300_000
# Grid words: 8 scenarios of 32 bits each (see ``pack_grid``), shocks and weights in 0.01%.
GRID_LANES = 8
GRID_BITS = 32
GRID_WORDS = 4
GRID_UNIT = 100
# Vol moves of a scenario.
VOL_DOWN, VOL_NONE, VOL_UP = 0, 1, 2
# Instrument kinds.
PERP, CALL, PUT, FUTURE = 1, 2, 3, 4
# Term scaling of vol shocks: (TERM_BASE / max(T, TERM_FLOOR))^exponent, in seconds.
TERM_BASE = 30 * 86_400
TERM_FLOOR = 86_400
# Concentration add-on: free and depth are in thousands of USD (this many WAD each); the
# add-on is at most CONCENTRATION_CAP times the loss.
THOUSAND_USD = 10**21
CONCENTRATION_CAP = 4


# ---------------------------------------------------------------- rounding helpers


def floor_div(a: int, b: int) -> int:
    """``fixed._floor_div``: ``a / b`` rounded toward minus infinity, for ``b > 0``."""
    q = fixed.sdiv(a, b)
    if fixed.smod(a, b) != 0 and a < 0:
        q -= 1
    return q


def ceil_div(a: int, b: int) -> int:
    """``fixed._ceil_div``: ``a / b`` rounded toward plus infinity, for ``b > 0``."""
    return -floor_div(-a, b)


def mul_div(x: int, y: int, d: int, roundup: bool) -> int:
    """snekmate ``math._mul_div``: ``x * y / d`` on ``uint256``, floored or ceiled.

    Raises:
        ArithmeticError: ``d == 0`` (snekmate reverts) or a result above ``uint256``.
    """
    if d == 0:
        raise ArithmeticError("math: mul_div division by zero")
    q, r = divmod(x * y, d)
    if roundup and r:
        q += 1
    if q >= 2**256:
        raise ArithmeticError("math: mul_div overflow")
    return q


def funding_now(
    cumulative: int, premium_ema: int, updated_at: int, spot: int, cap: int, interval: int, now: int
) -> int:
    """``fixed._funding_now``: the cumulative funding index (WAD USD per long unit) at ``now``.

    ``F + floor(clamp(ema, ±cap) · spot · dt / (WAD · interval))``; ``F`` when ``now <= updated_at``.
    """
    if now <= updated_at:
        return cumulative
    rate = min(max(premium_ema, -cap), cap)
    return cumulative + floor_div(rate * (spot * (now - updated_at)), WAD * interval)


# ---------------------------------------------------------------- inputs


class Scenario(NamedTuple):
    """One scenario of a grid: spot shock (millionths), vol move (0 down, 1 none, 2 up), weight (millionths)."""

    shock: int
    move: int
    weight: int


class EpochRecord(NamedTuple):
    """The engine's stored epoch record of an underlying (``engine.epoch(u)``)."""

    spot_round: int
    vol_round: int
    epoch: int
    opened_at: int  # unix s
    # the epoch ends this many seconds after opening: the earliest expiry it stored an
    # array for, NO_HORIZON for none
    horizon: int = NO_HORIZON


@dataclass(frozen=True)
class UnderlyingState:
    """An underlying as the engine sees it: oracle reads, risk parameters, grid and epoch.

    Attributes:
        id: Underlying id (1..8).
        spot: Spot price (WAD USD), ``router.price_round(spot_key)``.
        vol: Implied volatility (WAD, 1.0 = 100%), ``router.price_round(vol_key)``.
        spot_round: Round id of the spot read.
        vol_round: Round id of the vol read.
        quantum: Wei of value per risk-array lane unit.
        vol_up: Vol-up shock scale (WAD).
        vol_down: Vol-down shock scale (WAD).
        vol_floor: Floor of the vol-down multiplier (WAD).
        term_exponent: Exponent of the term scaling (WAD).
        short_option_rate: Add-on per net short option unit, fraction of spot (WAD).
        perp_rate: Add-on per perp unit, fraction of notional (WAD).
        grid: The scenarios; scenario 0 is the base.
        epoch: The stored epoch record.
        name: The underlying's name (e.g. ``b"ETH"``), informational.
        concentration_free: Loss ``L_u`` the concentration add-on leaves free (thousands of USD).
        concentration_depth: Depth the concentration add-on scales with (thousands of USD, 0 = off).
    """

    id: int
    spot: int
    vol: int
    spot_round: int
    vol_round: int
    quantum: int
    vol_up: int
    vol_down: int
    vol_floor: int
    term_exponent: int
    short_option_rate: int
    perp_rate: int
    grid: tuple[Scenario, ...]
    epoch: EpochRecord
    name: bytes = b""
    concentration_free: int = 0
    concentration_depth: int = 0


@dataclass(frozen=True)
class Collateral:
    """A collateral line of the vault's ``account_state``.

    Attributes:
        balance: Balance (WAD token units).
        price: ``router.price(price_key)`` (WAD USD per unit).
        mm_haircut: Maintenance haircut (WAD fraction).
        im_haircut: Initial haircut (WAD fraction).
        underlying: Id of the underlying it tracks, or 0.
    """

    balance: int
    price: int
    mm_haircut: int
    im_haircut: int
    underlying: int = 0


@dataclass(frozen=True)
class OptionPosition:
    """An option position (a packed word of ``clearing.positions``) with its listing.

    Attributes:
        instrument: Instrument id.
        underlying: Underlying id.
        kind: ``CALL`` (2) or ``PUT`` (3).
        strike: Strike (WAD USD).
        expiry: Expiry (unix s).
        size: Signed size (WAD units), never 0.
        array: The stored risk-array words (``ARRAY_WORDS`` of them, see :func:`pack_array`),
            or None for none stored (all-zero storage).
        settlement_price: The instrument's stored settlement price (WAD USD), 0 until its
            first ``settle``.
    """

    instrument: int
    underlying: int
    kind: int
    strike: int
    expiry: int
    size: int
    array: tuple[int, ...] | None = None
    settlement_price: int = 0


@dataclass(frozen=True)
class PerpPosition:
    """A perp line of ``clearing.positions``.

    Attributes:
        underlying: Underlying id.
        size: Signed size (WAD units).
        cost: Signed cost of the open position (WAD USD).
        funding: Funding index at the position's last settlement (WAD USD per unit).
        cumulative: The perp's cumulative funding index (WAD USD per unit).
        premium_ema: The perp's EMA premium over the index (WAD fraction, signed).
        updated_at: When ``cumulative`` was last accrued (unix s).
    """

    underlying: int
    size: int
    cost: int
    funding: int
    cumulative: int
    premium_ema: int
    updated_at: int


@dataclass(frozen=True)
class FuturePosition:
    """A future line of ``clearing.positions`` (a stored word, see :func:`future_line`).

    Attributes:
        instrument: Instrument id.
        underlying: Underlying id.
        size: Signed size (WAD units), never 0.
        cost: Signed cost of the open position (WAD USD).
        expiry: Expiry (unix s).
        settlement_price: The instrument's stored settlement price (WAD USD), 0 until its
            first ``settle``.
    """

    instrument: int
    underlying: int
    size: int
    cost: int
    expiry: int
    settlement_price: int = 0


@dataclass(frozen=True)
class AccountState:
    """Everything the engine reads about one account.

    Attributes:
        cash: Vault cash (WAD USD, signed).
        collateral: Non-zero collateral lines, in the vault's order.
        options: Option positions, in the clearinghouse's order.
        perps: Perp lines, by ascending underlying.
        futures: Future lines, in the clearinghouse's order.
        funding_cap: Funding cap per interval (WAD fraction).
        funding_interval: Funding interval (s).
    """

    cash: int
    collateral: tuple[Collateral, ...] = ()
    options: tuple[OptionPosition, ...] = ()
    perps: tuple[PerpPosition, ...] = ()
    futures: tuple[FuturePosition, ...] = ()
    funding_cap: int = 5 * 10**15
    funding_interval: int = 8 * 3_600


@dataclass(frozen=True)
class EngineParams:
    """Engine-wide parameters.

    Attributes:
        im_factor: IM multiplier of the risk (WAD, >= 1).
        max_array_age: Oldest usable epoch (s).
        rate: Black-Scholes rate (WAD per year).
    """

    im_factor: int = 13 * 10**17
    max_array_age: int = 3_600
    rate: int = 0


# ---------------------------------------------------------------- outputs


class Margin(NamedTuple):
    """``IRiskEngine.Margin``: equity (WAD, signed), initial and maintenance requirements (WAD)."""

    equity: int
    initial: int
    maintenance: int


class UnderlyingRisk(NamedTuple):
    """``MarginEngine.UnderlyingRisk``: worst weighted scenario, its loss ``L_u`` and the PnL vector (WAD)."""

    underlying: int
    worst_scenario: int
    loss: int
    pnl: tuple[int, ...]


class Greeks(NamedTuple):
    """``RiskModel.Greeks``: delta (units), gamma (per 1 USD of spot), vega (USD per 1.00 of vol), WAD."""

    underlying: int
    delta: int
    gamma: int
    vega: int


@dataclass
class Context:
    """``MarginEngine.Context``: one underlying's reads, epoch and the account's aggregates.

    ``epoch`` / ``opened_at`` are the stored epoch's when ``stored``, else the epoch that
    would open now. ``option_pnl[s]``, ``option_value`` and ``option_units`` are in quanta
    (each option's size times ``2**shift`` of its array, times lanes). ``now`` is the block
    time: an option expired by then is valued without time value (:func:`compute_array`).
    """

    underlying: UnderlyingState
    spot: int
    vol: int
    epoch: int
    opened_at: int
    stored: bool
    now: int = 0
    exposure: int = 0
    option_pnl: list[int] = field(default_factory=list)
    option_value: int = 0
    option_units: int = 0
    net_calls: int = 0
    net_puts: int = 0
    perp_units: int = 0

    @property
    def scenarios(self) -> int:
        return len(self.underlying.grid)

    @property
    def quantum(self) -> int:
        return self.underlying.quantum


@dataclass
class Book:
    """``MarginEngine.Book``: the loaded account, one context per touched underlying."""

    cash: int
    state: AccountState
    ctx: dict[int, Context]
    perp_size: dict[int, int]
    collateral_value: int
    mm_haircut: int
    im_haircut: int


# ---------------------------------------------------------------- grid and arrays


def expiry_band(shock: int) -> int:
    """A grid shock kept within ``±EXPIRY_BAND`` (millionths): the spot move assumed between
    an expiry and its settlement (``risk_layout.EXPIRY_BAND``)."""
    return max(min(shock, EXPIRY_BAND), -EXPIRY_BAND)


def default_grid() -> tuple[Scenario, ...]:
    """The grid ``list_underlying`` sets (SPECIFICATION.md §6), in this order: the base; the
    scenarios that usually bind, -15% and +15% (vol up, none, down), -30% and +30% (vol up,
    weight 0.35) and the unshocked spot with vol up and down; then -10%, -5%, +5%, +10%
    (vol up, none, down). The first eleven share the first word of a risk array, so a
    hinted check at one of them reads one word per option."""
    grid = [Scenario(0, VOL_NONE, MILLION)]
    for shock in (-150_000, 150_000):
        grid.extend(Scenario(shock, move, MILLION) for move in (VOL_UP, VOL_NONE, VOL_DOWN))
    # the tails: spot x 0.34 and x 3 with vol up, dampened to 0.1386 / |move| (a delta-one
    # position loses 13.86% of its notional there, less than at -15% or +15%)
    grid.append(Scenario(-660_000, VOL_UP, 210_000))
    grid.append(Scenario(2_000_000, VOL_UP, 69_300))
    grid.append(Scenario(0, VOL_UP, MILLION))
    grid.append(Scenario(0, VOL_DOWN, MILLION))
    for shock in (-100_000, -50_000, 50_000, 100_000):
        grid.extend(Scenario(shock, move, MILLION) for move in (VOL_UP, VOL_NONE, VOL_DOWN))
    return tuple(grid)


def pack_grid(grid: tuple[Scenario, ...] | list[Scenario]) -> tuple[int, ...]:
    """Packs a grid as the risk model's ``set_grid`` does for the engine to store: 8
    scenarios of 32 bits per word, shock int16 (bits 0-15) | vol move (16-17) | weight
    uint14 (18-31), shock and weight in 0.01% steps. The engine's ``DEFAULT_GRID`` constant
    is ``pack_grid(default_grid())``."""
    words = [0] * GRID_WORDS
    for s, scenario in enumerate(grid):
        lane = ((scenario.shock // GRID_UNIT) & 0xFFFF) | (scenario.move << 16) | (scenario.weight // GRID_UNIT << 18)
        words[s // GRID_LANES] |= lane << (s % GRID_LANES * GRID_BITS)
    return tuple(words)


def lane_at(s: int) -> tuple[int, int]:
    """``_lane_at``: the word and bit of scenario ``s``'s lane."""
    if s < FIRST_LANES:
        return 0, HEADER_BITS + s * LANE_BITS
    return 1 + (s - FIRST_LANES) // LANES, (s - FIRST_LANES) % LANES * LANE_BITS


def pack_array(
    epoch: int, lane_values: list[int] | tuple[int, ...], shift: int = 0, unsettled: bool = False
) -> tuple[int, ...]:
    """Packs an epoch, scenario lanes and a shift into the engine's ``ARRAY_WORDS`` storage words.

    Args:
        epoch: Epoch number (word 0 keeps its low 32 bits).
        lane_values: Lane of each scenario (value per unit in ``quantum << shift``, < ``2**19``).
        shift: The array's scale exponent (bits 32-39 of word 0).

    Returns:
        The words, as ``_compute_array`` lays them out.
    """
    words = [0] * ARRAY_WORDS
    words[0] = (epoch & EPOCH_MASK) | (shift << 32) | (UNSETTLED if unsettled else 0)
    for s, value in enumerate(lane_values):
        i, bit = lane_at(s)
        words[i] |= value << bit
    return tuple(words)


def lane(words: tuple[int, ...] | list[int], s: int) -> int:
    """The lane of scenario ``s`` in array ``words``."""
    i, bit = lane_at(s)
    return (words[i] >> bit) & LANE_MASK


def array_epoch(words: tuple[int, ...] | list[int]) -> int:
    """The epoch an array was computed at (its low 32 bits)."""
    return words[0] & EPOCH_MASK


def array_unsettled(words: tuple[int, ...] | list[int]) -> bool:
    """Whether the array values an expired option with no settlement price (its flag bit)."""
    return words[0] >= UNSETTLED


def array_shift(words: tuple[int, ...] | list[int]) -> int:
    """The array's shift: its lanes are in units of ``quantum << shift``."""
    return (words[0] >> 32) & 255


def lanes(words: tuple[int, ...] | list[int], scenarios: int) -> tuple[int, ...]:
    """The scenario lanes of ``words``, as the ``risk_array`` view lists them."""
    return tuple(lane(words, s) for s in range(scenarios))


def _tau(expiry: int, at: int) -> int:
    return 0 if expiry <= at else expiry - at


def context(u: UnderlyingState, params: EngineParams, now: int) -> Context:
    """``_context``: the stored epoch iff both rounds match it, it is at most
    ``max_array_age`` old and younger than its horizon, else the epoch that would open at
    ``now`` (``stored`` false).

    Raises:
        ArithmeticError: ``now`` before the stored opening time (checked subtraction).
    """
    record = u.epoch
    epoch, opened_at = record.epoch, record.opened_at
    stored = record.spot_round == u.spot_round and record.vol_round == u.vol_round
    if stored:
        if now < opened_at:
            raise ArithmeticError("uint256 underflow")
        stored = now - opened_at <= params.max_array_age and now - opened_at < record.horizon
    if not stored:
        epoch += 1
        opened_at = now
    return Context(
        underlying=u,
        spot=u.spot,
        vol=u.vol,
        epoch=epoch,
        opened_at=opened_at,
        stored=stored,
        now=now,
        option_pnl=[0] * len(u.grid),
    )


def current_context(u: UnderlyingState, params: EngineParams, now: int) -> EpochRecord:
    """``_current_context``: the epoch record a state-changing check leaves in storage."""
    ctx = context(u, params, now)
    if ctx.stored:
        return u.epoch
    return EpochRecord(u.spot_round, u.vol_round, ctx.epoch & (2**32 - 1), ctx.opened_at)


def compute_array(
    option: OptionPosition, ctx: Context, params: EngineParams, liquidation: bool = False
) -> tuple[int, ...]:
    """``RiskModel.compute_array``: the option's value per unit under every scenario of its grid,
    at the epoch's spot, vol and opening time, in lanes of ``quantum << shift`` (floored),
    ``shift`` the smallest that makes every lane fit 19 bits. An option expired by
    ``ctx.now`` has no time value and no scenario risk: every lane is its intrinsic value
    at the settlement price once stored, else its worst intrinsic value over the grid's
    spot shocks, flagged unsettled.

    Args:
        option: The option (only kind, strike and expiry are read).
        ctx: Its underlying's context (epoch, opening time, spot, vol).
        params: Engine parameters (the rate).
        liquidation: The array a liquidation's valuation computes (``MarginEngine._compute_array``
            with the liquidation bit): an option expired without a settlement price is
            priced as if still live with no time left (the engine's expiry one second ahead
            and an epoch opened then): its intrinsic value at every scenario's spot, the
            grid's shocks as they are, not flattened, not flagged.

    Returns:
        The ``ARRAY_WORDS`` words, lane 0 the epoch, the shift in the top byte of word 0.

    Raises:
        ValueError: ``"risk: value out of range"`` for a value of ``2**122`` quanta or
            more per unit (a shift above ``MAX_SHIFT``), or the Black-Scholes library's
            revert strings.
    """
    u = ctx.underlying
    expired = option.expiry <= ctx.now
    if liquidation and expired and option.settlement_price == 0:
        expired = False  # T = 0: the engine's expiry and opening time one second ahead
    tau = 0 if expired or option.expiry <= ctx.now else option.expiry - ctx.opened_at
    p = fixed.pow(TERM_BASE * WAD // max(tau, TERM_FLOOR), u.term_exponent)
    vol_up = ctx.vol * (WAD + u.vol_up * p // WAD) // WAD
    down = max(u.vol_floor, WAD - min(u.vol_down * p // WAD, WAD))
    vol_down = ctx.vol * down // WAD
    is_call = option.kind == CALL
    quanta = []
    for scenario in u.grid:
        # int256 `//` truncates; spot > 0 and 1e6 + shock > 0, so this is a floor
        spot = fixed.sdiv(ctx.spot * (MILLION + scenario.shock), MILLION)
        if spot < 0:
            raise ArithmeticError("negative to uint256")
        if expired and option.settlement_price != 0:
            spot = option.settlement_price
        elif expired:
            spot = fixed.sdiv(ctx.spot * (MILLION + expiry_band(scenario.shock)), MILLION)
        vol = ctx.vol
        if scenario.move == VOL_UP:
            vol = vol_up
        elif scenario.move == VOL_DOWN:
            vol = vol_down
        quanta.append(fixed.bs_price(spot, option.strike, vol, tau, params.rate, is_call) // ctx.quantum)
    # floor(floor(v / quantum) / 2**shift) == floor(v / (quantum << shift))
    shift = max(0, max(quanta).bit_length() - LANE_BITS)
    if shift > MAX_SHIFT:
        raise ValueError("risk: value out of range")
    if expired:
        quanta = [max(quanta)] * len(quanta)
    unsettled = expired and option.settlement_price == 0
    return pack_array(ctx.epoch, [q >> shift for q in quanta], shift, unsettled)


def option_price(option: OptionPosition, u: UnderlyingState, params: EngineParams, now: int) -> int:
    """Black-Scholes value (WAD USD per unit) at the live spot and vol, e.g. to quote a premium."""
    return fixed.bs_price(u.spot, option.strike, u.vol, _tau(option.expiry, now), params.rate, option.kind == CALL)


# ---------------------------------------------------------------- valuation


def book(
    state: AccountState,
    underlyings: dict[int, UnderlyingState],
    params: EngineParams,
    now: int,
    cash_adjust: int = 0,
    liquidation: bool = False,
) -> Book:
    """``_view_book`` / ``_book``: loads the account, one context per touched underlying,
    and values options from current-epoch stored arrays, computing stale ones.

    Args:
        state: The account.
        underlyings: Every underlying the account touches, by id.
        params: Engine parameters.
        now: The block timestamp (s).
        cash_adjust: Subtracted from cash (``margin_adjusted``).
        liquidation: A liquidation's valuation (bit 0 of a ``refresh_bound`` hint): an
            option or future expired without a settlement price is valued as a live one
            with no time left (a future at the index with exposure and add-on, an option
            from :func:`compute_array` with ``liquidation``), not at the worst case.

    Returns:
        The loaded book.
    """
    ctx: dict[int, Context] = {}

    def touch(u: int) -> Context:
        if u not in ctx:
            ctx[u] = context(underlyings[u], params, now)
        return ctx[u]

    cash = state.cash - cash_adjust
    collateral_value = mm_haircut = im_haircut = 0
    # vault side: every line at its floor value; tracking collateral joins its exposure
    for line in state.collateral:
        value = mul_div(line.balance, line.price, WAD, False)
        collateral_value += value
        mm_haircut += mul_div(value, line.mm_haircut, WAD, True)
        im_haircut += mul_div(value, line.im_haircut, WAD, True)
        if line.underlying != 0:
            touch(line.underlying).exposure += value
    # perps: linear exposure, unsettled funding, notional for the add-on
    perp_size: dict[int, int] = {}
    for perp in state.perps:
        c = touch(perp.underlying)
        cumulative = funding_now(
            perp.cumulative,
            perp.premium_ema,
            perp.updated_at,
            c.spot,
            state.funding_cap,
            state.funding_interval,
            now,
        )
        notional = floor_div(perp.size * c.spot, WAD)
        owed = floor_div(-perp.size * (cumulative - perp.funding), WAD)
        cash += notional - perp.cost + owed
        c.exposure += notional
        c.perp_units += abs(perp.size)
        perp_size[perp.underlying] = perp.size
    # futures: marked to the index until expiry (exposure, perp add-on); from expiry at the
    # settlement price, or without one at the grid's least (longs) or greatest (shorts) spot
    # (a liquidation: at the index, as before expiry)
    for future in state.futures:
        c = touch(future.underlying)
        if now < future.expiry or (liquidation and future.settlement_price == 0):
            notional = floor_div(future.size * c.spot, WAD)
            cash += notional - future.cost
            c.exposure += notional
            c.perp_units += abs(future.size)
        elif future.settlement_price != 0:
            cash += floor_div(future.size * future.settlement_price, WAD) - future.cost
        else:
            shocks = [scenario.shock for scenario in c.underlying.grid]
            shock = expiry_band(min(shocks) if future.size > 0 else max(shocks))
            cash += floor_div(future.size * c.spot * (MILLION + shock), WAD * MILLION) - future.cost
    # options: one array per position, multiplied by the size in the array's scale
    for option in state.options:
        c = touch(option.underlying)
        words = option.array or (0,) * ARRAY_WORDS
        if array_epoch(words) != c.epoch or not c.stored or (liquidation and array_unsettled(words)):
            words = compute_array(option, c, params, liquidation)
        if array_unsettled(words) and option.size > 0:
            continue  # expired, no settlement price: a long counts for nothing
        z = option.size << array_shift(words)  # size in quanta per lane unit
        base = lane(words, 0)
        for s in range(1, c.scenarios):
            c.option_pnl[s] += z * (lane(words, s) - base)
        if option.size < 0:
            base += 1  # shorts at lane + 1: a lane is at most one lane unit below the value
        c.option_value += z * base
        c.option_units += abs(z)
        if option.kind == CALL:
            c.net_calls += option.size
        else:
            c.net_puts += option.size
    return Book(
        cash=cash,
        state=state,
        ctx=dict(sorted(ctx.items())),
        perp_size=perp_size,
        collateral_value=collateral_value,
        mm_haircut=mm_haircut,
        im_haircut=im_haircut,
    )


def scenario_pnl(ctx: Context) -> list[int]:
    """``_scenario_pnl``: unweighted PnL (WAD) of the exposure to one underlying per scenario."""
    pnl = [0] * ctx.scenarios
    for s in range(1, ctx.scenarios):
        shock = ctx.underlying.grid[s].shock
        pnl[s] = floor_div(ctx.exposure * shock, MILLION) + floor_div(ctx.option_pnl[s] * ctx.quantum, WAD)
    return pnl


def weighted(pnl: int, scenario: Scenario) -> int:
    """``_weighted``: ``floor(pnl · weight / 1e6)``."""
    return floor_div(pnl * scenario.weight, MILLION)


def addons(ctx: Context) -> int:
    """``_addons``: perp add-on, short-option add-on and quantization add-on (WAD, rounded up).

    The quantization add-on is one lane unit (``quantum << shift``) per option unit:
    ``option_units`` already holds ``sum |size| << shift``."""
    u = ctx.underlying
    addon = 0
    if ctx.perp_units != 0:
        addon += mul_div(ctx.perp_units * ctx.spot, u.perp_rate, WAD * WAD, True)
    if ctx.option_units != 0:
        short_units = max(-ctx.net_calls, 0) + max(-ctx.net_puts, 0)
        if short_units != 0:
            addon += mul_div(short_units * ctx.spot, u.short_option_rate, WAD * WAD, True)
        addon += mul_div(ctx.option_units, ctx.quantum, WAD, True)
    return addon


def concentration(loss: int, u: UnderlyingState) -> int:
    """The concentration add-on ``C_u`` of a weighted worst loss ``L_u`` (WAD, rounded up):
    0 when the depth is 0 or ``L_u <= free``, else ``ceil(L_u · min(L_u − free, 4 · depth) /
    depth)``, free and depth in thousands of USD (the listing's risk word, bits 208 and 232)."""
    free = u.concentration_free * THOUSAND_USD
    depth = u.concentration_depth * THOUSAND_USD
    if depth == 0 or loss <= free:
        return 0
    return mul_div(loss, min(loss - free, CONCENTRATION_CAP * depth), depth, True)


def _margin(b: Book, params: EngineParams, hint: int = 0) -> Margin:
    equity = b.cash + b.collateral_value
    total = 0
    for u, c in b.ctx.items():
        equity += floor_div(c.option_value * c.quantum, WAD)
        pnl = scenario_pnl(c)
        worst = 0
        only = (hint >> (8 * u)) & 255
        if only >= c.scenarios:
            raise ValueError("engine: bad hint")
        for s, scenario in enumerate(c.underlying.grid):
            if only == 0 or s == only:
                worst = min(worst, weighted(pnl[s], scenario))
        total += -worst + concentration(-worst, c.underlying)
        total += addons(c)
    return Margin(
        equity=equity,
        initial=mul_div(total, params.im_factor, WAD, True) + b.im_haircut,
        maintenance=total + b.mm_haircut,
    )


def margin(
    state: AccountState,
    underlyings: dict[int, UnderlyingState],
    params: EngineParams,
    now: int,
    cash_adjust: int = 0,
    hint: int = 0,
) -> Margin:
    """``margin`` (and ``margin_adjusted``; with a hint, ``refresh_bound``): equity, initial
    and maintenance requirement.

    Args:
        state: The account.
        underlyings: Every underlying it touches, by id.
        params: Engine parameters.
        now: The block timestamp (s).
        cash_adjust: Subtracted from cash before valuing (WAD).
        hint: Byte ``u`` a scenario of underlying ``u`` (see ``scenario_hint``) whose loss
            alone is counted for ``u``, 0 for all: the requirements are then lower bounds.
            Bit 0: a liquidation's valuation (see :func:`book`).

    Returns:
        ``Margin(equity, initial, maintenance)`` (WAD), as the engine returns it.
    """
    return _margin(book(state, underlyings, params, now, cash_adjust, hint & 1 != 0), params, hint)


def scenario_hint(risks: Iterable[Any]) -> int:
    """The ``hint`` of ``MarginEngine.refresh_bound`` and ``Liquidator.start``: byte ``u``
    (bits ``8u .. 8u + 7``) the worst scenario of underlying ``u``, from ``risk`` (the
    engine's view or this model's). At the worst scenarios the bound is the requirement
    itself, and the start reads one risk-array word per option when they are among the
    default grid's first eleven."""
    return sum(r.worst_scenario << (8 * r.underlying) for r in risks)


def risk(
    state: AccountState, underlyings: dict[int, UnderlyingState], params: EngineParams, now: int
) -> list[UnderlyingRisk]:
    """``risk``: per touched underlying (ascending id), the PnL vector, worst weighted
    scenario and its loss ``L_u``. The worst scenario is the first one reaching the least
    ``pnl · weight`` before its floor division (0 if none is negative); its loss is that
    product floored, which is the least of the floored ones since a floor never reorders."""
    result = []
    for u, c in book(state, underlyings, params, now).ctx.items():
        pnl = scenario_pnl(c)
        worst = worst_scenario = 0
        for s, scenario in enumerate(c.underlying.grid):
            w = pnl[s] * scenario.weight
            if w < worst:
                worst, worst_scenario = w, s
        result.append(UnderlyingRisk(u, worst_scenario, -floor_div(worst, MILLION), tuple(pnl)))
    return result


def greeks(
    state: AccountState, underlyings: dict[int, UnderlyingState], params: EngineParams, now: int
) -> list[Greeks]:
    """``greeks``: delta, gamma, vega per touched underlying at the live spot and vol
    (options by Black-Scholes to ``now``; perps, unexpired futures and tracking collateral
    are delta)."""
    b = book(state, underlyings, params, now)
    touched = {o.underlying for o in state.options} | {p.underlying for p in state.perps}
    touched |= {f.underlying for f in state.futures}
    touched |= {line.underlying for line in state.collateral if line.underlying}
    result = []
    for u, c in b.ctx.items():
        if u not in touched:
            continue
        delta = b.perp_size.get(u, 0)
        for line in state.collateral:
            if line.underlying == u:
                delta += line.balance
        delta += sum(f.size for f in state.futures if f.underlying == u and now < f.expiry)
        gamma = vega = 0
        for option in state.options:
            if option.underlying != u:
                continue
            d, g, v = fixed.bs_greeks(
                c.spot, option.strike, c.vol, _tau(option.expiry, now), params.rate, option.kind == CALL
            )
            delta += floor_div(option.size * d, WAD)
            gamma += floor_div(option.size * g, WAD)
            vega += floor_div(option.size * v, WAD)
        result.append(Greeks(u, delta, gamma, vega))
    return result


# ---------------------------------------------------------------- chain loader


def _signed(value: int, bits: int) -> int:
    """Two's complement: the ``bits``-bit field ``value`` as a signed integer."""
    return value - 2**bits if value >= 2 ** (bits - 1) else value


def option_words(pairs) -> list[int]:
    """``fixed._pair_word`` over the clearinghouse's ``positions().options``: the option words
    of the stored pairs (low half first; a zero half is no position)."""
    words = []
    for pair in pairs:
        for half in (pair & (2**128 - 1), pair >> 128):
            if half == 0:
                continue
            size = _signed((half >> 48) & (2**80 - 1), 80)
            words.append((half & (2**48 - 1)) | ((size % 2**128) << 128))
    return words


def perp_position(underlying: int, line: int, funding: int, state: int) -> PerpPosition:
    """A perp line of the clearinghouse's ``positions()`` (the words as stored: size and cost
    int128 each, the funding index, the perp's funding state; ``fixed._perp_line`` and
    ``fixed._funding_state``) as a ``PerpPosition``."""
    return PerpPosition(
        underlying=underlying,
        size=_signed(line & (2**128 - 1), 128),
        cost=_signed(line >> 128, 128),
        funding=funding,
        cumulative=_signed(state & (2**128 - 1), 128),
        premium_ema=_signed((state >> 128) & (2**80 - 1), 80),
        updated_at=state >> 208,
    )


def future_line(word: int, settlement_price: int = 0) -> FuturePosition:
    """``fixed._future_line`` over one of the clearinghouse's ``positions().futures``, a
    stored word: instrument 32 | underlying 8 | expiry 32 | size int88 | cost int96."""
    return FuturePosition(
        instrument=word & (2**32 - 1),
        underlying=(word >> 32) & 255,
        size=_signed((word >> 72) & (2**88 - 1), 88),
        cost=_signed(word >> 160, 96),
        expiry=(word >> 40) & (2**32 - 1),
        settlement_price=settlement_price,
    )


def _word_size(word: int) -> int:
    """``fixed._word_size``: the signed size in the top 128 bits of an option word."""
    size = word >> 128
    return size - 2**128 if size >= 2**127 else size


def snapshot(
    cm: Any, owner: Any, subaccount: int = 0, block_id: int | None = None, liquidation: bool = False
) -> tuple[AccountState, dict[int, UnderlyingState], EngineParams, int]:
    """Reads one account's model inputs from the deployed contracts at one block.

    One ``eth_call`` of the Lens (``Lens.snapshot``) when the deployment has one, whatever
    the account holds; else :func:`snapshot_calls`, a few calls per position.

    Args:
        cm: A :class:`crossmargin.clients.protocol.Protocol`.
        owner: The account's owner (address or ape account).
        subaccount: Its subaccount.
        block_id: The block to read at (default: the head). Compare with the engine's
            views called with the same ``block_id``: calls at ``latest`` may run at a
            later timestamp.
        liquidation: Read every feed as the liquidator's valuation does (the router's
            ``price_rounds(..., liquidation=True)``: stale rounds used, answers clamped into
            the bounds, such rounds marked): :func:`margin` with bit 0 of its ``hint``
            set then equals ``refresh_bound`` with it (expired, unsettled instruments
            valued as live with no time left), where the views revert on a broken feed.

    Returns:
        ``(state, underlyings, params, timestamp)``: the account, every underlying it
        touches by id, the engine parameters and the block's timestamp (s).
    """
    from ape import chain

    from crossmargin.units import account_id

    if block_id is None:
        block_id = chain.blocks.head.number
    account = account_id(str(owner), subaccount)
    lens = getattr(cm, "lens", None)
    if lens is None:
        return snapshot_calls(cm, account, block_id, liquidation)
    snap = lens.snapshot(account, liquidation, block_id=block_id)
    # an expired future's settlement price: one call each (the Lens does not read them)
    state, underlyings, params, now = from_lens(
        snap,
        lens.positions(snap.positions),
        lambda i, expiry: cm.markets.contract.settlement_price(i, block_id=block_id) if expiry <= snap.timestamp else 0,
    )
    # an underlying the positions touch that the Lens did not load (a position kind it does
    # not know of): one more call for those
    missing = sorted(_touched(state) - set(underlyings))
    if missing:
        for row in lens.underlyings(missing, liquidation, block_id=block_id):
            underlyings[row.id] = lens_underlying(row)
    return state, dict(sorted(underlyings.items())), params, now


def from_lens(
    snap: Any, positions: Any, settlement: Any = lambda _i, _e: 0
) -> tuple[AccountState, dict[int, UnderlyingState], EngineParams, int]:
    """The model inputs of a ``Lens.snapshot`` result, with its ``positions`` decoded
    (``LensClient.positions``) and ``settlement(id, expiry)`` the stored settlement price of
    an expired future (the Lens does not read them): what :func:`snapshot` returns."""
    collateral = tuple(
        Collateral(
            balance=line.balance,
            price=line.price,
            mm_haircut=line.mm_haircut,
            im_haircut=line.im_haircut,
            underlying=line.underlying,
        )
        for line in snap.collateral
    )
    held = {o.id: o for o in snap.options}
    state = _account_state(
        snap.cash,
        collateral,
        positions,
        lambda i: (held[i].instrument, held[i].array),
        settlement,
    )
    underlyings = {u.id: lens_underlying(u) for u in snap.underlyings}
    params = EngineParams(im_factor=snap.im_factor, max_array_age=snap.max_array_age, rate=snap.rate)
    return state, underlyings, params, snap.timestamp


def lens_underlying(row: Any) -> UnderlyingState:
    """An :class:`UnderlyingState` from a Lens ``Underlying`` row."""
    return underlying_state(
        row.id,
        row.listing,
        (row.spot, row.spot_round, row.vol, row.vol_round),
        (row.shocks, row.moves, row.weights),
        row.epoch,
    )


def _touched(state: AccountState) -> set[int]:
    """The underlyings an account's valuation reads: of its collateral, perps and options."""
    touched = {line.underlying for line in state.collateral if line.underlying}
    touched |= {f.underlying for f in state.futures}
    return touched | {p.underlying for p in state.perps} | {o.underlying for o in state.options}


def snapshot_calls(
    cm: Any, account: int, block_id: int, liquidation: bool = False
) -> tuple[AccountState, dict[int, UnderlyingState], EngineParams, int]:
    """:func:`snapshot` without the Lens: the same result from the contracts' own views, two
    calls per option, two per collateral line and four per underlying."""
    from ape import chain

    now = chain.blocks[block_id].timestamp
    at = {"block_id": block_id}
    vault, router = cm.vault.contract, cm.oracle.contract
    engine, clearing = cm.engine.contract, cm.clearing.contract

    cash, lines = vault.account_state(account, **at)
    collateral = tuple(
        Collateral(
            balance=line.balance,
            price=router.price_rounds(line.price_key, bytes(32), liquidation, **at)[0],
            mm_haircut=line.mm_haircut,
            im_haircut=line.im_haircut,
            underlying=engine.underlying_ids(line.underlying, **at),
        )
        for line in lines
    )
    state = _account_state(
        cash,
        collateral,
        clearing.positions(account, **at),
        lambda i: (cm.markets.contract.instrument(i, **at), engine.risk_array(i, **at)),
        lambda i, expiry: cm.markets.contract.settlement_price(i, **at) if expiry <= now else 0,
    )
    underlyings = {u: load_underlying(cm, u, block_id, liquidation) for u in sorted(_touched(state))}
    params = EngineParams(
        im_factor=engine.im_factor(**at), max_array_age=engine.max_array_age(**at), rate=engine.rate(**at)
    )
    return state, underlyings, params, now


def _account_state(
    cash: int, collateral: tuple[Collateral, ...], positions: Any, option: Any, settlement: Any = lambda _i, _e: 0
) -> AccountState:
    """The account from its cash, collateral and ``Clearinghouse.positions`` value, with
    ``option(id)`` giving an option's listing and ``(epoch, shift, lanes, unsettled)`` and
    ``settlement(id, expiry)`` a future's stored settlement price (read by the engine only
    from its expiry on; 0 before)."""
    options = []
    for word in option_words(positions.options):
        instrument_id = word & (2**32 - 1)
        listing, (epoch, shift, stored_lanes, unsettled) = option(instrument_id)
        options.append(
            OptionPosition(
                instrument=instrument_id,
                underlying=(word >> 32) & 255,
                kind=(word >> 40) & 255,
                strike=listing.strike,
                expiry=listing.expiry,
                size=_word_size(word),
                array=pack_array(epoch, list(stored_lanes), shift, unsettled),
                settlement_price=listing.settlement_price,
            )
        )
    perps = tuple(perp_position(*line) for line in positions.perps)
    futures = tuple(
        future_line(word, settlement(word & (2**32 - 1), (word >> 40) & (2**32 - 1))) for word in positions.futures
    )
    return AccountState(
        cash=cash,
        collateral=collateral,
        options=tuple(options),
        perps=perps,
        futures=futures,
        funding_cap=positions.funding_cap,
        funding_interval=positions.funding_interval,
    )


def load_underlying(cm: Any, u: int, block_id: int, liquidation: bool = False) -> UnderlyingState:
    """Reads underlying ``u``'s oracle values, risk parameters, grid and epoch at ``block_id``
    (with ``liquidation``, through the router's liquidation reads: see :func:`snapshot`)."""
    at = {"block_id": block_id}
    engine, router = cm.engine.contract, cm.oracle.contract
    listing = engine.underlyings(u, **at)
    reads = router.price_rounds(listing.spot_key, listing.vol_key, liquidation, **at)
    return underlying_state(u, listing, reads, engine.grid(u, **at), engine.epoch(u, **at))


def underlying_state(u: int, listing: Any, reads: Any, grid: Any, epoch: Any) -> UnderlyingState:
    """An :class:`UnderlyingState` from the engine's ``underlyings(u)``, the router's
    ``price_rounds`` of its spot and vol keys, the engine's ``grid(u)`` and ``epoch(u)``."""
    spot, spot_round, vol, vol_round = reads
    shocks, moves, weights = grid
    return UnderlyingState(
        id=u,
        spot=spot,
        vol=vol,
        spot_round=spot_round,
        vol_round=vol_round,
        quantum=listing.quantum,
        vol_up=listing.vol_up,
        vol_down=listing.vol_down,
        vol_floor=listing.vol_floor,
        term_exponent=listing.term_exponent,
        short_option_rate=listing.short_option_rate,
        perp_rate=listing.perp_rate,
        grid=tuple(Scenario(*row) for row in zip(shocks, moves, weights, strict=True)),
        epoch=EpochRecord(*epoch),
        name=bytes(listing.name).rstrip(b"\0"),
        concentration_free=listing.concentration_free,
        concentration_depth=listing.concentration_depth,
    )


def with_epoch(u: UnderlyingState, record: EpochRecord) -> UnderlyingState:
    """``u`` with another stored epoch record (e.g. to value as if a stale epoch were used)."""
    return replace(u, epoch=record)
