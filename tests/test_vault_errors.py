"""Every bad input to the vault reverts with its exact reason and loses nothing."""

import ape
import pytest
from ape import project

from crossmargin.units import WAD, key, to_wad

ZERO = "0x0000000000000000000000000000000000000000"
NOT_OWNER = "ownable: caller is not the owner"


def test_deposit__zero_amount__reverts(vault, trader, usdc):
    with ape.reverts("vault: zero amount"):
        vault.deposit(usdc.address, 0, sender=trader)


def test_deposit__unlisted_asset__reverts(vault, trader, admin):
    token = admin.deploy(project.MockERC20, "Unlisted", "UNL", 18)
    token.mint(trader, WAD, sender=admin)
    token.approve(vault, WAD, sender=trader)
    with ape.reverts("vault: unlisted asset"):
        vault.deposit(token.address, WAD, sender=trader)
    assert token.balanceOf(trader) == WAD


def test_deposit__zero_recipient__reverts(vault, trader, fund, usdc):
    fund(trader, "USDC", "1")
    with ape.reverts("vault: zero address"):
        vault.deposit(usdc.address, 10**6, 0, ZERO, sender=trader)


def test_deposit__without_allowance__reverts_in_token(vault, trader, usdc, admin):
    usdc.mint(admin, trader, "1")
    with ape.reverts("erc20: insufficient allowance"):
        vault.deposit(usdc.address, 10**6, sender=trader)


def test_withdraw__more_than_balance__reverts(cm, vault, trader, create_account, symbol):
    token = cm.token(symbol)
    create_account(trader, {symbol: "1"})
    with ape.reverts("vault: insufficient balance"):
        vault.withdraw(token.address, token.units(1) + 1, sender=trader)  # one token unit too many
    assert vault.withdrawable(trader, 0, token.address) == token.units(1)


def test_withdraw__zero_amount_unlisted_and_zero_receiver__revert(vault, trader, create_account, usdc, stranger):
    create_account(trader, {"USDC": "1"})
    with ape.reverts("vault: zero amount"):
        vault.withdraw(usdc.address, 0, sender=trader)
    with ape.reverts("vault: unlisted asset"):
        vault.withdraw(stranger, 1, sender=trader)
    with ape.reverts("vault: zero address"):
        vault.withdraw(usdc.address, 1, 0, ZERO, sender=trader)
    assert vault.cash_of(trader, 0) == WAD


def test_withdraw__other_subaccount_balance__not_reachable(cm, trader, create_account):
    create_account(trader, {"USDC": "1"}, subaccount=1)
    with ape.reverts("vault: insufficient balance"):
        cm.vault.withdraw(trader, "USDC", "1", subaccount=0)


def test_move__same_subaccount_zero_and_overdraw__revert(vault, cm, trader, create_account, usdc):
    create_account(trader, {"USDC": "1"})
    with ape.reverts("vault: same subaccount"):
        cm.vault.move(trader, "USDC", "1", 0, 0)
    with ape.reverts("vault: zero amount"):
        vault.move(usdc.address, 0, 0, 1, sender=trader)
    with ape.reverts("vault: insufficient balance"):
        cm.vault.move(trader, "USDC", "2", 0, 1)
    with ape.reverts("vault: unlisted asset"):
        vault.move(trader.address, 1, 0, 1, sender=trader)


def test_withdraw_and_move__below_initial_margin__revert(cm, vault, admin, trader, create_account):
    create_account(trader, {"USDC": "100"})
    stand_in = admin.deploy(project.MockMarginEngine)
    stand_in.set_health(-1, sender=admin)
    vault.set_margin_engine(stand_in, sender=admin)
    with ape.reverts("vault: insufficient margin"):
        cm.vault.withdraw(trader, "USDC", "1")
    with ape.reverts("vault: insufficient margin"):
        cm.vault.move(trader, "USDC", "1", 0, 1)
    stand_in.set_health(0, sender=admin)
    cm.vault.withdraw(trader, "USDC", "1")
    assert vault.cash_of(trader, 0) == to_wad(99)


def test_withdraw__sequencer_down__reverts_but_deposit_works(
    cm, vault, router, admin, trader, create_account, deploy_feed, chain
):
    create_account(trader, {"USDC": "100"})
    sequencer = deploy_feed(0, 1, "sequencer")  # answer 1 = down
    router.set_sequencer(sequencer, 3600, sender=admin)
    with ape.reverts("oracle: sequencer down"):
        cm.vault.withdraw(trader, "USDC", "1")
    sequencer.push(0, sender=admin)  # back up: the grace period starts now
    with ape.reverts("oracle: sequencer grace period"):
        cm.vault.withdraw(trader, "USDC", "1")
    chain.pending_timestamp += 3601
    cm.vault.withdraw(trader, "USDC", "1")
    assert vault.cash_of(trader, 0) == to_wad(99)


def test_withdraw__settlement_asset_depegged__reverts(cm, admin, trader, create_account):
    create_account(trader, {"USDC": "100"})
    cm.oracle.push(admin, "USDC/USD", "0.90")
    with ape.reverts("oracle: price out of bounds"):
        cm.vault.withdraw(trader, "USDC", "1")


def test_withdraw__collateral_feed_stale__reverts(cm, trader, create_account, chain):
    create_account(trader, {"WETH": "1"})
    chain.pending_timestamp += 3600 + 300 + 1  # heartbeat + grace + 1
    with ape.reverts("oracle: stale price"):
        cm.vault.withdraw(trader, "WETH", "0.1")


# ------------------------------------------------------------------ admin


def test_admin_setters__not_owner__revert(vault, stranger, guardian, weth, usdc):
    with ape.reverts(NOT_OWNER):
        vault.list_asset(usdc.address, key("X"), b"", 0, 0, 1, sender=stranger)
    with ape.reverts(NOT_OWNER):
        vault.set_haircuts(weth.address, 0, 0, sender=stranger)
    with ape.reverts(NOT_OWNER):
        vault.set_cap(weth.address, 0, sender=stranger)
    with ape.reverts(NOT_OWNER):
        vault.set_margin_engine(vault, sender=stranger)
    with ape.reverts(NOT_OWNER):
        vault.set_guardian(stranger, sender=stranger)
    with ape.reverts("vault: not guardian"):
        vault.pause(sender=stranger)
    vault.pause(sender=guardian)
    with ape.reverts("vault: pause not expired"):
        vault.unpause(sender=guardian)


def test_list_asset__bad_parameters__revert(vault, admin, weth, stranger):
    token = admin.deploy(project.MockERC20, "New", "NEW", 18)
    with ape.reverts("vault: already listed"):
        vault.list_asset(weth.address, key("ETH/USD"), b"", 0, 0, 1, sender=admin)
    with ape.reverts("vault: asset not a contract"):
        vault.list_asset(stranger, key("ETH/USD"), b"", 0, 0, 1, sender=admin)
    with ape.reverts("vault: zero price key"):
        vault.list_asset(token, b"", b"", 0, 0, 1, sender=admin)
    with ape.reverts("vault: haircut out of bounds"):
        vault.list_asset(token, key("ETH/USD"), b"", 2 * 10**17, 10**17, 1, sender=admin)
    with ape.reverts("vault: haircut out of bounds"):
        vault.list_asset(token, key("ETH/USD"), b"", 0, 9 * 10**17 + 1, 1, sender=admin)
    wide = admin.deploy(project.MockERC20, "Wide", "WIDE", 24)
    with ape.reverts("vault: decimals above 18"):
        vault.list_asset(wide, key("ETH/USD"), b"", 0, 0, 1, sender=admin)
    # the price key and the underlying share one storage word: 17 bytes do not fit
    with ape.reverts("vault: key over 16 bytes"):
        vault.list_asset(token, key("ETH/USD:chainlink"), b"", 0, 0, 1, sender=admin)
    with ape.reverts("vault: key over 16 bytes"):
        vault.list_asset(token, key("ETH/USD"), key("ETH-mainnet-wrapped"), 0, 0, 1, sender=admin)
    # 16 bytes each fit, and read back
    price_key, underlying = key("NEW/USD:chainlnk"), key("NEW-underlying16")
    vault.list_asset(token, price_key, underlying, 0, 0, 1, sender=admin)
    listed = vault.assets(token.address)
    assert (listed.price_key, listed.underlying) == (price_key, underlying)


def test_list_asset__more_than_sixteen__reverts(vault, admin):
    for i in range(16 - vault.asset_count()):
        token = admin.deploy(project.MockERC20, f"T{i}", f"T{i}", 18)
        vault.list_asset(token, key("ETH/USD"), b"", 0, 0, 1, sender=admin)
    extra = admin.deploy(project.MockERC20, "Extra", "EXTRA", 18)
    with ape.reverts("vault: too many assets"):
        vault.list_asset(extra, key("ETH/USD"), b"", 0, 0, 1, sender=admin)


def test_set_haircuts__bounds_and_settlement__revert(vault, admin, weth, usdc, stranger):
    with ape.reverts("vault: haircut out of bounds"):
        vault.set_haircuts(weth.address, 10**17 + 1, 10**17, sender=admin)
    with ape.reverts("vault: settlement asset"):
        vault.set_haircuts(usdc.address, 0, 0, sender=admin)
    with ape.reverts("vault: unlisted asset"):
        vault.set_haircuts(stranger, 0, 0, sender=admin)
    with ape.reverts("vault: unlisted asset"):
        vault.set_cap(stranger, 0, sender=admin)
    receipt = vault.set_haircuts(weth.address, 10**17, 2 * 10**17, sender=admin)
    [event] = receipt.decode_logs(vault.HaircutsSet)
    assert (event.mm_haircut, event.im_haircut) == (10**17, 2 * 10**17)
    # both share one storage word: each reads back exactly, at the bounds too
    listed = vault.assets(weth.address)
    assert (listed.mm_haircut, listed.im_haircut) == (10**17, 2 * 10**17)
    vault.set_haircuts(weth.address, 9 * 10**17, 9 * 10**17, sender=admin)
    listed = vault.assets(weth.address)
    assert (listed.mm_haircut, listed.im_haircut) == (9 * 10**17, 9 * 10**17)
    vault.set_haircuts(weth.address, 0, 0, sender=admin)
    after = vault.assets(weth.address)
    assert (after.mm_haircut, after.im_haircut) == (0, 0)
    assert (after.price_key, after.underlying, after.scale) == (listed.price_key, listed.underlying, listed.scale)


def test_set_margin_engine__eoa__reverts(vault, admin, stranger):
    with ape.reverts("vault: engine not a contract"):
        vault.set_margin_engine(stranger, sender=admin)


def test_set_operator__zero_or_self__reverts(vault, trader):
    with ape.reverts("vault: bad operator"):
        vault.set_operator(0, ZERO, True, sender=trader)
    with ape.reverts("vault: bad operator"):
        vault.set_operator(0, trader, True, sender=trader)


def test_ownership__two_step_transfer(vault, admin, stranger):
    vault.transfer_ownership(stranger, sender=admin)
    assert vault.owner() == admin and vault.pending_owner() == stranger
    with ape.reverts("ownable_2step: caller is not the new owner"):
        vault.accept_ownership(sender=admin)
    vault.accept_ownership(sender=stranger)
    assert vault.owner() == stranger
    with ape.reverts(NOT_OWNER):
        vault.set_guardian(admin, sender=admin)


@pytest.mark.parametrize("contract_name", ["OracleRouter", "MarginEngine"])
def test_ownership__router_and_engine_are_two_step(cm, admin, stranger, contract_name):
    contract = {"OracleRouter": cm.oracle.contract, "MarginEngine": cm.engine.contract}[contract_name]
    contract.transfer_ownership(stranger, sender=admin)
    assert contract.owner() == admin
    contract.accept_ownership(sender=stranger)
    assert contract.owner() == stranger
