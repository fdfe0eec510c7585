"""Per-network deployment configuration (``config/<network>.yaml``), parsed into typed models.

A config names the settlement asset, the oracle feeds and the collateral assets. A token or
feed either points at an existing contract (``address``) or asks for a mock to be deployed
(``mock``), which is how local nodes and testnets without a given feed are served.

Every model rejects a key it does not know and a value outside the bound the contracts
enforce, before anything is sent: ``load_config`` raises :class:`ConfigError` naming the
file, the key (``assets[0].mm_hair_cut``) and the reason, one line per problem. The bounds
mirror the contracts' (``Vault.MAX_HAIRCUT``, ``Exchange.MAX_FEE``, the oracle router's
heartbeat bounds, ``Markets.MAX_POSITION_CAP``, ``RiskModel.set_concentration``).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# Bounds the contracts enforce (see each contract's constants).
MAX_HAIRCUT = Decimal("0.9")  # Vault.MAX_HAIRCUT
MAX_FEE = Decimal("0.005")  # Exchange.MAX_FEE
MIN_HEARTBEAT, MAX_HEARTBEAT = 60, 2 * 86_400  # OracleRouter
MAX_HEARTBEAT_GRACE, MAX_SEQUENCER_GRACE = 3_600, 86_400  # OracleRouter
MAX_POSITION_CAP = 10**12  # Markets.MAX_POSITION_CAP (USD)
MAX_CONCENTRATION = (2**24 - 1) * 1000  # RiskModel.set_concentration: uint24 thousands of USD
MAX_TIMELOCK_DELAY = 30 * 86_400
# The engine stores an underlying's two oracle keys in one word, and the vault an asset's
# price key and underlying name: each at most 16 bytes.
SHORT_KEY_BYTES = 16

Fraction = Annotated[Decimal, Field(ge=0, le=1)]


class ConfigError(ValueError):
    """A config that cannot be deployed: every problem found, one line each."""


class _Model(BaseModel):
    # unknown keys are errors (a misspelt `mm_hair_cut` must not deploy a zero haircut)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _short(value: str | None) -> str | None:
    if value is not None and len(value.encode()) > SHORT_KEY_BYTES:
        raise ValueError(f"key {value!r} is longer than {SHORT_KEY_BYTES} bytes")
    return value


class MockFeed(_Model):
    decimals: int = Field(8, ge=0, le=36)
    answer: Decimal = Field(gt=0)


class FeedConfig(_Model):
    key: str = Field(min_length=1)
    heartbeat: int = Field(ge=MIN_HEARTBEAT, le=MAX_HEARTBEAT)  # seconds
    min_answer: Decimal = Field(alias="min", gt=0)  # human units, e.g. 10 (USD)
    max_answer: Decimal = Field(alias="max", gt=0)
    address: str | None = None  # an existing aggregator
    mock: MockFeed | None = None  # else a MockAggregator with these decimals and first answer

    _check_key = field_validator("key")(lambda v: _short(v))

    @model_validator(mode="after")
    def _bounds(self) -> FeedConfig:
        if self.min_answer >= self.max_answer:
            raise ValueError("min must be below max")
        if self.address is None and self.mock is None:
            raise ValueError("give an address or a mock answer")
        return self

    @property
    def is_mock(self) -> bool:
        return self.address is None

    @property
    def mock_decimals(self) -> int:
        return self.mock.decimals if self.mock else 8

    @property
    def mock_answer(self) -> Decimal | None:
        return self.mock.answer if self.mock else None


class TokenConfig(_Model):
    symbol: str = Field(min_length=1)
    decimals: int = Field(ge=0, le=18)  # the vault scales by 10**(18 - decimals)
    cap: Decimal = Field(ge=0)  # human token units
    address: str | None = None  # an existing token; else a MockERC20 is deployed
    feed: str | None = None  # oracle key of its USD price
    underlying: str | None = None  # underlying it tracks, e.g. "ETH"
    mm_haircut: Decimal = Field(Decimal(0), ge=0, le=MAX_HAIRCUT)
    im_haircut: Decimal = Field(Decimal(0), ge=0, le=MAX_HAIRCUT)

    _check_keys = field_validator("feed", "underlying")(lambda v: _short(v))

    @model_validator(mode="after")
    def _haircuts(self) -> TokenConfig:
        if self.mm_haircut > self.im_haircut:
            raise ValueError("mm_haircut must not exceed im_haircut")
        return self

    @property
    def is_mock(self) -> bool:
        return self.address is None


def _thousands(value: int) -> int:
    """A whole-USD amount the engine keeps in thousands of USD."""
    if value % 1000 != 0:
        raise ValueError(f"must be a multiple of 1,000 USD, not {value}")
    return value


class UnderlyingConfig(_Model):
    name: str = Field(min_length=1)  # e.g. "ETH"; collateral with this `underlying` is shocked with its spot
    spot: str  # oracle key of the spot price
    vol: str  # oracle key of the implied volatility
    perp_oi_cap: Decimal | None = Field(None, ge=0)  # units; None = no perpetual listed
    # concentration add-on (SPECIFICATION.md, Margin engine): the loss it leaves free and its
    # depth, whole USD in multiples of 1,000 (the engine keeps thousands); depth 0 = off
    concentration_free_usd: int = Field(0, ge=0, le=MAX_CONCENTRATION)
    concentration_depth_usd: int = Field(0, ge=0, le=MAX_CONCENTRATION)
    position_cap_usd: int = Field(0, ge=0, le=MAX_POSITION_CAP)  # most notional a fill may grow a position to; 0 = none

    _check_keys = field_validator("spot", "vol")(lambda v: _short(v))
    _check_thousands = field_validator("concentration_free_usd", "concentration_depth_usd")(lambda v: _thousands(v))


class ExchangeConfig(_Model):
    maker_fee: Decimal = Field(Decimal("0.0002"), ge=0, le=MAX_FEE)  # fraction of notional
    taker_fee: Decimal = Field(Decimal("0.0005"), ge=0, le=MAX_FEE)
    insurance_share: Fraction = Decimal("0.5")  # of all fees, to the insurance account
    insurance: str | None = None  # owner of the insurance account; default the insurance fund
    fee_recipient: str | None = None  # default the deployer


class TimelockConfig(_Model):
    """Governance: after deploy, every contract is owned by a snekmate TimelockController."""

    delay: int = Field(ge=0, le=MAX_TIMELOCK_DELAY)  # seconds every owner call waits
    proposers: list[str] = Field(default_factory=list)  # schedule and cancel; default the deployer
    executors: list[str] = Field(default_factory=list)  # execute ready calls; default the proposers


class OracleConfig(_Model):
    heartbeat_grace: int = Field(0, ge=0, le=MAX_HEARTBEAT_GRACE)  # seconds tolerated beyond each heartbeat
    sequencer_feed: str | None = None  # L2 sequencer uptime feed
    sequencer_grace: int = Field(3600, ge=0, le=MAX_SEQUENCER_GRACE)


class NetworkConfig(_Model):
    name: str = ""
    settlement: TokenConfig
    assets: list[TokenConfig] = Field(default_factory=list)
    feeds: list[FeedConfig] = Field(default_factory=list)
    oracle: OracleConfig = Field(default_factory=OracleConfig)
    guardian: str | None = None
    underlyings: list[UnderlyingConfig] = Field(default_factory=list)
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    timelock: TimelockConfig | None = None  # None: the deployer owns every contract (local)

    @model_validator(mode="after")
    def _references(self) -> NetworkConfig:
        keys = {feed.key for feed in self.feeds}
        problems = []
        for i, underlying in enumerate(self.underlyings):
            problems += [
                f"underlyings[{i}].{k}: no feed {getattr(underlying, k)!r}"
                for k in ("spot", "vol")
                if getattr(underlying, k) not in keys
            ]
        for i, asset in enumerate(self.assets):
            if asset.feed is None:
                problems.append(f"assets[{i}].feed: a feed key is required")
            elif asset.feed not in keys:
                problems.append(f"assets[{i}].feed: no feed {asset.feed!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def heartbeat_grace(self) -> int:
        return self.oracle.heartbeat_grace

    @property
    def sequencer_feed(self) -> str | None:
        return self.oracle.sequencer_feed

    @property
    def sequencer_grace(self) -> int:
        return self.oracle.sequencer_grace

    def feed(self, key: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.key == key:
                return feed
        raise KeyError(f"no feed {key!r} in config {self.name!r}")


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_lines(error: ValidationError) -> list[str]:
    """One ``key.path[i]: reason`` line per problem of a pydantic error (also the book files')."""
    lines = []
    for e in error.errors():
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        where = _location(e["loc"])
        lines.extend(f"{where}: {part}" if where else part for part in reason.split("; "))
    return lines


def parse_config(name: str, raw: dict, source: str | None = None) -> NetworkConfig:
    """The typed config of ``raw`` (the YAML's mapping); raises :class:`ConfigError` with one
    line per problem, each prefixed by ``source`` (the file) when given."""
    try:
        return NetworkConfig.model_validate({**(raw or {}), "name": name})
    except ValidationError as error:
        prefix = f"{source}: " if source else f"config {name!r}: "
        raise ConfigError("\n".join(prefix + line for line in validation_lines(error))) from None


def config_name(network_name: str) -> str:
    """The config of a network: a fork uses its upstream's (``devnet-fork`` -> ``devnet``)."""
    return network_name.removesuffix("-fork")


def load_config(network_name: str, directory: Path = CONFIG_DIR) -> NetworkConfig:
    name = config_name(network_name)
    path = directory / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no deployment config for network {name!r} ({path})")
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    return parse_config(name, yaml.safe_load(path.read_text()), source=str(shown))
