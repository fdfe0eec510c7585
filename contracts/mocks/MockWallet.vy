# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title ERC-1271 smart wallet stand-in
@notice Accepts, as its own signature of a hash, an ECDSA signature of that hash by its
        `signer` key, unless `rejecting` is set (a wallet that revoked it).
"""

from snekmate.utils import ecdsa


# @dev ERC-1271 magic value: `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
MAGIC: constant(bytes4) = 0x1626BA7E

# @dev The key whose ECDSA signatures the wallet accepts.
signer: public(address)
# @dev When set, the wallet accepts no signature at all.
rejecting: public(bool)


@deploy
def __init__(signer: address):
    self.signer = signer


@external
@view
def isValidSignature(hash: bytes32, signature: Bytes[65]) -> bytes4:
    if self.rejecting or ecdsa._recover_sig(hash, signature) != self.signer:
        return 0xFFFFFFFF
    return MAGIC


@external
def set_rejecting(rejecting: bool):
    self.rejecting = rejecting
