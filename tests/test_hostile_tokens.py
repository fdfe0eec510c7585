"""Tokens that deliver less than asked, or re-enter, are rejected and lose nothing."""

import ape
import pytest
from ape import project

from crossmargin.units import WAD, account_id, key


@pytest.fixture
def listed(vault, admin):
    """Deploys a hostile token contract with 18 decimals and lists it against ETH/USD."""

    def _listed(container):
        token = admin.deploy(container, 18)
        vault.list_asset(token, key("ETH/USD"), b"", 10**17, 10**17, 10**9 * WAD, sender=admin)
        return token

    return _listed


def name_operator(token, vault, trader, admin):
    """The token's own account names `trader` its operator (a call from the token's hook, made
    outside any vault call), so `trader` may add the token's first collateral line there:
    a stranger may not (issue 11, finding 10). Returns the hook's (attempts, successes)."""
    token.arm(vault, vault.set_operator.encode_input(0, trader.address, True), sender=admin)
    token.transfer(trader, 0, sender=trader)
    assert vault.is_operator(token, 0, trader)
    return token.attempts(), token.successes()


def test_fee_on_transfer__deposit_rejected(vault, admin, trader, listed):
    token = listed(project.FeeOnTransferToken)
    token.mint(trader, 10 * WAD, sender=admin)
    token.approve(vault, 10 * WAD, sender=trader)
    with ape.reverts("vault: amount not received"):
        vault.deposit(token, 10 * WAD, sender=trader)
    assert token.balanceOf(trader) == 10 * WAD
    assert token.balanceOf(vault) == 0
    assert vault.assets(token).total == 0


@pytest.mark.parametrize(
    "reentry",
    ["deposit", "withdraw", "balance_of"],
    ids=["reenter-deposit", "reenter-withdraw", "read-only-reentrancy"],
)
def test_reentrant_token__callback_blocked_and_deposit_exact(vault, admin, trader, listed, reentry):
    token = listed(project.ReentrantToken)
    token.mint(trader, 10 * WAD, sender=admin)
    token.approve(vault, 10 * WAD, sender=trader)
    vault.deposit(token, 4 * WAD, sender=trader)  # disarmed: a plain deposit
    # give the token's own account what the re-entrant call needs to succeed if it got in
    token.mint(token, 5 * WAD, sender=admin)
    name_operator(token, vault, trader, admin)
    vault.deposit(token, WAD, 0, token, sender=trader)

    payload = {
        "deposit": vault.deposit.encode_input(token.address, WAD, 0, trader.address),
        "withdraw": vault.withdraw.encode_input(token.address, WAD, 0, token.address),
        "balance_of": vault.balance_of.encode_input(trader.address, 0, token.address),
    }[reentry]
    token.arm(vault, payload, sender=admin)
    attempts, successes = token.attempts(), token.successes()
    vault.deposit(token, 2 * WAD, sender=trader)

    assert token.attempts() == attempts + 1 and token.successes() == successes
    assert vault.balance_of(trader, 0, token) == 6 * WAD
    assert vault.balance_of(token, 0, token) == WAD
    assert token.balanceOf(vault) == 7 * WAD == vault.assets(token).total


def test_reentrant_token__withdraw_callback_blocked(vault, admin, trader, listed):
    token = listed(project.ReentrantToken)
    token.mint(trader, 10 * WAD, sender=admin)
    token.approve(vault, 10 * WAD, sender=trader)
    vault.deposit(token, 5 * WAD, sender=trader)
    name_operator(token, vault, trader, admin)
    vault.deposit(token, WAD, 0, token, sender=trader)  # the token's own account could withdraw
    token.arm(vault, vault.withdraw.encode_input(token.address, WAD, 0, trader.address), sender=admin)
    attempts, successes = token.attempts(), token.successes()

    vault.withdraw(token, 2 * WAD, sender=trader)

    assert token.attempts() == attempts + 1 and token.successes() == successes
    assert vault.balance_of(trader, 0, token) == 3 * WAD
    assert vault.balance_of(token, 0, token) == WAD
    assert token.balanceOf(vault) == 4 * WAD == vault.assets(token).total


def test_engine_views__readable_during_a_vault_call(vault, engine, trader, admin, listed):
    """The engine's reads of the vault are `@reentrant`, so a token hook sees a consistent state."""
    token = listed(project.ReentrantToken)
    token.mint(trader, 10 * WAD, sender=admin)
    token.approve(vault, 10 * WAD, sender=trader)
    token.arm(vault, vault.account_state.encode_input(account_id(trader.address, 0)), sender=admin)
    vault.deposit(token, WAD, sender=trader)
    assert token.successes() == 1  # a view, and it saw the pre-deposit state only
    assert vault.balance_of(trader, 0, token) == WAD


def test_reentrant_token__disarmed_lock_is_what_blocks(vault, admin, trader, listed):
    """Control: the same re-entrant withdrawal succeeds when made directly, outside a vault call."""
    token = listed(project.ReentrantToken)
    token.mint(trader, 10 * WAD, sender=admin)
    token.approve(vault, 10 * WAD, sender=trader)
    name_operator(token, vault, trader, admin)
    vault.deposit(token, WAD, 0, token, sender=trader)
    token.arm(vault, vault.withdraw.encode_input(token.address, WAD, 0, trader.address), sender=admin)
    successes = token.successes()
    token.transfer(trader, 0, sender=trader)  # the hook runs outside any vault call
    assert token.successes() == successes + 1
    assert vault.balance_of(token, 0, token) == 0
