"""The deployment manifest: where a network's contracts live.

Written by ``ape run deploy`` to ``deployments/<network>.json`` and read by the SDK,
scripts, bots and console. A fork network reads its upstream's manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Where manifests live; CROSSMARGIN_DEPLOYMENTS points elsewhere (fork tests use a temp dir).
DEPLOYMENTS_DIR = Path(
    os.environ.get("CROSSMARGIN_DEPLOYMENTS", Path(__file__).resolve().parent.parent / "deployments")
)


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

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))


def manifest_path(network_name: str, directory: Path = DEPLOYMENTS_DIR) -> Path:
    return directory / f"{network_name}.json"


def find_manifest(network_name: str, directory: Path = DEPLOYMENTS_DIR) -> Path:
    """The manifest for a network, falling back to the upstream's for a fork."""
    own = manifest_path(network_name, directory)
    if own.exists() or not network_name.endswith("-fork"):
        return own
    return manifest_path(network_name.removesuffix("-fork"), directory)
