"""Typed clients of the deployed protocol, built from a deployment manifest.

    from crossmargin.clients.protocol import Protocol
    cm = Protocol.load()                       # manifest of the connected network
    cm.vault.deposit(trader, "USDC", "1000")   # human amounts, converted exactly
    cm.vault.balances(trader)                  # AccountBalances(cash=Decimal('1000'), ...)

Scripts, keepers, the console and the tests all go through these classes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ape import networks, project
from ape.exceptions import ContractLogicError, ContractNotFoundError
from eth_abi import decode as abi_decode

import crossmargin.ops.anvil  # noqa: F401 - trace settings that keep anvil alive on failed engine txs
from crossmargin.abi import contracts
from crossmargin.clients.errors import (
    InsufficientMarginError,
    InvalidAmountError,
    MissingDeploymentError,
    NetworkRefusedError,
    UnknownNameError,
    nonzero_amount,
    positive_amount,
)
from crossmargin.clients.fund import FundClient
from crossmargin.clients.orders import ExchangeClient
from crossmargin.model import clearing as clearing_model
from crossmargin.model import margin as model
from crossmargin.model.margin import FuturePosition, future_line, scenario_hint
from crossmargin.ops.manifest import Manifest, find_manifest
from crossmargin.units import Number, account_id, from_units, from_wad, key, to_units, to_wad


@dataclass(frozen=True)
class Token:
    symbol: str
    decimals: int
    contract: Any

    @property
    def address(self) -> str:
        return self.contract.address

    def units(self, amount: Number) -> int:
        """Human amount to integer token units (exact; :class:`InvalidAmountError` if not)."""
        try:
            return to_units(amount, self.decimals)
        except (ValueError, ArithmeticError) as error:
            raise InvalidAmountError(f"{self.symbol} amount {amount}: {error}") from None

    def balance(self, holder: Any) -> Decimal:
        return from_units(self.contract.balanceOf(holder), self.decimals)

    def mint(self, sender: Any, to: Any, amount: Number):
        """Mock tokens only: mint ``amount`` to ``to`` (``sender`` must be a minter)."""
        return self.contract.mint(to, self.units(amount), sender=sender)


@dataclass(frozen=True)
class AccountBalances:
    cash: Decimal  # settlement asset, signed
    collateral: dict[str, Decimal] = field(default_factory=dict)  # symbol -> balance


@dataclass(frozen=True)
class MarginView:
    equity: Decimal
    initial: Decimal
    maintenance: Decimal

    @property
    def initial_health(self) -> Decimal:
        return self.equity - self.initial

    @property
    def maintenance_health(self) -> Decimal:
        return self.equity - self.maintenance


@dataclass(frozen=True)
class PreviewLeg:
    """One trade of a preview, from the previewed account's side, and the IM it adds."""

    instrument: int
    name: str  # "ETH perp", "ETH call 3200 2026-12-30", "ETH future 2027-02-28"
    size: Decimal  # signed: positive buys
    price: Decimal  # USD per unit
    fee: Decimal  # USD the account pays
    initial_added: Decimal  # IM after this trade minus IM before it (the trades before it applied)


@dataclass(frozen=True)
class LiquidationPrice:
    """An *estimate*: the nearest spot below and above the current one at which the
    account's health (equity − MM) reaches 0, every other input fixed (other underlyings,
    vols, funding; collateral tracking the underlying moves with it), from the reference
    model (``crossmargin.model``) by bisection. None where health stays positive down to 1%
    or up to 10x of the spot. Both equal the spot when the account is liquidatable already."""

    spot: Decimal
    below: Decimal | None
    above: Decimal | None

    @property
    def nearest(self) -> Decimal | None:
        """The one of ``below``, ``above`` closest to the spot (None if neither)."""
        found = [p for p in (self.below, self.above) if p is not None]
        return min(found, key=lambda p: abs(p - self.spot)) if found else None


@dataclass(frozen=True)
class MarginPreview:
    """``cm.preview``: an account's margin now and after a list of trades (USD), from the
    Lens's ``preview`` (the engine valuing the positions the trades would leave, no state
    changed), and the liquidation price estimates after them (by underlying name)."""

    account: int
    before: MarginView
    after: MarginView
    legs: tuple[PreviewLeg, ...]
    cash: Decimal  # cash the trades move: premiums, realized PnL, funding settled, fees
    new_risk_open: bool
    # why only risk-reducing trades go through now (new risk closed: the oracle's reason; the
    # vault paused: "clearing: paused"), else None
    closed: str | None = None
    liquidation_prices: dict[str, LiquidationPrice] = field(default_factory=dict)

    @property
    def equity(self) -> Decimal:
        return self.after.equity

    @property
    def initial(self) -> Decimal:
        return self.after.initial

    @property
    def maintenance(self) -> Decimal:
        return self.after.maintenance

    @property
    def health(self) -> Decimal:
        """Equity − MM after the trades: below 0 the account is liquidatable."""
        return self.after.maintenance_health

    @property
    def allowed(self) -> bool:
        """Whether the clearinghouse's check after the fill passes (``_check_trade``): at or
        above IM with new risk open, or a trade that only reduces risk."""
        if self.closed is None and self.after.initial_health >= 0:
            return True
        before, after = self.before, self.after
        return clearing_model.risk_reducing_allowed(
            to_wad(before.equity), to_wad(before.maintenance), to_wad(after.equity), to_wad(after.maintenance)
        )

    def check(self) -> MarginPreview:
        """Itself if ``allowed``, else :class:`InsufficientMarginError` (required vs available)."""
        if not self.allowed:
            raise InsufficientMarginError(self.account, self.after.initial, self.after.equity, self.closed)
        return self


class VaultClient:
    """Deposits, withdrawals, moves, operators and balances of the collateral vault."""

    def __init__(self, contract: Any, tokens: dict[str, Token], settlement: str):
        self.contract = contract
        self.tokens = tokens
        self.settlement = settlement

    @property
    def address(self) -> str:
        return self.contract.address

    def token(self, symbol: str) -> Token:
        try:
            return self.tokens[symbol]
        except KeyError:
            raise UnknownNameError("token", symbol, self.tokens) from None

    def approve(self, sender: Any, symbol: str, amount: Number | None = None):
        """Approves the vault for ``amount`` (default: unlimited) of ``symbol``."""
        token = self.token(symbol)
        units = 2**256 - 1 if amount is None else token.units(amount)
        return token.contract.approve(self.address, units, sender=sender)

    def deposit(
        self, sender: Any, symbol: str, amount: Number, subaccount: int = 0, recipient: Any = None, approve: bool = True
    ):
        """Deposits ``amount`` (human units, > 0) of ``symbol``; approves the exact shortfall first."""
        token = self.token(symbol)
        units = token.units(positive_amount(amount))
        if approve and token.contract.allowance(sender, self.address) < units:
            token.contract.approve(self.address, units, sender=sender)
        return self.contract.deposit(token.address, units, subaccount, recipient or sender, sender=sender)

    def withdraw(self, sender: Any, symbol: str, amount: Number, subaccount: int = 0, receiver: Any = None):
        """Withdraws ``amount`` (human units, > 0) of ``symbol`` to ``receiver`` (default: the sender)."""
        token = self.token(symbol)
        units = token.units(positive_amount(amount))
        return self.contract.withdraw(token.address, units, subaccount, receiver or sender, sender=sender)

    def move(self, sender: Any, symbol: str, amount: Number, from_subaccount: int, to_subaccount: int):
        """Moves ``amount`` (human units, > 0) of ``symbol`` between two of the sender's subaccounts."""
        token = self.token(symbol)
        units = token.units(positive_amount(amount))
        return self.contract.move(token.address, units, from_subaccount, to_subaccount, sender=sender)

    def set_operator(self, sender: Any, operator: Any, approved: bool = True, subaccount: int = 0):
        return self.contract.set_operator(subaccount, operator, approved, sender=sender)

    def balances(self, owner: Any, subaccount: int = 0) -> AccountBalances:
        collateral = {}
        for symbol, token in self.tokens.items():
            if symbol == self.settlement:
                continue
            wad = self.contract.balance_of(owner, subaccount, token.address)
            if wad:
                collateral[symbol] = from_wad(wad)
        return AccountBalances(cash=from_wad(self.contract.cash_of(owner, subaccount)), collateral=collateral)

    def account_id(self, owner: Any, subaccount: int = 0) -> int:
        return account_id(str(owner), subaccount)


class OracleClient:
    """Checked prices from the oracle router, and pushes to mock feeds on devnets."""

    def __init__(self, contract: Any, feeds: dict[str, str], contracts: Any = None):
        self.contract = contract
        self.feeds = feeds
        self._contracts = contracts or project  # where the MockAggregator container comes from

    @property
    def address(self) -> str:
        return self.contract.address

    def price(self, name: str) -> Decimal:
        return from_wad(self.contract.price(key(name)))

    def aggregator(self, name: str) -> Any:
        if name not in self.feeds:
            raise UnknownNameError("oracle feed", name, self.feeds)
        return self._contracts.MockAggregator.at(self.feeds[name])

    def push(self, sender: Any, name: str, answer: Number):
        """Mock feeds only: publish a new round with ``answer`` (human units)."""
        feed = self.aggregator(name)
        return feed.push(to_units(answer, feed.decimals()), sender=sender)


@dataclass(frozen=True)
class UnderlyingRisk:
    underlying: int
    worst_scenario: int
    loss: Decimal  # L_u, settlement units
    pnl: list[Decimal]  # unweighted PnL per scenario
    name: str = ""  # the underlying's name ("ETH")
    scenarios: list[str] = field(default_factory=list)  # each scenario's label, as `pnl`

    @property
    def worst(self) -> str:
        """The worst scenario's label, e.g. ``spot -15%, vol up (weight 1)``."""
        return self.scenarios[self.worst_scenario] if self.scenarios else str(self.worst_scenario)

    def labelled(self) -> dict[str, Decimal]:
        """The PnL vector by scenario label."""
        return dict(zip(self.scenarios, self.pnl, strict=True))


def scenario_label(shock: int, move: int, weight: int) -> str:
    """A grid scenario in words: ``spot -66%, vol up (weight 0.21)`` (shock and weight in
    millionths, move 0 down, 1 unchanged, 2 up)."""
    moves = {0: "vol down", 1: "vol unchanged", 2: "vol up"}
    return f"spot {shock / 10_000:+g}%, {moves[move]} (weight {weight / 10**6:g})"


@dataclass(frozen=True)
class PositionView:
    """One position of an account, from the account's own side (a positive size is long)."""

    instrument: int
    name: str  # "ETH perp", "ETH call 3200 2026-12-30", "ETH future 2027-02-28"
    size: Decimal  # units of the underlying
    mark: Decimal  # USD per unit: the index for perps and futures, Black-Scholes at the live spot and vol for options
    value: Decimal  # size x mark for options; the unrealized PnL for perps and futures
    pnl: Decimal | None  # perps and futures: against the cost (and funding); options: None (the premium is in cash)


@dataclass(frozen=True)
class GreeksView:
    underlying: int
    delta: Decimal  # units of underlying
    gamma: Decimal  # per 1 USD of spot
    vega: Decimal  # USD per 1.00 of vol


class EngineClient:
    """Account valuation: equity, margin requirements, risk and greeks, in settlement units.
    The risk configuration (underlyings, grids, risk and engine parameters) is set through
    the risk model, whose owner calls it and which writes it into the engine."""

    def __init__(self, contract: Any, risk_model: Any, names: dict[int, str] | None = None):
        self.contract = contract
        # prices stale risk arrays, serves `greeks` and configures the engine (owner calls)
        self.risk_model = risk_model
        self.names = names or {}  # underlying id -> name

    @property
    def address(self) -> str:
        return self.contract.address

    def margin(self, owner: Any, subaccount: int = 0) -> MarginView:
        m = self.contract.margin(account_id(str(owner), subaccount))
        return MarginView(equity=from_wad(m.equity), initial=from_wad(m.initial), maintenance=from_wad(m.maintenance))

    def risk(self, owner: Any, subaccount: int = 0) -> list[UnderlyingRisk]:
        """Per underlying the account touches: its name, the PnL of every scenario (labelled:
        spot shock, vol move, weight), the worst one and its weighted loss."""
        result = []
        for r in self.contract.risk(account_id(str(owner), subaccount)):
            shocks, moves, weights = self.contract.grid(r.underlying)
            labels = [scenario_label(*lane) for lane in zip(shocks, moves, weights, strict=True)]
            result.append(
                UnderlyingRisk(
                    r.underlying,
                    r.worst_scenario,
                    from_wad(r.loss),
                    [from_wad(x) for x in r.pnl],
                    self.names.get(r.underlying, str(r.underlying)),
                    labels,
                )
            )
        return result

    def hint(self, account: int, block_id: Any = None) -> int:
        """The scenario hint of ``account`` for ``Liquidator.start``: byte ``u`` the worst
        scenario of underlying ``u`` (from the ``risk`` view; see ``model.scenario_hint``)."""
        kwargs = {} if block_id is None else {"block_id": block_id}
        return scenario_hint(self.contract.risk(account, **kwargs))

    def greeks(self, owner: Any, subaccount: int = 0) -> list[GreeksView]:
        return [
            GreeksView(g.underlying, from_wad(g.delta), from_wad(g.gamma), from_wad(g.vega))
            for g in self.risk_model.greeks(account_id(str(owner), subaccount))
        ]

    def refresh(self, sender: Any, instruments: list[int]):
        """Keeper: stores the current-epoch risk arrays of ``instruments``."""
        return self.contract.refresh(instruments, sender=sender)

    def list_underlying(self, sender: Any, name: str, spot_key: str, vol_key: str) -> int:
        """Owner of the risk model: lists an underlying with the default grid and risk
        parameters (oracle keys of at most 16 bytes); returns its id."""
        receipt = self.risk_model.list_underlying(key(name), key(spot_key), key(vol_key), sender=sender)
        [event] = receipt.decode_logs(self.risk_model.UnderlyingListed)
        return event.underlying


class MarketsClient:
    """Instruments and market parameters: listing, open interest, settlement prices."""

    def __init__(self, contract: Any, underlyings: dict[str, int], perps: dict[str, int]):
        self.contract = contract
        self.underlyings = underlyings
        self.perps = perps

    @property
    def address(self) -> str:
        return self.contract.address

    def perp(self, underlying: str) -> int:
        """Instrument id of ``underlying``'s perpetual."""
        try:
            return self.perps[underlying]
        except KeyError:
            raise UnknownNameError("underlying", underlying, self.perps) from None

    def list_option(
        self, sender: Any, underlying: str, is_call: bool, strike: Number, expiry: int, oi_cap: Number = 10**6
    ) -> int:
        """Owner: lists a European option; returns its instrument id."""
        receipt = self.contract.list_option(
            underlying_id(self.underlyings, underlying), is_call, to_wad(strike), expiry, to_wad(oi_cap), sender=sender
        )
        [event] = receipt.decode_logs(self.contract.InstrumentListed)
        return event.instrument

    def list_future(self, sender: Any, underlying: str, expiry: int, oi_cap: Number = 10**6) -> int:
        """Owner: lists a dated future (marked to the index, settled at the first round at or
        after ``expiry``); returns its instrument id."""
        receipt = self.contract.list_future(
            underlying_id(self.underlyings, underlying), expiry, to_wad(oi_cap), sender=sender
        )
        [event] = receipt.decode_logs(self.contract.InstrumentListed)
        return event.instrument

    def instrument(self, instrument: int) -> Any:
        """An instrument's listing, open interest and settlement price (raw WAD fields)."""
        return self.contract.instrument(instrument)


class ClearingClient:
    """Positions: option sizes, perp and future positions, expiry settlement."""

    def __init__(self, contract: Any, underlyings: dict[str, int], perps: dict[str, int] | None = None):
        self.contract = contract
        self.underlyings = underlyings
        self._perps = perps or {}

    @property
    def address(self) -> str:
        return self.contract.address

    def perp(self, underlying: str) -> int:
        """Instrument id of ``underlying``'s perpetual (as ``cm.markets.perp``)."""
        underlying_id(self.underlyings, underlying)
        return self._perps[underlying]

    def option_size(self, owner: Any, instrument: int, subaccount: int = 0) -> Decimal:
        return from_wad(self.contract.option_size(account_id(str(owner), subaccount), instrument))

    def perp_size(self, owner: Any, underlying: str, subaccount: int = 0) -> Decimal:
        underlying_id_ = underlying_id(self.underlyings, underlying)
        position = self.contract.perp_position(account_id(str(owner), subaccount), underlying_id_)
        return from_wad(position.size)

    def futures(self, owner: Any, subaccount: int = 0) -> list[FuturePosition]:
        """The account's future positions (raw WAD size and cost, expiry; settlement price 0:
        see :func:`crossmargin.model.margin.snapshot` for the stored one)."""
        positions = self.contract.positions(account_id(str(owner), subaccount))
        return [future_line(word) for word in positions.futures]

    def future_size(self, owner: Any, instrument: int, subaccount: int = 0) -> Decimal:
        """Signed size (units) of a future position, 0 if none."""
        for future in self.futures(owner, subaccount):
            if future.instrument == instrument:
                return from_wad(future.size)
        return Decimal(0)

    def settle(self, sender: Any, owner: Any, instrument: int, round_hint: int, subaccount: int = 0):
        """Settles an expired option or future of ``(owner, subaccount)`` (anyone may send it)."""
        return self.contract.settle(account_id(str(owner), subaccount), instrument, round_hint, sender=sender)


@dataclass(frozen=True)
class AuctionView:
    account: int
    keeper: str  # starter still owed its tip (zero address once paid)
    started_at: int
    insolvent_at: int  # 0 while solvent

    @property
    def active(self) -> bool:
        return self.started_at != 0


@dataclass(frozen=True)
class Quote:
    fraction: Decimal  # after the buffer cap
    price: Decimal  # settlement units the bidder pays; negative when it is paid


@dataclass(frozen=True)
class StandingBidView:
    bidder: int
    multiplier: int  # WAD
    fraction: int  # WAD per auction
    max_cash: int  # WAD USD per auction
    underlyings: int  # bit u = underlying id u; 0 = any

    @property
    def active(self) -> bool:
        return self.fraction != 0


class LiquidatorClient:
    """Dutch auctions of accounts below maintenance margin. Accounts are account ids
    (``cm.vault.account_id(owner, subaccount)``); amounts are settlement units."""

    def __init__(self, contract: Any):
        self.contract = contract

    @property
    def address(self) -> str:
        return self.contract.address

    def start(self, sender: Any, account: int, hint: int = 0):
        """Starts the auction of ``account``; ``hint`` (``Engine.hint``) makes it cheaper."""
        return self.contract.start(account, hint, sender=sender)

    def mark_insolvent(self, sender: Any, account: int):
        return self.contract.mark_insolvent(account, sender=sender)

    def bid(self, sender: Any, account: int, fraction: Number, max_price: Number, subaccount: int = 0):
        """Buys ``fraction`` (0..1) of ``account`` into ``(sender, subaccount)`` paying at most
        ``max_price`` (negative: asks to be paid at least that much)."""
        return self.contract.bid(account, to_wad(fraction), to_wad(max_price), subaccount, sender=sender)

    def terminate(self, sender: Any, account: int):
        return self.contract.terminate(account, sender=sender)

    def auction(self, account: int) -> AuctionView:
        keeper, started_at, insolvent_at = self.contract.auction(account)
        return AuctionView(account, keeper, started_at, insolvent_at)

    def tip_owed(self, account: int) -> Decimal:
        """What the starting keeper of ``account``'s auction is still owed (settlement units)."""
        return from_wad(self.contract.tip_owed(account))

    def quote(self, account: int, fraction: Number = 1) -> Quote:
        taken, price = self.contract.quote(account, to_wad(fraction))
        return Quote(from_wad(taken), from_wad(price))

    def multiplier(self, elapsed: int) -> Decimal:
        return from_wad(self.contract.multiplier(elapsed))

    def register(
        self,
        sender: Any,
        multiplier: Number,
        fraction: Number,
        max_cash: Number,
        underlyings: int = 0,
        subaccount: int = 0,
    ):
        """Registers the standing bid of ``(sender, subaccount)``: buys once d(t) <=
        ``multiplier``, at most ``fraction`` and ``max_cash`` (settlement units) per auction,
        only accounts within ``underlyings`` (bit u = underlying id u; 0 = any)."""
        return self.contract.register(
            subaccount, to_wad(multiplier), to_wad(fraction), to_wad(max_cash), underlyings, sender=sender
        )

    def cancel(self, sender: Any, bidder: int):
        return self.contract.cancel(bidder, sender=sender)

    def execute(self, sender: Any, account: int, bidder: int):
        """Executes ``bidder``'s standing bid against ``account``'s auction (for the tip)."""
        return self.contract.execute(account, bidder, sender=sender)

    def standing_bid(self, bidder: int) -> StandingBidView:
        multiplier, fraction, max_cash, underlyings = self.contract.standing_bid(bidder)
        return StandingBidView(bidder, multiplier, fraction, max_cash, underlyings)


class LensClient:
    """Batch reads through the view-only Lens (``contracts/Lens.vy``): an account's whole
    valuation input, or many instruments, arrays, holders or underlyings, in one ``eth_call``
    each. The batch methods take any number of ids and make one call per 64 of them.

    Results are decoded here with ``eth_abi`` into named tuples at every level (ape names
    only the outer struct), named as the contract's struct fields. Every method takes
    ``block_id`` (default: the head) and passes it to the call.
    """

    BATCH = 64  # ids per call (the Lens's MAX_BATCH)

    def __init__(self, contract: Any, clearing: Any):
        self.contract = contract
        self._positions_abi = clearing.positions.abis[0]

    @property
    def address(self) -> str:
        return self.contract.address

    def _call(self, name: str, *args: Any, block_id: int | None = None) -> Any:
        handler = getattr(self.contract, name)
        abi = next(a for a in handler.abis if len(a.inputs) == len(args))
        raw = handler(*args, decode=False, **_at(block_id))
        return decode_output(abi, raw)

    def preview(self, account: int, trades: list[tuple], block_id: int | None = None) -> Any:
        """``Lens.preview``: ``trades`` are ``(instrument, size, price, fee)`` WAD tuples from
        the account's side; the margin before and after, health, IM per trade, cash."""
        return self._call("preview", account, trades, block_id=block_id)

    def snapshot(self, account: int, liquidation: bool = False, block_id: int | None = None) -> Any:
        """``Lens.snapshot``: cash, collateral lines with prices, positions (raw ABI),
        options with listings and arrays, touched underlyings, engine parameters."""
        return self._call("snapshot", account, liquidation, block_id=block_id)

    def positions(self, raw: bytes) -> Any:
        """A snapshot's ``positions`` bytes decoded with the clearinghouse's own ABI: the
        value ``Clearinghouse.positions(account)`` returns, whatever its fields."""
        return decode_output(self._positions_abi, bytes(raw))

    def _batched(self, name: str, ids: list[int], *args: Any, size: int = BATCH, block_id: int | None = None) -> list:
        ids = list(ids)
        out: list = []
        for i in range(0, len(ids), size):
            out.extend(self._call(name, *args, ids[i : i + size], block_id=block_id))
        return out

    def instruments(self, ids: list[int], block_id: int | None = None) -> list:
        """``Markets.instrument`` of each id, in order."""
        return self._batched("instruments", ids, block_id=block_id)

    def risk_arrays(self, ids: list[int], block_id: int | None = None) -> list:
        """``MarginEngine.risk_array`` of each id: (epoch, shift, lanes, unsettled)."""
        return self._batched("risk_arrays", ids, block_id=block_id)

    def array_epochs(self, ids: list[int], block_id: int | None = None) -> list[int]:
        """The epoch of each id's stored risk array (0 for none)."""
        return self._batched("array_epochs", ids, block_id=block_id)

    def holders_sizes(self, instrument_id: int, accounts: list[int], block_id: int | None = None) -> list[int]:
        """The signed size (WAD) of ``instrument_id`` each account holds."""
        return self._batched("holders_sizes", accounts, instrument_id, block_id=block_id)

    def underlyings(self, ids: list[int], liquidation: bool = False, block_id: int | None = None) -> list:
        """Each underlying's listing, oracle reads, grid and epoch record (16 a call)."""
        ids = list(ids)
        out: list = []
        for i in range(0, len(ids), 16):
            out.extend(self._call("underlyings", ids[i : i + 16], liquidation, block_id=block_id))
        return out


def underlying_id(underlyings: dict[str, int], name: str) -> int:
    """The engine id of underlying ``name``; :class:`UnknownNameError` listing the known ones."""
    try:
        return underlyings[name]
    except KeyError:
        raise UnknownNameError("underlying", name, underlyings) from None


def _at(block_id: int | None) -> dict[str, int]:
    return {} if block_id is None else {"block_id": block_id}


def decode_output(abi: Any, raw: bytes) -> Any:
    """A method's return data decoded with ``eth_abi``, structs as named tuples at every
    level (field names from the ABI's components); one output is returned as itself."""
    outputs = abi.outputs
    values = abi_decode([o.canonical_type for o in outputs], bytes(raw))
    named = [_named(o, v) for o, v in zip(outputs, values, strict=True)]
    return named[0] if len(named) == 1 else tuple(named)


_STRUCTS: dict[tuple[str, ...], type] = {}


def _named(t: Any, value: Any) -> Any:
    kind = t.type
    if not kind.startswith("tuple"):
        return list(value) if kind.endswith("]") else value
    fields = tuple(c.name for c in t.components)
    struct = _STRUCTS.get(fields)
    if struct is None:
        struct = _STRUCTS[fields] = namedtuple("Struct", fields)  # noqa: PYI024 - fields known at run time

    def one(v: Any) -> Any:
        return struct(*(_named(c, x) for c, x in zip(t.components, v, strict=True)))

    return [one(v) for v in value] if kind.endswith("]") else one(value)


def fill_fee(size: int, price: int, rate: int) -> int:
    """``Exchange._fee``: ``ceil(size · price · rate / 1e36)`` (WAD USD; size and price WAD)."""
    return -(-size * price * rate // 10**36)


def _margin_view(m: Any) -> MarginView:
    return MarginView(equity=from_wad(m.equity), initial=from_wad(m.initial), maintenance=from_wad(m.maintenance))


def _instrument_name(row: Any, names: dict[int, str]) -> str:
    """An instrument's name as ``Protocol.positions`` prints it (``row``: ``Markets.instrument``)."""
    underlying = names.get(row.underlying, str(row.underlying))
    day = datetime.fromtimestamp(row.expiry, UTC).strftime("%Y-%m-%d")
    if row.kind == model.PERP:
        return f"{underlying} perp"
    if row.kind == model.FUTURE:
        return f"{underlying} future {day}"
    kind = "call" if row.kind == model.CALL else "put"
    return f"{underlying} {kind} {from_wad(row.strike):f} {day}"


# Spot multiples the liquidation search steps through, outward from the spot, before it
# bisects the first step where health changes sign.
LIQUIDATION_STEPS_DOWN = (0.98, 0.95, 0.9, 0.8, 0.65, 0.5, 0.3, 0.1, 0.01)
LIQUIDATION_STEPS_UP = (1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
LIQUIDATION_BISECTIONS = 40


def health_at_spot(
    state: model.AccountState,
    underlyings: dict[int, model.UnderlyingState],
    params: model.EngineParams,
    now: int,
    u: int,
    spot: int,
) -> int:
    """The model's health (equity − MM, WAD) with underlying ``u`` at ``spot`` (WAD) read in
    a new oracle round, so that its options' arrays are priced at it; collateral tracking
    ``u`` repriced by the same factor; everything else as given."""
    current = underlyings[u]
    moved = dict(underlyings)
    moved[u] = replace(current, spot=spot, spot_round=current.spot_round + 1)
    lines = tuple(
        replace(line, price=line.price * spot // current.spot) if line.underlying == u else line
        for line in state.collateral
    )
    m = model.margin(replace(state, collateral=lines), moved, params, now)
    return m.equity - m.maintenance


def liquidation_price(
    state: model.AccountState,
    underlyings: dict[int, model.UnderlyingState],
    params: model.EngineParams,
    now: int,
    u: int,
) -> LiquidationPrice:
    """The :class:`LiquidationPrice` estimate of underlying ``u``: :func:`health_at_spot`
    searched outward from the spot (``LIQUIDATION_STEPS_*``) and bisected where it first
    reaches 0 (``LIQUIDATION_BISECTIONS`` halvings of that step)."""
    spot = underlyings[u].spot

    def health(s: int) -> int:
        return health_at_spot(state, underlyings, params, now, u, s)

    if health(spot) <= 0:
        return LiquidationPrice(from_wad(spot), from_wad(spot), from_wad(spot))

    def search(steps: tuple[float, ...]) -> Decimal | None:
        safe = spot
        for step in steps:
            s = max(1, int(spot * Decimal(str(step))))
            if health(s) <= 0:
                for _ in range(LIQUIDATION_BISECTIONS):
                    mid = (safe + s) // 2
                    if mid in (safe, s):
                        break
                    if health(mid) <= 0:
                        s = mid
                    else:
                        safe = mid
                return from_wad(s)
            safe = s
        return None

    return LiquidationPrice(from_wad(spot), search(LIQUIDATION_STEPS_DOWN), search(LIQUIDATION_STEPS_UP))


# Networks whose tokens are mocks a faucet may mint (the dev networks of crossmargin.cli).
FAUCET_NETWORKS = ("local", "devnet", "devnet-fork")


def check_faucet_network(network: str) -> None:
    """Raises :class:`NetworkRefusedError` unless ``network`` is a local or devnet network."""
    if network not in FAUCET_NETWORKS:
        raise NetworkRefusedError(
            f"the faucet mints mock tokens on {', '.join(FAUCET_NETWORKS)} only, not on {network!r}"
        )


def deploy_hint(network: str, verb: str = "create it with") -> str:
    """The command that creates ``network``'s deployment manifest."""
    if network == "local":
        return (
            "`ape run deploy` on the default network deploys to an anvil that stops when the command ends; "
            "start a node (`anvil`), then `ape run deploy --network ethereum:devnet:node` and use that network"
        )
    return f"{verb} `ape run deploy --network ethereum:{network.removesuffix('-fork')}`"


class Protocol:
    """The deployed stack of one network."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        # the contract containers: ape's compiled project in a checkout, else the manifest's
        # own ABIs (`<network>.abi/`) or the ones bundled with the package
        project = contracts(manifest.abi_dir)
        tokens = {
            symbol: Token(symbol, int(contract.decimals()), contract)
            for symbol, contract in ((s, project.MockERC20.at(a)) for s, a in manifest.tokens.items())
        }
        self.tokens = tokens
        self.vault = VaultClient(project.Vault.at(manifest.contracts["Vault"]), tokens, manifest.settlement)
        self.oracle = OracleClient(project.OracleRouter.at(manifest.contracts["OracleRouter"]), manifest.feeds, project)
        self.engine = EngineClient(
            project.MarginEngine.at(manifest.contracts["MarginEngine"]),
            project.RiskModel.at(manifest.contracts["RiskModel"]),
            {u: name for name, u in manifest.underlyings.items()},
        )
        self.clearing = ClearingClient(
            project.Clearinghouse.at(manifest.contracts["Clearinghouse"]), manifest.underlyings, manifest.perps
        )
        self.markets = MarketsClient(
            project.Markets.at(manifest.contracts["Markets"]), manifest.underlyings, manifest.perps
        )
        self.exchange = ExchangeClient(project.Exchange.at(manifest.contracts["Exchange"]))
        self.liquidator = LiquidatorClient(project.Liquidator.at(manifest.contracts["Liquidator"]))
        self.fund = FundClient(
            project.InsuranceFund.at(manifest.contracts["InsuranceFund"]), tokens[manifest.settlement]
        )
        # view only, so optional: a manifest written before the Lens existed loads without it
        # (`ape run deploy --lens-only` adds one); readers then fall back to per-call reads
        lens = manifest.contracts.get("Lens")
        self.lens = LensClient(project.Lens.at(lens), self.clearing.contract) if lens else None
        # fills preview both sides first (see `preflight_fill`); none without a Lens
        self.exchange.preflight = self.preflight_fill if self.lens else None

    def trade(
        self,
        maker: Any,
        taker: Any,
        instrument: int,
        size: Number,
        price: Number,
        *,
        maker_subaccount: int = 0,
        taker_subaccount: int = 0,
        preflight: bool = True,
    ):
        """The maker signs an order and the taker fills all of it at ``price``; returns the
        fill's receipt.

        Sides are the maker's: ``size`` is the maker's signed size, in units of the
        instrument. ``"2"``: the maker buys 2 and the taker sells 2; ``"-2"``: the maker
        sells 2 and the taker buys 2. Every amount is human (``Decimal``, ``str`` or ``int``
        of whole units; a float is refused). With ``preflight`` (default) both sides are
        previewed first and :class:`InsufficientMarginError` raised, nothing sent, for a fill
        the clearinghouse would revert for margin.

        Args:
            maker: Signs the order (owner of the maker account).
            taker: Sends the fill (owner of the taker account).
            instrument: Instrument id.
            size: The maker's signed size (never zero).
            price: USD per unit (> 0).
            maker_subaccount: The maker's subaccount.
            taker_subaccount: The taker's subaccount.
            preflight: Preview the fill's margin before sending it.

        Raises:
            InvalidAmountError: A float, a zero ``size`` or a price not above zero.
            InsufficientMarginError: The preview shows the fill failing margin.
        """
        signed = nonzero_amount(size, "size")
        order = self.exchange.make_order(maker, instrument, signed > 0, abs(signed), price, subaccount=maker_subaccount)
        signature = self.exchange.sign(maker, order)
        return self.exchange.fill(
            taker, order, signature, size_raw=order.size, taker_subaccount=taker_subaccount, preflight=preflight
        )

    @classmethod
    def load(cls, network_name: str | None = None) -> Protocol:
        """The protocol on the connected network (or ``network_name``'s manifest)."""
        name = network_name or networks.provider.network.name
        path = find_manifest(name)
        if not path.exists():
            raise MissingDeploymentError(f"no deployment manifest {path} for network {name!r}; {deploy_hint(name)}")
        try:
            return cls(Manifest.load(path))
        except ContractNotFoundError:
            # e.g. the manifest of an earlier ape-managed anvil, which is gone with its chain
            raise MissingDeploymentError(
                f"the contracts of {path} are not on this chain; {deploy_hint(name, 'deploy again with')}"
            ) from None

    def positions(self, owner: Any, subaccount: int = 0) -> list[PositionView]:
        """The account's positions, named and marked (one Lens read): options first, then perps
        and futures. Sizes are from the account's own side; a perp's or a future's ``pnl`` is
        what closing it at the index would realize (funding included); an option's premium
        was paid or received in cash, so its ``value`` is what it is worth now."""
        state, underlyings, params, now = model.snapshot(self, owner, subaccount)
        names = {u: name for name, u in self.manifest.underlyings.items()}

        def day(expiry: int) -> str:
            return datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d")

        views = []
        for o in state.options:
            u = underlyings[o.underlying]
            mark = model.option_price(o, u, params, now)
            kind = "call" if o.kind == model.CALL else "put"
            name = f"{names.get(o.underlying, o.underlying)} {kind} {from_wad(o.strike):f} {day(o.expiry)}"
            value = from_wad(model.floor_div(o.size * mark, model.WAD))
            views.append(PositionView(o.instrument, name, from_wad(o.size), from_wad(mark), value, None))
        for p in state.perps:
            spot = underlyings[p.underlying].spot
            index = model.funding_now(
                p.cumulative, p.premium_ema, p.updated_at, spot, state.funding_cap, state.funding_interval, now
            )
            pnl = model.floor_div(p.size * spot, model.WAD) - p.cost
            pnl += model.floor_div(-p.size * (index - p.funding), model.WAD)
            name = f"{names.get(p.underlying, p.underlying)} perp"
            instrument = self.manifest.perps.get(names.get(p.underlying, ""), 0)
            views.append(PositionView(instrument, name, from_wad(p.size), from_wad(spot), from_wad(pnl), from_wad(pnl)))
        for f in state.futures:
            mark = f.settlement_price if f.expiry <= now and f.settlement_price else underlyings[f.underlying].spot
            pnl = model.floor_div(f.size * mark, model.WAD) - f.cost
            name = f"{names.get(f.underlying, f.underlying)} future {day(f.expiry)}"
            views.append(
                PositionView(f.instrument, name, from_wad(f.size), from_wad(mark), from_wad(pnl), from_wad(pnl))
            )
        return views

    # ------------------------------------------------------------------ margin preview

    def instrument_id(self, instrument: int | str) -> int:
        """An instrument id from itself or its name as ``positions`` prints it: ``"ETH perp"``,
        ``"ETH call 3200 2026-12-30"``, ``"ETH future 2027-02-28"`` (:class:`UnknownNameError`
        listing the known names otherwise)."""
        if isinstance(instrument, int):
            return instrument
        name = " ".join(str(instrument).split())
        parts = name.split(" ")
        if len(parts) == 2 and parts[1] == "perp":
            return self.markets.perp(parts[0])
        names = self._instrument_names()
        if name not in names:
            raise UnknownNameError("instrument", name, names)
        return names[name]

    def _instrument_names(self) -> dict[str, int]:
        names = {u: name for name, u in self.manifest.underlyings.items()}
        count = int(self.markets.contract.instrument_count())
        ids = list(range(1, count + 1))
        rows = self.lens.instruments(ids) if self.lens else [self.markets.instrument(i) for i in ids]
        return {_instrument_name(row, names): i for i, row in zip(ids, rows, strict=True) if row.kind}

    def preview(
        self,
        account: Any,
        trades: Iterable[tuple],
        *,
        subaccount: int = 0,
        maker: bool = False,
        liquidation_prices: bool = True,
        block_id: int | None = None,
    ) -> MarginPreview:
        """The account's margin after ``trades`` (no transaction: the Lens's ``preview``,
        equal to the engine's ``margin`` after the same fills in the same block).

        Args:
            account: An account id, or its owner (address or ape account) with ``subaccount``.
            trades: ``(instrument, size, price)`` or ``(instrument, size, price, fee)`` each,
                in human units from the account's own side: an instrument id or name (see
                :meth:`instrument_id`), a signed size (positive buys), the price (USD per
                unit) and the fee it pays (USD; default: the exchange's taker rate, or its
                maker rate with ``maker``, times the notional).
            maker: Price the default fees at the maker rate.
            liquidation_prices: Also estimate each underlying's liquidation price after the
                trades (:class:`LiquidationPrice`, reference model; skip it to save time).
            block_id: The block to preview at (default: the head).

        Returns:
            A :class:`MarginPreview`: equity, IM, MM and health after, the IM each trade
            adds, and the liquidation price estimates.
        """
        if self.lens is None:
            raise MissingDeploymentError(
                "the preview needs the deployment's Lens; add one with `ape run deploy --lens-only`"
            )
        account = account if isinstance(account, int) else account_id(str(account), subaccount)
        names = {u: name for name, u in self.manifest.underlyings.items()}
        rates = None
        raw, legs = [], []
        for trade in trades:
            instrument, size, price, *rest = trade
            instrument = self.instrument_id(instrument)
            size_wad, price_wad = to_wad(nonzero_amount(size, "size")), to_wad(positive_amount(price, "price"))
            if rest:
                fee = to_wad(rest[0])
            else:
                rates = rates or (self.exchange.contract.maker_fee(), self.exchange.contract.taker_fee())
                fee = fill_fee(abs(size_wad), price_wad, rates[0] if maker else rates[1])
            raw.append(clearing_model.PreviewTrade(instrument, size_wad, price_wad, fee))
        if block_id is None:
            block_id = networks.provider.get_block("latest").number
        result = self.lens.preview(account, [(t.instrument, t.size, t.price, t.fee) for t in raw], block_id=block_id)
        listing_rows = self.lens.instruments([t.instrument for t in raw], block_id=block_id) if raw else []
        for t, row, added in zip(raw, listing_rows, result.legs, strict=True):
            legs.append(
                PreviewLeg(
                    t.instrument,
                    _instrument_name(row, names),
                    from_wad(t.size),
                    from_wad(t.price),
                    from_wad(t.fee),
                    from_wad(added),
                )
            )
        preview = MarginPreview(
            account=account,
            before=_margin_view(result.before),
            after=_margin_view(result.after),
            legs=tuple(legs),
            cash=from_wad(result.cash),
            new_risk_open=bool(self.engine.contract.new_risk_open(block_id=block_id)),
            closed=self._closed(block_id),
        )
        if not liquidation_prices:
            return preview
        return replace(preview, liquidation_prices=self.liquidation_prices(account, raw, block_id=block_id))

    def model_after(
        self, account: int, trades: list[clearing_model.PreviewTrade], block_id: int
    ) -> tuple[model.AccountState, dict[int, model.UnderlyingState], model.EngineParams, int]:
        """The reference model's inputs of ``account`` after ``trades`` (WAD) at ``block_id``:
        its snapshot with the trades applied (``clearing_model.apply_trades``, the twin of the
        Lens's preview), and every underlying that then touches."""
        at = {"block_id": block_id}
        owner = f"0x{account >> 96:040x}"
        state, underlyings, params, now = model.snapshot(self, owner, account & (2**96 - 1), block_id=block_id)
        engine, markets, clearing = self.engine.contract, self.markets.contract, self.clearing.contract
        listings = {}
        for t in trades:
            row = markets.instrument(t.instrument, **at)
            listing = clearing_model.Listing(row.kind, row.underlying, row.strike, row.expiry, row.settlement_price)
            if row.kind == model.PERP:
                funding = tuple(clearing.funding(row.underlying, **at))
                spot = self.oracle.contract.price(engine.spot_key(row.underlying, **at), **at)
                listing = replace(listing, funding=funding, spot=spot)
            if row.kind in (model.PERP, model.FUTURE):
                listing = replace(listing, pending=clearing.pending_charge(t.instrument, **at))
            if row.kind in (model.CALL, model.PUT):
                epoch, shift, lanes, unsettled = engine.risk_array(t.instrument, **at)
                listing = replace(listing, array=model.pack_array(epoch, list(lanes), shift, unsettled))
            listings[t.instrument] = listing
        after, _ = clearing_model.apply_trades(state, trades, listings, now)
        missing = sorted(model._touched(after) - set(underlyings))
        if missing:
            for row in self.lens.underlyings(missing, block_id=block_id):
                underlyings[row.id] = model.lens_underlying(row)
        return after, underlyings, params, now

    def liquidation_prices(
        self, account: int, trades: list[clearing_model.PreviewTrade] = (), block_id: int | None = None
    ) -> dict[str, LiquidationPrice]:
        """Per underlying the account touches after ``trades``: the liquidation price
        *estimates* of :class:`LiquidationPrice` (reference model, bisection over the spot)."""
        if block_id is None:
            block_id = networks.provider.get_block("latest").number
        state, underlyings, params, now = self.model_after(account, list(trades), block_id)
        names = {u: name for name, u in self.manifest.underlyings.items()}
        return {
            names.get(u, str(u)): liquidation_price(state, underlyings, params, now, u)
            for u in sorted(model._touched(state))
        }

    def _closed(self, block_id: int | None) -> str | None:
        """Why only risk-reducing trades go through now, as the clearinghouse's check would
        revert: ``"clearing: paused"`` while the vault is paused, the oracle's reason while
        new risk is closed; None when neither."""
        at = _at(block_id)
        if self.vault.contract.paused(**at):
            return "clearing: paused"
        try:
            self.engine.contract.check_new_risk(**at)
        except ContractLogicError as error:
            return error.revert_message or "new risk closed"
        return None

    def preflight_fill(
        self, maker: int, taker: int, instrument: int, size: int, price: int, maker_fee: int, taker_fee: int
    ) -> None:
        """Previews a fill of ``size`` (WAD, the maker's side) at ``price`` (WAD) for both
        sides and raises :class:`InsufficientMarginError` for the first one the
        clearinghouse's check would reject; the exchange client calls it before sending. A
        preview that itself reverts (an unknown or expired instrument, a position cap: what
        the fill would revert for first) leaves the fill to be sent, so that the chain gives
        its own reason."""
        for account, signed, fee in ((maker, size, maker_fee), (taker, -size, taker_fee)):
            try:
                result = self.lens.preview(account, [(instrument, signed, price, fee)])
            except Exception:  # noqa: BLE001 - e.g. an expired instrument: the fill reverts with the chain's reason
                return
            preview = MarginPreview(
                account=account,
                before=_margin_view(result.before),
                after=_margin_view(result.after),
                legs=(),
                cash=from_wad(result.cash),
                new_risk_open=bool(self.engine.contract.new_risk_open()),
                closed=self._closed(None),
            )
            preview.check()

    def faucet(self, account: Any, symbol: str, amount: Number, minter: Any = None):
        """Mints ``amount`` (human units, > 0) of the mock token ``symbol`` to ``account``
        (local and devnet networks only: :class:`NetworkRefusedError` elsewhere). ``minter``
        (default: test account 0, the deployer) must hold the mock's minter role."""
        network = networks.provider.network.name
        check_faucet_network(network)
        token = self.token(symbol)
        units = token.units(positive_amount(amount))
        if minter is None:
            from ape import accounts

            minter = accounts.test_accounts[0]
        return token.contract.mint(account, units, sender=minter)

    def token(self, symbol: str) -> Token:
        return self.vault.token(symbol)

    def __repr__(self) -> str:
        return f"<crossmargin {self.manifest.network} vault={self.vault.address}>"
