# pragma version ~=0.4.3
"""
@title Test harness of `bs_math`
@notice Exposes every function of the stateless `bs_math` module as an external pure
        function, so it can be called (and its gas measured) on its own.
"""

from ..lib import bs_math


@external
@pure
def exp(x: int256) -> uint256:
    return bs_math._exp(x)


@external
@pure
def ln(x: uint256) -> int256:
    return bs_math._ln(x)


@external
@pure
def sqrt(x: uint256) -> uint256:
    return bs_math._sqrt(x)


@external
@pure
def pow(x: uint256, y: uint256) -> uint256:
    return bs_math._pow(x, y)


@external
@pure
def ncdf(x: int256) -> uint256:
    return bs_math._ncdf(x)


@external
@pure
def npdf(x: int256) -> uint256:
    return bs_math._npdf(x)


@external
@pure
def bs_price(spot: uint256, strike: uint256, vol: uint256, tau: uint256, rate: uint256, is_call: bool) -> uint256:
    return bs_math._bs_price(spot, strike, vol, tau, rate, is_call)


@external
@pure
def bs_greeks(
    spot: uint256, strike: uint256, vol: uint256, tau: uint256, rate: uint256, is_call: bool
) -> (int256, uint256, uint256):
    return bs_math._bs_greeks(spot, strike, vol, tau, rate, is_call)
