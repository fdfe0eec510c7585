# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin signed-order exchange
@notice Makers sign EIP-712 `Order`s off chain; a taker fills all or part of one on chain at
        the maker's price and takes the opposite side. The exchange checks the signature,
        the deadline, the nonce, cancellation and the amount left, charges the fee rates and
        hands the matched trade to the margin engine (`IEngine.trade`), which moves
        positions and cash, credits the fees and checks margin (and reverts if it must).

        Units: order `size` and fill `size` in WAD units of the instrument, `price` in WAD USD
        per unit, `deadline` a unix time (s), fee rates and `insurance_share` WAD fractions,
        fees WAD USD.

        Fees, each rounded up: `fee = ceil(size * price / 1e18 * rate / 1e18)`, the notional
        taken exactly (never rounded before the rate is applied). Of `maker_fee + taker_fee`
        the insurance account gets `floor(total * insurance_share / 1e18)`, the fee recipient
        the rest. Fee accounts are the subaccount 0 of `insurance` and `fee_recipient`.

        Signers: an order is signed by its `owner`, or by an operator of
        `(owner, subaccount)` in the vault. The filler names the signer; a contract signer
        (a smart wallet) is checked with ERC-1271, an EOA with ECDSA, in one call to snekmate's
        `signature_checker._is_valid_signature_now`. The same holds for ERC-1271 operators.
@custom:security Fills are keyed by order hash, never by signature, so ECDSA malleability
        (high-s or EIP-2098 compact forms of one signature) cannot replay an order. The
        domain separator binds a signature to this deployment and chain. Operator rights are
        read at fill time: revoking an operator kills the orders it signed. A signature that
        cannot be decoded at all (a high `s`, a `v` other than 27/28, an `r` off the curve)
        reverts inside snekmate's ECDSA recovery with `"ecdsa: invalid signature `s` value"`
        or `"ecdsa: invalid signature"`; every decodable signature that does not verify
        reverts with `"exchange: bad signature"`.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import eip712_domain_separator
from snekmate.utils import math
from snekmate.utils import signature_checker

from interfaces import IEngine
from lib import accounts

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: eip712_domain_separator

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    eip712_domain_separator.eip712Domain,
)


# @dev What the exchange reads from the vault: trading operators.
interface IOperators:
    def is_operator(owner: address, subaccount: uint96, operator: address) -> bool: view


# @dev EIP-712 type hash of `Order`; the field order is the signed encoding.
ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(address owner,uint96 subaccount,uint256 instrument,bool buy,uint256 size,uint256 price,uint256 deadline,uint256 nonce)"
)
WAD: constant(uint256) = 10**18
# @dev Highest maker or taker fee rate (WAD fraction of notional): 0.5%.
MAX_FEE: constant(uint256) = 5 * 10**15
# @dev Largest order size (WAD units): the fill size must fit the engine's signed `int256`.
MAX_SIZE: constant(uint256) = 2**255 - 1
# @dev Flag bit of a cancelled order in `orders`; the low bits keep its filled size, which
#      never reaches it (filled <= size <= MAX_SIZE < 2**255).
CANCELLED: constant(uint256) = 2**255
# @dev Width of each field of `fee_config`.
FEE_BITS: constant(uint256) = 64
FEE_MASK: constant(uint256) = 2**64 - 1


struct Order:
    # the maker: owner of the account that trades
    owner: address
    subaccount: uint96
    # instrument id (a perp or an option)
    instrument: uint256
    # true: the maker buys (goes long `size`); false: the maker sells
    buy: bool
    # most the order trades in total (WAD units)
    size: uint256
    # the maker's price (WAD USD per unit); every fill trades at it
    price: uint256
    # last unix time (s) at which the order can be filled
    deadline: uint256
    # invalid once below the account's `min_nonce`; otherwise any value, reuse included
    nonce: uint256


# @dev The vault whose operators may sign orders and take for an account.
VAULT: public(immutable(address))
# @dev The margin engine that applies every fill (`IEngine.trade`).
engine: public(address)
# @dev Owner of the account (subaccount 0) credited with `insurance_share` of the fees.
insurance: public(address)
# @dev Owner of the account (subaccount 0) credited with the rest of the fees.
fee_recipient: public(address)
# @dev The three fee parameters packed in one slot, so a fill reads them with one SLOAD:
#      `maker_fee | taker_fee << 64 | insurance_share << 128`. The maker and taker fee rates
#      are WAD fractions of notional (<= MAX_FEE), the insurance share a WAD fraction of the
#      fees (<= 1e18): each fits in 64 bits. Read them with the views of the same names.
fee_config: uint256
# @dev Per order hash: the size filled so far (WAD units), plus the CANCELLED bit once
#      cancelled. One slot for both, so a fill reads one cold slot, not two.
orders: HashMap[bytes32, uint256]
# @dev Per account id: orders with a lower nonce are dead. Only ever increases.
min_nonces: HashMap[uint256, uint256]


event Fill:
    order_hash: indexed(bytes32)
    # account ids (`owner << 96 | subaccount`)
    maker: indexed(uint256)
    taker: indexed(uint256)
    instrument: uint256
    # the maker's signed position change (WAD units): + if the maker bought
    size: int256
    # WAD USD per unit
    price: uint256
    # WAD USD
    maker_fee: uint256
    taker_fee: uint256


event OrderCancelled:
    order_hash: indexed(bytes32)
    owner: indexed(address)
    subaccount: indexed(uint96)
    sender: address


event NonceBumped:
    owner: indexed(address)
    subaccount: indexed(uint96)
    min_nonce: uint256
    sender: address


event FeesSet:
    maker_fee: uint256
    taker_fee: uint256
    insurance_share: uint256


event FeeAccountsSet:
    insurance: indexed(address)
    fee_recipient: indexed(address)


event EngineSet:
    engine: indexed(address)


@deploy
def __init__(
    vault: address,
    engine: address,
    insurance: address,
    fee_recipient: address,
    maker_fee: uint256,
    taker_fee: uint256,
    insurance_share: uint256,
):
    """
    @param vault The collateral vault (operators are read from it).
    @param engine The margin engine that applies fills.
    @param insurance Owner of the insurance account (subaccount 0).
    @param fee_recipient Owner of the fee account (subaccount 0).
    @param maker_fee Maker fee rate (WAD fraction of notional), <= 0.5%.
    @param taker_fee Taker fee rate (WAD fraction of notional), <= 0.5%.
    @param insurance_share Part of the fees credited to insurance (WAD fraction), <= 1.
    """
    ownable.__init__()
    ownable_2step.__init__()
    eip712_domain_separator.__init__("crossmargin", "1")
    assert vault.is_contract, "exchange: vault not a contract"
    VAULT = vault
    self._set_engine(engine)
    self._set_fee_accounts(insurance, fee_recipient)
    self._set_fees(maker_fee, taker_fee, insurance_share)


# ---------------------------------------------------------------- trading


@external
def fill(
    order: Order,
    signer: address,
    signature: Bytes[65],
    size: uint256,
    taker_subaccount: uint96,
    taker_owner: address = msg.sender,
):
    """
    @notice Fills `size` of `order` for the taker account `(taker_owner, taker_subaccount)`,
            which takes the opposite side at `order.price`.
    @param order The maker's signed order.
    @param signer Who signed it: `order.owner` or an operator of the maker account.
    @param signature 65-byte `r || s || v` ECDSA signature of the order's EIP-712 hash (or
           what the signer's ERC-1271 `isValidSignature` accepts).
    @param size How much to fill (WAD units), at most what is left of the order.
    @param taker_subaccount The taker's subaccount.
    @param taker_owner The taker's owner: the caller, or an owner the caller is an operator of.
    """
    assert size != 0 and order.size != 0, "exchange: zero size"
    assert order.size <= MAX_SIZE, "exchange: size too large"
    assert order.price != 0, "exchange: zero price"
    assert block.timestamp <= order.deadline, "exchange: expired"
    maker: uint256 = accounts._id(order.owner, order.subaccount)
    assert order.nonce >= self.min_nonces[maker], "exchange: nonce too low"

    digest: bytes32 = self._order_hash(order)
    state: uint256 = self.orders[digest]
    assert state < CANCELLED, "exchange: cancelled"
    # cannot underflow: a live order's `state` is its filled size, which is <= order.size
    assert size <= unsafe_sub(order.size, state), "exchange: overfilled"

    taker: uint256 = accounts._id(taker_owner, taker_subaccount)
    assert maker != taker, "exchange: self trade"
    # which sides an operator acts for (the clearinghouse then bounds the price)
    operator_sides: uint256 = 0
    if msg.sender != taker_owner:
        assert staticcall IOperators(VAULT).is_operator(
            taker_owner, taker_subaccount, msg.sender
        ), "exchange: taker not authorized"
        operator_sides = 2
    if signer != order.owner:
        assert staticcall IOperators(VAULT).is_operator(
            order.owner, order.subaccount, signer
        ), "exchange: signer not authorized"
        operator_sides |= 1
    assert signature_checker._is_valid_signature_now(signer, digest, signature), "exchange: bad signature"

    # cannot overflow: the sum is <= order.size (checked above)
    self.orders[digest] = unsafe_add(state, size)

    config: uint256 = self.fee_config
    maker_fee: uint256 = self._fee(size, order.price, config & FEE_MASK)
    taker_fee: uint256 = self._fee(size, order.price, (config >> FEE_BITS) & FEE_MASK)
    # cannot overflow: each fee is at most 0.5% of a notional that itself fits in uint256
    fees: uint256 = unsafe_add(maker_fee, taker_fee)
    # size <= MAX_SIZE, so the conversion cannot fail
    signed: int256 = convert(size, int256)
    if not order.buy:
        signed = -signed
    extcall IEngine(self.engine).trade(
        IEngine.Fill(
            maker=maker,
            taker=taker,
            instrument=order.instrument,
            size=signed,
            price=order.price,
            maker_fee=maker_fee,
            taker_fee=taker_fee,
            insurance_fee=fees * (config >> (2 * FEE_BITS)) // WAD,
            insurance=accounts._id(self.insurance, 0),
            recipient=accounts._id(self.fee_recipient, 0),
            operator_sides=operator_sides,
        )
    )
    log Fill(
        order_hash=digest,
        maker=maker,
        taker=taker,
        instrument=order.instrument,
        size=signed,
        price=order.price,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )


@external
def cancel(order: Order):
    """
    @notice Cancels `order` for good (what was filled stays filled). Callable by the order's
            owner or an operator of its account; cancelling twice is harmless.
    """
    self._check_caller(order.owner, order.subaccount)
    digest: bytes32 = self._order_hash(order)
    self.orders[digest] |= CANCELLED
    log OrderCancelled(order_hash=digest, owner=order.owner, subaccount=order.subaccount, sender=msg.sender)


@external
def bump_nonce(subaccount: uint96, min_nonce: uint256, owner: address = msg.sender):
    """
    @notice Cancels every order of `(owner, subaccount)` with a nonce below `min_nonce`.
    @param min_nonce The new minimum valid nonce; must be above the current one.
    @param owner The account's owner: the caller, or an owner the caller is an operator of.
    """
    self._check_caller(owner, subaccount)
    account: uint256 = accounts._id(owner, subaccount)
    assert min_nonce > self.min_nonces[account], "exchange: nonce not increasing"
    self.min_nonces[account] = min_nonce
    log NonceBumped(owner=owner, subaccount=subaccount, min_nonce=min_nonce, sender=msg.sender)


# ---------------------------------------------------------------- views


@external
@view
def maker_fee() -> uint256:
    """
    @notice Fee rate charged to the maker (WAD fraction of notional).
    """
    return self.fee_config & FEE_MASK


@external
@view
def taker_fee() -> uint256:
    """
    @notice Fee rate charged to the taker (WAD fraction of notional).
    """
    return (self.fee_config >> FEE_BITS) & FEE_MASK


@external
@view
def insurance_share() -> uint256:
    """
    @notice Part of each fill's fees credited to the insurance account (WAD fraction).
    """
    return self.fee_config >> (2 * FEE_BITS)


@external
@view
def order_hash(order: Order) -> bytes32:
    """
    @notice The EIP-712 digest of `order` that the signer signs (domain: "crossmargin",
            version "1", this chain, this contract).
    """
    return self._order_hash(order)


@external
@view
def domain_separator() -> bytes32:
    return eip712_domain_separator._domain_separator_v4()


@external
@view
def filled(order_hash: bytes32) -> uint256:
    """
    @notice Size filled so far of the order with this hash (WAD units).
    """
    return self.orders[order_hash] & (CANCELLED - 1)


@external
@view
def cancelled(order_hash: bytes32) -> bool:
    return self.orders[order_hash] >= CANCELLED


@external
@view
def min_nonce(owner: address, subaccount: uint96) -> uint256:
    """
    @notice Orders of `(owner, subaccount)` with a lower nonce are dead.
    """
    return self.min_nonces[accounts._id(owner, subaccount)]


@external
@view
def remaining(order: Order) -> uint256:
    """
    @notice What can still be filled of `order` (WAD units): 0 if it is cancelled, expired,
            below its account's minimum nonce, or malformed (zero price, oversized). Does not
            check the signature or the engine's margin.
    """
    if order.price == 0 or order.size > MAX_SIZE or block.timestamp > order.deadline:
        return 0
    if order.nonce < self.min_nonces[accounts._id(order.owner, order.subaccount)]:
        return 0
    state: uint256 = self.orders[self._order_hash(order)]
    if state >= CANCELLED:
        return 0
    return order.size - state


# ---------------------------------------------------------------- owner


@external
def set_fees(maker_fee: uint256, taker_fee: uint256, insurance_share: uint256):
    """
    @notice Sets the fee rates (WAD fractions of notional, each <= 0.5%) and the insurance
            share of fees (WAD fraction, <= 1).
    """
    ownable._check_owner()
    self._set_fees(maker_fee, taker_fee, insurance_share)


@external
def set_fee_accounts(insurance: address, fee_recipient: address):
    """
    @notice Sets the owners of the accounts (subaccount 0) that receive the fees.
    """
    ownable._check_owner()
    self._set_fee_accounts(insurance, fee_recipient)


@external
def set_engine(engine: address):
    ownable._check_owner()
    self._set_engine(engine)


# ---------------------------------------------------------------- internals


@internal
@view
def _order_hash(order: Order) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(
                ORDER_TYPEHASH,
                order.owner,
                order.subaccount,
                order.instrument,
                order.buy,
                order.size,
                order.price,
                order.deadline,
                order.nonce,
            )
        )
    )


@internal
@pure
def _fee(size: uint256, price: uint256, rate: uint256) -> uint256:
    """
    @dev `ceil(size * price * rate / 1e36)` (WAD USD) in 512-bit precision: the exact
         notional `size * price / 1e18` times `rate`, rounded up once.
    """
    if rate == 0:
        return 0
    # `price * rate` cannot overflow for any price below 2e61 WAD (rate <= 5e15)
    return math._mul_div(size, price * rate, WAD * WAD, True)


@internal
@view
def _check_caller(owner: address, subaccount: uint96):
    if msg.sender != owner:
        assert staticcall IOperators(VAULT).is_operator(owner, subaccount, msg.sender), "exchange: not authorized"


@internal
def _set_fees(maker_fee: uint256, taker_fee: uint256, insurance_share: uint256):
    assert maker_fee <= MAX_FEE and taker_fee <= MAX_FEE, "exchange: fee out of bounds"
    assert insurance_share <= WAD, "exchange: share out of bounds"
    # the bounds keep each field below 2**64
    self.fee_config = maker_fee | (taker_fee << FEE_BITS) | (insurance_share << (2 * FEE_BITS))
    log FeesSet(maker_fee=maker_fee, taker_fee=taker_fee, insurance_share=insurance_share)


@internal
def _set_fee_accounts(insurance: address, fee_recipient: address):
    assert insurance != empty(address) and fee_recipient != empty(address), "exchange: zero address"
    self.insurance = insurance
    self.fee_recipient = fee_recipient
    log FeeAccountsSet(insurance=insurance, fee_recipient=fee_recipient)


@internal
def _set_engine(engine: address):
    assert engine.is_contract, "exchange: engine not a contract"
    self.engine = engine
    log EngineSet(engine=engine)
