"""EIP-712 signed orders of the exchange: build, hash, sign and fill them.

The one signing helper shared by tests, scripts and market-maker code::

    from crossmargin.clients.orders import ExchangeClient
    ex = ExchangeClient(project.Exchange.at(address))
    order = ex.make_order(maker, instrument=1, buy=True, size="2", price="3000")  # maker buys 2 at 3000
    signature = ex.sign(maker, order)          # 65 bytes r || s || v
    ex.fill(taker, order, signature, "1")      # the taker sells 1 of it to the maker
    ex.remaining(order)                        # Decimal('1')

Units: every amount in and out is human (``Decimal``, ``str`` or ``int`` of whole units;
``size`` in units of the instrument, ``price`` in USD per unit). A float is refused, as are
zero and negative amounts (:class:`~crossmargin.clients.errors.InvalidAmountError`). Raw 18-decimal
(WAD) integers go only through the keywords named ``*_raw`` (``size_raw=``, ``price_raw=``)
and come out of the methods named ``*_raw``; the signed :class:`Order` itself holds WAD, as
the exchange sees it. ``deadline`` is a unix time in seconds.

Sides: an order states the side of its owner, the maker (``buy=True``: the maker buys); the
taker that fills it takes the other side (it sells ``size`` to a buying maker).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ape import chain
from ape.exceptions import ContractLogicError
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak, to_checksum_address

from crossmargin.clients.errors import InsufficientMarginError, revert_reason, wad_argument
from crossmargin.units import Number, account_id, from_wad

# The exchange's EIP-712 domain (`Exchange.vy`: `eip712_domain_separator.__init__`).
DOMAIN_NAME = "crossmargin"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
# Field order is part of the signed encoding; it must match `ORDER_TYPEHASH` in Exchange.vy.
ORDER_TYPE = [
    {"name": "owner", "type": "address"},
    {"name": "subaccount", "type": "uint96"},
    {"name": "instrument", "type": "uint256"},
    {"name": "buy", "type": "bool"},
    {"name": "size", "type": "uint256"},
    {"name": "price", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
]


@dataclass(frozen=True)
class Order:
    """A maker's order, exactly as signed (so its amounts are raw WAD integers; build it
    with :meth:`ExchangeClient.make_order`, which takes human amounts).

    Attributes:
        owner: Address of the maker account's owner (checksummed on creation).
        subaccount: The maker's subaccount.
        instrument: Instrument id (a perp or an option).
        buy: True if the maker buys (goes long), False if it sells; the taker takes the
            other side.
        size: Most the order trades in total (WAD: 10**18 per unit of the instrument).
        price: The maker's price (WAD USD per unit); every fill trades at it.
        deadline: Last unix time (s) at which it can be filled.
        nonce: Dead once below the account's ``min_nonce`` on the exchange.
    """

    owner: str
    subaccount: int
    instrument: int
    buy: bool
    size: int
    price: int
    deadline: int
    nonce: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner", to_checksum_address(str(self.owner)))

    def as_tuple(self) -> tuple:
        """The ``Order`` struct argument of the exchange's functions."""
        return (
            self.owner,
            self.subaccount,
            self.instrument,
            self.buy,
            self.size,
            self.price,
            self.deadline,
            self.nonce,
        )

    def as_message(self) -> dict[str, Any]:
        """The EIP-712 ``message`` of this order."""
        return {
            "owner": self.owner,
            "subaccount": self.subaccount,
            "instrument": self.instrument,
            "buy": self.buy,
            "size": self.size,
            "price": self.price,
            "deadline": self.deadline,
            "nonce": self.nonce,
        }


def typed_data(order: Order, exchange_address: Any, chain_id: int) -> dict[str, Any]:
    """The full EIP-712 typed data of ``order`` (eth-account / ``eth_signTypedData_v4`` format).

    Args:
        order: The order.
        exchange_address: The exchange deployment that will verify it.
        chain_id: The chain it is deployed on.

    Returns:
        A dict with ``types``, ``primaryType``, ``domain`` and ``message``.
    """
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Order": ORDER_TYPE},
        "primaryType": "Order",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(str(exchange_address)),
        },
        "message": order.as_message(),
    }


def signable_message(order: Order, exchange_address: Any, chain_id: int) -> SignableMessage:
    """The EIP-191 version-1 message that a signer signs for ``order``."""
    return encode_typed_data(full_message=typed_data(order, exchange_address, chain_id))


def order_hash(order: Order, exchange_address: Any, chain_id: int) -> bytes:
    """The 32-byte EIP-712 digest of ``order``, equal to the exchange's ``order_hash``.

    Args:
        order: The order.
        exchange_address: The exchange deployment.
        chain_id: Its chain id.

    Returns:
        ``keccak256(0x19 0x01 || domain_separator || hash_struct(order))``.
    """
    message = signable_message(order, exchange_address, chain_id)
    return keccak(b"\x19" + message.version + message.header + message.body)


def sign_order(signer: Any, order: Order, exchange_address: Any, chain_id: int) -> bytes:
    """Signs ``order`` for ``exchange_address`` with an ape account.

    Args:
        signer: An ape account (a test account or a keyfile account): the order's owner or
            an operator of its account.
        order: The order.
        exchange_address: The exchange deployment that will verify it.
        chain_id: Its chain id.

    Returns:
        The 65-byte ``r || s || v`` signature the exchange's ``fill`` takes.

    Raises:
        ValueError: If the account declined to sign.
    """
    signature = signer.sign_message(signable_message(order, exchange_address, chain_id))
    if signature is None:
        raise ValueError(f"{signer} did not sign the order")
    return signature.encode_rsv()


class ExchangeClient:
    """Signs, fills and cancels orders on one exchange deployment."""

    def __init__(self, contract: Any):
        """
        Args:
            contract: The ape contract instance of ``Exchange``.
        """
        self.contract = contract
        self._last_nonce = 0
        # `Protocol.preflight_fill` (set by `Protocol`): previews both sides of a fill
        self.preflight: Any = None

    @property
    def address(self) -> str:
        return self.contract.address

    @property
    def chain_id(self) -> int:
        return chain.chain_id

    # ------------------------------------------------------------------ orders

    def make_order(
        self,
        owner: Any,
        instrument: int,
        buy: bool,
        size: Number | None = None,
        price: Number | None = None,
        *,
        size_raw: int | None = None,
        price_raw: int | None = None,
        subaccount: int = 0,
        ttl: int = 3600,
        nonce: int | None = None,
    ) -> Order:
        """Builds an order valid for ``ttl`` seconds from the chain's pending block time.

        Args:
            owner: The maker account's owner.
            instrument: Instrument id.
            buy: The maker's side: True if the maker buys (the taker then sells to it).
            size: Order size in units of the instrument (``Decimal``, ``str`` or ``int`` of
                whole units, > 0): ``"3"`` is three units.
            price: Price in USD per unit (> 0), same types as ``size``.
            size_raw: Instead of ``size``: the size as a WAD integer (``3`` is 3 wei of a
                unit), passed on unchecked but for its sign.
            price_raw: Instead of ``price``: the price as a WAD integer.
            subaccount: The maker's subaccount.
            ttl: Seconds from the pending block's timestamp to the deadline.
            nonce: The nonce; by default a fresh one (see ``next_nonce``).

        Returns:
            The unsigned order (its ``size`` and ``price`` in WAD, as signed).

        Raises:
            InvalidAmountError: A float, zero or negative ``size`` or ``price``, more than 18
                decimals, or both (or neither) of an amount and its ``*_raw`` keyword.
        """
        size_wad = wad_argument(size, size_raw, "size")
        price_wad = wad_argument(price, price_raw, "price")
        deadline = chain.pending_timestamp + ttl
        if nonce is None:
            nonce = self.next_nonce(owner, subaccount)
        return Order(str(owner), subaccount, instrument, buy, size_wad, price_wad, deadline, nonce)

    def next_nonce(self, owner: Any, subaccount: int = 0) -> int:
        """A fresh nonce: the wall clock in microseconds, strictly increasing per client and
        never below the account's ``min_nonce``. So ``bump_nonce(sender, sub, next_nonce)``
        cancels every order made before it.
        """
        floor = max(self.min_nonce(owner, subaccount), self._last_nonce + 1)
        self._last_nonce = max(time.time_ns() // 1000, floor)
        return self._last_nonce

    def order_hash(self, order: Order) -> bytes:
        """The order's EIP-712 digest, computed locally."""
        return order_hash(order, self.address, self.chain_id)

    def sign(self, signer: Any, order: Order) -> bytes:
        """Signs ``order`` for this exchange (see ``sign_order``)."""
        return sign_order(signer, order, self.address, self.chain_id)

    # ------------------------------------------------------------------ transactions

    def fill(
        self,
        taker: Any,
        order: Order,
        signature: bytes,
        size: Number | None = None,
        taker_subaccount: int = 0,
        signer: Any = None,
        taker_owner: Any = None,
        *,
        size_raw: int | None = None,
        preflight: bool = True,
    ):
        """Fills ``size`` of ``order``; ``taker`` sends the transaction. The taker takes the
        side opposite the order's: it sells ``size`` if the maker buys (``order.buy``).

        Args:
            taker: The sender: the taker account's owner or its operator.
            order: The maker's order.
            signature: Its signature by ``signer``.
            size: How much to fill, in units of the instrument (``Decimal``, ``str`` or
                ``int`` of whole units, > 0).
            taker_subaccount: The taker's subaccount.
            signer: Who signed the order (default: its owner).
            taker_owner: The taker account's owner (default: ``taker``).
            size_raw: Instead of ``size``: a WAD integer, passed on unchecked but for its sign.
            preflight: Preview both sides' margin first (when the client has a preflight,
                as ``Protocol``'s has) and raise ``InsufficientMarginError``, sending
                nothing, if the clearinghouse would revert the fill for margin (a fill that
                reverts earlier for another reason raises that revert instead, also unsent).

        Returns:
            The receipt.

        Raises:
            InvalidAmountError: A float, zero or negative ``size``, or both (or neither) of
                ``size`` and ``size_raw``.
        """
        size_wad = wad_argument(size, size_raw, "size")
        args = (
            order.as_tuple(),
            order.owner if signer is None else signer,
            signature,
            size_wad,
            taker_subaccount,
            taker if taker_owner is None else taker_owner,
        )
        if preflight and self.preflight is not None:
            try:
                self._preflight(order, size_wad, taker_subaccount, args[-1])
            except InsufficientMarginError as predicted:
                # the fill itself, simulated: a check it meets before the margin's (the
                # order's, the markets' caps, an auction) reverts first, with its reason
                try:
                    self.contract.fill.call(*args, sender=taker)
                except ContractLogicError as error:
                    if revert_reason(error) != predicted.revert_message:
                        raise
                    raise predicted from None
        return self.contract.fill(*args, sender=taker)

    def _preflight(self, order: Order, size: int, taker_subaccount: int, taker_owner: Any) -> None:
        signed = size if order.buy else -size
        rates = (self.contract.maker_fee(), self.contract.taker_fee())
        # `Exchange._fee`: ceil(size · price · rate / 1e36)
        fees = [-(-size * order.price * rate // 10**36) for rate in rates]
        self.preflight(
            account_id(order.owner, order.subaccount),
            account_id(str(taker_owner), taker_subaccount),
            order.instrument,
            signed,
            order.price,
            *fees,
        )

    def cancel(self, sender: Any, order: Order):
        """Cancels ``order``; ``sender`` is its owner or an operator of its account."""
        return self.contract.cancel(order.as_tuple(), sender=sender)

    def bump_nonce(self, sender: Any, subaccount: int, min_nonce: int, owner: Any = None):
        """Cancels every order of ``(owner, subaccount)`` with a nonce below ``min_nonce``.

        Args:
            sender: The owner or an operator of the account.
            subaccount: The subaccount.
            min_nonce: The new minimum nonce (above the current one).
            owner: The account's owner (default: ``sender``).
        """
        return self.contract.bump_nonce(subaccount, min_nonce, sender if owner is None else owner, sender=sender)

    # ------------------------------------------------------------------ views

    def remaining(self, order: Order) -> Decimal:
        """What can still be filled (units of the instrument); 0 if cancelled, expired or
        nonce-dead."""
        return from_wad(self.remaining_raw(order))

    def remaining_raw(self, order: Order) -> int:
        """``remaining`` as a WAD integer."""
        return self.contract.remaining(order.as_tuple())

    def filled(self, order: Order) -> Decimal:
        """Size filled so far (units of the instrument)."""
        return from_wad(self.filled_raw(order))

    def filled_raw(self, order: Order) -> int:
        """``filled`` as a WAD integer."""
        return self.contract.filled(self.order_hash(order))

    def min_nonce(self, owner: Any, subaccount: int = 0) -> int:
        return self.contract.min_nonce(owner, subaccount)
