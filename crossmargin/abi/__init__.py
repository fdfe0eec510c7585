"""The contracts' ABIs, and the ape contract containers the SDK's clients are built from.

Three places hold ABIs, as plain JSON (a list of ABI entries, the format solc and Vyper print,
readable by Foundry's ``cast``, ethers, viem or web3.py):

- ``crossmargin/abi/<Contract>.json``: bundled with the package, one per contract the SDK
  talks to (``CONTRACTS``); refreshed by ``ape run abi`` and checked against the compiled
  contracts by ``tests/test_package.py``.
- ``deployments/<network>.abi/<Contract>.json``: written by ``ape run deploy`` next to the
  network's manifest, one per deployed contract (``MockERC20``/``MockAggregator`` for the
  tokens and feeds), so a client in another language has the addresses and the ABIs.
- ape's compiled project (``.build/``), in a checkout of this repository.

:func:`contracts` picks the source: in a checkout, ape's project (with source maps for
traces); anywhere else (an installed wheel), the deployment's own ABIs when its manifest has
them, else the bundled ones. No compiler and no ``.build/`` are needed to use a deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ethpm_types import ContractType

from crossmargin.clients.errors import MissingDeploymentError

# The bundled ABIs: this package's directory.
BUNDLED = Path(__file__).resolve().parent
# The repository this package sits in, when it is a checkout (not an installed wheel).
CHECKOUT = BUNDLED.parent.parent
# Every contract type the SDK reads or writes: the deployed stack, and the mocks the dev
# networks deploy for tokens (any ERC-20 fits its ABI) and price feeds (a Chainlink aggregator).
CONTRACTS = (
    "Clearinghouse",
    "ClearingMoves",
    "Exchange",
    "InsuranceFund",
    "Lens",
    "Liquidator",
    "MarginEngine",
    "Markets",
    "OracleRouter",
    "RiskModel",
    "Timelock",
    "Vault",
    "MockERC20",
    "MockAggregator",
)


def in_checkout() -> bool:
    """True when ape's project is the repository this package was imported from (so its
    compiled contracts are this SDK's own, not an integrator's project's)."""
    from ape import project

    try:
        return Path(project.path).resolve() == CHECKOUT and (CHECKOUT / "contracts" / "Vault.vy").is_file()
    except Exception:  # noqa: BLE001 - no project at all: not a checkout
        return False


def abi_json(name: str) -> list[dict[str, Any]]:
    """The ABI of contract ``name`` as compiled in this checkout, as JSON values."""
    from ape import project

    contract_type = getattr(project, name).contract_type
    return [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in contract_type.abi]


def write_abi(name: str, directory: Path) -> Path:
    """Writes ``<directory>/<name>.json``: the compiled ABI of ``name`` (checkout only)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(abi_json(name), indent=1) + "\n")
    return path


def load_abi(name: str, *directories: Path | None) -> list[dict[str, Any]]:
    """The ABI of ``name`` from the first of ``directories`` that has ``<name>.json``, else
    the bundled one; :class:`MissingDeploymentError` when none has it."""
    for directory in (*directories, BUNDLED):
        if directory is not None and (directory / f"{name}.json").is_file():
            return json.loads((directory / f"{name}.json").read_text())
    raise MissingDeploymentError(f"no ABI of {name}: not in {', '.join(str(d) for d in directories if d)} nor bundled")


class AbiContracts:
    """Ape contract containers built from JSON ABIs: ``AbiContracts(dir).Vault.at(address)``
    as ``ape.project.Vault.at(address)`` in a checkout."""

    def __init__(self, directory: Path | None = None):
        self.directory = directory

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        from ape.contracts import ContractContainer

        abi = load_abi(name, self.directory)
        return ContractContainer(ContractType(contractName=name, abi=abi))


def contracts(abi_dir: Path | None = None) -> Any:
    """Where the clients get their contract containers: ape's project in a checkout, else
    :class:`AbiContracts` over ``abi_dir`` (a deployment's ``<network>.abi/``) and the
    bundled ABIs."""
    if in_checkout():
        from ape import project

        return project
    return AbiContracts(abi_dir)
