"""What a keeper is told and what it remembers: :class:`KeeperConfig`, the JSON state
(:class:`KeeperState`: discovery cursor, known accounts, auctions, option holders and the
journal of sent transactions), and the names every task shares (instrument kinds, the
reverts that mean "nothing to do", account labels, the keeper's own errors)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from crossmargin.units import SUB_BITS

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


def describe_account(account: int) -> str:
    """``0x3C44…93BC:2``: an account id as owner (shortened) and subaccount."""
    owner = to_checksum_address((account >> SUB_BITS).to_bytes(20, "big"))
    return f"{owner[:6]}…{owner[-4:]}:{account & MASK96}"


class RefusedError(RuntimeError):
    """A task that must not run here (e.g. the price mover off a devnet)."""


class SettlementBlocked(RuntimeError):
    """No round hint can settle this expiry (see :meth:`Keeper.round_hint`)."""


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
            cancelled, see ``crossmargin.keeper.standing``).
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
