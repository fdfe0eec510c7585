"""Vault flows: deposits, withdrawals, moves, operators, caps, valuation, pause."""

from decimal import Decimal

import ape
import pytest

from crossmargin.units import WAD, account_id, key, to_wad


def test_deposit__each_decimals__credits_exact_wad_and_logs(cm, vault, trader, fund, symbol):
    token = cm.token(symbol)
    fund(trader, symbol, "1234.5678")
    units = token.units("1234.5678")

    receipt = cm.vault.deposit(trader, symbol, "1234.5678", subaccount=7)

    credit = units * 10 ** (18 - token.decimals)
    assert credit == to_wad("1234.5678")
    if symbol == "USDC":
        assert vault.cash_of(trader, 7) == credit
    else:
        assert vault.balance_of(trader, 7, token.address) == credit
    assert vault.withdrawable(trader, 7, token.address) == units
    assert token.contract.balanceOf(vault) == units
    assert vault.assets(token.address).total == credit
    [event] = receipt.decode_logs(vault.Deposit)
    assert (event.owner, event.subaccount, event.asset, event.sender) == (trader, 7, token.address, trader)
    assert (event.amount, event.credit) == (units, credit)


def test_deposit__for_another_account__credits_recipient(cm, vault, trader, stranger, fund, weth):
    fund(stranger, "USDC", "2")
    cm.vault.deposit(stranger, "USDC", "2", subaccount=3, recipient=trader)
    assert vault.cash_of(trader, 3) == 2 * WAD
    assert vault.cash_of(stranger, 3) == 0
    # a collateral the account does not hold: only its owner or an operator adds it
    fund(stranger, "WETH", "2")
    with ape.reverts("vault: new collateral from a stranger"):
        cm.vault.deposit(stranger, "WETH", "2", subaccount=3, recipient=trader)
    assert vault.balance_of(trader, 3, weth.address) == 0


def test_withdraw__each_decimals__returns_tokens_and_logs(cm, vault, trader, create_account, symbol):
    token = cm.token(symbol)
    create_account(trader, {symbol: "10"})
    before = token.contract.balanceOf(trader)

    receipt = cm.vault.withdraw(trader, symbol, "4.5")

    assert token.contract.balanceOf(trader) - before == token.units("4.5")
    assert vault.withdrawable(trader, 0, token.address) == token.units("5.5")
    assert vault.assets(token.address).total == to_wad("5.5")
    [event] = receipt.decode_logs(vault.Withdraw)
    assert (event.owner, event.receiver, event.amount, event.debit) == (
        trader,
        trader,
        token.units("4.5"),
        to_wad("4.5"),
    )


def test_withdraw__to_other_receiver__pays_receiver(cm, trader, stranger, create_account, usdc):
    create_account(trader, {"USDC": "100"})
    cm.vault.withdraw(trader, "USDC", "40", receiver=stranger)
    assert usdc.contract.balanceOf(stranger) == usdc.units("40")


def test_withdraw__everything__clears_held_mask(cm, vault, trader, create_account, weth, wbtc):
    create_account(trader, {"WETH": "1", "WBTC": "1"})
    cm.vault.withdraw(trader, "WETH", "1")
    cash, lines = vault.account_state(account_id(trader.address, 0))
    assert cash == 0
    assert [line.asset for line in lines] == [wbtc.address]
    cm.vault.withdraw(trader, "WBTC", "1")
    assert vault.account_state(account_id(trader.address, 0))[1] == []


def test_move__between_own_subaccounts__moves_balance_and_logs(cm, vault, trader, create_account, symbol):
    token = cm.token(symbol)
    create_account(trader, {symbol: "3"}, subaccount=1)

    receipt = cm.vault.move(trader, symbol, "1.25", 1, 2)

    if symbol == "USDC":
        assert (vault.cash_of(trader, 1), vault.cash_of(trader, 2)) == (to_wad("1.75"), to_wad("1.25"))
    else:
        assert vault.balance_of(trader, 1, token.address) == to_wad("1.75")
        assert vault.balance_of(trader, 2, token.address) == to_wad("1.25")
    assert vault.assets(token.address).total == to_wad(3)  # moves change no claim
    [event] = receipt.decode_logs(vault.Move)
    assert (event.from_subaccount, event.to_subaccount, event.amount) == (1, 2, token.units("1.25"))


def test_caps__deposit_up_to_cap__then_reverts(cm, vault, admin, trader, fund, wbtc):
    vault.set_cap(wbtc.address, to_wad(2), sender=admin)
    fund(trader, "WBTC", "3")
    cm.vault.deposit(trader, "WBTC", "2")
    with ape.reverts("vault: cap exceeded"):
        cm.vault.deposit(trader, "WBTC", "0.00000001")


def test_caps__settlement_cap_applies_to_cash(cm, vault, admin, trader, fund, usdc):
    vault.set_cap(usdc.address, to_wad(100), sender=admin)
    fund(trader, "USDC", "101")
    with ape.reverts("vault: cap exceeded"):
        cm.vault.deposit(trader, "USDC", "101")


def test_margin__haircut_valuation_matches_formula(cm, trader, create_account, config):
    create_account(trader, {"USDC": "1000", "WETH": "2", "WBTC": "0.1"})
    m = cm.engine.margin(trader)
    eth, btc = cm.oracle.price("ETH/USD"), cm.oracle.price("BTC/USD")
    weth_cfg, wbtc_cfg = config.assets
    weth_value, wbtc_value = 2 * eth, Decimal("0.1") * btc
    assert m.equity == Decimal(1000) + weth_value + wbtc_value
    # collateral tracking an underlying is shocked with its spot: the worst default
    # scenario is -15% (the weighted -66% tail loses 0.21 x 66% = 13.86%)
    scenario_loss = Decimal("0.15") * (weth_value + wbtc_value)
    mm_haircuts = weth_value * weth_cfg.mm_haircut + wbtc_value * wbtc_cfg.mm_haircut
    im_haircuts = weth_value * weth_cfg.im_haircut + wbtc_value * wbtc_cfg.im_haircut
    assert m.maintenance == scenario_loss + mm_haircuts
    assert m.initial == Decimal("1.3") * scenario_loss + im_haircuts


def test_margin__requirements_round_up_and_values_round_down(
    vault, router, engine, trader, create_account, admin, weth
):
    haircut = 3 * 10**17 + 1  # no WAD product with it is exact
    vault.set_haircuts(weth.address, haircut, haircut, sender=admin)
    price = router.price(key("ETH/USD"))
    create_account(trader, {"WETH": "0.000000000000000007"})  # 7 wei of WETH
    m = engine.margin(account_id(trader.address, 0))
    value = 7 * price // WAD
    assert m.equity == value
    loss = -(value * -150_000 // 10**6)  # the -15% scenario, PnL floored
    haircut_part = -(-value * haircut // WAD)  # rounded up
    assert m.maintenance == loss + haircut_part
    assert m.initial == -(-loss * 13 // 10) + haircut_part  # IM factor 1.3, rounded up


def test_withdraw__leaves_initial_margin__allowed_up_to_the_wei(cm, vault, engine, trader, create_account, admin, weth):
    # 1 WETH at 3000 with a 15% IM haircut keeps 2550 of initial health: all of it is withdrawable
    create_account(trader, {"WETH": "1"})
    cm.vault.withdraw(trader, "WETH", "1")
    assert engine.initial_health(account_id(trader.address, 0)) == 0


def test_operator__set_and_unset__logged_and_readable(cm, vault, trader, operator):
    receipt = cm.vault.set_operator(trader, operator, True, subaccount=4)
    assert vault.is_operator(trader, 4, operator)
    assert not vault.is_operator(trader, 0, operator)
    [event] = receipt.decode_logs(vault.OperatorSet)
    assert (event.owner, event.subaccount, event.operator, event.approved) == (trader, 4, operator, True)
    cm.vault.set_operator(trader, operator, False, subaccount=4)
    assert not vault.is_operator(trader, 4, operator)


def test_operator__cannot_withdraw_or_move_owner_funds(cm, vault, trader, operator, create_account, weth):
    create_account(trader, {"WETH": "1"})
    cm.vault.set_operator(trader, operator, True)
    # an operator acts on its own account id: the owner's balance is out of reach
    with ape.reverts("vault: insufficient balance"):
        vault.withdraw(weth.address, 10**18, 0, operator, sender=operator)
    with ape.reverts("vault: insufficient balance"):
        vault.move(weth.address, 10**18, 0, 1, sender=operator)
    assert vault.balance_of(trader, 0, weth.address) == WAD


def test_pause__blocks_withdraw_and_move_but_not_deposit(cm, vault, trader, guardian, admin, create_account, fund):
    create_account(trader, {"USDC": "10"})
    receipt = vault.pause(sender=guardian)
    assert vault.paused()
    assert len(receipt.decode_logs(vault.Paused)) == 1
    with ape.reverts("pausable: contract is paused"):
        cm.vault.withdraw(trader, "USDC", "1")
    with ape.reverts("pausable: contract is paused"):
        cm.vault.move(trader, "USDC", "1", 0, 1)
    fund(trader, "USDC", "5")
    cm.vault.deposit(trader, "USDC", "5")
    assert vault.cash_of(trader, 0) == to_wad(15)
    vault.unpause(sender=admin)
    cm.vault.withdraw(trader, "USDC", "15")
    assert vault.cash_of(trader, 0) == 0


def test_account_id__matches_sdk(vault, trader):
    assert vault.account_id(trader, 2**96 - 1) == account_id(trader.address, 2**96 - 1)


@pytest.mark.parametrize("subaccount", [0, 1, 2**96 - 1])
def test_subaccounts__are_isolated(cm, vault, trader, create_account, subaccount):
    create_account(trader, {"USDC": "5"}, subaccount=subaccount)
    others = {0, 1, 2**96 - 1} - {subaccount}
    assert vault.cash_of(trader, subaccount) == to_wad(5)
    assert all(vault.cash_of(trader, s) == 0 for s in others)
