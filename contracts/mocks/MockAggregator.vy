# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Chainlink-interface aggregator mock
@notice Implements `AggregatorV3Interface` (`decimals`, `description`, `version`,
        `latestRoundData`, `getRoundData`) and keeps every round, so settlement at expiry
        can be tested with real round-id hints. A pusher (the deployer, or a keeper it
        adds) pushes answers; tests may back-date a round or break the feed. The same
        contract serves as an L2 sequencer-uptime feed (answer 0 = up, 1 = down).

        Storage is packed so that `latestRoundData` reads one slot, as the router's
        benchmark should measure the router and not the mock: every round is one word
        (answer int128 | updated_at uint64; `startedAt` equals `updatedAt` in this mock) and
        `head` repeats the latest round with its id and the `broken` flag.
"""

from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


# @dev Decimals of `answer` (8 for Chainlink USD pairs).
decimals: public(uint8)
# @dev Human-readable pair, e.g. "ETH / USD".
description: public(String[64])
# @dev Every round ever pushed, by id (1..latest): answer (bits 0-127, int128 two's
#      complement) | updated_at (128-191).
rounds: HashMap[uint80, uint256]
# @dev The latest round's word | its id (bits 192-254) | broken flag (bit 255).
head: uint256
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
    @notice The newest round id; rounds 1..latest_round exist.
    """
    return convert((self.head >> 192) & (2**63 - 1), uint80)


@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    head: uint256 = self.head
    assert head >> 255 == 0, "mock: feed broken"
    rid: uint80 = convert((head >> 192) & (2**63 - 1), uint80)
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._unpack(head)
    return rid, answer, updated_at, updated_at, rid


@external
@view
def getRoundData(round_id: uint80) -> (uint80, int256, uint256, uint256, uint80):
    head: uint256 = self.head
    assert head >> 255 == 0, "mock: feed broken"
    assert round_id != 0 and convert(round_id, uint256) <= (head >> 192) & (2**63 - 1), "mock: no data present"
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
def _push(answer: int256, updated_at: uint256):
    assert answer >= -(2**127) and answer < 2**127, "mock: answer out of range"
    assert updated_at < 2**64, "mock: time out of range"
    head: uint256 = self.head
    rid: uint256 = ((head >> 192) & (2**63 - 1)) + 1
    word: uint256 = (convert(convert(answer, bytes32), uint256) & (2**128 - 1)) | (updated_at << 128)
    self.rounds[convert(rid, uint80)] = word
    self.head = word | (rid << 192) | (head & (1 << 255))
    log AnswerUpdated(current=answer, round_id=rid, updated_at=updated_at)
