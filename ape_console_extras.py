"""`ape console --network ...` opens with the deployed protocol loaded.

Names available in the console:
    cm        the Protocol of the connected network (None if no manifest exists for it)
    vault, oracle, engine, clearing, markets, exchange, liquidator, fund, lens, tokens  its clients (cm.vault...)
    crossmargin, to_wad, from_wad, account_id   the SDK
"""

from ape.exceptions import ContractNotFoundError

import crossmargin
from crossmargin.manifest import find_manifest
from crossmargin.protocol import Protocol
from crossmargin.units import account_id, from_wad, to_wad


def ape_init_extras(networks):
    name = networks.provider.network.name
    cm = None
    if not find_manifest(name).exists():
        print(f"crossmargin: no deployment manifest for {name!r}; run `ape run deploy --network ...`")
    else:
        try:
            cm = Protocol.load(name)
            print(f"crossmargin: {cm!r} loaded as `cm`")
        except ContractNotFoundError:
            # e.g. the manifest of an earlier ape-managed anvil, which is gone with its chain
            print(f"crossmargin: the {name!r} manifest's contracts are not on this chain; run `ape run deploy`")
    return {
        "cm": cm,
        "vault": cm and cm.vault,
        "oracle": cm and cm.oracle,
        "engine": cm and cm.engine,
        "clearing": cm and cm.clearing,
        "markets": cm and cm.markets,
        "exchange": cm and cm.exchange,
        "liquidator": cm and cm.liquidator,
        "fund": cm and cm.fund,
        "lens": cm and cm.lens,
        "tokens": cm and cm.tokens,
        "crossmargin": crossmargin,
        "to_wad": to_wad,
        "from_wad": from_wad,
        "account_id": account_id,
    }
