"""The SDK's typed errors, and one line for any error at a command-line boundary.

Every error the SDK raises on purpose derives from :class:`CrossmarginError` and reads as
one actionable sentence::

    try:
        cm.vault.deposit(trader, "USDC", "-5")
    except InvalidAmountError as error:    # also a ValueError
        print(error)                       # amount must be positive, got -5

:func:`one_line` turns any exception (these, a contract revert, a node error) into the one
line the scripts and the console print instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from ape.exceptions import ContractLogicError as ApeContractLogicError
from ape.exceptions import TransactionError

from crossmargin.clients.sender import revert_reason as node_revert_reason
from crossmargin.units import EXACT, WAD


class CrossmarginError(Exception):
    """Base of every error the SDK raises on purpose."""


class InvalidAmountError(CrossmarginError, ValueError):
    """An amount argument that is not a positive number (or not exact in the token's
    decimals); the message names the argument."""


class UnknownNameError(CrossmarginError, KeyError):
    """An unknown token symbol, underlying, oracle key or account alias; the message lists
    the known ones."""

    def __init__(self, kind: str, name: Any, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known) or 'none'}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class MissingDeploymentError(CrossmarginError, FileNotFoundError):
    """No deployment manifest for the network (or its contracts are not on this chain)."""


class NetworkRefusedError(CrossmarginError):
    """An action refused on this network (e.g. the faucet off local and devnet networks)."""


class InsufficientMarginError(CrossmarginError, ApeContractLogicError):
    """A fill the preview shows would revert for margin: the account would end below its
    initial margin and the trade does not only reduce its risk. Raised before anything is
    sent. It is also the revert it predicts (an ape ``ContractLogicError`` whose
    ``revert_message`` is ``"clearing: insufficient margin"``), so code that expects that
    revert from a fill (``ape.reverts``, ``revert_reason``) sees it unchanged; its text is
    the one line with required vs available.

    When new risk is closed (the oracle's circuit breakers) or the vault paused, only a
    trade that reduces risk goes through: the revert it predicts is then the oracle's
    reason or ``"clearing: paused"`` (``closed``), as the clearinghouse's would be.

    Attributes:
        account: The account id (``owner << 96 | subaccount``).
        required: Its IM after the trade (USD).
        available: Its equity after the trade (USD).
        closed: Why only risk-reducing trades go through now (the revert reason), or None.
    """

    REVERT = "clearing: insufficient margin"

    def __init__(self, account: int, required: Decimal, available: Decimal, closed: str | None = None):
        super().__init__(revert_message=closed or self.REVERT, set_ape_traceback=False)
        self.account, self.required, self.available, self.closed = account, required, available, closed
        numbers = f"needs IM {required:,.2f} USD, has equity {available:,.2f} USD"
        if closed:
            self.text = (
                f"only trades that reduce risk go through now ({closed}): account {short_account(account)} {numbers}"
            )
        else:
            self.text = f"insufficient margin: account {short_account(account)} {numbers}"

    def __str__(self) -> str:
        return self.text


def short_account(account: int) -> str:
    """An account id as ``0xabcd..ef01/<subaccount>`` (the owner's address shortened)."""
    owner = f"{account >> 96:040x}"
    return f"0x{owner[:4]}..{owner[-4:]}/{account & (2**96 - 1)}"


class NoDeployment:
    """What the console binds ``cm`` (and its clients) to when the network has no
    deployment: any use raises :class:`MissingDeploymentError` with the reason."""

    def __init__(self, message: str):
        self._message = message

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingDeploymentError(self._message)

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise MissingDeploymentError(self._message)

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<no crossmargin deployment: {self._message}>"


def _number(value: Any, argument: str) -> Decimal:
    """``value`` (a ``Decimal``, ``str`` or ``int`` of whole units) as a ``Decimal``."""
    if isinstance(value, bool | float):
        raise InvalidAmountError(
            f"{argument} must be a Decimal, str or int of whole units, not {type(value).__name__} {value!r}"
            f" (pass {str(value)!r})"
        )
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidAmountError(f"{argument} must be a number, got {value!r}") from None


def positive_amount(value: Any, argument: str = "amount") -> Decimal:
    """``value`` as a ``Decimal`` if it is a finite number above zero, else
    :class:`InvalidAmountError` naming ``argument`` (a float is refused: it is inexact)."""
    number = _number(value, argument)
    if not number.is_finite() or number <= 0:
        raise InvalidAmountError(f"{argument} must be positive, got {value}")
    return number


def nonzero_amount(value: Any, argument: str) -> Decimal:
    """``value`` as a ``Decimal`` if it is a finite non-zero number (a signed size), else
    :class:`InvalidAmountError` naming ``argument`` (a float is refused: it is inexact)."""
    number = _number(value, argument)
    if not number.is_finite() or number == 0:
        raise InvalidAmountError(f"{argument} must be a non-zero number, got {value}")
    return number


def wad_argument(value: Any, raw: Any, argument: str) -> int:
    """The WAD integer of an amount given either in human units (``value``: a ``Decimal``,
    ``str`` or ``int`` of whole units, above zero, at most 18 decimals) or raw (``raw``, the
    ``<argument>_raw`` keyword: a non-negative ``int`` of WAD, passed on unchecked so that a
    contract's own bounds can be reached). Exactly one of the two; a float, a bool, zero, a
    negative human amount or one of 10**18 units or more (a WAD integer passed as human)
    raises :class:`InvalidAmountError` naming ``argument``."""
    if (value is None) == (raw is None):
        both = "not both" if value is not None else "one is required"
        raise InvalidAmountError(f"give {argument} (human units) or {argument}_raw= (WAD integer), {both}")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise InvalidAmountError(f"{argument}_raw must be a non-negative int (WAD), got {raw!r}")
        return raw
    number = positive_amount(value, argument)
    if number >= WAD:  # no size or price is 10**18 whole units: the caller meant WAD
        raise InvalidAmountError(
            f"{argument} {value} is 10**18 units or more: a WAD integer? pass it as {argument}_raw="
        )
    wad = EXACT.multiply(number, Decimal(WAD))
    if wad != wad.to_integral_value():
        raise InvalidAmountError(f"{argument} {value} has more than 18 decimals")
    return int(wad)


def revert_reason(error: BaseException) -> str | None:
    """The revert string of a failed call, estimate or transaction (e.g.
    ``"clearing: insufficient margin"``), from ape's error or the node's, else None."""
    if isinstance(error, ApeContractLogicError):
        message = error.revert_message
        if message and message != TransactionError.DEFAULT_MESSAGE:
            return message
    return node_revert_reason(error)


def one_line(error: BaseException) -> str:
    """The one line a command prints for ``error``: the SDK's message, a decoded revert
    reason, or the error's type and first line."""
    if isinstance(error, CrossmarginError):
        return str(error)
    reason = revert_reason(error)
    if reason:
        return reason
    name = type(error).__name__
    if name == "ContractNotFoundError":
        return f"{str(error).splitlines()[0]}; is the deployment manifest of another chain? run `ape run deploy`"
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{name}: {text}" if text else name
