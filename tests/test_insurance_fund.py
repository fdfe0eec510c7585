"""The insurance fund: ERC-4626 over USDC with a withdrawal cooldown, income harvested from
its vault account, payouts to liquidation bidders. On anvil, against the deployed stack.

Share math is checked against exact fractions: a conversion uses
``price = (totalAssets + 1) / (totalSupply + 10**12)`` (snekmate's virtual asset and shares
at a decimals offset of 12) and must round toward the fund.
"""

from fractions import Fraction
from math import ceil, floor

import ape
import pytest
from ape import project
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sizes import examples

from crossmargin.clients.fund import NAME, SYMBOL, FundClient, constructor_args
from crossmargin.units import WAD

ZERO = "0x0000000000000000000000000000000000000000"
NOT_OWNER = "ownable: caller is not the owner"
HOUR = 3_600
DAY = 86_400
COOLDOWN = 7 * DAY
WINDOW = 2 * DAY
VIRTUAL_SHARES = 10**12  # 10**decimals_offset
USDC = 10**6  # one USDC in token units
SHARE = 10**18  # one share in share units
SCALE = 10**12  # vault WAD per USDC unit


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def lp(accounts):
    """The insurance fund's first liquidity provider."""
    return accounts[8]


@pytest.fixture(scope="session")
def late_lp(accounts):
    """An LP who arrives after the fund has earned income."""
    return accounts[9]


@pytest.fixture(scope="module")
def insurance_fund(admin, vault, usdc):
    return project.InsuranceFund.deploy(*constructor_args(usdc.address, vault.address), sender=admin)


@pytest.fixture(scope="module")
def fund_client(insurance_fund, usdc) -> FundClient:
    return FundClient(insurance_fund, usdc)


@pytest.fixture(scope="module", autouse=True)
def _stack(insurance_fund, fund_client, fund, weth, admin, guardian, keeper, stranger, trader, lp, late_lp):
    """Creates the longer-lived fixtures before any test's snapshot (ape isolation)."""


@pytest.fixture
def liquidator(admin, insurance_fund):
    """A contract stand-in for the liquidation engine, set as the fund's liquidator."""
    mock = admin.deploy(project.MockLiquidator)
    insurance_fund.set_liquidator(mock, sender=admin)
    return mock


@pytest.fixture
def provide(fund_client, usdc, admin):
    """Mints ``amount`` USDC to ``actor`` and deposits it into the fund; returns the shares."""

    def _provide(actor, amount) -> int:
        usdc.mint(admin, actor, amount)
        before = fund_client.contract.balanceOf(actor)
        fund_client.deposit(actor, amount)
        return fund_client.contract.balanceOf(actor) - before

    return _provide


@pytest.fixture
def credit_income(cm, fund, keeper, insurance_fund):
    """Credits ``amount`` USDC to the fund's vault cash, as fee income arrives."""

    def _credit(amount) -> None:
        fund(keeper, "USDC", amount)
        cm.vault.deposit(keeper, "USDC", amount, recipient=insurance_fund.address)

    return _credit


@pytest.fixture
def donate(usdc, admin, insurance_fund):
    """Sends ``units`` of USDC straight to the fund (no shares)."""

    def _donate(actor, units: int) -> None:
        usdc.contract.mint(actor, units, sender=admin)
        usdc.contract.transfer(insurance_fund, units, sender=actor)

    return _donate


@pytest.fixture
def fresh_feeds(cm, admin):
    """Publishes a fresh USDC/USD round (after time travel the vault's margin check, which
    reads it, would refuse a withdrawal and so a harvest)."""

    def _fresh() -> None:
        cm.oracle.push(admin, "USDC/USD", "1")

    return _fresh


def price(fund) -> Fraction:
    """Token units per share unit, exactly as the fund converts."""
    return Fraction(fund.totalAssets() + 1, fund.totalSupply() + VIRTUAL_SHARES)


def ready_at(fund, owner) -> int:
    return fund.requests(owner).requested_at + fund.cooldown()


def request(fund, owner, shares=None):
    """Requests ``shares`` (default all) and returns the window ``(ready_at, expires_at)``."""
    fund.request_withdraw(shares or fund.balanceOf(owner), sender=owner)
    ready = ready_at(fund, owner)
    return ready, ready + fund.window()


# ---------------------------------------------------------------- deployment and owner


def test_constructor__metadata_and_defaults(insurance_fund, usdc, vault, admin):
    fund = insurance_fund
    assert (fund.name(), fund.symbol(), fund.decimals()) == (NAME, SYMBOL, 18)
    assert fund.asset() == usdc.address and fund.VAULT() == vault.address
    assert fund.owner() == admin and fund.liquidator() == ZERO
    assert (fund.cooldown(), fund.window()) == (COOLDOWN, WINDOW)
    assert fund.totalAssets() == fund.totalSupply() == 0
    # the first deposit mints 10**12 shares per token unit: 1 USDC is 1 share of 18 decimals
    assert fund.previewDeposit(USDC) == SHARE


def test_constructor__not_the_settlement_asset__reverts(admin, vault, weth):
    with ape.reverts("fund: not settlement asset"):
        project.InsuranceFund.deploy(*constructor_args(weth.address, vault.address), sender=admin)


def test_set_cooldown__owner_within_bounds__applies_with_event(insurance_fund, admin):
    receipt = insurance_fund.set_cooldown(HOUR, 30 * DAY, sender=admin)
    [event] = receipt.decode_logs(insurance_fund.CooldownSet)
    assert (event.cooldown, event.window) == (HOUR, 30 * DAY)
    assert (insurance_fund.cooldown(), insurance_fund.window()) == (HOUR, 30 * DAY)


@pytest.mark.parametrize(
    "cooldown, window", [(HOUR - 1, DAY), (30 * DAY + 1, DAY), (DAY, HOUR - 1), (DAY, 30 * DAY + 1), (0, 0)]
)
def test_set_cooldown__out_of_bounds__reverts(insurance_fund, admin, cooldown, window):
    with ape.reverts("fund: out of bounds"):
        insurance_fund.set_cooldown(cooldown, window, sender=admin)
    assert (insurance_fund.cooldown(), insurance_fund.window()) == (COOLDOWN, WINDOW)


def test_owner_functions__stranger__revert(insurance_fund, stranger, liquidator):
    with ape.reverts(NOT_OWNER):
        insurance_fund.set_cooldown(DAY, DAY, sender=stranger)
    with ape.reverts(NOT_OWNER):
        insurance_fund.set_liquidator(liquidator, sender=stranger)
    with ape.reverts(NOT_OWNER):
        insurance_fund.transfer_ownership(stranger, sender=stranger)


def test_set_liquidator__eoa__reverts_and_contract_emits(insurance_fund, admin, stranger, vault):
    with ape.reverts("fund: liquidator not a contract"):
        insurance_fund.set_liquidator(stranger, sender=admin)
    receipt = insurance_fund.set_liquidator(vault, sender=admin)
    assert receipt.decode_logs(insurance_fund.LiquidatorSet)[0].liquidator == vault.address
    assert insurance_fund.liquidator() == vault.address


def test_ownership__two_step_transfer(insurance_fund, admin, stranger, keeper):
    insurance_fund.transfer_ownership(stranger, sender=admin)
    assert insurance_fund.owner() == admin  # nothing changes until accepted
    with ape.reverts("ownable_2step: caller is not the new owner"):
        insurance_fund.accept_ownership(sender=keeper)
    insurance_fund.accept_ownership(sender=stranger)
    assert insurance_fund.owner() == stranger
    with ape.reverts(NOT_OWNER):
        insurance_fund.set_cooldown(DAY, DAY, sender=admin)


# ---------------------------------------------------------------- deposits and exits


def test_deposit_redeem__round_trip__exact(insurance_fund, fund_client, provide, usdc, lp, chain):
    shares = provide(lp, "1000")
    assert shares == 1000 * SHARE
    assert insurance_fund.totalAssets() == 1000 * USDC
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    receipt = fund_client.redeem(lp)
    [event] = receipt.decode_logs(insurance_fund.Withdraw)
    assert (event.owner, event.receiver, event.assets, event.shares) == (lp, lp, 1000 * USDC, 1000 * SHARE)
    assert usdc.contract.balanceOf(lp) == 1000 * USDC
    assert insurance_fund.totalAssets() == insurance_fund.totalSupply() == 0


def test_mint_withdraw__round_trip__exact(insurance_fund, fund_client, usdc, admin, lp, chain):
    usdc.mint(admin, lp, "500")
    fund_client.mint(lp, "500")
    assert insurance_fund.balanceOf(lp) == 500 * SHARE
    assert usdc.contract.balanceOf(lp) == 0  # 500 shares cost exactly 500 USDC
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    fund_client.withdraw(lp, "500")
    assert usdc.contract.balanceOf(lp) == 500 * USDC
    assert insurance_fund.balanceOf(lp) == 0


@pytest.fixture
def odd_price(provide, donate, lp, stranger, insurance_fund):
    """A fund whose share price is not a round number: 1000 USDC of deposits plus 7 units."""
    provide(lp, "1000")
    donate(stranger, 7)
    p = price(insurance_fund)
    assert p.denominator != 1
    return p


def test_deposit__rounds_shares_down(insurance_fund, odd_price, usdc, admin, late_lp):
    assets = 333 * USDC + 1
    exact = assets / odd_price
    assert exact.denominator != 1  # there is something to round
    usdc.contract.mint(late_lp, assets, sender=admin)
    usdc.contract.approve(insurance_fund, assets, sender=late_lp)
    assert insurance_fund.previewDeposit(assets) == floor(exact)
    insurance_fund.deposit(assets, late_lp, sender=late_lp)
    assert insurance_fund.balanceOf(late_lp) == floor(exact)


def test_mint__rounds_assets_up(insurance_fund, odd_price, usdc, admin, late_lp):
    shares = 333 * SHARE + 1
    exact = shares * odd_price
    assert exact.denominator != 1
    usdc.contract.mint(late_lp, 10**12, sender=admin)
    usdc.contract.approve(insurance_fund, 10**12, sender=late_lp)
    assert insurance_fund.previewMint(shares) == ceil(exact)
    insurance_fund.mint(shares, late_lp, sender=late_lp)
    assert usdc.contract.balanceOf(late_lp) == 10**12 - ceil(exact)


def test_withdraw__rounds_shares_burned_up(insurance_fund, odd_price, lp, chain):
    assets = 100 * USDC + 3
    exact = assets / odd_price
    assert exact.denominator != 1
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    insurance_fund.withdraw(assets, lp, lp, sender=lp)
    assert insurance_fund.balanceOf(lp) == 1000 * SHARE - ceil(exact)


def test_redeem__rounds_assets_down(insurance_fund, odd_price, usdc, lp, chain):
    shares = 100 * SHARE + 3
    exact = shares * odd_price
    assert exact.denominator != 1
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    assert insurance_fund.previewRedeem(shares) == floor(exact)
    insurance_fund.redeem(shares, lp, lp, sender=lp)
    assert usdc.contract.balanceOf(lp) == floor(exact)


def test_zero_amounts__revert(insurance_fund, provide, lp, chain):
    provide(lp, "10")
    for call in (
        lambda: insurance_fund.deposit(0, lp, sender=lp),
        lambda: insurance_fund.mint(0, lp, sender=lp),
        lambda: insurance_fund.request_withdraw(0, sender=lp),
    ):
        with ape.reverts("fund: zero amount"):
            call()
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    with ape.reverts("fund: zero amount"):
        insurance_fund.redeem(0, lp, lp, sender=lp)
    with ape.reverts("fund: zero amount"):
        insurance_fund.withdraw(0, lp, lp, sender=lp)
    assert insurance_fund.balanceOf(lp) == 10 * SHARE


# ---------------------------------------------------------------- cooldown


def test_redeem__without_request__reverts(insurance_fund, provide, lp):
    provide(lp, "10")
    assert insurance_fund.maxRedeem(lp) == insurance_fund.maxWithdraw(lp) == 0
    with ape.reverts("fund: no request"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    with ape.reverts("fund: no request"):
        insurance_fund.withdraw(USDC, lp, lp, sender=lp)


def test_request_withdraw__above_balance__reverts(insurance_fund, provide, lp):
    provide(lp, "10")
    with ape.reverts("fund: above balance"):
        insurance_fund.request_withdraw(10 * SHARE + 1, sender=lp)


def test_request_withdraw__emits_window(insurance_fund, provide, lp):
    provide(lp, "10")
    receipt = insurance_fund.request_withdraw(4 * SHARE, sender=lp)
    [event] = receipt.decode_logs(insurance_fund.WithdrawRequested)
    t = receipt.timestamp
    assert (event.owner, event.shares, event.ready_at, event.expires_at) == (
        lp,
        4 * SHARE,
        t + COOLDOWN,
        t + COOLDOWN + WINDOW,
    )
    assert tuple(insurance_fund.withdrawal_window(lp)) == (4 * SHARE, t + COOLDOWN, t + COOLDOWN + WINDOW)


def test_redeem__one_second_before_ready__reverts(insurance_fund, provide, lp, chain):
    provide(lp, "10")
    ready, _ = request(insurance_fund, lp)
    chain.pending_timestamp = ready - 1
    with ape.reverts("fund: cooldown"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    assert chain.blocks.head.timestamp == ready - 1  # the reverted transaction was mined
    assert insurance_fund.maxRedeem(lp) == insurance_fund.maxWithdraw(lp) == 0


def test_redeem__at_ready_and_at_window_end__succeed(insurance_fund, provide, usdc, lp, chain):
    provide(lp, "10")
    ready, expires = request(insurance_fund, lp)
    chain.pending_timestamp = ready
    insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    chain.pending_timestamp = expires
    insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    assert usdc.contract.balanceOf(lp) == 2 * USDC
    assert insurance_fund.requests(lp).shares == 8 * SHARE


def test_redeem__after_window__reverts(insurance_fund, provide, lp, chain):
    provide(lp, "10")
    _, expires = request(insurance_fund, lp)
    chain.mine(timestamp=expires)
    assert insurance_fund.maxRedeem(lp) == 10 * SHARE  # the last second of the window
    chain.pending_timestamp = expires + 1
    with ape.reverts("fund: window passed"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    with ape.reverts("fund: window passed"):
        insurance_fund.withdraw(USDC, lp, lp, sender=lp)
    assert chain.blocks.head.timestamp > expires  # the reverted transactions were mined
    assert insurance_fund.maxRedeem(lp) == insurance_fund.maxWithdraw(lp) == 0


def test_redeem__above_request__reverts_and_use_decrements(insurance_fund, provide, lp, chain):
    provide(lp, "10")
    ready, _ = request(insurance_fund, lp, 4 * SHARE)
    chain.pending_timestamp = ready
    with ape.reverts("fund: above request"):
        insurance_fund.redeem(4 * SHARE + 1, lp, lp, sender=lp)
    with ape.reverts("fund: above request"):
        insurance_fund.withdraw(4 * USDC + 1, lp, lp, sender=lp)  # burns more than 4 shares
    insurance_fund.redeem(3 * SHARE, lp, lp, sender=lp)
    assert insurance_fund.requests(lp).shares == SHARE
    assert insurance_fund.maxRedeem(lp) == SHARE
    with ape.reverts("fund: above request"):
        insurance_fund.redeem(SHARE + 1, lp, lp, sender=lp)
    insurance_fund.withdraw(USDC, lp, lp, sender=lp)  # exactly the last share
    with ape.reverts("fund: no request"):
        insurance_fund.redeem(1, lp, lp, sender=lp)
    assert insurance_fund.balanceOf(lp) == 6 * SHARE


def test_request_withdraw__replaces_and_restarts_clock(insurance_fund, provide, lp, chain):
    provide(lp, "10")
    first_ready, _ = request(insurance_fund, lp, 8 * SHARE)
    chain.pending_timestamp = first_ready - 2 * DAY
    second_ready, _ = request(insurance_fund, lp, 2 * SHARE)
    assert second_ready == first_ready + 5 * DAY
    chain.pending_timestamp = first_ready
    with ape.reverts("fund: cooldown"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    chain.pending_timestamp = second_ready
    with ape.reverts("fund: above request"):
        insurance_fund.redeem(3 * SHARE, lp, lp, sender=lp)
    insurance_fund.redeem(2 * SHARE, lp, lp, sender=lp)
    assert insurance_fund.balanceOf(lp) == 8 * SHARE


def test_max_withdraw_and_max_redeem__honour_the_window(insurance_fund, provide, donate, stranger, lp, chain):
    provide(lp, "10")
    donate(stranger, 5)  # an odd price, so maxWithdraw must round
    ready, expires = request(insurance_fund, lp, 6 * SHARE)
    assert insurance_fund.maxRedeem(lp) == insurance_fund.maxWithdraw(lp) == 0
    chain.mine(timestamp=ready)
    assert insurance_fund.maxRedeem(lp) == 6 * SHARE
    most = insurance_fund.maxWithdraw(lp)
    assert most == floor(6 * SHARE * price(insurance_fund))
    chain.pending_timestamp = ready + 1
    insurance_fund.withdraw(most, lp, lp, sender=lp)  # the maximum goes through
    assert insurance_fund.maxRedeem(lp) == insurance_fund.requests(lp).shares < SHARE
    chain.mine(timestamp=expires + 1)
    assert insurance_fund.maxRedeem(lp) == insurance_fund.maxWithdraw(lp) == 0


def test_redeem__third_party__needs_allowance_and_the_owners_window(insurance_fund, provide, usdc, lp, stranger, chain):
    provide(lp, "10")
    ready, _ = request(insurance_fund, lp, 5 * SHARE)
    insurance_fund.approve(stranger, 3 * SHARE, sender=lp)
    chain.pending_timestamp = ready - 1
    with ape.reverts("fund: cooldown"):
        insurance_fund.redeem(SHARE, stranger, lp, sender=stranger)
    chain.pending_timestamp = ready
    with ape.reverts("erc20: insufficient allowance"):
        insurance_fund.redeem(4 * SHARE, stranger, lp, sender=stranger)
    insurance_fund.redeem(3 * SHARE, stranger, lp, sender=stranger)
    assert usdc.contract.balanceOf(stranger) == 3 * USDC
    assert insurance_fund.allowance(lp, stranger) == 0
    assert insurance_fund.requests(lp).shares == 2 * SHARE
    assert insurance_fund.balanceOf(lp) == 7 * SHARE
    # the caller's own request does not count: a stranger without shares has none
    with ape.reverts("fund: no request"):
        insurance_fund.redeem(SHARE, stranger, stranger, sender=stranger)


def test_transfer__lowers_the_senders_request(insurance_fund, provide, lp, late_lp, stranger, chain):
    provide(lp, "10")
    ready, _ = request(insurance_fund, lp)
    insurance_fund.transfer(late_lp, 4 * SHARE, sender=lp)
    assert insurance_fund.requests(lp).shares == 6 * SHARE
    insurance_fund.approve(stranger, 5 * SHARE, sender=lp)
    insurance_fund.transferFrom(lp, late_lp, 5 * SHARE, sender=stranger)
    assert insurance_fund.requests(lp).shares == SHARE
    assert insurance_fund.balanceOf(late_lp) == 9 * SHARE
    chain.pending_timestamp = ready
    # the shares moved do not carry lp's window: the receiver has no request
    with ape.reverts("fund: no request"):
        insurance_fund.redeem(SHARE, late_lp, late_lp, sender=late_lp)
    with ape.reverts("fund: above request"):
        insurance_fund.redeem(2 * SHARE, lp, lp, sender=lp)


def test_set_cooldown__applies_to_open_requests(insurance_fund, provide, admin, lp, chain):
    provide(lp, "10")
    request(insurance_fund, lp)
    requested_at = insurance_fund.requests(lp).requested_at
    insurance_fund.set_cooldown(10 * DAY, HOUR, sender=admin)  # lengthened ahead of a loss
    chain.pending_timestamp = requested_at + COOLDOWN
    with ape.reverts("fund: cooldown"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)
    chain.pending_timestamp = requested_at + 10 * DAY + HOUR + 1
    with ape.reverts("fund: window passed"):
        insurance_fund.redeem(SHARE, lp, lp, sender=lp)


# ---------------------------------------------------------------- income


def test_harvest__moves_vault_cash_into_the_fund(insurance_fund, fund_client, credit_income, vault, stranger):
    credit_income("250")
    assert vault.cash_of(insurance_fund, 0) == 250 * WAD
    assert insurance_fund.pending_income() == 250 * USDC
    assert insurance_fund.totalAssets() == 0
    assert insurance_fund.harvest.call(sender=stranger) == 250 * USDC
    receipt = fund_client.harvest(stranger)
    assert receipt.decode_logs(insurance_fund.Harvested)[0].amount == 250 * USDC
    assert vault.cash_of(insurance_fund, 0) == 0
    assert insurance_fund.totalAssets() == 250 * USDC
    assert insurance_fund.pending_income() == 0
    assert insurance_fund.harvest.call(sender=stranger) == 0


def test_harvest__vault_paused__returns_zero_and_does_not_revert(
    insurance_fund, credit_income, vault, admin, guardian, stranger
):
    credit_income("100")
    vault.pause(sender=guardian)
    assert insurance_fund.harvest.call(sender=stranger) == 0
    receipt = insurance_fund.harvest(sender=stranger)
    assert receipt.decode_logs(insurance_fund.Harvested) == []
    assert vault.cash_of(insurance_fund, 0) == 100 * WAD
    assert insurance_fund.totalAssets() == 0
    vault.unpause(sender=admin)
    insurance_fund.harvest(sender=stranger)
    assert insurance_fund.totalAssets() == 100 * USDC


def test_harvest__margin_check_fails__returns_zero(insurance_fund, credit_income, fresh_feeds, stranger, chain):
    credit_income("100")
    chain.mine(timestamp=chain.pending_timestamp + 2 * DAY)  # the USDC/USD feed is now stale
    insurance_fund.harvest(sender=stranger)
    assert insurance_fund.totalAssets() == 0 and insurance_fund.pending_income() == 100 * USDC
    fresh_feeds()
    insurance_fund.harvest(sender=stranger)
    assert insurance_fund.totalAssets() == 100 * USDC


def test_deposit__income_in_vault__late_lp_does_not_capture_it(
    insurance_fund, fund_client, provide, credit_income, lp, late_lp
):
    provide(lp, "1000")
    credit_income("100")  # fees landed in the vault, not yet harvested
    shares = provide(late_lp, "1000")
    assert insurance_fund.totalAssets() == 2100 * USDC  # the deposit harvested first
    assert shares == floor(1000 * USDC * Fraction(1000 * SHARE + VIRTUAL_SHARES, 1100 * USDC + 1))
    assert fund_client.value_of(late_lp) <= 1000
    # lp keeps the income, to a token unit
    assert insurance_fund.convertToAssets(insurance_fund.balanceOf(lp)) >= 1100 * USDC - 1


def test_deposit__income_while_vault_paused__still_priced_in(
    insurance_fund, provide, credit_income, vault, guardian, admin, lp, late_lp, stranger
):
    provide(lp, "1000")
    credit_income("100")
    vault.pause(sender=guardian)  # the harvest inside the deposit fails
    quoted = insurance_fund.previewDeposit(1000 * USDC)
    shares = provide(late_lp, "1000")
    assert insurance_fund.totalAssets() == 2000 * USDC  # nothing harvested
    assert shares == quoted == floor(1000 * USDC * Fraction(1000 * SHARE + VIRTUAL_SHARES, 1100 * USDC + 1))
    vault.unpause(sender=admin)
    insurance_fund.harvest(sender=stranger)
    assert insurance_fund.convertToAssets(shares) <= 1000 * USDC
    assert insurance_fund.convertToAssets(insurance_fund.balanceOf(lp)) >= 1100 * USDC - 1


def test_redeem__harvests_first(insurance_fund, provide, credit_income, fresh_feeds, usdc, lp, chain):
    provide(lp, "1000")
    ready, _ = request(insurance_fund, lp)
    credit_income("50")
    chain.mine(timestamp=ready - 10)
    fresh_feeds()
    chain.pending_timestamp = ready
    insurance_fund.redeem(insurance_fund.balanceOf(lp), lp, lp, sender=lp)
    assert usdc.contract.balanceOf(lp) >= 1050 * USDC - 1  # the income went out with the LP
    assert insurance_fund.pending_income() == 0


# ---------------------------------------------------------------- payouts


def test_cover__pays_requested_into_recipients_vault_cash(insurance_fund, liquidator, provide, vault, usdc, lp, trader):
    provide(lp, "1000")
    cash = vault.cash_of(trader, 3)
    receipt = liquidator.cover(insurance_fund, 300 * USDC + 1, trader, 3, sender=trader)
    assert liquidator.last_paid() == 300 * USDC + 1
    assert vault.cash_of(trader, 3) - cash == (300 * USDC + 1) * SCALE  # 6 decimals -> WAD, exactly
    assert insurance_fund.totalAssets() == 700 * USDC - 1
    [event] = receipt.decode_logs(insurance_fund.Covered)
    assert (event.recipient, event.subaccount, event.requested, event.paid) == (
        trader,
        3,
        300 * USDC + 1,
        300 * USDC + 1,
    )
    assert vault.cash_of(trader, 0) == 0
    assert usdc.contract.allowance(insurance_fund, vault) == 0  # no allowance left behind


def test_cover__more_than_the_fund_has__pays_its_balance(insurance_fund, liquidator, provide, vault, lp, trader):
    provide(lp, "1000")
    liquidator.cover(insurance_fund, 5000 * USDC, trader, 0, sender=trader)
    assert liquidator.last_paid() == 1000 * USDC
    assert vault.cash_of(trader, 0) == 1000 * WAD
    assert insurance_fund.totalAssets() == 0


def test_cover__empty_fund__pays_zero_without_reverting(insurance_fund, liquidator, vault, trader):
    receipt = liquidator.cover(insurance_fund, 100 * USDC, trader, 0, sender=trader)
    assert liquidator.last_paid() == 0
    [event] = receipt.decode_logs(insurance_fund.Covered)
    assert (event.requested, event.paid) == (100 * USDC, 0)
    assert receipt.decode_logs(vault.Deposit) == []
    assert vault.cash_of(trader, 0) == 0


def test_cover__zero_amount__returns_zero_without_calls(insurance_fund, liquidator, credit_income, vault, trader):
    credit_income("10")
    receipt = liquidator.cover(insurance_fund, 0, trader, 0, sender=trader)
    assert liquidator.last_paid() == 0
    assert receipt.decode_logs(insurance_fund.Covered) == []
    assert receipt.decode_logs(insurance_fund.Harvested) == []  # not even the harvest
    assert vault.cash_of(insurance_fund, 0) == 10 * WAD


def test_cover__harvests_vault_cash_first(insurance_fund, liquidator, credit_income, vault, trader):
    credit_income("200")
    liquidator.cover(insurance_fund, 150 * USDC, trader, 1, sender=trader)
    assert liquidator.last_paid() == 150 * USDC
    assert vault.cash_of(trader, 1) == 150 * WAD
    assert vault.cash_of(insurance_fund, 0) == 0
    assert insurance_fund.totalAssets() == 50 * USDC


def test_cover__not_the_liquidator__reverts(insurance_fund, liquidator, provide, admin, stranger, lp, trader):
    provide(lp, "100")
    for caller in (stranger, admin, lp):
        with ape.reverts("fund: not liquidator"):
            insurance_fund.cover(USDC, trader, 0, sender=caller)
    assert insurance_fund.totalAssets() == 100 * USDC


def test_cover__lowers_the_share_price_by_the_payout(insurance_fund, liquidator, provide, lp, trader):
    provide(lp, "1000")
    liquidator.cover(insurance_fund, 250 * USDC, trader, 0, sender=trader)
    assert insurance_fund.convertToAssets(insurance_fund.balanceOf(lp)) == 750 * USDC


# ---------------------------------------------------------------- inflation attack


def test_inflation_attack__victim_loses_at_most_one_unit(
    insurance_fund, provide, donate, usdc, admin, stranger, lp, chain
):
    attacker, victim = stranger, lp
    usdc.contract.mint(attacker, 1, sender=admin)
    usdc.contract.approve(insurance_fund, 1, sender=attacker)
    insurance_fund.deposit(1, attacker, sender=attacker)  # the only shares: 10**12
    donate(attacker, 10**12)  # 1,000,000 USDC straight to the fund
    deposit = 10_000 * USDC
    shares = provide(victim, "10000")
    assert shares > 0
    value = insurance_fund.convertToAssets(shares)
    assert deposit - 1 <= value <= deposit  # the victim loses at most one token unit
    # and gets it out: after the cooldown the redemption pays that value
    ready, _ = request(insurance_fund, victim)
    chain.pending_timestamp = ready
    insurance_fund.redeem(shares, victim, victim, sender=victim)
    assert usdc.contract.balanceOf(victim) >= deposit - 1
    # the attacker's donation is mostly lost to the virtual shares
    assert insurance_fund.convertToAssets(insurance_fund.balanceOf(attacker)) < (10**12 + 1) * 6 // 10


def test_deposit__would_mint_zero_shares__reverts(insurance_fund, donate, usdc, admin, stranger, lp):
    usdc.contract.mint(stranger, 1, sender=admin)
    usdc.contract.approve(insurance_fund, 1, sender=stranger)
    insurance_fund.deposit(1, stranger, sender=stranger)
    donate(stranger, 3 * 10**12)
    usdc.contract.mint(lp, 1, sender=admin)
    usdc.contract.approve(insurance_fund, 1, sender=lp)
    assert insurance_fund.previewDeposit(1) == 0
    with ape.reverts("fund: zero shares"):
        insurance_fund.deposit(1, lp, sender=lp)
    assert usdc.contract.balanceOf(lp) == 1


# ---------------------------------------------------------------- SDK


def test_fund_client__views(fund_client, provide, credit_income, lp, chain):
    provide(lp, "1000")
    credit_income("20")
    assert fund_client.total_assets() == 1000
    assert fund_client.pending_income() == 20
    assert fund_client.shares_of(lp) == 1000
    assert fund_client.share_price() == 1  # (1e9 + 1) * 1e12 / (1e21 + 1e12), exactly
    assert fund_client.cooldown_status(lp).state == "none"
    fund_client.request_withdraw(lp, "400")
    status = fund_client.cooldown_status(lp)
    assert (status.state, status.shares) == ("cooling", 400)
    assert status.seconds_to_ready == status.ready_at - status.at > 0
    assert fund_client.cooldown_status(lp, at=status.ready_at).state == "open"
    assert fund_client.cooldown_status(lp, at=status.expires_at).state == "open"
    assert fund_client.cooldown_status(lp, at=status.expires_at + 1).state == "expired"
    chain.pending_timestamp = status.ready_at
    fund_client.redeem(lp)  # everything requested
    assert fund_client.shares_of(lp) == 600
    assert fund_client.cooldown_status(lp).state == "none"


# ---------------------------------------------------------------- properties


class FundPriceMachine(RuleBasedStateMachine):
    """Random deposits, mints, redemptions, income, harvests and donations: the share price
    never falls (it may only through `cover`), `totalAssets` is the token balance, and every
    conversion is the exact one rounded toward the fund."""

    fund = None
    usdc = None
    cm = None
    lps = ()
    admin = None
    keeper = None
    liquidator = None
    chain = None

    @initialize()
    def start(self):
        self.snapshot = self.chain.snapshot()
        # short periods, so a redemption needs one hour of travel, and a fresh settlement feed
        self.fund.set_cooldown(3_600, 3_600, sender=self.admin)
        self.cm.oracle.push(self.admin, "USDC/USD", "1")
        self.last_price = price(self.fund)

    def teardown(self):
        self.chain.restore(self.snapshot)

    def _mint_usdc(self, who, units):
        self.usdc.contract.mint(who, units, sender=self.admin)
        self.usdc.contract.approve(self.fund, units, sender=who)

    def _gross(self):
        """Supply and token balance plus unharvested cash: what a deposit is priced on."""
        return self.fund.totalSupply(), self.fund.totalAssets() + self.fund.pending_income()

    @rule(who=st.integers(0, 2), units=st.integers(1, 10**12))
    def deposit(self, who, units):
        lp = self.lps[who]
        self._mint_usdc(lp, units)
        supply, gross = self._gross()
        before = self.fund.balanceOf(lp)
        self.fund.deposit(units, lp, sender=lp)
        assert self.fund.balanceOf(lp) - before == units * (supply + VIRTUAL_SHARES) // (gross + 1)

    @rule(who=st.integers(0, 2), shares=st.integers(1, 10**30))
    def mint(self, who, shares):
        lp = self.lps[who]
        supply, gross = self._gross()
        cost = -(-shares * (gross + 1) // (supply + VIRTUAL_SHARES))
        self._mint_usdc(lp, cost)
        before = self.usdc.contract.balanceOf(lp)
        self.fund.mint(shares, lp, sender=lp)
        assert before - self.usdc.contract.balanceOf(lp) == cost  # exactly the rounded-up cost

    @rule(who=st.integers(0, 2), part=st.floats(0.0, 1.0))
    def redeem(self, who, part):
        lp = self.lps[who]
        balance = self.fund.balanceOf(lp)
        shares = int(balance * part)
        if shares == 0:
            return
        self.fund.request_withdraw(shares, sender=lp)
        self.chain.pending_timestamp = ready_at(self.fund, lp)
        paid_before = self.usdc.contract.balanceOf(lp)
        self.fund.redeem(shares, lp, lp, sender=lp)
        got = self.usdc.contract.balanceOf(lp) - paid_before
        # exact, from the state the redemption saw after its harvest
        assets_seen = self.fund.totalAssets() + got
        supply_seen = self.fund.totalSupply() + shares
        assert got == shares * (assets_seen + 1) // (supply_seen + VIRTUAL_SHARES)

    @rule(units=st.integers(1, 10**11))
    def income(self, units):
        self.usdc.contract.mint(self.keeper, units, sender=self.admin)
        self.usdc.contract.approve(self.cm.vault.address, units, sender=self.keeper)
        self.cm.vault.contract.deposit(self.usdc.address, units, 0, self.fund, sender=self.keeper)

    @rule()
    def harvest(self):
        self.fund.harvest(sender=self.keeper)

    @rule(units=st.integers(1, 10**9))
    def donate(self, units):
        self.usdc.contract.mint(self.keeper, units, sender=self.admin)
        self.usdc.contract.transfer(self.fund, units, sender=self.keeper)

    @rule(units=st.integers(0, 10**12))
    def cover(self, units):
        self.fund.harvest(sender=self.keeper)
        available = self.fund.totalAssets()
        self.liquidator.cover(self.fund, units, self.keeper, 0, sender=self.keeper)
        assert self.liquidator.last_paid() == min(units, available)
        self.last_price = price(self.fund)  # the one step that may lower it

    @invariant()
    def total_assets_is_the_token_balance(self):
        assert self.fund.totalAssets() == self.usdc.contract.balanceOf(self.fund)

    @invariant()
    def price_never_falls(self):
        now = price(self.fund)
        assert now >= self.last_price
        self.last_price = now

    @invariant()
    def shares_are_all_held_by_lps(self):
        assert sum(self.fund.balanceOf(lp) for lp in self.lps) == self.fund.totalSupply()


@pytest.mark.slow
def test_share_price__random_sequences__never_falls_without_cover(
    insurance_fund, liquidator, cm, usdc, admin, keeper, lp, late_lp, trader, chain
):
    FundPriceMachine.fund = insurance_fund
    FundPriceMachine.usdc = usdc
    FundPriceMachine.cm = cm
    FundPriceMachine.lps = (lp, late_lp, trader)
    FundPriceMachine.admin = admin
    FundPriceMachine.keeper = keeper
    FundPriceMachine.liquidator = liquidator
    FundPriceMachine.chain = chain
    machine = FundPriceMachine.TestCase
    machine.settings = settings(
        max_examples=examples(8), stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine().runTest()
