# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Liquidator stand-in for the insurance fund's tests
@notice Calls the fund's `cover` as the liquidation engine will (a contract caller), and
        keeps what the last call paid (token units).
"""


interface IInsuranceFund:
    def cover(amount: uint256, recipient: address, subaccount: uint96) -> uint256: nonpayable


# @dev Token units the last `cover` paid.
last_paid: public(uint256)


@external
def cover(fund: address, amount: uint256, recipient: address, subaccount: uint96) -> uint256:
    paid: uint256 = extcall IInsuranceFund(fund).cover(amount, recipient, subaccount)
    self.last_paid = paid
    return paid
