"""Per-network deployment configuration (``config/<network>.yaml``).

A config names the settlement asset, the oracle feeds and the collateral assets. A token or
feed either points at an existing contract (``address``) or asks for a mock to be deployed
(``mock``), which is how local nodes and testnets without a given feed are served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


@dataclass(frozen=True)
class FeedConfig:
    key: str
    heartbeat: int  # seconds
    min_answer: Decimal  # human units, e.g. 10 (USD)
    max_answer: Decimal
    address: str | None = None  # an existing aggregator
    mock_decimals: int = 8  # mock aggregator: decimals and first answer
    mock_answer: Decimal | None = None

    @property
    def is_mock(self) -> bool:
        return self.address is None


@dataclass(frozen=True)
class TokenConfig:
    symbol: str
    decimals: int
    cap: Decimal  # human token units
    address: str | None = None  # an existing token; else a MockERC20 is deployed
    feed: str | None = None  # oracle key of its USD price
    underlying: str | None = None  # underlying it tracks, e.g. "ETH"
    mm_haircut: Decimal = Decimal(0)
    im_haircut: Decimal = Decimal(0)

    @property
    def is_mock(self) -> bool:
        return self.address is None


@dataclass(frozen=True)
class UnderlyingConfig:
    name: str  # e.g. "ETH"; collateral with this `underlying` is shocked with its spot
    spot: str  # oracle key of the spot price
    vol: str  # oracle key of the implied volatility
    perp_oi_cap: Decimal | None = None  # units; None = no perpetual listed
    # concentration add-on (SPECIFICATION.md §6): the loss it leaves free and its depth, whole
    # USD in multiples of 1,000 (the engine keeps thousands); depth 0 = off
    concentration_free_usd: int = 0
    concentration_depth_usd: int = 0
    position_cap_usd: int = 0  # most notional |size| x spot a fill may grow a position to; 0 = none


@dataclass(frozen=True)
class ExchangeConfig:
    maker_fee: Decimal = Decimal("0.0002")  # fraction of notional
    taker_fee: Decimal = Decimal("0.0005")
    insurance_share: Decimal = Decimal("0.5")  # of all fees, to the insurance account
    insurance: str | None = None  # owner of the insurance account; default the insurance fund
    fee_recipient: str | None = None  # default the deployer


@dataclass(frozen=True)
class TimelockConfig:
    """Governance: after deploy, every contract is owned by a snekmate TimelockController."""

    delay: int  # seconds every owner call waits between scheduling and execution
    proposers: list[str] = field(default_factory=list)  # schedule and cancel; default the deployer
    executors: list[str] = field(default_factory=list)  # execute ready calls; default the proposers


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    settlement: TokenConfig
    assets: list[TokenConfig]
    feeds: list[FeedConfig]
    heartbeat_grace: int = 0
    sequencer_feed: str | None = None
    sequencer_grace: int = 3600
    guardian: str | None = None
    underlyings: list[UnderlyingConfig] = field(default_factory=list)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    timelock: TimelockConfig | None = None  # None: the deployer owns every contract (local)

    def feed(self, key: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.key == key:
                return feed
        raise KeyError(f"no feed {key!r} in config {self.name!r}")


def _dec(value) -> Decimal:
    return Decimal(str(value))


def _token(raw: dict) -> TokenConfig:
    return TokenConfig(
        symbol=raw["symbol"],
        decimals=int(raw["decimals"]),
        cap=_dec(raw["cap"]),
        address=raw.get("address"),
        feed=raw.get("feed"),
        underlying=raw.get("underlying"),
        mm_haircut=_dec(raw.get("mm_haircut", 0)),
        im_haircut=_dec(raw.get("im_haircut", 0)),
    )


def _feed(raw: dict) -> FeedConfig:
    mock = raw.get("mock") or {}
    return FeedConfig(
        key=raw["key"],
        heartbeat=int(raw["heartbeat"]),
        min_answer=_dec(raw["min"]),
        max_answer=_dec(raw["max"]),
        address=raw.get("address"),
        mock_decimals=int(mock.get("decimals", 8)),
        mock_answer=_dec(mock["answer"]) if "answer" in mock else None,
    )


def _thousands(raw: dict, name: str) -> int:
    """A whole-USD amount of the config that the engine keeps in thousands of USD."""
    usd = int(raw.get(name, 0))
    if usd < 0 or usd % 1000 != 0:
        raise ValueError(f"{name} of {raw['name']} must be a non-negative multiple of 1,000 USD, not {usd}")
    return usd


def _underlying(raw: dict) -> UnderlyingConfig:
    cap = raw.get("perp_oi_cap")
    return UnderlyingConfig(
        name=raw["name"],
        spot=raw["spot"],
        vol=raw["vol"],
        perp_oi_cap=_dec(cap) if cap is not None else None,
        concentration_free_usd=_thousands(raw, "concentration_free_usd"),
        concentration_depth_usd=_thousands(raw, "concentration_depth_usd"),
        position_cap_usd=int(raw.get("position_cap_usd", 0)),
    )


def _exchange(raw: dict) -> ExchangeConfig:
    default = ExchangeConfig()
    return ExchangeConfig(
        maker_fee=_dec(raw.get("maker_fee", default.maker_fee)),
        taker_fee=_dec(raw.get("taker_fee", default.taker_fee)),
        insurance_share=_dec(raw.get("insurance_share", default.insurance_share)),
        insurance=raw.get("insurance"),
        fee_recipient=raw.get("fee_recipient"),
    )


def _timelock(raw: dict | None) -> TimelockConfig | None:
    if raw is None:
        return None
    delay = int(raw["delay"])
    if not 0 <= delay <= 30 * 86_400:
        raise ValueError(f"timelock: delay {delay} s is outside 0 .. 30 days")
    return TimelockConfig(
        delay=delay, proposers=list(raw.get("proposers") or []), executors=list(raw.get("executors") or [])
    )


def parse_config(name: str, raw: dict) -> NetworkConfig:
    oracle = raw.get("oracle", {})
    config = NetworkConfig(
        name=name,
        settlement=_token(raw["settlement"]),
        assets=[_token(a) for a in raw.get("assets", [])],
        feeds=[_feed(f) for f in raw.get("feeds", [])],
        heartbeat_grace=int(oracle.get("heartbeat_grace", 0)),
        sequencer_feed=oracle.get("sequencer_feed"),
        sequencer_grace=int(oracle.get("sequencer_grace", 3600)),
        guardian=raw.get("guardian"),
        underlyings=[_underlying(u) for u in raw.get("underlyings", [])],
        exchange=_exchange(raw.get("exchange") or {}),
        timelock=_timelock(raw.get("timelock")),
    )
    for underlying in config.underlyings:
        config.feed(underlying.spot)
        config.feed(underlying.vol)
        _short_keys(f"underlying {underlying.name}", underlying.spot, underlying.vol)
    for feed in config.feeds:
        if feed.is_mock and feed.mock_answer is None:
            raise ValueError(f"feed {feed.key}: give an address or a mock answer")
    for asset in config.assets:
        if asset.feed is None:
            raise ValueError(f"asset {asset.symbol}: a feed key is required")
        config.feed(asset.feed)
        _short_keys(f"asset {asset.symbol}", asset.feed, asset.underlying or "")
    return config


# The engine stores an underlying's two oracle keys in one word, and the vault an asset's
# price key and underlying name: each at most 16 bytes.
SHORT_KEY_BYTES = 16


def _short_keys(what: str, *keys: str) -> None:
    for key in keys:
        if len(key.encode()) > SHORT_KEY_BYTES:
            raise ValueError(f"{what}: key {key!r} is longer than {SHORT_KEY_BYTES} bytes")


def config_name(network_name: str) -> str:
    """The config of a network: a fork uses its upstream's (``devnet-fork`` -> ``devnet``)."""
    return network_name.removesuffix("-fork")


def load_config(network_name: str, directory: Path = CONFIG_DIR) -> NetworkConfig:
    name = config_name(network_name)
    path = directory / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no deployment config for network {name!r} ({path})")
    return parse_config(name, yaml.safe_load(path.read_text()))
