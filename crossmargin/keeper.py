"""Keepers of the protocol (SPECIFICATION.md §7, §8, §10): the one logic module behind
``ape run keeper`` and the Silverback bots in ``bots/``.

    from crossmargin.keeper import Keeper, KeeperConfig
    keeper = Keeper(cm, account, KeeperConfig(state_file=Path(".keeper/local.json")))
    for report in keeper.run_once():          # discover, liquidate, settle, refresh
        print(report.summary())

Tasks (each a method returning a small typed report of what it did or, in a dry run,
would do):

- :meth:`Keeper.discover`: accounts from the vault's ``Deposit``/``Move`` and the
  clearinghouse's ``Traded`` events (maker and taker), auctions from the liquidator's, listed
  options (the markets contract's ``InstrumentListed``) and who may hold them, read
  incrementally from the last processed block;
- :meth:`Keeper.liquidate`: screens every known account (``engine.margins``, 64 a call),
  starts every due auction not running, marks insolvent ones, terminates auctions back
  above the buffer and bids when the quoted discount beats the threshold;
- :meth:`Keeper.settle`: settles expired options of known holders, with the round hint of
  the first oracle round at or after expiry;
- :meth:`Keeper.refresh`: stores the risk arrays of listed, held options whose stored epoch
  is stale;
- :meth:`Keeper.move_prices`: random-walks the mock spot feeds (devnets only).

Robustness. Every chain action is preflighted against the latest state (one execution
through :class:`crossmargin.clients.sender.TxSender`) before it is sent: that is the on-chain
confirmation, and a revert whose reason shows the work is done or no longer needed
(:data:`NOTHING_TO_DO`) is logged as ``skipped``, never raised. Node errors are retried a
bounded number of times per call and per task; a task that still fails is reported and the
next task runs. A JSON state file keeps the discovery cursor, the known accounts, auctions
and option holders, and every transaction sent (key, nonce, hash, outcome), written before
sending (its nonce and hash). On start-up, and before each action, that journal is
reconciled with the node (:meth:`Keeper.reconcile`): an entry whose nonce the chain has
used is resolved from its receipt (``done``/``reverted``), one at or above the node's pending
nonce never reached the node and is dropped (the work is done again), and only one in the
node's pool in between is in flight. So after any crash the next sweep acts on every due
account exactly once: never twice, and never skipped.

Screening uses the engine's batch view, not the reference model: one ``eth_call`` values 64
accounts, while the model needs about ten reads per account. The model (bit-exact, see
:mod:`crossmargin.model.margin`) is used where one load serves many valuations: the
what-if ranking :meth:`Keeper.liquidation_distance` (the spot move that would make an account
liquidatable) and the risk-array epoch check of :meth:`Keeper.refresh`.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from ape import chain, networks
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from web3.exceptions import ContractLogicError, TransactionNotFound

from crossmargin.clients.sender import Call, CallResult, TxSender, is_transient, retry, revert_reason
from crossmargin.clients.standing import execute_standing
from crossmargin.model import margin as model
from crossmargin.model.auction import AuctionParams
from crossmargin.units import SUB_BITS, WAD, from_wad, key

__all__ = [
    "DEV_NETWORKS",
    "NOTHING_TO_DO",
    "AccountHealth",
    "Action",
    "AuctionStatus",
    "DiscoveryReport",
    "Distance",
    "Keeper",
    "KeeperConfig",
    "KeeperState",
    "LiquidationReport",
    "PriceReport",
    "RefreshReport",
    "RefusedError",
    "SettlementBlocked",
    "SettlementReport",
    "TaskReport",
    "describe_account",
]

# Networks whose feeds may be mocks a keeper pushes to (same list as crossmargin.cli).
DEV_NETWORKS = ("local", "devnet", "devnet-fork")
# The oracle reasons that a broken feed gives every valuation reading it; the liquidation
# reads (bit 0 of a `refresh_bound` hint) value through them instead (SPECIFICATION.md).
FEED_FAILURES = re.compile(r"oracle: (stale price|price out of bounds|non-positive price)")
LIQUIDATION_READS = 1
# Tasks of a full round, in order.
TASKS = ("discover", "liquidate", "settle", "refresh")

# Revert reasons that mean the work is already done, or no longer needed: the action is
# skipped (logged), not treated as a failure.
NOTHING_TO_DO = frozenset(
    {
        "liquidator: already in auction",  # start: someone started it
        "liquidator: account healthy",  # start: cured (deposit, price) since the screen
        "liquidator: already insolvent",  # mark_insolvent: done
        "liquidator: account solvent",  # mark_insolvent: no longer insolvent
        "liquidator: no auction",  # terminate/bid/mark: the auction ended
        "liquidator: account above buffer",  # bid: nothing left to buy
        "liquidator: below buffer",  # terminate: not yet
        "clearing: no position",  # settle: already settled (or transferred)
    }
)

MASK96 = 2**SUB_BITS - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# Kinds of the markets contract's instruments.
PERP, CALL, PUT, FUTURE = 1, 2, 3, 4
# Chainlink round ids: phase (16 bits) << 64 | round of the phase's aggregator.
PHASE_SHIFT = 64
PHASE_MASK = 2**PHASE_SHIFT - 1

# What a keeper reads of a Chainlink aggregator (roundId, answer, startedAt, updatedAt, answeredInRound).
_ROUND = [
    {"name": n, "type": t}
    for n, t in (("r", "uint80"), ("a", "int256"), ("s", "uint256"), ("u", "uint256"), ("q", "uint80"))
]
AGGREGATOR_ABI = [
    {"name": "latestRoundData", "type": "function", "stateMutability": "view", "inputs": [], "outputs": _ROUND},
    {
        "name": "getRoundData",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "round_id", "type": "uint80"}],
        "outputs": _ROUND,
    },
]


def describe_account(account: int) -> str:
    """``0x3C44…93BC:2``: an account id as owner (shortened) and subaccount."""
    owner = to_checksum_address((account >> SUB_BITS).to_bytes(20, "big"))
    return f"{owner[:6]}…{owner[-4:]}:{account & MASK96}"


def _topic_id(topic: bytes) -> int:
    return int.from_bytes(bytes(topic), "big")


def _event_topic(event_abi: Any) -> str:
    return "0x" + keccak(text=event_abi.selector).hex()


class RefusedError(RuntimeError):
    """A task that must not run here (e.g. the price mover off a devnet)."""


class SettlementBlocked(RuntimeError):
    """No round hint can settle this expiry (see :meth:`Keeper.round_hint`)."""


# ---------------------------------------------------------------- configuration and state


@dataclass(frozen=True)
class KeeperConfig:
    """What a keeper does and how hard it tries.

    Attributes:
        dry_run: Preflight every action but send nothing.
        bid_threshold: Minimum discount of a bid as a fraction of the equity it buys
            (``(f·E − price) / |f·E|``); ``None`` never bids.
        max_bid_fraction: Largest fraction of an account one bid asks for (the contract
            caps it further at the buffer).
        bidder_subaccount: The sender's subaccount that bids (must hold collateral).
        batch_size: Accounts per ``engine.margins`` call (the engine takes at most 64).
        state_file: JSON state (cursor, accounts, sent transactions); None keeps it in memory.
        persist: Write the state file (False: read it only, as ``ape run status`` does).
        start_block: First block discovery reads when there is no state (the deploy block).
        log_chunk: Blocks per ``eth_getLogs`` request.
        refresh_batch: Instruments per ``engine.refresh`` transaction (at most the engine's
            64; the engine prices each underlying of a batch in one risk-model call, so
            fuller batches share more).
        attempts: Tries of a call or task on node errors (bounded retry).
        retry_delay: Seconds before the first retry (doubling after).
        workers: Concurrent reads (screen batches, preflights).
        price_step: Standard deviation of one random-walk step of the price mover (fraction).
        seed: Seed of the price mover's random walk (None: random).
        nearest: How many accounts nearest to liquidation a report lists.
    """

    dry_run: bool = False
    bid_threshold: Decimal | None = Decimal("0.10")
    max_bid_fraction: Decimal = Decimal(1)
    bidder_subaccount: int = 0
    batch_size: int = 64
    state_file: Path | None = None
    persist: bool = True
    start_block: int = 0
    log_chunk: int = 5_000
    refresh_batch: int = 64
    attempts: int = 3
    retry_delay: float = 0.5
    workers: int = 4
    price_step: float = 0.005
    seed: int | None = None
    nearest: int = 10

    def __post_init__(self) -> None:
        # accept "0.05" or 0.05 as well as Decimal; a str times WAD would be a very long str
        for name in ("bid_threshold", "max_bid_fraction"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                object.__setattr__(self, name, Decimal(str(value)))
        if self.state_file is not None and not isinstance(self.state_file, Path):
            object.__setattr__(self, "state_file", Path(self.state_file))
        if not Decimal(0) < self.max_bid_fraction <= 1:
            raise ValueError("max_bid_fraction must be in (0, 1]")
        if self.bid_threshold is not None and not Decimal(0) <= self.bid_threshold < 1:
            raise ValueError("bid_threshold must be in [0, 1)")

    @classmethod
    def from_env(cls, prefix: str = "CROSSMARGIN_KEEPER_", **overrides: Any) -> KeeperConfig:
        """A config from environment variables, for the bots: ``CROSSMARGIN_KEEPER_`` and a
        field's name in capitals (``CROSSMARGIN_KEEPER_DRY_RUN=1``, ``..._BID_THRESHOLD=0.05``,
        ``5%`` or ``none``, ``..._STATE_FILE``); every field of the class can be set so."""
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = os.environ.get(prefix + name.upper())
            if raw is None:
                continue
            kind = str(f.type)
            if "bool" in kind:
                values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif "Decimal" in kind:
                text = raw.strip()
                if text.lower() in ("", "none", "off"):
                    values[name] = None
                elif text.endswith("%"):  # "5%" as the command line takes it
                    values[name] = Decimal(text[:-1].strip()) / 100
                else:
                    values[name] = Decimal(text)
            elif "Path" in kind:
                values[name] = Path(raw) if raw else None
            elif "float" in kind:
                values[name] = float(raw)
            else:
                values[name] = None if raw.strip().lower() == "none" else int(raw)
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Listing:
    """A listed option or dated future (``kind`` FUTURE, strike 0), from ``InstrumentListed``."""

    underlying: int
    kind: int
    strike: int  # WAD USD
    expiry: int  # unix s


@dataclass
class KeeperState:
    """What a keeper remembers between runs (the JSON state file).

    Attributes:
        chain_id, deployment: Whose state this is (the liquidator's address); a state file
            of another chain or deployment is not reused.
        last_block, last_block_hash: Discovery cursor; a hash that no longer matches the
            chain (a reset node, a reorg) restarts discovery from ``start_block``.
        accounts: Known account ids.
        auctions: Accounts whose auction started and has not ended (from events).
        standing: Accounts that registered a standing bid (from events; dropped once read
            cancelled, see ``crossmargin.clients.standing``).
        options: Listed options and dated futures by instrument id.
        holders: Per option or future, accounts that may hold it (traded it or took a slice of a holder).
        sent: The journal of transactions, by call key: nonce, hash, status (``pending``
            from signing until the node resolves it, then ``done``/``reverted``, or
            ``consumed`` when another transaction used its nonce), block and time.
    """

    chain_id: int
    deployment: str
    last_block: int = -1
    last_block_hash: str = ""
    accounts: set[int] = field(default_factory=set)
    auctions: set[int] = field(default_factory=set)
    standing: set[int] = field(default_factory=set)
    options: dict[int, Listing] = field(default_factory=dict)
    holders: dict[int, set[int]] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "chain_id": self.chain_id,
            "deployment": self.deployment,
            "last_block": self.last_block,
            "last_block_hash": self.last_block_hash,
            "accounts": [hex(a) for a in sorted(self.accounts)],
            "auctions": [hex(a) for a in sorted(self.auctions)],
            "standing": [hex(a) for a in sorted(self.standing)],
            "options": {
                str(i): [o.underlying, o.kind, str(o.strike), o.expiry] for i, o in sorted(self.options.items())
            },
            "holders": {str(i): [hex(a) for a in sorted(h)] for i, h in sorted(self.holders.items()) if h},
            "sent": self.sent,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeeperState:
        return cls(
            chain_id=raw["chain_id"],
            deployment=raw["deployment"],
            last_block=raw.get("last_block", -1),
            last_block_hash=raw.get("last_block_hash", ""),
            accounts={int(a, 16) for a in raw.get("accounts", [])},
            auctions={int(a, 16) for a in raw.get("auctions", [])},
            standing={int(a, 16) for a in raw.get("standing", [])},
            options={int(i): Listing(o[0], o[1], int(o[2]), o[3]) for i, o in raw.get("options", {}).items()},
            holders={int(i): {int(a, 16) for a in h} for i, h in raw.get("holders", {}).items()},
            sent=raw.get("sent", {}),
        )


# ---------------------------------------------------------------- reports


@dataclass
class Action:
    """One chain action of a task.

    ``status``: ``sent`` (mined and succeeded), ``would-send`` (dry run), ``skipped`` (not
    needed: already done, in flight, or a :data:`NOTHING_TO_DO` revert), ``rejected``
    (preflight revert for another reason, not sent), ``reverted`` (mined, reverted) or
    ``error`` (node failure).
    """

    kind: str
    target: str
    status: str
    detail: str = ""
    tx: str | None = None
    gas_used: int | None = None


@dataclass
class TaskReport:
    """What one task did. ``errors`` holds task-level failures (after retries)."""

    task: str
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str | None = None, kind: str | None = None) -> int:
        return sum(
            1 for a in self.actions if (status is None or a.status == status) and (kind is None or a.kind == kind)
        )

    @property
    def ok(self) -> bool:
        return not self.errors and not any(a.status in ("reverted", "error") for a in self.actions)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[f"{a.kind} {a.status}"] = counts.get(f"{a.kind} {a.status}", 0) + 1
        parts = [f"{n} {k}" for k, n in sorted(counts.items())] or ["nothing to do"]
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): {self.errors[-1]}")
        return f"{self.task}: " + ", ".join(parts) + f" ({self.seconds:.2f} s)"

    def metrics(self) -> dict[str, int | float]:
        """Scalar metrics (Silverback records a handler's returned dict)."""
        out: dict[str, int | float] = {"seconds": round(self.seconds, 3), "errors": len(self.errors)}
        for status in ("sent", "would-send", "skipped", "rejected", "reverted", "error"):
            out[status.replace("-", "_")] = self.count(status)
        return out


@dataclass
class DiscoveryReport(TaskReport):
    from_block: int = 0
    to_block: int = -1
    new_accounts: list[int] = field(default_factory=list)
    known: int = 0

    def summary(self) -> str:
        base = f"discover: blocks {self.from_block}..{self.to_block}, {len(self.new_accounts)} new, {self.known} known"
        if self.errors:
            base += f", error: {self.errors[-1]}"
        return base + f" ({self.seconds:.2f} s)"

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "new_accounts": len(self.new_accounts), "known": self.known}


@dataclass(frozen=True)
class AccountHealth:
    """An account's margin as the engine values it now (WAD)."""

    account: int
    equity: int
    initial: int
    maintenance: int

    @property
    def health(self) -> int:
        """``equity − MM`` (WAD); negative: liquidatable."""
        return self.equity - self.maintenance

    @property
    def liquidatable(self) -> bool:
        return self.equity < self.maintenance

    @property
    def ratio(self) -> float:
        """``equity / MM`` (inf without a requirement): below 1 is liquidatable."""
        return math.inf if self.maintenance == 0 else self.equity / self.maintenance


@dataclass
class LiquidationReport(TaskReport):
    screened: int = 0
    # the oracle's reason when a feed is broken for every valuation (stale, out of bounds):
    # the sweep then screened with the liquidation reads the contracts use (SPECIFICATION.md,
    # liquidation reads), so auctions still start
    degraded: str | None = None
    due: list[int] = field(default_factory=list)
    auctions: int = 0
    nearest: list[AccountHealth] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: screen, and each step of the starts

    def summary(self) -> str:
        return (
            f"liquidate: {self.screened} screened, {len(self.due)} due, {self.auctions} in auction; "
            + super().summary().split(": ", 1)[1]
        )

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "screened": self.screened, "due": len(self.due), "auctions": self.auctions}


@dataclass
class SettlementReport(TaskReport):
    expired: int = 0  # expired options with possible holders
    waiting: list[int] = field(default_factory=list)  # expired, no oracle round after expiry yet


@dataclass
class RefreshReport(TaskReport):
    checked: int = 0
    stale: list[int] = field(default_factory=list)
    stored: int = 0  # arrays found current after the refresh

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "checked": self.checked, "stale": len(self.stale), "stored": self.stored}


@dataclass
class PriceReport(TaskReport):
    prices: dict[str, Decimal] = field(default_factory=dict)  # feed key -> new answer (human)


@dataclass(frozen=True)
class AuctionStatus:
    """A live auction as a bidder sees it now."""

    account: int
    keeper: str  # starter still owed its tip
    started_at: int
    insolvent_at: int
    elapsed: int  # s since start
    multiplier: Decimal  # d(t) of a solvent bid
    ramp: Decimal | None  # insolvent: share of MM added to the payment so far (0..1)
    equity: Decimal
    maintenance: Decimal
    fraction: Decimal  # what a bid for everything would take (after the buffer cap)
    price: Decimal  # and its price (negative: the bidder is paid)


@dataclass(frozen=True)
class Distance:
    """The smallest spot move of one underlying (others fixed) that makes the account
    liquidatable, from the reference model; ``move`` None when none within the bound."""

    account: int
    underlying: str
    move: Decimal | None


# ---------------------------------------------------------------- the keeper


class Keeper:
    """Keeper tasks over one deployment, acting from one account.

    Args:
        cm: The :class:`crossmargin.clients.protocol.Protocol`.
        sender: An ape account that signs (None: dry run only).
        config: See :class:`KeeperConfig`.
        log: Where progress lines go (default: nowhere).
    """

    def __init__(
        self, cm: Any, sender: Any = None, config: KeeperConfig | None = None, log: Callable[[str], None] | None = None
    ):
        self.cm = cm
        self.sender_account = sender
        self.config = config or KeeperConfig()
        if sender is None and not self.config.dry_run:
            self.config = replace(self.config, dry_run=True)
        self.log = log or (lambda _line: None)
        self._lock = threading.RLock()
        # set by `stop` (e.g. from a SIGTERM handler): `run` ends after the current task
        self._stop = threading.Event()
        # oracle reasons the last screen valued through with the liquidation reads
        self._degraded: list[str] = []
        self.auction_params = AuctionParams.read(cm.liquidator.contract)
        self.state = self._load_state()
        self.tx = TxSender(
            account=sender,
            dry_run=self.config.dry_run,
            workers=self.config.workers,
            attempts=self.config.attempts,
            retry_delay=self.config.retry_delay,
            on_signed=self._record_planned,
            log=self.log,
        )
        self._topics = self._event_topics()
        if self.sender_account is not None and not self.config.dry_run:
            try:
                self.reconcile()
            except Exception as error:  # noqa: BLE001 - `in_flight` applies the same rule later
                if not is_transient(error):
                    raise
                self.log(f"journal not reconciled yet (node error: {error})")

    # ------------------------------------------------------------------ helpers

    @property
    def web3(self):
        return chain.provider.web3

    @property
    def bidder(self) -> int | None:
        """The bidding account id (sender, bidder subaccount)."""
        if self.sender_account is None:
            return None
        return (int(self.sender_account.address, 16) << SUB_BITS) | self.config.bidder_subaccount

    def _read(self, fn: Callable[[], Any]) -> Any:
        return retry(fn, self.config.attempts, self.config.retry_delay, self.log)

    def _eth_call(self, method: Any, *args: Any, types: str) -> Any:
        """A view through raw ``eth_call`` (thread-safe, no ape decoding): ``types`` is the
        ABI of its output, e.g. ``"(int256,uint256,uint256)[]"``."""

        def call() -> bytes:
            data = "0x" + bytes(method.encode_input(*args)).hex()
            return bytes(self.web3.eth.call({"to": method.contract.address, "data": data}))

        return abi_decode([types], self._read(call))[0]

    # batch reads: the Lens's views, 64 ids a call (per-id views when the deployment has no
    # Lens, e.g. a manifest written before it existed)

    def _instruments(self, ids: list[int]) -> list[Any]:
        """``Markets.instrument`` of each id (kind, underlying, ..., open_interest, settlement_price)."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.instruments(ids))
        return [self._read(lambda i=i: self.cm.markets.contract.instrument(i)) for i in ids]

    def _array_epochs(self, ids: list[int]) -> list[int]:
        """The epoch of each id's stored risk array (0 for none)."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.array_epochs(ids))
        return [self._read(lambda i=i: self.cm.engine.contract.risk_array(i))[0] for i in ids]

    def _holders_sizes(self, instrument: int, accounts: list[int]) -> list[int]:
        """The size of ``instrument`` each account holds."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.holders_sizes(instrument, accounts))
        clearing = self.cm.clearing.contract
        return [self._read(lambda a=a: clearing.option_size(a, instrument)) for a in accounts]

    def _underlying_states(self, ids: list[int], block_id: int) -> dict[int, model.UnderlyingState]:
        """Each underlying's model state at ``block_id`` (listing, reads, grid, epoch)."""
        if getattr(self.cm, "lens", None) is None:
            return {u: self._read(lambda u=u: model.load_underlying(self.cm, u, block_id)) for u in ids}
        rows = self._read(lambda: self.cm.lens.underlyings(ids, block_id=block_id))
        return {r.id: model.lens_underlying(r) for r in rows}

    # ------------------------------------------------------------------ state file

    def _load_state(self) -> KeeperState:
        fresh = KeeperState(chain_id=chain.chain_id, deployment=self.cm.liquidator.address)
        path = self.config.state_file
        if path is None or not Path(path).exists():
            return fresh
        try:
            state = KeeperState.from_json(json.loads(Path(path).read_text()))
        except (ValueError, KeyError) as error:
            self.log(f"state file {path} unreadable ({error}); starting afresh")
            return fresh
        if (state.chain_id, state.deployment.lower()) != (fresh.chain_id, fresh.deployment.lower()):
            self.log(f"state file {path} belongs to another deployment; starting afresh")
            return fresh
        head = chain.blocks.head.number
        if state.last_block >= 0:
            if state.last_block > head or self._block_hash(state.last_block) != state.last_block_hash:
                self.log(
                    f"block {state.last_block} of the state file is not on this chain (reset or reorg); rescanning"
                )
                state.last_block, state.last_block_hash = -1, ""
                state.auctions.clear()
        return state

    def _block_hash(self, number: int) -> str:
        return "0x" + bytes(self._read(lambda: self.web3.eth.get_block(number)["hash"])).hex()

    def save(self) -> None:
        """Writes the state file atomically (no-op without one)."""
        path = self.config.state_file
        if path is None or not self.config.persist:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.state.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ sent-transaction log

    def _record_planned(self, planned: list[tuple[Call, int, str]]) -> None:
        now = int(time.time())
        for call, nonce, tx_hash in planned:
            self.state.sent[call.key] = {"nonce": nonce, "status": "pending", "tx": tx_hash, "at": now}
        self.save()

    def _record_results(self, results: Iterable[CallResult]) -> None:
        for r in results:
            entry = self.state.sent.get(r.key)
            if entry is None or entry.get("status") != "pending" or entry.get("nonce") != r.nonce:
                continue
            if r.status == "sent":
                entry.update(status="done", tx=r.tx, block=r.block)
            elif r.status == "reverted":
                entry.update(status="reverted", tx=r.tx, block=r.block, reason=r.reason)
            # else (not sent, or no receipt yet): stays pending; the node's nonces decide
            # whether it is in flight (see `_resolve`)
        self._prune_sent()
        self.save()

    def _prune_sent(self, keep: int = 2_000) -> None:
        finished = [k for k, v in self.state.sent.items() if v.get("status") != "pending"]
        for k in sorted(finished, key=lambda k: self.state.sent[k].get("at", 0))[: max(0, len(finished) - keep)]:
            del self.state.sent[k]

    def _nonces(self) -> tuple[int, int]:
        """The sender's mined (``latest``) and pooled (``pending``) transaction counts."""
        address = self.sender_account.address
        mined = self._read(lambda: self.web3.eth.get_transaction_count(address, "latest"))
        pooled = self._read(lambda: self.web3.eth.get_transaction_count(address, "pending"))
        return mined, max(mined, pooled)

    def _resolve(self, key: str, mined: int, pooled: int) -> bool:
        """Settles the pending journal entry ``key`` against the node; True if it is still
        in flight. The rule (``mined``/``pooled``: the node's latest/pending nonces):

        - nonce < mined: its nonce was used. Its receipt (by the journaled hash) makes it
          ``done`` or ``reverted``; no receipt means another transaction used the nonce
          (``consumed``): in every case the chain's state decides from now on;
        - nonce >= pooled: the node never received it (the keeper died before sending, or
          the pool dropped it); it can never be mined without being sent again, so the
          entry is dropped and the work is done afresh;
        - in between: the node's pool holds that nonce. In flight if the pool's transaction
          is this one (or no hash was journaled); else consumed.
        """
        entry = self.state.sent[key]
        nonce, tx_hash = entry["nonce"], entry.get("tx")
        if nonce >= pooled:
            del self.state.sent[key]
            return False
        if nonce >= mined:
            if tx_hash is None or self._read(lambda: self._known(tx_hash)):
                return True
            entry["status"] = "consumed"
            return False
        receipt = self._read(lambda: self._receipt(tx_hash)) if tx_hash else None
        if receipt is None:
            entry["status"] = "consumed"
        else:
            status = "done" if receipt["status"] == 1 else "reverted"
            entry.update(status=status, block=receipt["blockNumber"])
        return False

    def _known(self, tx_hash: str) -> bool:
        try:
            self.web3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.web3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def reconcile(self) -> dict[str, int]:
        """Resolves every pending journal entry against the node (see :meth:`_resolve`),
        as after a crash; saves and returns the counts by outcome."""
        pending = [k for k, v in self.state.sent.items() if v.get("status") == "pending"]
        if not pending or self.sender_account is None:
            return {}
        mined, pooled = self._nonces()
        counts: dict[str, int] = {}
        for k in pending:
            flying = self._resolve(k, mined, pooled)
            outcome = "in flight" if flying else self.state.sent.get(k, {}).get("status", "never sent")
            counts[outcome] = counts.get(outcome, 0) + 1
        self.log("journal reconciled: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        self.save()
        return counts

    def in_flight(self, key: str, prefix: bool = False) -> dict[str, Any] | None:
        """A sent call with this ``key`` (or, with ``prefix``, under ``key:``) that the node
        may still mine: acting again could double-act. Resolves the other pending entries
        under the key (see :meth:`_resolve`)."""
        pending = [
            k
            for k, v in self.state.sent.items()
            if (k.startswith(key + ":") if prefix else k == key) and v.get("status") == "pending"
        ]
        if not pending or self.sender_account is None:
            return None
        mined, pooled = self._nonces()
        for k in pending:
            if self._resolve(k, mined, pooled):
                return {"key": k, **self.state.sent[k]}
        return None

    # ------------------------------------------------------------------ running

    def _run_task(self, report: TaskReport, fn: Callable[[TaskReport], None]) -> TaskReport:
        """Runs ``fn(report)`` under the lock with a bounded retry on node errors; any
        failure is recorded in the report, never raised."""
        began = time.monotonic()
        with self._lock:
            for attempt in range(1, self.config.attempts + 1):
                try:
                    fn(report)
                    break
                except RefusedError as error:
                    report.errors.append(f"refused: {error}")
                    break
                except Exception as error:  # noqa: BLE001 - a keeper task must not kill the loop
                    if is_transient(error) and attempt < self.config.attempts:
                        self.log(f"{report.task}: node error, retrying ({attempt}/{self.config.attempts}): {error}")
                        time.sleep(self.config.retry_delay * 2 ** (attempt - 1))
                        continue
                    reason = revert_reason(error)
                    if reason is not None:
                        report.errors.append(f"reverted: {reason}")
                    else:
                        what = "node error" if is_transient(error) else "error"
                        report.errors.append(f"{what}: {type(error).__name__}: {error}")
                    self.log(f"{report.task}: {report.errors[-1]}")
                    if reason is None and not is_transient(error):
                        self.log(traceback.format_exc())
                    break
        report.seconds = time.monotonic() - began
        return report

    def run_once(self, tasks: Sequence[str] = TASKS) -> list[TaskReport]:
        """Runs ``tasks`` (names: discover, liquidate, settle, refresh, prices) in order;
        a failing task is reported and the next one runs."""
        methods = {
            "discover": self.discover,
            "liquidate": self.liquidate,
            "settle": self.settle,
            "refresh": self.refresh,
            "prices": self.move_prices,
        }
        unknown = [t for t in tasks if t not in methods]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {sorted(methods)}")
        reports = []
        for t in tasks:
            if self.stopping:
                break  # the tasks not run yet run in the next process's first round
            reports.append(methods[t]())
        return reports

    def stop(self) -> None:
        """Asks :meth:`run` (and :meth:`run_once`) to end after the task in progress; safe
        to call from a signal handler or another thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run(
        self,
        tasks: Sequence[str] = TASKS,
        interval: float = 12.0,
        iterations: int | None = None,
        on_reports: Callable[[list[TaskReport]], None] | None = None,
    ) -> None:
        """Runs rounds of ``tasks`` every ``interval`` seconds (forever by default) until
        :meth:`stop`, which ends it after the task in progress (or at once between rounds)."""
        done = 0
        while (iterations is None or done < iterations) and not self.stopping:
            began = time.monotonic()
            reports = self.run_once(tasks)
            if on_reports:
                on_reports(reports)
            done += 1
            if iterations is None or done < iterations:
                self._stop.wait(max(0.0, interval - (time.monotonic() - began)))
        self.save()

    def _act(self, report: TaskReport, kind: str, calls: list[Call], targets: list[str]) -> list[CallResult]:
        """Sends ``calls`` (preflighted; skipped while an earlier one is in flight) and
        records one action per call in ``report``."""
        todo, todo_targets = [], []
        for call, target in zip(calls, targets, strict=True):
            # bids (and standing executions) are keyed per attempt: any on the same account
            # (and bidder) in flight blocks another
            if kind in ("bid", "standing"):
                flying = self.in_flight(call.key.rsplit(":", 1)[0], prefix=True)
            else:
                flying = self.in_flight(call.key)
            if flying is not None:
                report.actions.append(Action(kind, target, "skipped", f"in flight (nonce {flying['nonce']})"))
                continue
            todo.append(call)
            todo_targets.append(target)
        if not todo:
            return []
        results = self.tx.execute(todo)
        if not self.config.dry_run:
            self._record_results(results)
        for result, target in zip(results, todo_targets, strict=True):
            status: str = result.status
            if status in ("rejected", "reverted") and result.reason in NOTHING_TO_DO:
                status = "skipped"
            report.actions.append(Action(kind, target, status, result.reason or "", result.tx, result.gas_used))
            if status not in ("sent", "would-send", "skipped"):
                self.log(f"{kind} {target}: {status}: {result.reason}")
        return results

    # ------------------------------------------------------------------ discovery

    def _event_topics(self) -> dict[str, str]:
        vault, clearing, liquidator = self.cm.vault.contract, self.cm.clearing.contract, self.cm.liquidator.contract
        events = {
            "Deposit": vault.Deposit,
            "Move": vault.Move,
            "Traded": clearing.Traded,
            "InstrumentListed": self.cm.markets.contract.InstrumentListed,
            "PositionsTransferred": clearing.PositionsTransferred,
            "OptionSettled": clearing.OptionSettled,
            "FutureSettled": clearing.FutureSettled,
            "AuctionStarted": liquidator.AuctionStarted,
            "AuctionEnded": liquidator.AuctionEnded,
            "StandingBidSet": liquidator.StandingBidSet,
            "StandingBidCancelled": liquidator.StandingBidCancelled,
        }
        return {_event_topic(e.abi): name for name, e in events.items()}

    def discover(self, to_block: int | None = None) -> DiscoveryReport:
        """Reads new events up to ``to_block`` (default: the head) into the state."""
        report = DiscoveryReport("discover")
        return self._run_task(report, lambda r: self._discover(r, to_block))

    def _discover(self, report: DiscoveryReport, to_block: int | None) -> None:
        state = self.state
        head = self._read(lambda: self.web3.eth.block_number) if to_block is None else to_block
        start = max(state.last_block + 1, self.config.start_block)
        report.from_block, report.to_block = start, head
        before = set(state.accounts)
        addresses = [
            self.cm.vault.address,
            self.cm.clearing.address,
            self.cm.markets.address,
            self.cm.liquidator.address,
        ]
        topics = [list(self._topics)]
        lo = start
        while lo <= head:
            hi = min(head, lo + self.config.log_chunk - 1)
            logs = self._read(
                lambda lo=lo, hi=hi: self.web3.eth.get_logs(
                    {"fromBlock": lo, "toBlock": hi, "address": addresses, "topics": topics}
                )
            )
            for entry in logs:
                self._apply_log(entry)
            # advance the cursor chunk by chunk, so an error resumes where it stopped
            state.last_block = hi
            state.last_block_hash = self._block_hash(hi)
            lo = hi + 1
        report.new_accounts = sorted(state.accounts - before)
        report.known = len(state.accounts)
        self.save()

    def _apply_log(self, entry: Any) -> None:
        state = self.state
        topics = entry["topics"]
        name = self._topics.get("0x" + bytes(topics[0]).hex())
        data = bytes(entry["data"])
        if name == "Deposit":
            owner, sub = _topic_id(topics[1]), _topic_id(topics[2])
            state.accounts.add(owner << SUB_BITS | sub)
        elif name == "Move":
            owner = _topic_id(topics[1])
            _from, to_sub, _amount = abi_decode(["uint96", "uint96", "uint256"], data)
            state.accounts.add(owner << SUB_BITS | to_sub)
        elif name == "Traded":
            maker, taker, instrument = (_topic_id(t) for t in topics[1:4])
            state.accounts.update((maker, taker))
            if instrument in state.options:
                state.holders.setdefault(instrument, set()).update((maker, taker))
        elif name == "InstrumentListed":
            instrument, underlying = _topic_id(topics[1]), _topic_id(topics[2])
            kind, strike, expiry, _cap = abi_decode(["uint256"] * 4, data)
            if kind in (CALL, PUT, FUTURE):
                state.options[instrument] = Listing(underlying, kind, strike, expiry)
        elif name == "PositionsTransferred":
            source, target = _topic_id(topics[1]), _topic_id(topics[2])
            state.accounts.add(target)
            for holders in state.holders.values():
                if source in holders:
                    holders.add(target)
        elif name in ("OptionSettled", "FutureSettled"):
            account, instrument = _topic_id(topics[1]), _topic_id(topics[2])
            state.holders.get(instrument, set()).discard(account)
        elif name == "AuctionStarted":
            state.auctions.add(_topic_id(topics[1]))
        elif name == "AuctionEnded":
            state.auctions.discard(_topic_id(topics[1]))
        elif name == "StandingBidSet":
            state.standing.add(_topic_id(topics[1]))
        elif name == "StandingBidCancelled":
            state.standing.discard(_topic_id(topics[1]))

    # ------------------------------------------------------------------ screening

    def screen(self, accounts: Iterable[int] | None = None) -> list[AccountHealth]:
        """Margins of ``accounts`` (default: every known one) from the engine's batch view,
        ``batch_size`` a call, batches read concurrently. A batch that fails for a reason
        other than the node is split until the failing account is isolated and dropped."""
        ids = sorted(self.state.accounts if accounts is None else set(accounts))
        size = max(1, min(self.config.batch_size, 64))
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        parts = self._parallel(self._screen_batch, batches)
        return [h for part in parts for h in part]

    def _parallel(self, fn: Callable[[Any], Any], items: list) -> list:
        """``[fn(x) for x in items]``, on ``workers`` threads when there is more than one item
        (``fn`` must only read: ``_eth_call`` is thread-safe)."""
        if len(items) > 1 and self.config.workers > 1:
            with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
                return list(pool.map(fn, items))
        return [fn(x) for x in items]

    def _screen_batch(self, ids: list[int]) -> list[AccountHealth]:
        try:
            rows = self._eth_call(self.cm.engine.contract.margins, ids, types="(int256,uint256,uint256)[]")
        except Exception as error:  # noqa: BLE001 - isolate the account that breaks the batch
            if is_transient(error):
                raise
            if len(ids) == 1:
                if FEED_FAILURES.search(str(error)):
                    return self._screen_degraded(ids, error)
                self.log(f"cannot value {describe_account(ids[0])}: {error}")
                return []
            # the first and the last account each failing the same way alone: the cause is
            # global (a stale oracle, say) and every account would fail; report it instead
            # of splitting down to single accounts
            if all(self._fails_alike(a, error) for a in (ids[0], ids[-1])):
                if FEED_FAILURES.search(str(error)):
                    return self._screen_degraded(ids, error)
                raise error from None
            half = len(ids) // 2
            return self._screen_batch(ids[:half]) + self._screen_batch(ids[half:])
        return [AccountHealth(a, e, i, m) for a, (e, i, m) in zip(ids, rows, strict=True)]

    def _screen_degraded(self, ids: list[int], error: BaseException) -> list[AccountHealth]:
        """Margins as a liquidation values them while a feed is broken: ``refresh_bound``
        with bit 0 (the liquidation reads: a stale round used as is, an answer out of bounds
        clamped into them) through ``eth_call``, one account a call, so that a crash with a
        stale or out-of-bound feed still starts every due auction."""
        reason = FEED_FAILURES.search(str(error)).group(0)
        if reason not in self._degraded:
            self._degraded.append(reason)
            self.log(f"{reason}: screening with the liquidation reads")

        def margin(account: int) -> AccountHealth | None:
            try:
                e, i, m = self._eth_call(
                    self.cm.engine.contract.refresh_bound, account, LIQUIDATION_READS, types="(int256,uint256,uint256)"
                )
            except Exception as failure:  # noqa: BLE001 - one account must not stop the sweep
                if is_transient(failure):
                    raise
                self.log(f"cannot value {describe_account(account)}: {failure}")
                return None
            return AccountHealth(account, e, i, m)

        return [h for h in self._parallel(margin, ids) if h is not None]

    def _hint(self, account: int) -> int:
        """``Engine.hint`` through raw ``eth_call``: byte u the worst scenario of underlying u
        (0, no hint, if the view fails: the start then values every scenario)."""
        try:
            risks = self._eth_call(self.cm.engine.contract.risk, account, types="(uint256,uint256,uint256,int256[])[]")
        except Exception as error:  # noqa: BLE001 - the start without a hint still works
            if is_transient(error):
                raise
            return 0
        return model.scenario_hint(model.UnderlyingRisk(*r) for r in risks)

    def _fails_alike(self, account: int, error: BaseException) -> bool:
        try:
            self._eth_call(self.cm.engine.contract.margins, [account], types="(int256,uint256,uint256)[]")
        except Exception as probe:  # noqa: BLE001 - compared
            return str(probe) == str(error)
        return False

    # ------------------------------------------------------------------ liquidation

    def liquidate(self) -> LiquidationReport:
        """Screens every known account, then: starts every due auction not running,
        marks insolvent auctions, terminates auctions back above the buffer, executes the
        standing bids due (``crossmargin.clients.standing``), and bids on live auctions whose quoted
        discount beats the threshold."""
        return self._run_task(LiquidationReport("liquidate"), self._liquidate)

    def _liquidate(self, report: LiquidationReport) -> None:
        began = time.monotonic()
        self._degraded = []
        healths = self.screen()
        report.degraded = ", ".join(self._degraded) or None
        report.timings["screen"] = time.monotonic() - began
        report.screened = len(healths)
        by_id = {h.account: h for h in healths}
        due = sorted((h for h in healths if h.liquidatable), key=lambda h: h.ratio)
        report.due = [h.account for h in due]
        report.nearest = sorted(healths, key=lambda h: h.ratio)[: self.config.nearest]

        # auctions the events know of, confirmed on chain (one read each)
        live: dict[int, tuple[str, int, int]] = {}
        for account in sorted(self.state.auctions):
            keeper, started_at, insolvent_at = self._read(lambda a=account: self.cm.liquidator.contract.auction(a))
            if started_at:
                live[account] = (keeper, started_at, insolvent_at)
            else:
                self.state.auctions.discard(account)
        report.auctions = len(live)

        to_start = [h.account for h in due if h.account not in live]
        if to_start:
            liquidator = self.cm.liquidator.contract
            # each with its scenario hint: the start then proves the shortfall at the worst
            # scenarios alone, the cheaper check (`Liquidator.start`)
            began = time.monotonic()
            hints = self._parallel(self._hint, to_start)
            calls = [Call(liquidator.start, (a, h), f"start:{a:#x}") for a, h in zip(to_start, hints, strict=True)]
            report.timings["start hints"] = time.monotonic() - began
            began = time.monotonic()
            for result in self._act(report, "start", calls, [describe_account(a) for a in to_start]):
                if result.status == "sent" or result.reason == "liquidator: already in auction":
                    self.state.auctions.add(int(result.key.split(":")[1], 16))
            report.timings["start"] = time.monotonic() - began
            report.timings.update({f"start {k}": v for k, v in self.tx.timings.items()})

        missing = [a for a in live if a not in by_id]
        for h in self.screen(missing) if missing else []:
            by_id[h.account] = h
        buffer = self.auction_params.buffer
        marks, terminations, biddable = [], [], []
        for account, (_keeper, _started, insolvent_at) in live.items():
            h = by_id.get(account)
            if h is None:
                continue
            if h.equity <= 0 and insolvent_at == 0:
                marks.append(account)
            elif h.equity >= -(-h.maintenance * buffer // WAD):
                terminations.append(account)
            else:
                biddable.append(account)
        liquidator = self.cm.liquidator.contract
        if marks:
            calls = [Call(liquidator.mark_insolvent, (a,), f"mark_insolvent:{a:#x}") for a in marks]
            self._act(report, "mark_insolvent", calls, [describe_account(a) for a in marks])
        if terminations:
            calls = [Call(liquidator.terminate, (a,), f"terminate:{a:#x}") for a in terminations]
            for result in self._act(report, "terminate", calls, [describe_account(a) for a in terminations]):
                if result.status == "sent":
                    self.state.auctions.discard(int(result.key.split(":")[1], 16))
        # standing bids first: they were there before the keeper's own
        running = {a: v for a, v in live.items() if a not in terminations and a in by_id}
        if running and self.state.standing:
            execute_standing(self, report, running, {a: by_id[a].equity for a in running})
        if self.config.bid_threshold is not None and biddable:
            for account in sorted(biddable, key=lambda a: by_id[a].ratio):
                self._bid(report, account)
        self.save()

    def _bid(self, report: LiquidationReport, account: int) -> None:
        """One bid on ``account`` if the discount beats the threshold and the bidder can
        afford it; price limit = the quote, so the contract's slippage guard protects it."""
        target = describe_account(account)
        bidder = self.bidder
        if bidder is None and not self.config.dry_run:
            return
        if bidder == account:
            report.actions.append(Action("bid", target, "skipped", "the bidder is the liquidated account"))
            return
        liquidator = self.cm.liquidator.contract
        engine = self.cm.engine.contract
        wanted = int(self.config.max_bid_fraction * WAD)
        full_f, full_price = self._read(lambda: liquidator.quote(account, wanted))
        m = self._read(lambda: engine.margin(account))
        # affordability: the bidder pays the price and carries the slice's initial margin
        if bidder is not None:
            b = self._read(lambda: engine.margin(bidder))
            room = b.equity - b.initial
            per_unit = (full_price + m.initial * full_f // WAD - m.equity * full_f // WAD) * WAD // max(full_f, 1)
            if per_unit > 0:
                affordable = room * WAD // per_unit * 9 // 10 if room > 0 else 0
                if affordable < full_f:
                    if affordable < WAD // 1000:
                        report.actions.append(Action("bid", target, "skipped", "bidder cannot afford a bid"))
                        return
                    wanted = affordable
        fraction, price = (
            self._read(lambda: liquidator.quote(account, wanted)) if wanted != full_f else (full_f, full_price)
        )
        bought = fraction * m.equity // WAD
        gain = bought - price
        threshold = int(self.config.bid_threshold * WAD)
        if gain <= 0 or gain * WAD < threshold * abs(bought):
            pct = Decimal(gain * 100) / Decimal(abs(bought)) if bought else Decimal(0)
            report.actions.append(Action("bid", target, "skipped", f"discount {pct:.2f}% below threshold"))
            return
        call = Call(
            liquidator.bid,
            (account, fraction, price, self.config.bidder_subaccount),
            f"bid:{account:#x}:{int(time.time() * 1000)}",
            f"bid {from_wad(fraction):.4f} of {target} at {from_wad(price):.2f}",
        )
        self._act(report, "bid", [call], [target])

    # ------------------------------------------------------------------ views for status

    def auction_statuses(self) -> list[AuctionStatus]:
        """Every live auction the keeper knows of, with its current quote."""
        liquidator, engine = self.cm.liquidator.contract, self.cm.engine.contract
        now = chain.blocks.head.timestamp
        ramp_time = self.auction_params.insolvent_ramp
        out = []
        for account in sorted(self.state.auctions):
            keeper, started_at, insolvent_at = self._read(lambda a=account: liquidator.auction(a))
            if not started_at:
                continue
            m = self._read(lambda a=account: engine.margin(a))
            fraction, price = self._read(lambda a=account: liquidator.quote(a, WAD))
            elapsed = now - started_at
            ramp = None
            if m.equity <= 0:
                ramp = Decimal(min(now - insolvent_at, ramp_time) if insolvent_at else 0) / Decimal(ramp_time)
            out.append(
                AuctionStatus(
                    account=account,
                    keeper=keeper,
                    started_at=started_at,
                    insolvent_at=insolvent_at,
                    elapsed=elapsed,
                    multiplier=from_wad(self._read(lambda e=elapsed: liquidator.multiplier(e))),
                    ramp=ramp,
                    equity=from_wad(m.equity),
                    maintenance=from_wad(m.maintenance),
                    fraction=from_wad(fraction),
                    price=from_wad(price),
                )
            )
        return out

    def snapshots(self, accounts: Iterable[int], block_id: int | None = None) -> dict[int, tuple]:
        """The model's snapshot (:func:`crossmargin.model.margin.snapshot`) of each account
        at one block (default: the head): one Lens call per account, whatever its book."""
        head = chain.blocks.head.number if block_id is None else block_id
        out = {}
        for account in accounts:
            owner = to_checksum_address((account >> SUB_BITS).to_bytes(20, "big"))
            out[account] = self._read(lambda o=owner, a=account: model.snapshot(self.cm, o, a & MASK96, head))
        return out

    def liquidation_distance(
        self, accounts: Iterable[int], bound: float = 0.5, snapshots: dict[int, tuple] | None = None
    ) -> list[Distance]:
        """What-if from the reference model: per account and underlying it touches, the
        smallest spot move (within ±``bound``) that takes ``equity − MM`` below zero, others
        fixed. One snapshot per account (``snapshots`` when given, else :meth:`snapshots`),
        then only model arithmetic: the move is bracketed on a grid of moves and refined by
        bisection to 0.1%."""
        accounts = list(accounts)
        snaps = snapshots if snapshots is not None else self.snapshots(accounts)
        names = {u: n for n, u in self.cm.manifest.underlyings.items()}
        out = []
        for account in accounts:
            state, underlyings, params, now = snaps[account]
            for u in underlyings:

                def health(move: float, u=u, state=state, underlyings=underlyings, params=params, now=now) -> int:
                    return self._model_health(state, underlyings, params, now, u, move)

                out.append(Distance(account, names.get(u, str(u)), self._first_crossing(health, bound)))
        return out

    @staticmethod
    def _model_health(state, underlyings, params, now, u: int, move: float) -> int:
        factor = Decimal(1) + Decimal(str(move))
        shocked = dict(underlyings)
        base = underlyings[u]
        # a new round: arrays are recomputed at the shocked spot, as the engine would
        shocked[u] = replace(base, spot=int(base.spot * factor), spot_round=base.spot_round + 1)
        lines = tuple(
            replace(line, price=int(line.price * factor)) if line.underlying == u else line for line in state.collateral
        )
        m = model.margin(replace(state, collateral=lines), shocked, params, now)
        return m.equity - m.maintenance

    @staticmethod
    def _first_crossing(health: Callable[[float], int], bound: float) -> Decimal | None:
        if health(0.0) < 0:
            return Decimal(0)
        best = None
        grid = [x for x in (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0) if x <= bound]
        for sign in (-1, 1):
            lo = 0.0
            for step in grid:
                x = sign * step
                if health(x) < 0:
                    hi = x
                    for _ in range(12):
                        mid = (lo + hi) / 2
                        if health(mid) < 0:
                            hi = mid
                        else:
                            lo = mid
                    if best is None or abs(hi) < abs(best):
                        best = hi
                    break
                lo = x
        return None if best is None else Decimal(str(round(best, 4)))

    # ------------------------------------------------------------------ settlement

    def settle(self) -> SettlementReport:
        """Settles the expired options and futures of every known holder."""
        return self._run_task(SettlementReport("settle"), self._settle)

    def _settle(self, report: SettlementReport) -> None:
        clearing = self.cm.clearing.contract
        now = self._read(lambda: chain.pending_timestamp)
        calls, targets = [], []
        expired = [
            i
            for i, listing in sorted(self.state.options.items())
            if listing.expiry <= now and self.state.holders.get(i)
        ]
        # one batch read for the stored prices, one per 64 candidate holders for the sizes
        prices = {i: row.settlement_price for i, row in zip(expired, self._instruments(expired), strict=True)}
        for instrument in expired:
            listing, holders = self.state.options[instrument], self.state.holders[instrument]
            report.expired += 1
            candidates = sorted(holders)
            if listing.kind == FUTURE:
                # futures sit in the positions' words (no per-id view): one read per holder
                sizes = [self._size(a, instrument, listing.kind) for a in candidates]
            else:
                sizes = self._holders_sizes(instrument, candidates)
            held = [a for a, size in zip(candidates, sizes, strict=True) if size != 0]
            for a in set(holders) - set(held):
                holders.discard(a)  # settled, or moved away
            if not held:
                continue
            hint = 0  # once the price is stored, any hint will do
            if prices[instrument] == 0:
                try:
                    hint = self.round_hint(listing.underlying, listing.expiry)
                except SettlementBlocked as blocked:
                    report.actions.append(Action("settle", f"instrument {instrument}", "rejected", str(blocked)))
                    continue
                if hint is None:
                    report.waiting.append(instrument)
                    report.actions.append(
                        Action(
                            "settle", f"instrument {instrument}", "skipped", "no oracle round at or after expiry yet"
                        )
                    )
                    continue
            for a in held:
                calls.append(Call(clearing.settle, (a, instrument, hint), f"settle:{a:#x}:{instrument}"))
                targets.append(f"{describe_account(a)} instrument {instrument}")
        for result in self._act(report, "settle", calls, targets):
            if result.status == "sent" or result.reason == "clearing: no position":
                _, account, instrument = result.key.split(":")
                self.state.holders.get(int(instrument), set()).discard(int(account, 16))
        self.save()

    def _size(self, account: int, instrument: int, kind: int) -> int:
        """The account's size (WAD units) of an option or a future, 0 if none."""
        clearing = self.cm.clearing.contract
        if kind != FUTURE:
            return self._read(lambda: clearing.option_size(account, instrument))
        lines = self._read(lambda: clearing.positions(account)).futures
        return next((f.size for f in map(model.future_line, lines) if f.instrument == instrument), 0)

    def round_hint(self, underlying: int, expiry: int) -> int | None:
        """The round hint that settles ``expiry`` on ``underlying``'s spot feed (the
        router's rules, ``OracleRouter.settlement_price``), or None if there is none yet.

        The settlement round is the first of the feed's history at or after ``expiry``
        (each Chainlink phase's rounds before the next phase's first round). The hint is
        that round; or, when it opens a phase, the round before it in the history (the
        previous phase's last); or 0 when the feed has had no round since the expiry for
        the router's ``fallback_delay`` (it then settles at its last round before). Each
        phase is searched by bisection, newest first.

        Raises:
            SettlementBlocked: The settlement round opens the feed's first phase (or one
                after a phase with no round): nothing before it can be named.
        """
        spot_key = self._read(lambda: self.cm.engine.contract.spot_key(underlying))
        address = self._read(lambda: self.cm.oracle.contract.feeds(spot_key)).aggregator
        feed = self.web3.eth.contract(address=address, abi=AGGREGATOR_ABI)
        latest, _answer, _started, latest_at, _ = self._read(lambda: feed.functions.latestRoundData().call())
        if latest_at < expiry:
            delay = self._read(lambda: self.cm.oracle.contract.fallback_delay())
            now = self._read(lambda: chain.pending_timestamp)
            return 0 if now >= expiry + delay else None

        def updated_at(round_id: int) -> int | None:
            try:
                at = self._read(lambda r=round_id: feed.functions.getRoundData(r).call())[3]
            except ContractLogicError:  # the aggregator reverts: no such round
                return None
            return at or None

        phase, last = latest >> PHASE_SHIFT, latest & PHASE_MASK
        next_at = None  # updatedAt of the first round of the phase after `phase`
        while True:
            base = phase << PHASE_SHIFT
            # first round of the phase at or after expiry (`last + 1` if none); rounds at
            # or after the next phase's first are not in the history: as if after expiry
            lo, hi = 1, last + 1
            while lo < hi:
                mid = (lo + hi) // 2
                at = updated_at(base | mid)
                if at is not None and (at >= expiry or (next_at is not None and at >= next_at)):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
            if first <= last:
                at = updated_at(base | first)
                if next_at is None or at < next_at:
                    if first > 1:
                        return base | first
                    # it opens the phase: the hint is the previous phase's last round
                    if phase == 0:
                        raise SettlementBlocked(f"the first round after expiry ({base | first:#x}) opens the feed")
                    next_at, phase = at, phase - 1
                    last = self._phase_last(updated_at, phase)
                    if last == 0:
                        raise SettlementBlocked(f"phase {phase} before round {base | first:#x} has no round")
                    continue
            # no round of the history in this phase at or after expiry: the next phase's
            # first round settles, and the hint is this phase's round before it
            if first == 1:
                raise SettlementBlocked(f"phase {phase} has no round before expiry")
            return base | (first - 1)

    @staticmethod
    def _phase_last(updated_at, phase: int) -> int:
        """The last round of a Chainlink phase (0 if it has none), by doubling then bisection."""
        base = phase << PHASE_SHIFT
        if updated_at(base | 1) is None:
            return 0
        lo, step = 1, 1
        while updated_at(base | (lo + step)) is not None:
            lo, step = lo + step, step * 2
        hi = lo + step  # lo exists, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if updated_at(base | mid) is None:
                hi = mid
            else:
                lo = mid
        return lo

    # ------------------------------------------------------------------ risk arrays

    def refresh(self) -> RefreshReport:
        """Stores the current-epoch risk arrays of listed, unexpired, held options whose
        stored array is stale, ``refresh_batch`` instruments a transaction, sorted so that
        the engine prices each batch at the least gas (see :meth:`_refresh_order`)."""
        return self._run_task(RefreshReport("refresh"), self._refresh)

    def current_epochs(self) -> dict[int, int]:
        """Per underlying with listed options, the epoch a check would use now (the
        model's ``context`` over the stored record, the oracle rounds and the age rule)."""
        head = chain.blocks.head.number
        now = self._read(lambda: chain.pending_timestamp)
        engine = self.cm.engine.contract
        params = model.EngineParams(
            im_factor=engine.im_factor(), max_array_age=engine.max_array_age(), rate=engine.rate()
        )
        states = self._underlying_states(sorted({o.underlying for o in self.state.options.values()}), head)
        return {u: model.context(state, params, now).epoch & model.LANE_MASK for u, state in states.items()}

    def _refresh_order(self, instrument: int) -> tuple[int, int, int, int, int]:
        """Sort key of ``engine.refresh`` batches: by underlying (one risk-model call each),
        expiry (shared discounting and vol terms), strike (shared ``ln`` and normal CDFs),
        with a strike's call and put adjacent (the put reuses the call's legs)."""
        o = self.state.options[instrument]
        return (o.underlying, o.expiry, o.strike, o.kind, instrument)

    def _refresh(self, report: RefreshReport) -> None:
        engine = self.cm.engine.contract
        now = self._read(lambda: chain.pending_timestamp)
        # futures have no risk arrays
        live = [i for i, o in sorted(self.state.options.items()) if o.expiry > now and o.kind != FUTURE]
        if not live:
            return
        epochs = self.current_epochs()
        held = [i for i, row in zip(live, self._instruments(live), strict=True) if row.open_interest > 0]
        report.checked = len(held)
        stale = [
            i
            for i, epoch in zip(held, self._array_epochs(held), strict=True)
            if epoch != epochs[self.state.options[i].underlying]
        ]
        report.stale = sorted(stale, key=self._refresh_order)
        size = max(1, min(self.config.refresh_batch, 64))
        chunks = [report.stale[i : i + size] for i in range(0, len(report.stale), size)]
        tag = "/".join(f"{u}@{e}" for u, e in sorted(epochs.items()))
        calls = [Call(engine.refresh, (chunk,), f"refresh:{','.join(map(str, chunk))}:{tag}") for chunk in chunks]
        self._act(report, "refresh", calls, [f"instruments {', '.join(map(str, c))}" for c in chunks])
        if report.stale and not self.config.dry_run:
            epochs = self.current_epochs()
            report.stored = sum(
                1
                for i, epoch in zip(report.stale, self._array_epochs(report.stale), strict=True)
                if epoch == epochs[self.state.options[i].underlying]
            )

    # ------------------------------------------------------------------ devnet price mover

    def mock_feeds(self) -> dict[str, Any]:
        """The manifest's feeds the sender may push, by key. Raises :class:`RefusedError`
        off a devnet or when a feed is not a mock aggregator (e.g. a real Chainlink feed)."""
        network = networks.provider.network.name
        if network not in DEV_NETWORKS:
            raise RefusedError(f"the price mover only runs on devnets {DEV_NETWORKS}, not {network!r}")
        if self.sender_account is None:
            raise RefusedError("the price mover needs a sender")
        feeds = {}
        for name in self.cm.manifest.feeds:
            aggregator = self.cm.oracle.aggregator(name)
            try:
                pusher = aggregator.is_pusher(self.sender_account.address)
            except Exception as error:  # noqa: BLE001 - not a mock
                raise RefusedError(f"feed {name} is not a mock aggregator ({error})") from error
            if not pusher:
                raise RefusedError(f"{self.sender_account.address} may not push feed {name}")
            feeds[name] = aggregator
        return feeds

    def move_prices(self) -> PriceReport:
        """One random-walk step of every spot feed (log-normal, ``price_step`` sd, kept
        within the router's bounds); the other mock feeds are re-pushed unchanged when older
        than half their heartbeat, so devnet prices never go stale."""
        return self._run_task(PriceReport("prices"), self._move_prices)

    def _move_prices(self, report: PriceReport) -> None:
        feeds = self.mock_feeds()
        if not hasattr(self, "_rng"):
            self._rng = random.Random(self.config.seed)
        engine, router = self.cm.engine.contract, self.cm.oracle.contract
        spot_keys = {bytes(engine.spot_key(u)).rstrip(b"\0").decode() for u in self.cm.manifest.underlyings.values()}
        now = self._read(lambda: chain.pending_timestamp)
        calls, targets = [], []
        for name, feed in sorted(feeds.items()):
            _rid, answer, _s, updated_at, _ = self._read(lambda f=feed: f.latestRoundData())
            config = self._read(lambda n=name: router.feeds(key(n)))
            decimals = self._read(lambda f=feed: f.decimals())
            if name in spot_keys:
                step = self._rng.gauss(0.0, self.config.price_step)
                lo = -(-config.min_answer // 10 ** (18 - decimals))
                hi = config.max_answer // 10 ** (18 - decimals)
                new = min(max(int(answer * math.exp(step)), lo), hi)
            elif now - updated_at > config.heartbeat // 2:
                new = answer
            else:
                continue
            report.prices[name] = Decimal(new) / Decimal(10**decimals)
            calls.append(Call(feed.push, (new,), f"push:{name}:{now}"))
            targets.append(name)
        self._act(report, "push", calls, targets)
