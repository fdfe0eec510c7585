"""The deployment manifest: where a network's contracts live.

Written by ``ape run deploy`` to ``deployments/<network>.json``, with the ABI of every
deployed contract next to it in ``deployments/<network>.abi/<Contract>.json``, and read by
the SDK, scripts, bots and console. A fork network reads its upstream's manifest.

Where manifests are looked up (:func:`find_manifest`): ``$CROSSMARGIN_DEPLOYMENTS`` if set;
else the checkout's ``deployments/`` (or, for an installed package, ``./deployments`` of the
working directory); then the manifests bundled with the package (``crossmargin/deployments/``
in a wheel: the known deployments, with their ABIs), so the SDK finds a public deployment
from anywhere::

    from crossmargin.ops.manifest import Manifest
    manifest = Manifest.find("sepolia")        # or Manifest.load(path)
    manifest.abi("Vault")                      # its ABI, as JSON values
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the crossmargin package (this module is crossmargin/ops/manifest.py)
_PACKAGE = Path(__file__).resolve().parents[1]
# The manifests bundled in an installed package (`deployments/` of the repository, mapped
# into the wheel as `crossmargin/deployments/`); absent in a checkout.
BUNDLED_DEPLOYMENTS = _PACKAGE / "deployments"
_CHECKOUT_DEPLOYMENTS = _PACKAGE.parent / "deployments"


def _default_directory() -> Path:
    if "CROSSMARGIN_DEPLOYMENTS" in os.environ:
        return Path(os.environ["CROSSMARGIN_DEPLOYMENTS"])
    if (_PACKAGE.parent / "ape-config.yaml").is_file():  # a checkout
        return _CHECKOUT_DEPLOYMENTS
    return Path.cwd() / "deployments"


# Where manifests are written and first looked up; CROSSMARGIN_DEPLOYMENTS points elsewhere
# (fork tests use a temp dir).
DEPLOYMENTS_DIR = _default_directory()


@dataclass
class Manifest:
    network: str
    chain_id: int
    contracts: dict[str, str] = field(default_factory=dict)  # name -> address
    builds: dict[str, str] = field(default_factory=dict)  # name -> keccak of its compiled runtime
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> address
    feeds: dict[str, str] = field(default_factory=dict)  # oracle key -> aggregator
    settlement: str = ""  # symbol of the settlement asset
    underlyings: dict[str, int] = field(default_factory=dict)  # name -> engine underlying id
    perps: dict[str, int] = field(default_factory=dict)  # underlying name -> perp instrument id
    # the file it was loaded from (not saved): its ABIs are in `abi_dir`
    path: Path | None = field(default=None, compare=False, repr=False)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {k: v for k, v in asdict(self).items() if k != "path"}
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> Manifest:
        """The manifest in the file ``path``."""
        path = Path(path)
        return cls(**json.loads(path.read_text()), path=path)

    @classmethod
    def find(cls, network_name: str) -> Manifest:
        """The manifest of ``network_name`` wherever :func:`find_manifest` finds it
        (:class:`~crossmargin.clients.errors.MissingDeploymentError` if nowhere)."""
        path = find_manifest(network_name)
        if not path.is_file():
            from crossmargin.clients.errors import MissingDeploymentError

            raise MissingDeploymentError(f"no deployment manifest {path} for network {network_name!r}")
        return cls.load(path)

    @property
    def abi_dir(self) -> Path | None:
        """``<network>.abi/`` next to the manifest's file (None for a manifest not loaded
        from a file)."""
        return abi_dir(self.path) if self.path is not None else None

    def abi(self, name: str) -> list[dict[str, Any]]:
        """The ABI of contract ``name`` (``"Vault"``, ``"MockERC20"``...): the deployment's
        own, else the one bundled with the package."""
        from crossmargin.abi import load_abi

        return load_abi(name, self.abi_dir)

    def contract_names(self) -> list[str]:
        """The contract type of everything deployed: the stack, and ``MockERC20`` and
        ``MockAggregator`` for its tokens and feeds (the deploy's ``token:<symbol>`` and
        ``feed:<key>`` entries; their ABIs fit any ERC-20 and Chainlink aggregator)."""
        kinds = {"token": "MockERC20", "feed": "MockAggregator"}
        names = {kinds.get(name.split(":")[0], name) if ":" in name else name for name in self.contracts}
        if self.tokens:
            names.add("MockERC20")
        if self.feeds:
            names.add("MockAggregator")
        return sorted(names)

    def write_abis(self, path: Path) -> list[Path]:
        """Writes the compiled ABI of every deployed contract to ``abi_dir(path)`` (one
        ``<Contract>.json`` each; run in a checkout); returns the files."""
        from crossmargin.abi import write_abi

        directory = abi_dir(path)
        return [write_abi(name, directory) for name in self.contract_names()]


def abi_dir(manifest_file: Path) -> Path:
    """The ABI directory of a manifest file: ``deployments/<network>.abi/``."""
    return manifest_file.with_suffix(".abi")


def manifest_path(network_name: str, directory: Path = DEPLOYMENTS_DIR) -> Path:
    return directory / f"{network_name}.json"


def find_manifest(network_name: str, directory: Path | None = None) -> Path:
    """The manifest for a network, falling back to the upstream's for a fork. Without
    ``directory``: ``DEPLOYMENTS_DIR`` first, then the manifests bundled with the package.
    When none exists, the path it would have in the first directory."""
    directories = [directory] if directory is not None else [DEPLOYMENTS_DIR, BUNDLED_DEPLOYMENTS]
    names = [network_name]
    if network_name.endswith("-fork"):
        names.append(network_name.removesuffix("-fork"))
    for where in directories:
        for name in names:
            path = manifest_path(name, where)
            if path.is_file():
                return path
    return manifest_path(network_name, directories[0])
