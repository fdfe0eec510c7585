# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin oracle router
@notice The single place where prices enter the protocol. Each feed is a Chainlink
        `AggregatorV3Interface` registered under a key (e.g. "ETH/USD", "ETH/IV",
        "USDC/USD") with a heartbeat and hard min/max bounds. Every read checks, in order:
        the feed answers, the answer is positive, it is not from the future, it is not
        older than `heartbeat + heartbeat_grace`, and it lies within the bounds; then it is
        normalized to WAD. A failed check reverts with `"oracle: <reason>"`, so nothing is
        ever valued at a bad price.

        An optional L2 sequencer-uptime feed gates new risk: `check_sequencer` reverts while
        the sequencer is down and during `sequencer_grace` seconds after it comes back.
        Liquidation paths simply do not call it.

        Expiry settlement reads the first round at or after the expiry. Round ids are
        Chainlink proxy ids, `phase << 64 | round of the phase's aggregator`; the feed's
        history is each phase's rounds before the next phase's first round, in order. A
        keeper passes a round id hint `r`, with `n = (phase(r) + 1) << 64 | 1` the next
        phase's first round; the router accepts:
          - `r` itself iff `r` is not a phase's first round, `updatedAt(r) >= expiry >
            updatedAt(r - 1)` and, if `n` exists, `updatedAt(r) < updatedAt(n)`;
          - `n` iff `updatedAt(r) < expiry <= updatedAt(n)` and `r + 1` does not exist or
            `updatedAt(r + 1) >= updatedAt(n)` (`r` is the last round of its phase in the
            history: its predecessor of `n`).
        If the feed has no round at or after the expiry `fallback_delay` after it, the hint 0
        settles at its latest round (the last before the expiry).
@custom:security The rules accept exactly the first round of the history at or after the
        expiry, given that `updatedAt` never falls within a phase: at most one hint is ever
        accepted for an expiry, and rounds added later cannot change which. A retired
        aggregator still reporting (rounds of an old phase at or after the next phase's
        first) is outside the history and never settles. The fallback is only open once the
        feed has been silent since the expiry for `fallback_delay` (at least 3 days, longer
        than any heartbeat plus grace); it closes for good when a round at or after the
        expiry appears. A phase with no round at all between two others is not bridged
        (the expiry then waits for a round of the later phase's own).
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from interfaces import AggregatorV3Interface

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


# @dev Internal fixed point: 1.0 = 10**18.
WAD: constant(uint256) = 10**18
# @dev Bounds on a feed's heartbeat (seconds); it is packed in 32 bits.
MIN_HEARTBEAT: constant(uint256) = 60
MAX_HEARTBEAT: constant(uint256) = 2 * 86_400
# @dev Upper bound on the staleness grace added to every heartbeat (seconds).
MAX_HEARTBEAT_GRACE: constant(uint256) = 3_600
# @dev Upper bound on the grace period after an L2 sequencer restarts (seconds).
MAX_SEQUENCER_GRACE: constant(uint256) = 86_400
# @dev Bounds and default of the settlement fallback delay (seconds): the least is longer
#      than any heartbeat plus grace, so a live feed always reports before it opens.
MIN_FALLBACK_DELAY: constant(uint256) = 3 * 86_400
MAX_FALLBACK_DELAY: constant(uint256) = 30 * 86_400
# @dev Bit of `settings` where the fallback delay starts (32 bits).
FALLBACK_SHIFT: constant(uint256) = 224
# @dev ABI size of a `latestRoundData`/`getRoundData` answer (5 words).
ROUND_DATA_SIZE: constant(uint256) = 160
M16: constant(uint256) = 2**16 - 1
M32: constant(uint256) = 2**32 - 1
# @dev Marks a round id read for liquidation whose answer a checked read would have refused
#      (stale, or clamped into the bounds); Chainlink round ids (phase << 64 | round) never
#      reach bit 79.
DEGRADED: constant(uint80) = 2**79
M64: constant(uint256) = 2**64 - 1
M160: constant(uint256) = 2**160 - 1
# @dev A feed bound is stored as mantissa · 10**exponent, mantissa < 2**31 (bits 0-30),
#      exponent <= 31 (bits 31-35): every bound with at most 9 significant digits.
BOUND_BITS: constant(uint256) = 36
MANTISSA_BITS: constant(uint256) = 31
MAX_EXPONENT: constant(uint256) = 31


struct Feed:
    # the Chainlink aggregator; empty = no feed under this key
    aggregator: address
    # maximum age of an answer (s), before `heartbeat_grace` is added
    heartbeat: uint256
    # inclusive bounds on the answer after normalization (WAD)
    min_answer: uint256
    max_answer: uint256
    # 10**(18 - aggregator decimals): multiplies an answer into WAD
    scale: uint256


# @dev Registered feeds by key, one word each (all a read needs): aggregator (bits 0-159) |
#      heartbeat (160-177) | 18 - decimals (178-182) | min_answer (183-218) | max_answer
#      (219-254), each bound as mantissa · 10**exponent (see BOUND_BITS).
#      Invariant: `aggregator != empty` iff the feed is usable, and then
#      `0 < min_answer < max_answer`. `feeds(key)` unpacks them.
feed_words: HashMap[bytes32, uint256]
# @dev Router settings, one word (read once per transaction however many feeds it reads):
#      heartbeat_grace (bits 0-31, s: extra lag every feed may have beyond its heartbeat) |
#      sequencer_grace (32-63, s: new risk stays refused this long after a restart) |
#      sequencer_feed (64-223: L2 sequencer-uptime feed, answer 0 = up; empty on L1) |
#      fallback_delay (224-255, s: how long after an expiry a silent feed settles at its
#      last round before it).
settings: uint256


event FeedSet:
    key: indexed(bytes32)
    aggregator: indexed(address)
    heartbeat: uint256
    min_answer: uint256
    max_answer: uint256


event FeedRemoved:
    key: indexed(bytes32)


event HeartbeatGraceSet:
    grace: uint256


event SequencerSet:
    feed: indexed(address)
    grace: uint256


event FallbackDelaySet:
    delay: uint256


@deploy
def __init__(heartbeat_grace: uint256):
    """
    @param heartbeat_grace Seconds of lag tolerated beyond each feed's heartbeat.
    """
    ownable.__init__()
    ownable_2step.__init__()
    self._set_heartbeat_grace(heartbeat_grace)
    self._set_fallback_delay(MIN_FALLBACK_DELAY)


# ---------------------------------------------------------------- owner: configuration


@external
def set_feed(key: bytes32, aggregator: address, heartbeat: uint256, min_answer: uint256, max_answer: uint256):
    """
    @notice Registers or replaces the feed under `key`.
    @param heartbeat Maximum age of an answer (s), within [60, 172800].
    @param min_answer Lowest acceptable answer (WAD), > 0.
    @param max_answer Highest acceptable answer (WAD), > `min_answer`.
    """
    ownable._check_owner()
    assert key != empty(bytes32), "oracle: zero key"
    assert aggregator.is_contract, "oracle: aggregator not a contract"
    assert heartbeat >= MIN_HEARTBEAT and heartbeat <= MAX_HEARTBEAT, "oracle: heartbeat out of bounds"
    assert min_answer != 0 and min_answer < max_answer, "oracle: bad bounds"
    decimals: uint256 = convert(staticcall AggregatorV3Interface(aggregator).decimals(), uint256)
    assert decimals <= 18, "oracle: decimals above 18"
    # heartbeat < 2**18, 18 - decimals < 2**5: each fits its field
    self.feed_words[key] = (
        convert(aggregator, uint256)
        | (heartbeat << 160)
        | ((18 - decimals) << 178)
        | (self._pack_bound(min_answer) << 183)
        | (self._pack_bound(max_answer) << (183 + BOUND_BITS))
    )
    log FeedSet(key=key, aggregator=aggregator, heartbeat=heartbeat, min_answer=min_answer, max_answer=max_answer)


@external
def remove_feed(key: bytes32):
    ownable._check_owner()
    assert self.feed_words[key] & M160 != 0, "oracle: unknown feed"
    self.feed_words[key] = 0
    log FeedRemoved(key=key)


@external
def set_heartbeat_grace(grace: uint256):
    """
    @param grace Seconds of lag tolerated beyond each heartbeat, at most 3600.
    """
    ownable._check_owner()
    self._set_heartbeat_grace(grace)


@external
def set_sequencer(feed: address, grace: uint256):
    """
    @notice Sets (or clears, with the empty address) the L2 sequencer-uptime feed.
    @param grace Seconds after a restart during which new risk stays refused, at most 86400.
    """
    ownable._check_owner()
    assert feed == empty(address) or feed.is_contract, "oracle: sequencer not a contract"
    assert grace <= MAX_SEQUENCER_GRACE, "oracle: grace out of bounds"
    settings: uint256 = self.settings
    self.settings = (settings & (M32 | (M32 << FALLBACK_SHIFT))) | (grace << 32) | (convert(feed, uint256) << 64)
    log SequencerSet(feed=feed, grace=grace)


@external
def set_fallback_delay(delay: uint256):
    """
    @notice How long after an expiry a feed with no round at or after it settles at its
            last round before it (hint 0 of `settlement_price`).
    @param delay Seconds, within [259200, 2592000] (3 to 30 days).
    """
    ownable._check_owner()
    self._set_fallback_delay(delay)


# ---------------------------------------------------------------- reads


@external
@view
def price(key: bytes32) -> uint256:
    """
    @notice The checked latest answer of the feed under `key`.
    @return The answer in WAD (e.g. USD per unit of the base asset).
    """
    answer: uint256 = 0
    round_id: uint80 = 0
    answer, round_id = self._latest(key, False)
    return answer


@external
@view
def price_round(key: bytes32) -> (uint256, uint80):
    """
    @notice The checked latest answer and the round id it comes from; caches keyed by
            round (risk arrays) use the id to tell when they went out of date.
    @return (answer in WAD, round id)
    """
    return self._latest(key, False)


@external
@view
def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool = False) -> (uint256, uint80, uint256, uint80):
    """
    @notice `price_round` of two feeds in one call, `key_a` read first (the margin engine
            reads an underlying's spot and implied vol together); an empty `key_b` reads
            `key_a` alone (b's answer and round 0).
    @param liquidation The reads of a liquidation's valuation: a stale round is used as it
           is, and an answer out of bounds (or not positive) is clamped into them, instead
           of reverting; such a round id has bit 79 set (DEGRADED), so a cache keyed by it
           never mixes with checked reads. A healthy feed reads the same either way.
    @return (answer a in WAD, round id a, answer b in WAD, round id b)
    """
    answer_a: uint256 = 0
    round_a: uint80 = 0
    answer_b: uint256 = 0
    round_b: uint80 = 0
    answer_a, round_a = self._latest(key_a, liquidation)
    if key_b != empty(bytes32):
        answer_b, round_b = self._latest(key_b, liquidation)
    return answer_a, round_a, answer_b, round_b


@external
@view
def settlement_price(key: bytes32, expiry: uint256, round_hint: uint80) -> uint256:
    """
    @notice The answer of the first round of the feed's history at or after `expiry`
            (see the contract's notice for the rules).
    @param expiry Unix time (s); must have passed.
    @param round_hint The round id `r` with `updatedAt(r) >= expiry > updatedAt(r - 1)`;
           or, when that round opens a phase, the last round of the phase before (the
           round before it in the history); or 0, for a feed silent since the expiry for
           `fallback_delay`.
    @return The settlement answer in WAD.
    """
    assert expiry <= block.timestamp, "oracle: not expired"
    feed: Feed = self._feed(key)
    if round_hint == 0:
        return self._fallback(feed, expiry)
    hint: uint256 = convert(round_hint, uint256)
    # the next phase's first round must fit in 80 bits
    assert hint >> 64 < M16, "oracle: bad round hint"
    ok: bool = False
    answer: int256 = 0
    updated_at: uint256 = 0
    ok, answer, updated_at = self._round(feed.aggregator, round_hint)
    assert ok, "oracle: bad round hint"
    next_ok: bool = False
    next_answer: int256 = 0
    next_at: uint256 = 0
    next_ok, next_answer, next_at = self._round(feed.aggregator, convert((((hint >> 64) + 1) << 64) | 1, uint80))
    prev_ok: bool = False
    prev_answer: int256 = 0
    prev_at: uint256 = 0
    if updated_at >= expiry:
        # r itself: its predecessor in its phase is before the expiry, and r is in the
        # history (before the next phase's first round, if there is one)
        assert hint & M64 > 1, "oracle: bad round hint"
        prev_ok, prev_answer, prev_at = self._round(feed.aggregator, round_hint - 1)
        assert prev_ok and prev_at < expiry, "oracle: bad round hint"
        assert not next_ok or updated_at < next_at, "oracle: bad round hint"
        return self._normalize(feed, answer)
    # the next phase's first round, at or after the expiry, whose predecessor in the history
    # is r (before the expiry): r + 1 does not exist or came at or after the new phase began
    # (a round 2**64 - 1 has no r + 1 in its phase: r + 1 is the next phase's round 0)
    assert next_ok and next_at >= expiry, "oracle: bad round hint"
    prev_ok, prev_answer, prev_at = self._round(feed.aggregator, round_hint + 1)
    assert not prev_ok or prev_at >= next_at, "oracle: bad round hint"
    return self._normalize(feed, next_answer)


@external
@view
def check_sequencer() -> bool:
    """
    @notice Reverts while the L2 sequencer is down or within its grace period after a
            restart; returns True otherwise (always, where no sequencer feed is set).
    """
    self._check_sequencer()
    return True


@external
@view
def check_new_risk(stable_key: bytes32) -> bool:
    """
    @notice Whether new risk may be taken, in one call (the margin engine's check before
            every state-changing margin check): reverts as `check_sequencer` does, then,
            unless `stable_key` is empty, as `price(stable_key)` does (the settlement
            asset's depeg breaker: an answer outside the feed's bounds); returns True
            otherwise.
    """
    self._check_sequencer()
    if stable_key != empty(bytes32):
        answer: uint256 = 0
        round_id: uint80 = 0
        answer, round_id = self._latest(stable_key, False)
    return True


@internal
@view
def _check_sequencer():
    settings: uint256 = self.settings
    feed: address = convert((settings >> 64) & M160, address)
    if feed == empty(address):
        return
    ok: bool = False
    response: Bytes[ROUND_DATA_SIZE] = b""
    ok, response = raw_call(
        feed, method_id("latestRoundData()"), max_outsize=ROUND_DATA_SIZE, is_static_call=True, revert_on_failure=False
    )
    assert ok and len(response) == ROUND_DATA_SIZE, "oracle: sequencer feed unavailable"
    status: int256 = 0
    started_at: uint256 = 0
    _rid: uint80 = 0
    _updated: uint256 = 0
    _answered: uint80 = 0
    _rid, status, started_at, _updated, _answered = abi_decode(response, (uint80, int256, uint256, uint256, uint80))
    assert status == 0, "oracle: sequencer down"
    assert block.timestamp > started_at + ((settings >> 32) & M32), "oracle: sequencer grace period"


@external
@view
def feeds(key: bytes32) -> Feed:
    """
    @notice The feed registered under `key` (all zero if none).
    """
    return self._unpack(self.feed_words[key])


@external
@view
def heartbeat_grace() -> uint256:
    """
    @notice Extra seconds every feed may lag beyond its heartbeat (network jitter).
    """
    return self.settings & M32


@external
@view
def sequencer_feed() -> address:
    """
    @notice The L2 sequencer-uptime feed (answer 0 = up); empty on L1 and local chains.
    """
    return convert((self.settings >> 64) & M160, address)


@external
@view
def fallback_delay() -> uint256:
    """
    @notice Seconds after an expiry from which a feed with no round at or after it settles
            at its latest round (hint 0).
    """
    return self.settings >> FALLBACK_SHIFT


@external
@view
def sequencer_grace() -> uint256:
    """
    @notice Seconds after a sequencer restart during which new risk is still refused.
    """
    return (self.settings >> 32) & M32


# ---------------------------------------------------------------- internals


@internal
def _set_fallback_delay(delay: uint256):
    assert delay >= MIN_FALLBACK_DELAY and delay <= MAX_FALLBACK_DELAY, "oracle: delay out of bounds"
    self.settings = (self.settings & ~(M32 << FALLBACK_SHIFT)) | (delay << FALLBACK_SHIFT)
    log FallbackDelaySet(delay=delay)


@internal
@view
def _fallback(feed: Feed, expiry: uint256) -> uint256:
    """
    @dev The latest answer, once the feed has had no round at or after `expiry` for
         `fallback_delay` seconds (its latest round is then its last before the expiry).
    """
    assert block.timestamp >= expiry + (self.settings >> FALLBACK_SHIFT), "oracle: fallback not due"
    ok: bool = False
    response: Bytes[ROUND_DATA_SIZE] = b""
    ok, response = raw_call(
        feed.aggregator, method_id("latestRoundData()"), max_outsize=ROUND_DATA_SIZE, is_static_call=True, revert_on_failure=False
    )
    assert ok and len(response) == ROUND_DATA_SIZE, "oracle: feed unavailable"
    _rid: uint80 = 0
    answer: int256 = 0
    _started: uint256 = 0
    updated_at: uint256 = 0
    _answered: uint80 = 0
    _rid, answer, _started, updated_at, _answered = abi_decode(response, (uint80, int256, uint256, uint256, uint80))
    assert updated_at < expiry, "oracle: round after expiry"
    return self._normalize(feed, answer)


@internal
def _set_heartbeat_grace(grace: uint256):
    assert grace <= MAX_HEARTBEAT_GRACE, "oracle: grace out of bounds"
    self.settings = (self.settings & ~M32) | grace
    log HeartbeatGraceSet(grace=grace)


@internal
@view
def _feed(key: bytes32) -> Feed:
    word: uint256 = self.feed_words[key]
    assert word & M160 != 0, "oracle: unknown feed"
    return self._unpack(word)


@internal
@pure
def _unpack(word: uint256) -> Feed:
    return Feed(
        aggregator=convert(word & M160, address),
        heartbeat=(word >> 160) & (2**18 - 1),
        min_answer=self._unpack_bound(word >> 183),
        max_answer=self._unpack_bound(word >> (183 + BOUND_BITS)),
        scale=10 ** ((word >> 178) & 31),
    )


@internal
@pure
def _pack_bound(bound: uint256) -> uint256:
    """
    @dev `bound` as mantissa | exponent << 31; reverts unless it is exactly representable.
    """
    mantissa: uint256 = bound
    exponent: uint256 = 0
    for i: uint256 in range(MAX_EXPONENT):
        if mantissa % 10 != 0:
            break
        mantissa //= 10
        exponent += 1
    assert mantissa < 2**MANTISSA_BITS, "oracle: bad bounds"
    return mantissa | (exponent << MANTISSA_BITS)


@internal
@pure
def _unpack_bound(packed: uint256) -> uint256:
    return (packed & (2**MANTISSA_BITS - 1)) * 10 ** ((packed >> MANTISSA_BITS) & 31)


@internal
@view
def _latest(key: bytes32, liquidation: bool) -> (uint256, uint80):
    """
    @dev The checked latest answer; with `liquidation`, see `price_rounds`.
    """
    feed: Feed = self._feed(key)
    ok: bool = False
    response: Bytes[ROUND_DATA_SIZE] = b""
    ok, response = raw_call(
        feed.aggregator,
        method_id("latestRoundData()"),
        max_outsize=ROUND_DATA_SIZE,
        is_static_call=True,
        revert_on_failure=False,
    )
    assert ok and len(response) == ROUND_DATA_SIZE, "oracle: feed unavailable"
    round_id: uint80 = 0
    answer: int256 = 0
    _started: uint256 = 0
    updated_at: uint256 = 0
    _answered: uint80 = 0
    round_id, answer, _started, updated_at, _answered = abi_decode(
        response, (uint80, int256, uint256, uint256, uint80)
    )
    assert updated_at <= block.timestamp, "oracle: future timestamp"
    if liquidation:
        # the last answer clamped into the bounds, staleness ignored; marked if either rule
        # would have reverted a checked read
        wad: uint256 = feed.min_answer
        degraded: bool = unsafe_sub(block.timestamp, updated_at) > feed.heartbeat + (self.settings & M32)
        if answer <= 0:
            degraded = True
        elif convert(answer, uint256) > feed.max_answer // feed.scale:
            wad = feed.max_answer
            degraded = True
        else:
            # cannot overflow: at most max_answer
            wad = convert(answer, uint256) * feed.scale
            if wad < feed.min_answer:
                wad = feed.min_answer
                degraded = True
        if degraded:
            round_id |= DEGRADED
        return wad, round_id
    # cannot underflow: checked just above
    assert unsafe_sub(block.timestamp, updated_at) <= feed.heartbeat + (self.settings & M32), "oracle: stale price"
    return self._normalize(feed, answer), round_id


@internal
@view
def _round(aggregator: address, round_id: uint80) -> (bool, int256, uint256):
    """
    @dev Reads one historical round; `ok` is False if the feed reverts (e.g. no such round).
    """
    ok: bool = False
    response: Bytes[ROUND_DATA_SIZE] = b""
    ok, response = raw_call(
        aggregator,
        abi_encode(round_id, method_id=method_id("getRoundData(uint80)")),
        max_outsize=ROUND_DATA_SIZE,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok or len(response) != ROUND_DATA_SIZE:
        return False, 0, 0
    _rid: uint80 = 0
    answer: int256 = 0
    _started: uint256 = 0
    updated_at: uint256 = 0
    _answered: uint80 = 0
    _rid, answer, _started, updated_at, _answered = abi_decode(response, (uint80, int256, uint256, uint256, uint80))
    return updated_at != 0, answer, updated_at


@internal
@view
def _normalize(feed: Feed, answer: int256) -> uint256:
    assert answer > 0, "oracle: non-positive price"
    wad: uint256 = convert(answer, uint256) * feed.scale
    assert wad >= feed.min_answer and wad <= feed.max_answer, "oracle: price out of bounds"
    return wad
