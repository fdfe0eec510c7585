"""`ape console --network ...` opens with the deployed protocol loaded.

Names available in the console:
    cm        the Protocol of the connected network; without a deployment, a placeholder whose
              every use raises MissingDeploymentError saying which manifest is missing and
              the command that creates it
    vault, oracle, engine, clearing, markets, exchange, liquidator, fund, lens, tokens  its clients (cm.vault...)
    faucet    cm.faucet: mint mock tokens (local and devnet networks only)
    crossmargin, to_wad, from_wad, account_id   the SDK
"""

from ape.exceptions import ApeException

import crossmargin
from crossmargin.clients.errors import CrossmarginError, MissingDeploymentError, NoDeployment
from crossmargin.clients.protocol import Protocol
from crossmargin.units import account_id, from_wad, to_wad

CLIENTS = ("vault", "oracle", "engine", "clearing", "markets", "exchange", "liquidator", "fund", "lens", "tokens")


def _one_line_errors() -> None:
    """The SDK's own errors print as one line (``ERROR: (InvalidAmountError) amount must be
    positive, got -5``), as ape prints its own; ape's handler keeps ape's errors."""
    try:
        from ape_console.plugin import custom_exception_handler
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(self, etype, value, tb, tb_offset=None):
        if isinstance(value, CrossmarginError):
            print(f"ERROR:    ({etype.__name__}) {value}")
            return None
        return custom_exception_handler(self, etype, value, tb, tb_offset)

    shell.set_custom_exc((ApeException, CrossmarginError), handler)


def ape_init_extras(networks):
    _one_line_errors()
    name = networks.provider.network.name
    try:
        cm = Protocol.load(name)
        print(f"crossmargin: {cm!r} loaded as `cm`")
        clients = {client: getattr(cm, client) for client in CLIENTS}
    except MissingDeploymentError as error:
        print(f"crossmargin: {error}")
        cm = NoDeployment(str(error))
        clients = dict.fromkeys(CLIENTS, cm)
    return {
        "cm": cm,
        **clients,
        "faucet": cm.faucet if isinstance(cm, Protocol) else cm,
        "crossmargin": crossmargin,
        "to_wad": to_wad,
        "from_wad": from_wad,
        "account_id": account_id,
    }
