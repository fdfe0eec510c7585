"""Admin custody (issue 11, finding 7): every owner call behind snekmate's timelock, and a
guardian pause that is fast but bounded in time.

On ``c1dcd68`` each owner could rewire every contract at once (``set_liquidator``,
``set_margin_engine``, ``set_feed``, ...) and take every account's funds, and the guardian
could pause withdrawals with no end."""

import ape
import pytest

from crossmargin.ops.config import TimelockConfig, load_config
from crossmargin.ops.deploy import OWNED, deploy
from crossmargin.ops.manifest import Manifest

NOT_OWNER = "ownable: caller is not the owner"
ZERO = "0x0000000000000000000000000000000000000000"
Z32 = b"\0" * 32
DELAY = 3_600


@pytest.fixture
def timelock(project, admin, keeper, stranger):
    """A timelock with a one-hour delay: `admin` proposes (and cancels), `keeper` executes.
    Deployed by `stranger` (as is the hostile contract below), so that the addresses of the
    admin's next deployments stay those of every other test: ape remembers a contract's type
    by address across snapshots, and a later test's deployment at the same address was
    decoded as this one's."""
    return stranger.deploy(project.Timelock, DELAY, [admin], [keeper], ZERO)


def later(chain, seconds: int) -> None:
    chain.mine(timestamp=chain.pending_timestamp + seconds)


def test_timelock__owner_calls_run_only_after_the_delay_and_can_be_cancelled(
    project, vault, timelock, admin, keeper, stranger, chain
):
    """Fails on c1dcd68 in spirit: there the owner's `set_liquidator` took effect at once.
    With the timelock as owner, a hostile rewiring is public for the whole delay and is
    cancelled before it can run."""
    vault.transfer_ownership(timelock, sender=admin)
    accept = vault.accept_ownership.encode_input()
    timelock.schedule(vault, 0, accept, Z32, Z32, DELAY, sender=admin)
    with ape.reverts("timelock_controller: operation is not ready"):
        timelock.execute(vault, 0, accept, Z32, Z32, sender=keeper)
    later(chain, DELAY)
    timelock.execute(vault, 0, accept, Z32, Z32, sender=keeper)
    assert vault.owner() == timelock.address
    # the deployer no longer acts alone
    hostile = stranger.deploy(project.MockWallet, stranger)
    with ape.reverts(NOT_OWNER):
        vault.set_liquidator(hostile, sender=admin)
    # a shorter delay than the minimum is refused, and only proposers schedule
    payload = vault.set_liquidator.encode_input(hostile)
    with ape.reverts("timelock_controller: insufficient delay"):
        timelock.schedule(vault, 0, payload, Z32, Z32, DELAY - 1, sender=admin)
    with ape.reverts("access_control: account is missing role"):
        timelock.schedule(vault, 0, payload, Z32, Z32, DELAY, sender=stranger)
    # scheduled, seen, cancelled: it never runs
    liquidator = vault.liquidator()
    timelock.schedule(vault, 0, payload, Z32, Z32, DELAY, sender=admin)
    op = timelock.hash_operation(vault, 0, payload, Z32, Z32)
    assert timelock.is_operation_pending(op)
    timelock.cancel(op, sender=admin)
    later(chain, DELAY)
    with ape.reverts("timelock_controller: operation is not ready"):
        timelock.execute(vault, 0, payload, Z32, Z32, sender=keeper)
    assert vault.liquidator() == liquidator
    # a change that is left alone runs after the delay
    cap = vault.assets(vault.SETTLEMENT_ASSET()).cap
    payload = vault.set_cap.encode_input(vault.SETTLEMENT_ASSET(), cap + 1)
    timelock.schedule(vault, 0, payload, Z32, Z32, DELAY, sender=admin)
    later(chain, DELAY - 5)
    with ape.reverts("timelock_controller: operation is not ready"):
        timelock.execute(vault, 0, payload, Z32, Z32, sender=keeper)
    later(chain, 5)
    timelock.execute(vault, 0, payload, Z32, Z32, sender=keeper)
    assert vault.assets(vault.SETTLEMENT_ASSET()).cap == cap + 1


@pytest.fixture
def governor(accounts):
    """Deploys the governed stack: an account no other test deploys from, so no later test's
    deployment lands at an address ape remembers as one of this stack's contracts."""
    return accounts[8]


def test_deploy__with_a_timelock__owns_every_contract_and_schedules_changes(governor, chain):
    """Deploy with `timelock` in the config hands every contract to the timelock in the
    same run (delay 0 during the hand-over, then the configured one); a later run
    schedules a differing setting instead of sending it, and executes it after the delay."""
    base = load_config("local")
    config = base.model_copy(update={"timelock": TimelockConfig(delay=DELAY)})
    run = deploy(config, governor, Manifest(network="governed", chain_id=chain.chain_id))
    manifest = run.manifest
    timelock = ape.project.Timelock.at(manifest.contracts["Timelock"])
    assert timelock.get_minimum_delay() == DELAY
    for name in OWNED:
        assert getattr(ape.project, name).at(manifest.contracts[name]).owner() == timelock.address, name
    # the risk model configures the engine for its owner: the timelock alone
    risk_model = ape.project.RiskModel.at(manifest.contracts["RiskModel"])
    assert "RiskModel" in OWNED and risk_model.owner() == timelock.address
    with ape.reverts(NOT_OWNER):
        risk_model.set_params(13 * 10**17, 3_600, 0, sender=governor)
    assert deploy(config, governor, manifest).sent == 0  # converged: nothing to send
    vault = ape.project.Vault.at(manifest.contracts["Vault"])
    usdc = manifest.tokens["USDC"]
    changed = config.model_copy(update={"settlement": config.settlement.model_copy(update={"cap": 5})})
    logs: list[str] = []
    assert deploy(changed, governor, manifest, log=logs.append).sent == 1  # scheduled only
    assert any(line.startswith("scheduled cap USDC") for line in logs)
    assert vault.assets(usdc).cap != 5 * 10**18
    assert deploy(changed, governor, manifest).sent == 0  # still waiting: nothing sent
    later(chain, DELAY)
    assert deploy(changed, governor, manifest).sent == 1  # executed
    assert vault.assets(usdc).cap == 5 * 10**18


# ------------------------------------------------------------------ guardian pause


def test_pause__guardian_pause_ends_after_its_longest__then_anyone_unpauses(vault, guardian, stranger, chain):
    """Fails on c1dcd68 (only the owner could unpause): the guardian's pause was unbounded."""
    longest, _, _ = vault.guardian_pause()
    assert longest == 3 * 86_400
    receipt = vault.pause(sender=guardian)
    until = receipt.timestamp + longest
    assert [e.until for e in receipt.decode_logs(vault.GuardianPaused)] == [until]
    assert vault.guardian_pause() == (longest, until, 0)
    with ape.reverts("vault: pause not expired"):
        vault.unpause(sender=stranger)
    chain.mine(timestamp=until)
    receipt = vault.unpause(sender=stranger)
    assert not vault.paused()
    # the guardian may pause again only as long after
    assert vault.guardian_pause() == (longest, 0, receipt.timestamp + longest)
    with ape.reverts("vault: guardian pause cooling down"):
        vault.pause(sender=guardian)
    chain.mine(timestamp=receipt.timestamp + longest)
    vault.pause(sender=guardian)
    assert vault.paused()


def test_pause__owner_pause_has_no_end_and_owner_unpauses_any_time(vault, guardian, admin, stranger, chain):
    vault.pause(sender=admin)
    later(chain, 30 * 86_400)
    with ape.reverts("vault: pause not expired"):
        vault.unpause(sender=stranger)
    with ape.reverts("vault: pause not expired"):
        vault.unpause(sender=guardian)
    vault.unpause(sender=admin)
    # the owner ends a guardian pause early; the guardian is not cooled down by that
    vault.pause(sender=guardian)
    vault.unpause(sender=admin)
    vault.pause(sender=guardian)
    assert vault.paused()


def test_guardian_pause__owner_and_bounds(vault, admin, stranger):
    with ape.reverts(NOT_OWNER):
        vault.set_guardian_pause(3_600, sender=stranger)
    with ape.reverts("vault: guardian pause out of bounds"):
        vault.set_guardian_pause(3_599, sender=admin)
    with ape.reverts("vault: guardian pause out of bounds"):
        vault.set_guardian_pause(14 * 86_400 + 1, sender=admin)
    receipt = vault.set_guardian_pause(14 * 86_400, sender=admin)
    assert vault.guardian_pause()[0] == 14 * 86_400
    assert [e.max_pause for e in receipt.decode_logs(vault.GuardianPauseSet)] == [14 * 86_400]
