"""Typed clients of the deployed protocol, built from a deployment manifest.

    from crossmargin.protocol import Protocol
    cm = Protocol.load()                       # manifest of the connected network
    cm.vault.deposit(trader, "USDC", "1000")   # human amounts, converted exactly
    cm.vault.balances(trader)                  # AccountBalances(cash=Decimal('1000'), ...)

Scripts, keepers, the console and the tests all go through these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ape import networks, project

from crossmargin.manifest import Manifest, find_manifest
from crossmargin.units import Number, account_id, from_units, from_wad, key, to_units


@dataclass(frozen=True)
class Token:
    symbol: str
    decimals: int
    contract: Any

    @property
    def address(self) -> str:
        return self.contract.address

    def units(self, amount: Number) -> int:
        """Human amount to integer token units (exact)."""
        return to_units(amount, self.decimals)

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
            raise KeyError(f"unknown token {symbol!r}; known: {sorted(self.tokens)}") from None

    def approve(self, sender: Any, symbol: str, amount: Number | None = None):
        """Approves the vault for ``amount`` (default: unlimited) of ``symbol``."""
        token = self.token(symbol)
        units = 2**256 - 1 if amount is None else token.units(amount)
        return token.contract.approve(self.address, units, sender=sender)

    def deposit(
        self, sender: Any, symbol: str, amount: Number, subaccount: int = 0, recipient: Any = None, approve: bool = True
    ):
        """Deposits ``amount`` (human units) of ``symbol``; approves the exact shortfall first."""
        token = self.token(symbol)
        units = token.units(amount)
        if approve and token.contract.allowance(sender, self.address) < units:
            token.contract.approve(self.address, units, sender=sender)
        return self.contract.deposit(token.address, units, subaccount, recipient or sender, sender=sender)

    def withdraw(self, sender: Any, symbol: str, amount: Number, subaccount: int = 0, receiver: Any = None):
        token = self.token(symbol)
        return self.contract.withdraw(token.address, token.units(amount), subaccount, receiver or sender, sender=sender)

    def move(self, sender: Any, symbol: str, amount: Number, from_subaccount: int, to_subaccount: int):
        token = self.token(symbol)
        return self.contract.move(token.address, token.units(amount), from_subaccount, to_subaccount, sender=sender)

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

    def __init__(self, contract: Any, feeds: dict[str, str]):
        self.contract = contract
        self.feeds = feeds

    @property
    def address(self) -> str:
        return self.contract.address

    def price(self, name: str) -> Decimal:
        return from_wad(self.contract.price(key(name)))

    def aggregator(self, name: str) -> Any:
        return project.MockAggregator.at(self.feeds[name])

    def push(self, sender: Any, name: str, answer: Number):
        """Mock feeds only: publish a new round with ``answer`` (human units)."""
        feed = self.aggregator(name)
        return feed.push(to_units(answer, feed.decimals()), sender=sender)


class EngineClient:
    """Account valuation: equity and margin requirements, in settlement units."""

    def __init__(self, contract: Any):
        self.contract = contract

    @property
    def address(self) -> str:
        return self.contract.address

    def margin(self, owner: Any, subaccount: int = 0) -> MarginView:
        m = self.contract.margin(account_id(str(owner), subaccount))
        return MarginView(equity=from_wad(m.equity), initial=from_wad(m.initial), maintenance=from_wad(m.maintenance))


class Protocol:
    """The deployed stack of one network."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        tokens = {
            symbol: Token(symbol, int(contract.decimals()), contract)
            for symbol, contract in ((s, project.MockERC20.at(a)) for s, a in manifest.tokens.items())
        }
        self.tokens = tokens
        self.vault = VaultClient(project.Vault.at(manifest.contracts["Vault"]), tokens, manifest.settlement)
        self.oracle = OracleClient(project.OracleRouter.at(manifest.contracts["OracleRouter"]), manifest.feeds)
        self.engine = EngineClient(project.MarginEngine.at(manifest.contracts["MarginEngine"]))

    @classmethod
    def load(cls, network_name: str | None = None) -> Protocol:
        """The protocol on the connected network (or ``network_name``'s manifest)."""
        name = network_name or networks.provider.network.name
        return cls(Manifest.load(find_manifest(name)))

    def token(self, symbol: str) -> Token:
        return self.vault.token(symbol)

    def __repr__(self) -> str:
        return f"<crossmargin {self.manifest.network} vault={self.vault.address}>"
