# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Chainlink-interface aggregator mock
@notice Implements `AggregatorV3Interface` (`decimals`, `description`, `version`,
        `latestRoundData`, `getRoundData`) and keeps every round, so settlement at expiry
        can be tested with real round-id hints. A pusher (the deployer, or a keeper it
        adds) pushes answers; tests may back-date a round or break the feed. The same
        contract serves as an L2 sequencer-uptime feed (answer 0 = up, 1 = down).

        Round ids are Chainlink proxy ids, `phase << 64 | round of the phase`: the feed starts
        in phase 0 (ids 1, 2, ...); `push_phase` opens the next phase (its first round is
        `(phase + 1) << 64 | 1`), as a proxy moved to a new aggregator; `push_retired`
        appends a round to an earlier phase, as a retired aggregator still reporting.

        Storage is packed so that `latestRoundData` reads one slot, as the router's
        benchmark should measure the router and not the mock: every round is one word
        (answer int128 | updated_at uint64; `startedAt` equals `updatedAt` in this mock) and
        `head` repeats the latest round with its phase, its round in the phase and the
        `broken` flag.
"""

from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


ROUND_SHIFT: constant(uint256) = 192
PHASE_SHIFT: constant(uint256) = 239
ROUND_MASK: constant(uint256) = 2**47 - 1
PHASE_MASK: constant(uint256) = 2**16 - 1


# @dev Decimals of `answer` (8 for Chainlink USD pairs).
decimals: public(uint8)
# @dev Human-readable pair, e.g. "ETH / USD".
description: public(String[64])
# @dev Every round ever pushed, by proxy id (phase << 64 | 1..last of the phase): answer
#      (bits 0-127, int128 two's complement) | updated_at (128-191).
rounds: HashMap[uint80, uint256]
# @dev The latest round's word | its round in the phase (bits 192-238) | the current phase
#      (239-254) | broken flag (bit 255).
head: uint256
# @dev Last round of each phase before the current one (the current phase's is in `head`).
last_of_phase: HashMap[uint256, uint256]
# @dev Addresses allowed to push answers (keepers moving mock prices on devnets).
is_pusher: public(HashMap[address, bool])


event AnswerUpdated:
    current: indexed(int256)
    round_id: indexed(uint256)
    updated_at: uint256


event PusherSet:
    pusher: indexed(address)
    allowed: bool


@deploy
def __init__(decimals_: uint8, description_: String[64], initial_answer: int256):
    ownable.__init__()
    self.decimals = decimals_
    self.description = description_
    self.is_pusher[msg.sender] = True
    if initial_answer != 0:
        self._push(initial_answer, block.timestamp)


@external
@pure
def version() -> uint256:
    return 4


@external
def set_pusher(pusher: address, allowed: bool):
    ownable._check_owner()
    self.is_pusher[pusher] = allowed
    log PusherSet(pusher=pusher, allowed=allowed)


@external
def push(answer: int256):
    """
    @notice Publishes a new round with `answer` at the current block time.
    """
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    self._push(answer, block.timestamp)


@external
def push_at(answer: int256, updated_at: uint256):
    """
    @notice Publishes a new round with an explicit `updated_at` (seconds), to test stale or
            back-dated data.
    """
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    self._push(answer, updated_at)


@external
def push_phase(answer: int256, updated_at: uint256):
    """
    @notice Opens the next phase with its first round (`(phase + 1) << 64 | 1`).
    """
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    head: uint256 = self.head
    phase: uint256 = (head >> PHASE_SHIFT) & PHASE_MASK
    assert phase < PHASE_MASK, "mock: last phase"
    self.last_of_phase[phase] = (head >> ROUND_SHIFT) & ROUND_MASK
    self.head = ((phase + 1) << PHASE_SHIFT) | (head & (1 << 255))
    self._push(answer, updated_at)


@external
def push_retired(phase: uint256, answer: int256, updated_at: uint256):
    """
    @notice Appends a round to an earlier phase (a retired aggregator still reporting); the
            latest round is unchanged.
    """
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    assert phase < (self.head >> PHASE_SHIFT) & PHASE_MASK, "mock: not a retired phase"
    rid: uint256 = self.last_of_phase[phase] + 1
    self.last_of_phase[phase] = rid
    self.rounds[convert((phase << 64) | rid, uint80)] = self._word(answer, updated_at)
    log AnswerUpdated(current=answer, round_id=(phase << 64) | rid, updated_at=updated_at)


@external
def set_broken(broken: bool):
    """
    @notice When set, reads revert, as a paused or deprecated aggregator would.
    """
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    self.head = (self.head & (2**255 - 1)) | (convert(broken, uint256) << 255)


@external
@view
def broken() -> bool:
    return self.head >> 255 == 1


@external
@view
def latest_round() -> uint80:
    """
    @notice The newest round id; rounds `phase << 64 | 1..latest` of its phase exist.
    """
    return self._id(self.head)


@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    head: uint256 = self.head
    assert head >> 255 == 0, "mock: feed broken"
    rid: uint80 = self._id(head)
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._unpack(head)
    return rid, answer, updated_at, updated_at, rid


@external
@view
def getRoundData(round_id: uint80) -> (uint80, int256, uint256, uint256, uint80):
    head: uint256 = self.head
    assert head >> 255 == 0, "mock: feed broken"
    phase: uint256 = convert(round_id, uint256) >> 64
    current: uint256 = (head >> PHASE_SHIFT) & PHASE_MASK
    last: uint256 = 0
    if phase == current:
        last = (head >> ROUND_SHIFT) & ROUND_MASK
    elif phase < current:
        last = self.last_of_phase[phase]
    rid: uint256 = convert(round_id, uint256) & (2**64 - 1)
    assert rid != 0 and rid <= last, "mock: no data present"
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._unpack(self.rounds[round_id])
    return round_id, answer, updated_at, updated_at, round_id


@internal
@pure
def _unpack(word: uint256) -> (int256, uint256):
    # the low 128 bits hold the answer in two's complement; the arithmetic shift restores it
    return convert(convert(word << 128, bytes32), int256) >> 128, (word >> 128) & (2**64 - 1)


@internal
@pure
def _id(head: uint256) -> uint80:
    return convert((((head >> PHASE_SHIFT) & PHASE_MASK) << 64) | ((head >> ROUND_SHIFT) & ROUND_MASK), uint80)


@internal
@pure
def _word(answer: int256, updated_at: uint256) -> uint256:
    assert answer >= -(2**127) and answer < 2**127, "mock: answer out of range"
    assert updated_at < 2**64, "mock: time out of range"
    return (convert(convert(answer, bytes32), uint256) & (2**128 - 1)) | (updated_at << 128)


@internal
def _push(answer: int256, updated_at: uint256):
    head: uint256 = self.head
    rid: uint256 = ((head >> ROUND_SHIFT) & ROUND_MASK) + 1
    word: uint256 = self._word(answer, updated_at)
    # the phase and the broken flag carry over
    head = word | (rid << ROUND_SHIFT) | (head & ~((1 << PHASE_SHIFT) - 1))
    self.rounds[self._id(head)] = word
    self.head = head
    log AnswerUpdated(current=answer, round_id=convert(self._id(head), uint256), updated_at=updated_at)
