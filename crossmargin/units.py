"""Fixed-point and token-unit conversions, exactly as the contracts do them.

The contracts keep every value in WAD (18 decimals). A token amount in the token's own
decimals is scaled by ``10**(18 - decimals)`` once, at the vault boundary.
"""

from __future__ import annotations

from decimal import Context, Decimal

WAD = 10**18
SUB_BITS = 96
MAX_SUBACCOUNT = 2**SUB_BITS - 1

Number = Decimal | int | str

# Wide enough for any uint256 at 18 decimals: the default context (28 digits) rounds silently.
EXACT = Context(prec=100)


def _exact(amount: Number, decimals: int) -> int:
    value = EXACT.multiply(Decimal(str(amount)), EXACT.power(10, decimals))
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimals")
    return int(value)


def to_units(amount: Number, decimals: int) -> int:
    """Human amount (e.g. ``"1.5"``) to integer token units; refuses to round."""
    return _exact(amount, decimals)


def from_units(units: int, decimals: int) -> Decimal:
    """Integer token units to a human ``Decimal``."""
    return EXACT.divide(Decimal(units), EXACT.power(10, decimals))


def to_wad(amount: Number) -> int:
    """Human amount to WAD; refuses to round."""
    return _exact(amount, 18)


def from_wad(wad: int) -> Decimal:
    """WAD (signed) to a human ``Decimal``."""
    return EXACT.divide(Decimal(wad), Decimal(WAD))


def units_to_wad(units: int, decimals: int) -> int:
    """What the vault credits for a deposit of ``units``."""
    return units * 10 ** (18 - decimals)


def account_id(owner: str, subaccount: int = 0) -> int:
    """The vault's storage key of ``(owner, subaccount)``: ``owner << 96 | subaccount``."""
    if not 0 <= subaccount <= MAX_SUBACCOUNT:
        raise ValueError("subaccount out of range")
    return (int(str(owner), 16) << SUB_BITS) | subaccount


def key(name: str) -> bytes:
    """An oracle key (``"ETH/USD"``) as the ``bytes32`` the router stores."""
    raw = name.encode()
    if len(raw) > 32:
        raise ValueError("oracle key longer than 32 bytes")
    return raw.ljust(32, b"\0")
