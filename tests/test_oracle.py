"""Oracle router: normalization, every bad read, sequencer gating, expiry settlement."""

import ape
import pytest

from crossmargin.units import WAD, key

K = key("TEST/USD")
NOT_OWNER = "ownable: caller is not the owner"
HEARTBEAT = 3600
GRACE = 300  # heartbeat_grace of the local config


@pytest.fixture
def test_feed(router, admin, deploy_feed):
    """A fresh 8-decimal feed at 3000 under TEST/USD, bounds [1, 1e6]."""
    feed = deploy_feed(8, 3000 * 10**8)
    router.set_feed(K, feed, HEARTBEAT, WAD, 10**6 * WAD, sender=admin)
    return feed


@pytest.mark.parametrize("decimals", [0, 6, 8, 18])
def test_price__any_decimals__normalized_to_wad(router, admin, deploy_feed, decimals):
    feed = deploy_feed(decimals, 1234 * 10**decimals)
    router.set_feed(K, feed, HEARTBEAT, WAD, 10**6 * WAD, sender=admin)
    assert router.price(K) == 1234 * WAD
    price, round_id = router.price_round(K)
    assert (price, round_id) == (1234 * WAD, 1)


def test_price_rounds__two_feeds__each_checked_first_failure_reverts(router, admin, test_feed, deploy_feed):
    vol_key = key("TEST/IV")
    vol = deploy_feed(8, 6 * 10**7)
    router.set_feed(vol_key, vol, HEARTBEAT, WAD // 100, 5 * WAD, sender=admin)
    test_feed.push(3100 * 10**8, sender=admin)
    assert router.price_rounds(K, vol_key) == (*router.price_round(K), *router.price_round(vol_key))
    assert router.price_rounds(K, vol_key) == (3100 * WAD, 2, 6 * 10**17, 1)
    vol.push(0, sender=admin)
    with ape.reverts("oracle: non-positive price"):
        router.price_rounds(K, vol_key)
    test_feed.push(10**6 * 10**8 + 1, sender=admin)  # both bad: the first key's reason
    with ape.reverts("oracle: price out of bounds"):
        router.price_rounds(K, vol_key)


def test_set_feed__bounds_stored_exactly_or_refused(router, admin, deploy_feed):
    """A feed is one storage word: each bound is kept as mantissa * 10**exponent with a
    mantissa below 2**31 (nine significant digits), so every bound read back is the one set,
    and one that cannot be kept exactly is refused."""
    feed = deploy_feed()
    for low, high in ((95 * 10**16, 105 * 10**16), (1, 2_147_483_647 * 10**31), (123_456_789, 10**40)):
        router.set_feed(K, feed, HEARTBEAT, low, high, sender=admin)
        stored = router.feeds(K)
        assert (stored.min_answer, stored.max_answer, stored.heartbeat) == (low, high, HEARTBEAT)
    for low, high in ((1, 2**31), (2_147_483_648 * 10**12, 10**40), (WAD, 10**32 * 2**31)):
        with ape.reverts("oracle: bad bounds"):
            router.set_feed(K, feed, HEARTBEAT, low, high, sender=admin)


def test_set_feed__logs_and_stores(router, admin, deploy_feed):
    feed = deploy_feed()
    receipt = router.set_feed(K, feed, HEARTBEAT, WAD, 2 * WAD, sender=admin)
    [event] = receipt.decode_logs(router.FeedSet)
    assert (event.aggregator, event.heartbeat, event.min_answer, event.max_answer) == (feed, HEARTBEAT, WAD, 2 * WAD)
    stored = router.feeds(K)
    assert (stored.aggregator, stored.scale) == (feed, 10**10)
    assert (stored.heartbeat, stored.min_answer, stored.max_answer) == (HEARTBEAT, WAD, 2 * WAD)


def test_price__unknown_feed__reverts(router):
    with ape.reverts("oracle: unknown feed"):
        router.price(key("NOPE/USD"))


def test_price__zero_answer__reverts(router, test_feed, admin):
    test_feed.push(0, sender=admin)
    with ape.reverts("oracle: non-positive price"):
        router.price(K)


def test_price__negative_answer__reverts(router, test_feed, admin):
    test_feed.push(-1, sender=admin)
    with ape.reverts("oracle: non-positive price"):
        router.price(K)


def test_price__below_and_above_bounds__revert(router, test_feed, admin):
    test_feed.push(10**8 - 1, sender=admin)  # 0.99999999 < min 1
    with ape.reverts("oracle: price out of bounds"):
        router.price(K)
    test_feed.push(10**6 * 10**8 + 1, sender=admin)
    with ape.reverts("oracle: price out of bounds"):
        router.price(K)
    test_feed.push(10**6 * 10**8, sender=admin)  # bounds are inclusive
    assert router.price(K) == 10**6 * WAD


def test_price__stale__reverts_after_heartbeat_plus_grace(router, test_feed, admin, chain):
    """Read at pinned blocks: a call at `latest` would see the wall clock, which moves."""
    t = chain.pending_timestamp + 50
    test_feed.push_at(3000 * 10**8, t - HEARTBEAT - GRACE, sender=admin)
    chain.mine(timestamp=t)
    # exactly at the limit: still fresh
    assert router.price(K, block_id=chain.blocks.head.number) == 3000 * WAD
    chain.mine(timestamp=t + 1)
    with ape.reverts("oracle: stale price"):
        router.price(K, block_id=chain.blocks.head.number)


def test_price__future_timestamp__reverts(router, test_feed, admin, chain):
    test_feed.push_at(3000 * 10**8, chain.pending_timestamp + 3600, sender=admin)
    with ape.reverts("oracle: future timestamp"):
        router.price(K)


def test_price__broken_feed__reverts_with_reason(router, test_feed, admin):
    test_feed.set_broken(True, sender=admin)
    with ape.reverts("oracle: feed unavailable"):
        router.price(K)


def test_price__contract_that_is_not_a_feed__reverts(router, admin, usdc):
    """A contract with `decimals` but no `latestRoundData` (a token) reads as unavailable."""
    router.set_feed(K, usdc.address, HEARTBEAT, WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: feed unavailable"):
        router.price(K)


def test_set_feed__bad_parameters__revert(router, admin, stranger, deploy_feed):
    feed = deploy_feed()
    with ape.reverts(NOT_OWNER):
        router.set_feed(K, feed, HEARTBEAT, WAD, 2 * WAD, sender=stranger)
    with ape.reverts("oracle: zero key"):
        router.set_feed(b"", feed, HEARTBEAT, WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: aggregator not a contract"):
        router.set_feed(K, stranger, HEARTBEAT, WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: heartbeat out of bounds"):
        router.set_feed(K, feed, 59, WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: heartbeat out of bounds"):
        router.set_feed(K, feed, 2 * 86400 + 1, WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: bad bounds"):
        router.set_feed(K, feed, HEARTBEAT, 0, 2 * WAD, sender=admin)
    with ape.reverts("oracle: bad bounds"):
        router.set_feed(K, feed, HEARTBEAT, 2 * WAD, 2 * WAD, sender=admin)
    with ape.reverts("oracle: decimals above 18"):
        router.set_feed(K, deploy_feed(19, 1), HEARTBEAT, WAD, 2 * WAD, sender=admin)


def test_remove_feed__then_reads_revert(router, admin, test_feed, stranger):
    with ape.reverts(NOT_OWNER):
        router.remove_feed(K, sender=stranger)
    router.remove_feed(K, sender=admin)
    with ape.reverts("oracle: unknown feed"):
        router.price(K)
    with ape.reverts("oracle: unknown feed"):
        router.remove_feed(K, sender=admin)


def test_grace_setters__bounds__revert(router, admin, stranger, deploy_feed):
    with ape.reverts("oracle: grace out of bounds"):
        router.set_heartbeat_grace(3601, sender=admin)
    with ape.reverts(NOT_OWNER):
        router.set_heartbeat_grace(10, sender=stranger)
    with ape.reverts("oracle: grace out of bounds"):
        router.set_sequencer(deploy_feed(0, 0), 86401, sender=admin)
    with ape.reverts("oracle: sequencer not a contract"):
        router.set_sequencer(stranger, 10, sender=admin)
    with ape.reverts(NOT_OWNER):
        router.set_sequencer(deploy_feed(0, 0), 10, sender=stranger)
    receipt = router.set_heartbeat_grace(3600, sender=admin)
    assert receipt.decode_logs(router.HeartbeatGraceSet)[0].grace == 3600


def test_sequencer__down_grace_up(router, admin, deploy_feed, chain):
    assert router.check_sequencer()  # no feed: always up
    sequencer = deploy_feed(0, 1, "sequencer")  # down
    router.set_sequencer(sequencer, 600, sender=admin)
    with ape.reverts("oracle: sequencer down"):
        router.check_sequencer()
    sequencer.push(0, sender=admin)
    with ape.reverts("oracle: sequencer grace period"):
        router.check_sequencer()
    chain.mine(timestamp=chain.pending_timestamp + 601)
    assert router.check_sequencer()
    sequencer.set_broken(True, sender=admin)
    with ape.reverts("oracle: sequencer feed unavailable"):
        router.check_sequencer()


def test_check_new_risk__sequencer_then_stable_feed(router, admin, deploy_feed, chain, test_feed):
    """The engine's one call before a state-changing check: the sequencer, then the stable
    asset's feed under its key (none with an empty key)."""
    empty = b"\x00" * 32
    assert router.check_new_risk(empty) and router.check_new_risk(K)
    test_feed.push(10**8 - 1, sender=admin)  # the stable feed below its bounds: a depeg
    with ape.reverts("oracle: price out of bounds"):
        router.check_new_risk(K)
    assert router.check_new_risk(empty)
    sequencer = deploy_feed(0, 1, "sequencer")  # down
    router.set_sequencer(sequencer, 600, sender=admin)
    with ape.reverts("oracle: sequencer down"):
        router.check_new_risk(empty)


def test_sequencer_down__maintenance_health_still_reads(cm, router, engine, admin, trader, create_account, deploy_feed):
    """Liquidation reads are never gated on the sequencer."""
    create_account(trader, {"WETH": "1"})
    router.set_sequencer(deploy_feed(0, 1, "sequencer"), 600, sender=admin)
    account = cm.vault.account_id(trader, 0)
    with ape.reverts("oracle: sequencer down"):
        engine.initial_health(account)
    # 3000 less the -15% scenario loss (450) and the 3% MM haircut (90)
    assert engine.maintenance_health(account) == 2460 * WAD


# ------------------------------------------------------------------ settlement at expiry


@pytest.fixture
def rounds(router, test_feed, admin, chain):
    """Rounds 2, 3, 4 published at t0, t0+100, t0+200 (answers 3100, 3200, 3300)."""
    t0 = chain.pending_timestamp + 10
    for i, answer in enumerate((3100, 3200, 3300)):
        chain.mine(timestamp=t0 + 100 * i)
        test_feed.push(answer * 10**8, sender=admin)
    times = [test_feed.getRoundData(r)[3] for r in (2, 3, 4)]
    return times


def test_settlement__first_round_at_or_after_expiry(router, rounds):
    t2, t3, t4 = rounds
    assert router.settlement_price(K, t3, 3) == 3200 * WAD  # updatedAt(3) == expiry
    assert router.settlement_price(K, t2 + 1, 3) == 3200 * WAD  # t2 < expiry <= t3
    assert router.settlement_price(K, t4, 4) == 3300 * WAD


def test_settlement__wrong_hints__revert(router, rounds, chain):
    t2, t3, t4 = rounds
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t3, 4)  # a later round: round 3 already at expiry
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t3, 2)  # before expiry
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t3, 9)  # no such round
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t2, 1)  # no round before round 1
    chain.mine(timestamp=t4 + 5)
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t4 + 1, 4)  # no round yet at or after expiry


def test_settlement__before_expiry_and_unknown_feed__revert(router, rounds, chain):
    with ape.reverts("oracle: not expired"):
        router.settlement_price(K, chain.pending_timestamp + 1000, 3)
    with ape.reverts("oracle: unknown feed"):
        router.settlement_price(key("NOPE"), rounds[0], 2)


def test_settlement__bad_answer_at_expiry__reverts(router, test_feed, admin, chain):
    t = chain.pending_timestamp + 10
    chain.mine(timestamp=t)
    test_feed.push(0, sender=admin)  # round 2 at t: a zero answer
    with ape.reverts("oracle: non-positive price"):
        router.settlement_price(K, test_feed.getRoundData(2)[3], 2)


# ------------------------------------------------------------------ settlement across phases

P1 = 1 << 64  # the first phase after the mock's phase 0


@pytest.fixture
def phased(router, test_feed, admin, chain):
    """Phase 0: rounds 2, 3 at t0, t0+100 (3100, 3200); phase 1 opens at t0+200 (3300) and
    has a second round at t0+300 (3400), as a proxy moved to a new aggregator."""
    t0 = chain.pending_timestamp + 10
    for i, answer in enumerate((3100, 3200)):
        chain.mine(timestamp=t0 + 100 * i)
        test_feed.push(answer * 10**8, sender=admin)
    test_feed.push_phase(3300 * 10**8, t0 + 200, sender=admin)
    test_feed.push_at(3400 * 10**8, t0 + 300, sender=admin)
    chain.mine(timestamp=t0 + 400)
    assert test_feed.latestRoundData()[0] == P1 | 2
    return t0


def test_settlement__expiry_across_a_phase_change__first_round_of_the_new_phase(router, phased):
    """The first round at or after expiry opens phase 1: the hint names its predecessor,
    the last round of phase 0, and the router settles at phase 1's first round.
    Fails on c1dcd68: no hint is accepted (round P1|1 has no round P1|0 before it, and
    every later round has a predecessor at or after expiry)."""
    t0 = phased
    assert router.settlement_price(K, t0 + 150, 3) == 3300 * WAD
    assert router.settlement_price(K, t0 + 200, 3) == 3300 * WAD  # updatedAt(P1|1) == expiry


def test_settlement__expiry_before_a_phase_change__round_of_the_old_phase(router, phased):
    t0 = phased
    assert router.settlement_price(K, t0 + 50, 3) == 3200 * WAD
    assert router.settlement_price(K, t0 + 250, P1 | 2) == 3400 * WAD  # within phase 1


def test_settlement__wrong_hints_across_phases__revert(router, phased):
    t0 = phased
    for hint in (
        2,  # not the last round of phase 0: round 3 follows it, before expiry
        P1 | 1,  # the right round, but it has no predecessor in its phase
        P1 | 2,  # its predecessor P1|1 is at or after expiry
        4,  # no such round
        P1 | 3,  # no such round
        P1,  # round 0 of phase 1
    ):
        with ape.reverts("oracle: bad round hint"):
            router.settlement_price(K, t0 + 150, hint)
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t0 + 350, P1 | 2)  # the last round, before expiry: no next phase
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t0 + 50, P1 | 1)  # phase 1 opened after round 3 settled it


def test_settlement__retired_phase_reporting_after_the_change__ignored(router, test_feed, admin, phased):
    """A retired aggregator that still reports adds rounds to phase 0 after phase 1 began:
    they are not the feed's history. The settlement round stays phase 1's first; the late
    round is refused, so one expiry never has two accepted rounds."""
    t0 = phased
    test_feed.push_retired(0, 9999 * 10**8, t0 + 250, sender=admin)  # round 4 of phase 0
    assert router.settlement_price(K, t0 + 150, 3) == 3300 * WAD
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t0 + 150, 4)
    test_feed.push_retired(0, 9998 * 10**8, t0 + 200, sender=admin)  # round 5, tied with P1|1
    assert router.settlement_price(K, t0 + 150, 3) == 3300 * WAD
    with ape.reverts("oracle: bad round hint"):
        router.settlement_price(K, t0 + 150, 5)


def test_settlement__feed_silent_after_expiry__fallback_after_the_delay(router, rounds, chain):
    """No round at or after expiry: after `fallback_delay` the hint 0 settles at the latest
    round (the last before expiry). Fails on c1dcd68: a feed that never reports again
    leaves the expiry unsettled forever."""
    t2, t3, t4 = rounds
    expiry = t4 + 1
    delay = router.fallback_delay()
    assert delay == 3 * 86_400
    chain.mine(timestamp=expiry + delay - 1)
    with ape.reverts("oracle: fallback not due"):
        router.settlement_price(K, expiry, 0)
    chain.mine(timestamp=expiry + delay)
    assert router.settlement_price(K, expiry, 0) == 3300 * WAD


def test_settlement__fallback_with_a_round_after_expiry__reverts(router, rounds, test_feed, admin, chain):
    t2, t3, t4 = rounds
    chain.mine(timestamp=t4 + 4 * 86_400)
    with ape.reverts("oracle: round after expiry"):
        router.settlement_price(K, t3, 0)  # round 3 is at expiry: the hint names it
    test_feed.push(3500 * 10**8, sender=admin)
    with ape.reverts("oracle: round after expiry"):
        router.settlement_price(K, t4 + 1, 0)


def test_set_fallback_delay__bounds_and_owner(router, admin, stranger):
    with ape.reverts(NOT_OWNER):
        router.set_fallback_delay(4 * 86_400, sender=stranger)
    for bad in (3 * 86_400 - 1, 30 * 86_400 + 1):
        with ape.reverts("oracle: delay out of bounds"):
            router.set_fallback_delay(bad, sender=admin)
    receipt = router.set_fallback_delay(30 * 86_400, sender=admin)
    assert receipt.decode_logs(router.FallbackDelaySet)[0].delay == 30 * 86_400
    assert router.fallback_delay() == 30 * 86_400
    assert router.heartbeat_grace() == GRACE  # the settings word keeps its other fields
