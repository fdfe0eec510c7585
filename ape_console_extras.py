"""`ape console --network ...` opens with the deployed protocol loaded.

Names available in the console:
    cm        the Protocol of the connected network (None if no manifest exists for it)
    vault, oracle, engine, clearing, exchange, tokens   its typed clients (cm.vault, ...)
    crossmargin, to_wad, from_wad, account_id   the SDK
"""

import crossmargin
from crossmargin.manifest import find_manifest
from crossmargin.protocol import Protocol
from crossmargin.units import account_id, from_wad, to_wad


def ape_init_extras(networks):
    name = networks.provider.network.name
    cm = Protocol.load(name) if find_manifest(name).exists() else None
    if cm is None:
        print(f"crossmargin: no deployment manifest for {name!r}; run `ape run deploy --network ...`")
    else:
        print(f"crossmargin: {cm!r} loaded as `cm`")
    return {
        "cm": cm,
        "vault": cm and cm.vault,
        "oracle": cm and cm.oracle,
        "engine": cm and cm.engine,
        "clearing": cm and cm.clearing,
        "exchange": cm and cm.exchange,
        "tokens": cm and cm.tokens,
        "crossmargin": crossmargin,
        "to_wad": to_wad,
        "from_wad": from_wad,
        "account_id": account_id,
    }
