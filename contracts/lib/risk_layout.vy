# pragma version ~=0.4.3
"""
@title Layout of scenario grids and risk arrays, shared by the margin engine and the risk model
@custom:contract-name risk_layout
@license GNU Affero General Public License v3.0 only
@notice A stateless module (constants and `@internal @pure` decoders only): the engine stores
        and reads grids and arrays, the risk model packs arrays, and both must agree on every
        bit, so the layout is defined here once.

        Grid words pack GRID_LANES scenarios of GRID_BITS bits each: shock int16 (bits 0-15) |
        vol move (16-17: VOL_DOWN, VOL_NONE, VOL_UP) | weight uint14 (18-31), shock and weight
        in units of GRID_UNIT millionths (0.01%).

        Risk arrays: LANE_BITS-bit lanes. Word 0 holds the epoch (bits 0-31), the array's
        `shift` (32-39) and the lanes of scenarios 0..FIRST_LANES-1 (from bit HEADER_BITS),
        plus the UNSETTLED flag (bit 255); each further word the lanes of LANES more scenarios
        (from bit 0). A lane is in units of `quantum << shift`. 23 scenarios take 2 words, 32
        take 3.
"""

# @dev Largest grid (scenarios per underlying, the base included).
MAX_SCENARIOS: constant(uint256) = 32
# @dev Grid shocks and weights are in units of GRID_UNIT millionths (0.01%).
GRID_UNIT: constant(uint256) = 100
IGRID_UNIT: constant(int256) = 100
# @dev Scenarios per grid word, bits per scenario, grid words (GRID_LANES * GRID_WORDS >=
#      MAX_SCENARIOS).
GRID_LANES: constant(uint256) = 8
GRID_BITS: constant(uint256) = 32
GRID_WORDS: constant(uint256) = 4
# @dev Vol moves of a grid lane (bits 16-17).
VOL_DOWN: constant(uint256) = 0
VOL_NONE: constant(uint256) = 1
VOL_UP: constant(uint256) = 2
# @dev Risk-array lanes: width, mask, lanes in word 0 (after the header) and in each further
#      word, words per array, header bits of word 0 (epoch 32 | shift 8).
LANE_BITS: constant(uint256) = 19
LANE_MASK: constant(uint256) = 2**19 - 1
FIRST_LANES: constant(uint256) = 11
LANES: constant(uint256) = 13
ARRAY_WORDS: constant(uint256) = 3
HEADER_BITS: constant(uint256) = 40
# @dev Flag bit of a risk array's word 0 (above the first 11 lanes): the option had expired
#      without a settlement price when the array was computed. Every lane then holds its
#      worst intrinsic value over the grid's spot shocks; longs count for nothing.
UNSETTLED: constant(uint256) = 1 << 255
# @dev The largest spot move (millionths) assumed between an expiry and its settlement: an
#      expired option or future without a settlement price is valued at its worst over the
#      grid's spot shocks, each kept within ±EXPIRY_BAND (the grid's tails, -66% and +200%
#      by default, are scenarios of a life, not of the minutes before `settle`).
EXPIRY_BAND: constant(uint256) = 300_000
IEXPIRY_BAND: constant(int256) = 300_000
# @dev Largest `shift` (the risk model refuses a larger one): keeps |size| · 2**shift <=
#      2**127 · 2**103 = 2**230 (the engine's unchecked option sums). It covers values per
#      unit up to 2**122 quanta (5e24 USD at the smallest quantum).
MAX_SHIFT: constant(uint256) = 103


@internal
@pure
def _lane_at(s: uint256) -> (uint256, uint256):
    """
    @dev Word and bit of scenario `s`'s lane in a risk array (see LANE_BITS).
    """
    if s < FIRST_LANES:
        return 0, HEADER_BITS + s * LANE_BITS
    return 1 + (s - FIRST_LANES) // LANES, (s - FIRST_LANES) % LANES * LANE_BITS


@internal
@pure
def _words(scenarios: uint256) -> uint256:
    """
    @dev How many words an array of `scenarios` lanes uses (1 to ARRAY_WORDS).
    """
    if scenarios > FIRST_LANES + LANES:
        return ARRAY_WORDS
    if scenarios > FIRST_LANES:
        return 2
    return 1


@internal
@pure
def _shock(lane: uint256) -> int256:
    """
    @dev The spot shock (millionths) of a grid lane: int16 in its low bits, 0.01% units.
    """
    return (convert(convert(lane << 240, bytes32), int256) >> 240) * IGRID_UNIT


@internal
@pure
def _weight(lane: uint256) -> uint256:
    """
    @dev The weight (millionths) of a grid lane: uint14 from bit 18, 0.01% units.
    """
    return ((lane >> 18) & (2**14 - 1)) * GRID_UNIT
