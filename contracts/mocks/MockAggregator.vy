# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Chainlink-interface aggregator mock
@notice Implements `AggregatorV3Interface` (`decimals`, `description`, `version`,
        `latestRoundData`, `getRoundData`) and keeps every round, so settlement at expiry
        can be tested with real round-id hints. A pusher (the deployer, or a keeper it
        adds) pushes answers; tests may back-date a round or break the feed. The same
        contract serves as an L2 sequencer-uptime feed (answer 0 = up, 1 = down).
"""

from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


struct Round:
    answer: int256
    started_at: uint256
    updated_at: uint256


# @dev Decimals of `answer` (8 for Chainlink USD pairs).
decimals: public(uint8)
# @dev Human-readable pair, e.g. "ETH / USD".
description: public(String[64])
# @dev The newest round id; rounds 1..latest_round exist.
latest_round: public(uint80)
# @dev Every round ever pushed.
rounds: HashMap[uint80, Round]
# @dev Addresses allowed to push answers (keepers moving mock prices on devnets).
is_pusher: public(HashMap[address, bool])
# @dev When set, reads revert, as a paused or deprecated aggregator would.
broken: public(bool)


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
    assert self.is_pusher[msg.sender], "mock: not a pusher"
    self.broken = broken


@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    assert not self.broken, "mock: feed broken"
    rid: uint80 = self.latest_round
    r: Round = self.rounds[rid]
    return rid, r.answer, r.started_at, r.updated_at, rid


@external
@view
def getRoundData(round_id: uint80) -> (uint80, int256, uint256, uint256, uint80):
    assert not self.broken, "mock: feed broken"
    assert round_id != 0 and round_id <= self.latest_round, "mock: no data present"
    r: Round = self.rounds[round_id]
    return round_id, r.answer, r.started_at, r.updated_at, round_id


@internal
def _push(answer: int256, updated_at: uint256):
    rid: uint80 = self.latest_round + 1
    self.latest_round = rid
    self.rounds[rid] = Round(answer=answer, started_at=updated_at, updated_at=updated_at)
    log AnswerUpdated(current=answer, round_id=convert(rid, uint256), updated_at=updated_at)
