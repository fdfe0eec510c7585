"""The signed-order exchange against a recording mock engine, driven through the SDK.

Actors: `trader` is the maker, `keeper` the taker, `operator` trades for either when
approved in the vault, `stranger` has no rights. Fees go to the accounts of `insurance` and
`fee_recipient`. The mock engine records the `IEngine.Fill` it is handed.
"""

import ape
import pytest
from ape import chain, project
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples

from crossmargin.clients.orders import ExchangeClient, order_hash, sign_order, signable_message, typed_data
from crossmargin.units import WAD, account_id, to_wad

MAKER_FEE = 2 * 10**14  # 2 bps
TAKER_FEE = 5 * 10**14  # 5 bps
INSURANCE_SHARE = 3 * 10**17  # 30% of fees
MAX_FEE = 5 * 10**15
ETH_PERP = 1
PRICE = to_wad("3000")
TWO = to_wad("2")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NOT_OWNER = "ownable: caller is not the owner"


def fee(size: int, price: int, rate: int) -> int:
    """ceil(size * price / 1e18 * rate / 1e18), the exchange's rounding (up)."""
    return -(-size * price * rate // WAD**2)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def maker(trader):
    return trader


@pytest.fixture(scope="module")
def taker(keeper):
    return keeper


@pytest.fixture(scope="module")
def insurance(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def fee_recipient(accounts):
    return accounts[8]


@pytest.fixture(scope="module")
def mock_engine(admin):
    return admin.deploy(project.MockEngine)


@pytest.fixture(scope="module")
def deploy_exchange(admin, vault, mock_engine, insurance, fee_recipient):
    def _deploy(maker_fee=MAKER_FEE, taker_fee=TAKER_FEE, share=INSURANCE_SHARE, sender=admin):
        return sender.deploy(
            project.Exchange, vault, mock_engine, insurance, fee_recipient, maker_fee, taker_fee, share
        )

    return _deploy


@pytest.fixture(scope="module")
def exchange(deploy_exchange):
    return deploy_exchange()


@pytest.fixture(scope="module")
def ex(exchange) -> ExchangeClient:
    return ExchangeClient(exchange)


@pytest.fixture(scope="module", autouse=True)
def stack(exchange, mock_engine, maker, taker, operator, stranger, insurance, fee_recipient, accounts):
    """Sets every module-scoped fixture up before the first test (ape isolates per scope)."""
    return exchange


@pytest.fixture(scope="module")
def make_order(ex, maker):
    """A fresh order of `maker` (buy 2 ETH-PERP at 3000 unless told otherwise), and its signature."""

    def _make(owner=None, buy=True, size=TWO, price=PRICE, signer=None, **kwargs):
        owner = owner or maker
        order = ex.make_order(owner, ETH_PERP, buy, size_raw=size, price_raw=price, **kwargs)
        return order, ex.sign(signer or owner, order)

    return _make


def exchange_gas(receipt, engine) -> int:
    trace = chain.provider.make_request("debug_traceTransaction", [receipt.txn_hash, {"tracer": "callTracer"}])
    calldata = sum(16 if byte else 4 for byte in bytes.fromhex(trace["input"][2:]))
    engine_frame = sum(
        int(call["gasUsed"], 16) for call in trace.get("calls", []) if call["to"].lower() == engine.address.lower()
    )
    return receipt.gas_used - 21_000 - calldata - engine_frame


def approve_operator(vault, owner, operator, subaccount=0):
    vault.set_operator(subaccount, operator, True, sender=owner)


# ---------------------------------------------------------------- hashing and signing


def test_order_hash__sdk__equals_contract(ex, exchange, make_order, maker):
    order, _ = make_order(buy=False, subaccount=2**96 - 1, size=123, price=456)
    assert ex.order_hash(order) == exchange.order_hash(order.as_tuple())
    assert order_hash(order, exchange.address, chain.chain_id) == exchange.order_hash(order.as_tuple())
    assert typed_data(order, exchange.address, chain.chain_id)["domain"] == {
        "name": "crossmargin",
        "version": "1",
        "chainId": chain.chain_id,
        "verifyingContract": exchange.address,
    }


def test_eip712_domain__matches_sdk(exchange):
    fields, name, version, chain_id, verifying, _salt, _ext = exchange.eip712Domain()
    assert (fields, name, version, chain_id, verifying) == (b"\x0f", "crossmargin", "1", chain.chain_id, exchange)


def test_sign_order__recovers_to_signer(ex, make_order, maker):
    order, signature = make_order()
    assert len(signature) == 65 and signature[64] in (27, 28)
    message = signable_message(order, ex.address, chain.chain_id)
    assert Account.recover_message(message, signature=signature) == maker.address


# ---------------------------------------------------------------- fills


def test_fill__full__records_fill_engine_call_and_event(ex, exchange, mock_engine, make_order, maker, taker):
    order, signature = make_order(size=to_wad("2"))

    receipt = ex.fill(taker, order, signature, "2")

    digest = ex.order_hash(order)
    assert exchange.filled(digest) == to_wad("2")
    assert ex.remaining_raw(order) == 0
    assert mock_engine.trades() == 1
    maker_fee, taker_fee = fee(to_wad("2"), PRICE, MAKER_FEE), fee(to_wad("2"), PRICE, TAKER_FEE)
    got = mock_engine.last_fill()
    assert (got.maker, got.taker) == (account_id(maker.address), account_id(taker.address))
    assert (got.instrument, got.size, got.price) == (ETH_PERP, to_wad("2"), PRICE)
    assert (got.maker_fee, got.taker_fee) == (maker_fee, taker_fee) == (to_wad("1.2"), to_wad("3"))
    assert got.insurance_fee == (maker_fee + taker_fee) * INSURANCE_SHARE // WAD
    assert got.insurance == account_id(exchange.insurance())
    assert got.recipient == account_id(exchange.fee_recipient())
    assert got.operator_sides == 0  # both sides acted by their owners: no operator band
    [event] = receipt.decode_logs(exchange.Fill)
    assert event.order_hash == digest
    assert (event.maker, event.taker, event.instrument) == (got.maker, got.taker, ETH_PERP)
    assert (event.size, event.price, event.maker_fee, event.taker_fee) == (to_wad("2"), PRICE, maker_fee, taker_fee)


def test_fill__maker_sells__engine_gets_negative_size(ex, mock_engine, make_order, taker):
    order, signature = make_order(buy=False, size=to_wad("5"))
    ex.fill(taker, order, signature, "1.5")
    assert mock_engine.last_fill().size == -to_wad("1.5")


def test_fill__partial__tracks_filled_and_remaining(ex, mock_engine, make_order, taker, accounts):
    order, signature = make_order(size=to_wad("3"))
    second_taker = accounts[6]

    ex.fill(taker, order, signature, "1")
    assert (ex.filled_raw(order), ex.remaining_raw(order)) == (to_wad("1"), to_wad("2"))
    ex.fill(second_taker, order, signature, "2", taker_subaccount=4)
    assert (ex.filled_raw(order), ex.remaining_raw(order)) == (to_wad("3"), 0)
    assert mock_engine.trades() == 2
    assert mock_engine.last_fill().taker == account_id(second_taker.address, 4)
    with ape.reverts("exchange: overfilled"):
        ex.fill(taker, order, signature, size_raw=1)


def test_fill__fees__round_up_and_insurance_rounds_down(ex, exchange, mock_engine, make_order, taker, admin):
    exchange.set_fees(3, 7, WAD // 3, sender=admin)
    # notional = 7 * 1.000000000000000001 USD, times 3e-18 and 7e-18: not whole wei
    order, signature = make_order(size=7, price=WAD + 1)
    ex.fill(taker, order, signature, size_raw=7)
    got = mock_engine.last_fill()
    assert (got.maker_fee, got.taker_fee) == (1, 1)  # ceil of 2.1e-35 wei and 4.9e-35 wei
    assert got.insurance_fee == 0  # floor(2 / 3): the recipient gets the rounding

    order, signature = make_order(size=to_wad("1"), price=to_wad("0.1") + 1)
    ex.fill(taker, order, signature, "1")
    got = mock_engine.last_fill()
    # 1 * (0.1 + 1e-18) USD * 3e-18 = 3e-19 + 3e-36 USD: 0.3 wei + dust, rounded up to 1
    assert got.maker_fee == fee(to_wad("1"), to_wad("0.1") + 1, 3) == 1
    assert got.taker_fee == fee(to_wad("1"), to_wad("0.1") + 1, 7) == 1


def test_fill__zero_fees__engine_gets_no_fee(ex, exchange, mock_engine, make_order, taker, admin):
    exchange.set_fees(0, 0, 0, sender=admin)
    order, signature = make_order()
    ex.fill(taker, order, signature, "1")
    got = mock_engine.last_fill()
    assert (got.maker_fee, got.taker_fee, got.insurance_fee) == (0, 0, 0)


def test_fill__operator_signed_order__fills(ex, vault, mock_engine, make_order, maker, operator, taker):
    approve_operator(vault, maker, operator)
    order, signature = make_order(signer=operator)
    ex.fill(taker, order, signature, "1", signer=operator)
    assert mock_engine.last_fill().maker == account_id(maker.address)
    assert mock_engine.last_fill().operator_sides == 1  # the maker's side: the band applies


def test_fill__operator_of_other_subaccount__signer_not_authorized(ex, vault, make_order, maker, operator, taker):
    approve_operator(vault, maker, operator, subaccount=1)
    order, signature = make_order(signer=operator)  # subaccount 0
    with ape.reverts("exchange: signer not authorized"):
        ex.fill(taker, order, signature, "1", signer=operator)


def test_fill__revoked_operator__signer_not_authorized(ex, vault, make_order, maker, operator, taker):
    approve_operator(vault, maker, operator)
    order, signature = make_order(signer=operator)
    ex.fill(taker, order, signature, "1", signer=operator)
    vault.set_operator(0, operator, False, sender=maker)
    with ape.reverts("exchange: signer not authorized"):
        ex.fill(taker, order, signature, "1", signer=operator)


def test_fill__operator_taker__fills_for_owner(ex, vault, mock_engine, make_order, operator, taker):
    approve_operator(vault, taker, operator, subaccount=3)
    order, signature = make_order()
    ex.fill(operator, order, signature, "1", taker_subaccount=3, taker_owner=taker)
    assert mock_engine.last_fill().taker == account_id(taker.address, 3)
    assert mock_engine.last_fill().operator_sides == 2  # the taker's side: the band applies


def test_fill__two_subaccounts_of_one_owner__trade(ex, mock_engine, make_order, maker):
    order, signature = make_order(subaccount=0)
    ex.fill(maker, order, signature, "1", taker_subaccount=1)
    got = mock_engine.last_fill()
    assert (got.maker, got.taker) == (account_id(maker.address, 0), account_id(maker.address, 1))


def test_fill__nonce_equal_to_min_nonce__fills(ex, make_order, maker, taker):
    ex.bump_nonce(maker, 0, 10)
    order, signature = make_order(nonce=10)
    ex.fill(taker, order, signature, "1")
    assert ex.filled_raw(order) == to_wad("1")


def test_fill__at_deadline__fills(ex, make_order, taker):
    order, signature = make_order(ttl=0)  # deadline == the next block's timestamp
    chain.pending_timestamp = order.deadline
    ex.fill(taker, order, signature, "1")
    assert ex.filled_raw(order) == to_wad("1")


def test_fill__erc1271_wallet_maker__fills_until_wallet_rejects(ex, mock_engine, make_order, maker, taker, admin):
    wallet = admin.deploy(project.MockWallet, maker)  # accepts `maker`'s key
    order, signature = make_order(owner=wallet, signer=maker)  # ECDSA by `maker` of the digest
    ex.fill(taker, order, signature, "1", signer=wallet)
    assert mock_engine.last_fill().maker == account_id(wallet.address)

    wallet.set_rejecting(True, sender=admin)
    with ape.reverts("exchange: bad signature"):
        ex.fill(taker, order, signature, "1", signer=wallet)


def test_fill__gas__exchange_execution_within_budget(ex, mock_engine, make_order, taker, capsys):
    """The exchange's own execution gas per fill (anvil trace): the receipt's gas minus the
    21k base, the calldata and the engine's frame. The first fill of an order pays 22.1k to
    create its `filled` slot; later fills 5k to update it."""
    order, signature = make_order(size=to_wad("2"))
    first = exchange_gas(ex.fill(taker, order, signature, "1"), mock_engine)
    repeat = exchange_gas(ex.fill(taker, order, signature, "1"), mock_engine)
    with capsys.disabled():
        print(f"\nexchange execution gas per fill: first {first}, repeat {repeat}")
    assert first < 50_000
    assert repeat < 33_000


# ---------------------------------------------------------------- fill reverts


def test_fill__zero_fill_size__reverts(ex, make_order, taker):
    order, signature = make_order()
    with ape.reverts("exchange: zero size"):
        ex.fill(taker, order, signature, size_raw=0)


def test_fill__zero_order_size__reverts(ex, make_order, taker):
    order, signature = make_order(size=0)
    with ape.reverts("exchange: zero size"):
        ex.fill(taker, order, signature, size_raw=1)


def test_fill__order_size_above_int256__reverts(ex, make_order, taker):
    order, signature = make_order(size=2**255)
    with ape.reverts("exchange: size too large"):
        ex.fill(taker, order, signature, size_raw=1)
    assert ex.remaining_raw(order) == 0


def test_fill__zero_price__reverts(ex, make_order, taker):
    order, signature = make_order(price=0)
    with ape.reverts("exchange: zero price"):
        ex.fill(taker, order, signature, size_raw=1)
    assert ex.remaining_raw(order) == 0


def test_fill__expired_order__reverts(ex, make_order, taker):
    order, signature = make_order(ttl=60)
    chain.pending_timestamp = order.deadline + 1
    with ape.reverts("exchange: expired"):
        ex.fill(taker, order, signature, "1")
    chain.mine(1, timestamp=order.deadline + 1)
    assert ex.remaining_raw(order) == 0


def test_fill__signature_of_other_order__bad_signature(ex, make_order, taker):
    order, _ = make_order(size=to_wad("1"))
    _, signature = make_order(size=to_wad("100"))
    with ape.reverts("exchange: bad signature"):
        ex.fill(taker, order, signature, "1")


def test_fill__signed_by_other_key_named_as_owner__bad_signature(ex, make_order, stranger, taker):
    order, signature = make_order(signer=stranger)
    with ape.reverts("exchange: bad signature"):
        ex.fill(taker, order, signature, "1")


@pytest.mark.parametrize("length", [0, 10, 63])
def test_fill__wrong_length_signature__bad_signature(ex, make_order, taker, length):
    order, signature = make_order()
    with ape.reverts("exchange: bad signature"):
        ex.fill(taker, order, signature[:length], "1")


def test_fill__undecodable_signature__reverts_in_ecdsa(ex, make_order, taker):
    order, signature = make_order()
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    bad_v = r + signature[32:64] + bytes([0])
    with ape.reverts("ecdsa: invalid signature"):
        ex.fill(taker, order, bad_v, "1")
    # the malleable twin (n - s, flipped v) of a valid signature
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("ecdsa: invalid signature `s` value"):
        ex.fill(taker, order, high_s, "1")


def test_fill__valid_signature_of_stranger__signer_not_authorized(ex, make_order, stranger, taker):
    order, signature = make_order(signer=stranger)
    with ape.reverts("exchange: signer not authorized"):
        ex.fill(taker, order, signature, "1", signer=stranger)


def test_fill__sender_not_taker_or_operator__taker_not_authorized(ex, vault, make_order, stranger, taker):
    approve_operator(vault, taker, stranger, subaccount=1)  # operator of another subaccount
    order, signature = make_order()
    with ape.reverts("exchange: taker not authorized"):
        ex.fill(stranger, order, signature, "1", taker_owner=taker)


def test_fill__cancelled_order__reverts(ex, make_order, maker, taker):
    order, signature = make_order()
    ex.fill(taker, order, signature, "1")
    ex.cancel(maker, order)
    with ape.reverts("exchange: cancelled"):
        ex.fill(taker, order, signature, "1")


def test_fill__nonce_below_min_nonce__reverts(ex, make_order, maker, taker):
    order, signature = make_order(nonce=5)
    ex.bump_nonce(maker, 0, 6)
    with ape.reverts("exchange: nonce too low"):
        ex.fill(taker, order, signature, "1")


def test_fill__more_than_remaining__overfilled(ex, make_order, taker):
    order, signature = make_order(size=to_wad("2"))
    with ape.reverts("exchange: overfilled"):
        ex.fill(taker, order, signature, size_raw=to_wad("2") + 1)
    ex.fill(taker, order, signature, "1.5")
    with ape.reverts("exchange: overfilled"):
        ex.fill(taker, order, signature, size_raw=to_wad("0.5") + 1)
    with ape.reverts("exchange: overfilled"):
        ex.fill(taker, order, signature, size_raw=2**256 - 1)


def test_fill__maker_is_taker__self_trade(ex, make_order, maker):
    order, signature = make_order()
    with ape.reverts("exchange: self trade"):
        ex.fill(maker, order, signature, "1")


def test_fill__signature_replayed_on_second_exchange__bad_signature(ex, deploy_exchange, make_order, taker):
    order, signature = make_order()
    other = ExchangeClient(deploy_exchange())
    assert other.order_hash(order) != ex.order_hash(order)
    with ape.reverts("exchange: bad signature"):
        other.fill(taker, order, signature, "1")
    ex.fill(taker, order, signature, "1")  # valid where it was signed


def test_fill__signature_for_other_chain__bad_signature(ex, make_order, maker, taker):
    order, _ = make_order()
    signature = sign_order(maker, order, ex.address, chain.chain_id + 1)
    with ape.reverts("exchange: bad signature"):
        ex.fill(taker, order, signature, "1")


def test_fill__engine_reverts__reason_bubbles_and_nothing_filled(ex, mock_engine, make_order, taker, admin):
    mock_engine.set_revert("engine: insufficient margin", sender=admin)
    order, signature = make_order()
    with ape.reverts("engine: insufficient margin"):
        ex.fill(taker, order, signature, "1")
    assert ex.filled_raw(order) == 0


# ---------------------------------------------------------------- cancel and nonces


def test_cancel__by_owner__marks_cancelled_and_logs(ex, exchange, make_order, maker):
    order, _ = make_order()
    receipt = ex.cancel(maker, order)
    digest = ex.order_hash(order)
    assert exchange.cancelled(digest)
    assert ex.remaining_raw(order) == 0
    [event] = receipt.decode_logs(exchange.OrderCancelled)
    assert (event.order_hash, event.owner, event.subaccount, event.sender) == (digest, maker, 0, maker)


def test_cancel__partially_filled__keeps_filled(ex, exchange, make_order, maker, taker):
    order, signature = make_order(size=to_wad("2"))
    ex.fill(taker, order, signature, "0.5")
    ex.cancel(maker, order)
    ex.cancel(maker, order)  # harmless twice
    assert exchange.cancelled(ex.order_hash(order))
    assert ex.filled_raw(order) == to_wad("0.5")


def test_cancel__by_operator__cancels(ex, exchange, vault, make_order, maker, operator):
    approve_operator(vault, maker, operator)
    order, _ = make_order()
    ex.cancel(operator, order)
    assert exchange.cancelled(ex.order_hash(order))


def test_cancel__by_stranger__reverts(ex, make_order, stranger):
    order, _ = make_order()
    with ape.reverts("exchange: not authorized"):
        ex.cancel(stranger, order)


def test_bump_nonce__kills_older_orders_and_logs(ex, exchange, make_order, maker, taker):
    old, old_signature = make_order(nonce=1)
    receipt = ex.bump_nonce(maker, 0, 2)
    assert ex.min_nonce(maker) == 2
    assert ex.remaining_raw(old) == 0
    [event] = receipt.decode_logs(exchange.NonceBumped)
    assert (event.owner, event.subaccount, event.min_nonce, event.sender) == (maker, 0, 2, maker)
    fresh, signature = make_order()  # the SDK's nonce is never below min_nonce
    assert fresh.nonce >= 2
    ex.fill(taker, fresh, signature, "1")


def test_bump_nonce__other_subaccount__unaffected(ex, make_order, maker):
    order, _ = make_order(subaccount=1, nonce=1)
    ex.bump_nonce(maker, 0, 100)
    assert ex.remaining_raw(order) == order.size


def test_bump_nonce__sdk_next_nonce__cancels_all_made_before(ex, make_order, maker):
    orders = [make_order()[0] for _ in range(3)]
    ex.bump_nonce(maker, 0, ex.next_nonce(maker))
    assert [ex.remaining_raw(o) for o in orders] == [0, 0, 0]


def test_bump_nonce__not_increasing__reverts(ex, maker):
    ex.bump_nonce(maker, 0, 5)
    with ape.reverts("exchange: nonce not increasing"):
        ex.bump_nonce(maker, 0, 5)
    with ape.reverts("exchange: nonce not increasing"):
        ex.bump_nonce(maker, 0, 4)


def test_bump_nonce__by_operator__bumps_owner_account(ex, vault, maker, operator):
    approve_operator(vault, maker, operator, subaccount=2)
    ex.bump_nonce(operator, 2, 9, owner=maker)
    assert ex.min_nonce(maker, 2) == 9
    assert ex.min_nonce(operator, 2) == 0


def test_bump_nonce__by_stranger__reverts(ex, maker, stranger):
    with ape.reverts("exchange: not authorized"):
        ex.bump_nonce(stranger, 0, 9, owner=maker)


# ---------------------------------------------------------------- owner


def test_constructor__sets_parameters_and_owner(exchange, vault, mock_engine, insurance, fee_recipient, admin):
    assert exchange.owner() == admin
    assert (exchange.VAULT(), exchange.engine()) == (vault, mock_engine)
    assert (exchange.insurance(), exchange.fee_recipient()) == (insurance, fee_recipient)
    assert (exchange.maker_fee(), exchange.taker_fee(), exchange.insurance_share()) == (
        MAKER_FEE,
        TAKER_FEE,
        INSURANCE_SHARE,
    )


def test_constructor__out_of_bounds__reverts(deploy_exchange):
    with ape.reverts("exchange: fee out of bounds"):
        deploy_exchange(maker_fee=MAX_FEE + 1)
    with ape.reverts("exchange: share out of bounds"):
        deploy_exchange(share=WAD + 1)


def test_set_fees__bounds_and_event(exchange, admin):
    receipt = exchange.set_fees(MAX_FEE, MAX_FEE, WAD, sender=admin)
    [event] = receipt.decode_logs(exchange.FeesSet)
    assert (event.maker_fee, event.taker_fee, event.insurance_share) == (MAX_FEE, MAX_FEE, WAD)
    with ape.reverts("exchange: fee out of bounds"):
        exchange.set_fees(MAX_FEE + 1, 0, 0, sender=admin)
    with ape.reverts("exchange: fee out of bounds"):
        exchange.set_fees(0, MAX_FEE + 1, 0, sender=admin)
    with ape.reverts("exchange: share out of bounds"):
        exchange.set_fees(0, 0, WAD + 1, sender=admin)


def test_set_fee_accounts__zero_address_reverts_and_event(exchange, admin, stranger):
    receipt = exchange.set_fee_accounts(stranger, admin, sender=admin)
    [event] = receipt.decode_logs(exchange.FeeAccountsSet)
    assert (event.insurance, event.fee_recipient) == (stranger, admin)
    with ape.reverts("exchange: zero address"):
        exchange.set_fee_accounts(ape.utils.ZERO_ADDRESS, admin, sender=admin)
    with ape.reverts("exchange: zero address"):
        exchange.set_fee_accounts(admin, ape.utils.ZERO_ADDRESS, sender=admin)


def test_set_engine__contract_check_and_event(exchange, admin, stranger):
    other = admin.deploy(project.MockEngine)
    receipt = exchange.set_engine(other, sender=admin)
    assert exchange.engine() == other
    assert receipt.decode_logs(exchange.EngineSet)[0].engine == other
    with ape.reverts("exchange: engine not a contract"):
        exchange.set_engine(stranger, sender=admin)


def test_setters__not_owner__revert(exchange, stranger, mock_engine):
    with ape.reverts(NOT_OWNER):
        exchange.set_fees(0, 0, 0, sender=stranger)
    with ape.reverts(NOT_OWNER):
        exchange.set_fee_accounts(stranger, stranger, sender=stranger)
    with ape.reverts(NOT_OWNER):
        exchange.set_engine(mock_engine, sender=stranger)


# ---------------------------------------------------------------- properties


def test_fills__random_partial_sequences__never_overfill_and_fees_round_up(
    ex, exchange, mock_engine, maker, taker, admin
):
    """Random fill sequences (some too large) against random orders and fee rates: `filled`
    never exceeds `size`, equals the sum of accepted fills, and the fees the engine saw are
    each ceil(notional_i * rate), with the insurance part floor(fees_i * share)."""
    rates = st.integers(min_value=0, max_value=MAX_FEE)

    @given(
        size=st.integers(min_value=1, max_value=10**24),
        price=st.integers(min_value=1, max_value=10**24),
        maker_fee=rates,
        taker_fee=rates,
        share=st.integers(min_value=0, max_value=WAD),
        parts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6),
    )
    @settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
    def check(size, price, maker_fee, taker_fee, share, parts):
        exchange.set_fees(maker_fee, taker_fee, share, sender=admin)
        order = ex.make_order(maker, ETH_PERP, True, size_raw=size, price_raw=price)
        signature = ex.sign(maker, order)
        filled = maker_total = taker_total = 0
        for part in parts:
            amount = max(size * part // 10**6 * 2 // 3, 1)  # sometimes more than remains
            if filled + amount > size:
                with ape.reverts("exchange: overfilled"):
                    ex.fill(taker, order, signature, size_raw=amount)
                amount = size - filled
                if amount == 0:
                    continue
            ex.fill(taker, order, signature, size_raw=amount)
            filled += amount
            got = mock_engine.last_fill()
            assert (got.maker_fee, got.taker_fee) == (fee(amount, price, maker_fee), fee(amount, price, taker_fee))
            assert got.insurance_fee == (got.maker_fee + got.taker_fee) * share // WAD
            maker_total += got.maker_fee
            taker_total += got.taker_fee
            assert ex.filled_raw(order) == filled <= size
        assert ex.remaining_raw(order) == size - filled
        rounding = len(parts)  # each fill rounds up by less than one wei per side
        assert fee(filled, price, maker_fee) <= maker_total <= fee(filled, price, maker_fee) + rounding
        assert fee(filled, price, taker_fee) <= taker_total <= fee(filled, price, taker_fee) + rounding

    check()
