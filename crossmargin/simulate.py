"""Offline portfolio-margin simulator: ``python -m crossmargin.simulate book.yaml``.

Prices a hypothetical portfolio with the reference model (``crossmargin.model.margin``, the
bit-exact Python twin of the margin engine), with no chain and no deployment: equity, IM,
MM, the worst scenarios of each underlying and the Greeks. The book is a YAML file in human
units (``examples/book.yaml``); every key is checked (an unknown one is an error), and every
risk parameter defaults to the engine's defaults, so a trader states only spot, vol and the
positions.

```yaml
underlyings:
  ETH: {spot: 3000, vol: 0.6}          # risk parameters: the engine's defaults
cash: 10000                            # USD
collateral:
  - {symbol: WETH, amount: 1, underlying: ETH, mm_haircut: 0.03, im_haircut: 0.05}
positions:
  - {kind: call, underlying: ETH, strike: 3200, days: 30, size: -1}
  - {kind: perp, underlying: ETH, size: 0.5, entry: 3000}
  - {kind: future, underlying: ETH, size: -1, entry: 3010, days: 90}
```

Units: prices and cash in USD, sizes in units of the underlying (a negative size is a
short), days to expiry from now, vol as a fraction (0.6 = 60%). An option's premium is not
part of the book: pay or receive it through ``cash``.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Literal

import click
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console
from rich.table import Table

from crossmargin.model import margin as model
from crossmargin.ops.config import validation_lines
from crossmargin.units import from_wad, to_wad

DAY = 86_400
# The simulation's clock: positions' expiries are `days` after it (any fixed time works: only
# the time to expiry matters).
NOW = 1_800_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnderlyingInput(_Model):
    """An underlying's market and risk parameters (defaults: the engine's, see the spec)."""

    spot: Decimal = Field(gt=0)  # USD
    vol: Decimal = Field(gt=0, le=5)  # annualized, 0.6 = 60%
    quantum: Decimal = Field(Decimal("0.000001"), gt=0)  # USD per lane unit
    vol_up: Decimal = Field(Decimal("0.5"), ge=0, le=5)
    vol_down: Decimal = Field(Decimal("0.3"), ge=0, le=1)
    vol_floor: Decimal = Field(Decimal("0.3"), gt=0, le=1)
    term_exponent: Decimal = Field(Decimal("0.3"), ge=0, le=1)
    short_option_rate: Decimal = Field(Decimal("0.01"), ge=0, le=Decimal("0.2"))
    perp_rate: Decimal = Field(Decimal("0.01"), ge=0, le=Decimal("0.2"))
    concentration_free_usd: int = Field(0, ge=0)
    concentration_depth_usd: int = Field(0, ge=0)


class CollateralInput(_Model):
    symbol: str
    amount: Decimal = Field(gt=0)  # token units
    price: Decimal | None = Field(None, gt=0)  # USD; default: its underlying's spot
    underlying: str | None = None  # the underlying it tracks (shocked with its spot)
    mm_haircut: Decimal = Field(Decimal(0), ge=0, le=Decimal("0.9"))
    im_haircut: Decimal = Field(Decimal(0), ge=0, le=Decimal("0.9"))


class PositionInput(_Model):
    kind: Literal["call", "put", "perp", "future"]
    underlying: str
    size: Decimal  # units; negative = short
    strike: Decimal | None = Field(None, gt=0)  # options
    days: Decimal | None = Field(None, gt=0)  # options and futures: days to expiry
    seconds: int | None = Field(None, gt=0)  # or the time to expiry in seconds, exactly
    entry: Decimal | None = Field(None, gt=0)  # perps and futures: entry price (USD)

    @model_validator(mode="after")
    def _fields(self) -> PositionInput:
        if self.size == 0:
            raise ValueError("size must not be 0")
        needs = {"call": ("strike", "days"), "put": ("strike", "days"), "perp": ("entry",), "future": ("entry", "days")}
        missing = [
            name
            for name in needs[self.kind]
            if getattr(self, name) is None and (name != "days" or self.seconds is None)
        ]
        if missing:
            raise ValueError(f"a {self.kind} needs {' and '.join(missing)}")
        return self

    @property
    def expiry(self) -> int:
        return NOW + (self.seconds if self.seconds is not None else int(self.days * DAY))


class BookInput(_Model):
    underlyings: dict[str, UnderlyingInput]
    cash: Decimal = Decimal(0)
    collateral: list[CollateralInput] = Field(default_factory=list)
    positions: list[PositionInput] = Field(default_factory=list)
    im_factor: Decimal = Field(Decimal("1.3"), ge=1, le=3)
    rate: Decimal = Field(Decimal(0), ge=0, le=Decimal("0.2"))

    @model_validator(mode="after")
    def _names(self) -> BookInput:
        known = set(self.underlyings)
        for what, items in (("positions", self.positions), ("collateral", self.collateral)):
            for i, item in enumerate(items):
                if item.underlying is not None and item.underlying not in known:
                    listed = ", ".join(sorted(known))
                    raise ValueError(f"{what}[{i}].underlying: {item.underlying!r} is not in underlyings ({listed})")
        for i, line in enumerate(self.collateral):
            if line.price is None and line.underlying is None:
                raise ValueError(f"collateral[{i}]: give a price or the underlying it tracks")
        return self


class BookError(ValueError):
    """A book file that cannot be simulated: every problem, one line each."""


def load_book(path: Path) -> BookInput:
    """The book of a YAML file; raises :class:`BookError` naming the file, key and reason."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise BookError(f"{path}: {error}") from None
    try:
        return BookInput.model_validate(raw)
    except ValidationError as error:
        raise BookError("\n".join(f"{path}: {line}" for line in validation_lines(error))) from None


def _wad(value: Decimal) -> int:
    return to_wad(value)


def _state(
    book: BookInput,
) -> tuple[model.AccountState, dict[int, model.UnderlyingState], model.EngineParams, dict[int, str]]:
    ids = {name: i + 1 for i, name in enumerate(book.underlyings)}
    names = {i: name for name, i in ids.items()}
    underlyings = {}
    for name, u in book.underlyings.items():
        underlyings[ids[name]] = model.UnderlyingState(
            id=ids[name],
            spot=_wad(u.spot),
            vol=_wad(u.vol),
            spot_round=1,
            vol_round=1,
            quantum=_wad(u.quantum),
            vol_up=_wad(u.vol_up),
            vol_down=_wad(u.vol_down),
            vol_floor=_wad(u.vol_floor),
            term_exponent=_wad(u.term_exponent),
            short_option_rate=_wad(u.short_option_rate),
            perp_rate=_wad(u.perp_rate),
            grid=model.default_grid(),
            # no stored epoch: every array is priced at NOW, as a first check would
            epoch=model.EpochRecord(0, 0, 0, 0),
            name=name.encode(),
            concentration_free=u.concentration_free_usd // 1000,
            concentration_depth=u.concentration_depth_usd // 1000,
        )
    collateral = tuple(
        model.Collateral(
            balance=_wad(line.amount),
            price=_wad(line.price) if line.price is not None else underlyings[ids[line.underlying]].spot,
            mm_haircut=_wad(line.mm_haircut),
            im_haircut=_wad(line.im_haircut),
            underlying=ids[line.underlying] if line.underlying else 0,
        )
        for line in book.collateral
    )
    options, perps, futures = [], [], []
    for i, p in enumerate(book.positions):
        u, size = ids[p.underlying], _wad(p.size)
        if p.kind in ("call", "put"):
            kind = model.CALL if p.kind == "call" else model.PUT
            expiry = p.expiry
            options.append(model.OptionPosition(i + 1, u, kind, _wad(p.strike), expiry, size))
        elif p.kind == "perp":
            cost = -(-size * _wad(p.entry) // model.WAD)  # ceil, as the clearinghouse rounds
            perps.append(model.PerpPosition(u, size, cost, 0, 0, 0, NOW))
        else:
            cost = -(-size * _wad(p.entry) // model.WAD)
            futures.append(model.FuturePosition(i + 1, u, size, cost, p.expiry))
    merged: dict[int, model.PerpPosition] = {}
    for perp in perps:  # one perp line per underlying, as on chain
        if perp.underlying in merged:
            old = merged[perp.underlying]
            perp = model.PerpPosition(perp.underlying, old.size + perp.size, old.cost + perp.cost, 0, 0, 0, NOW)
        merged[perp.underlying] = perp
    state = model.AccountState(
        cash=_wad(book.cash),
        collateral=collateral,
        options=tuple(options),
        perps=tuple(merged[u] for u in sorted(merged)),
        futures=tuple(futures),
    )
    params = model.EngineParams(im_factor=_wad(book.im_factor), rate=_wad(book.rate))
    return state, underlyings, params, names


def _scenario_name(s: model.Scenario) -> str:
    move = {model.VOL_UP: "vol up", model.VOL_NONE: "vol unchanged", model.VOL_DOWN: "vol down"}[s.move]
    return f"spot {s.shock / 10_000:+g}%, {move} (weight {s.weight / 10**6:g})"


def simulate(book: BookInput, worst: int = 3) -> dict:
    """Equity, IM, MM, health, and per underlying its loss, add-ons, ``worst`` worst scenarios
    (PnL × weight) and Greeks, as plain numbers (USD; Greeks in units)."""
    state, underlyings, params, names = _state(book)
    m = model.margin(state, underlyings, params, NOW)
    greeks = {g.underlying: g for g in model.greeks(state, underlyings, params, NOW)}
    per_underlying = []
    for r in model.risk(state, underlyings, params, NOW):
        grid = underlyings[r.underlying].grid
        ranked = sorted(range(len(grid)), key=lambda s: r.pnl[s] * grid[s].weight)[:worst]
        g = greeks.get(r.underlying)
        per_underlying.append(
            {
                "underlying": names[r.underlying],
                "loss": str(from_wad(r.loss)),
                "concentration": str(from_wad(model.concentration(r.loss, underlyings[r.underlying]))),
                "worst": [
                    {
                        "scenario": _scenario_name(grid[s]),
                        "pnl": str(from_wad(r.pnl[s])),
                        "weighted": str(from_wad(model.floor_div(r.pnl[s] * grid[s].weight, model.MILLION))),
                    }
                    for s in ranked
                ],
                "delta": str(from_wad(g.delta)) if g else "0",
                "gamma": str(from_wad(g.gamma)) if g else "0",
                "vega": str(from_wad(g.vega)) if g else "0",
            }
        )
    return {
        "equity": str(from_wad(m.equity)),
        "initial": str(from_wad(m.initial)),
        "maintenance": str(from_wad(m.maintenance)),
        "initial_health": str(from_wad(m.equity - m.initial)),
        "maintenance_health": str(from_wad(m.equity - m.maintenance)),
        "underlyings": per_underlying,
    }


def _print(result: dict, console: Console) -> None:
    console.print(
        f"equity {Decimal(result['equity']):,.2f}  IM {Decimal(result['initial']):,.2f}  "
        f"MM {Decimal(result['maintenance']):,.2f}  initial health {Decimal(result['initial_health']):,.2f}  "
        f"maintenance health {Decimal(result['maintenance_health']):,.2f}  (USD)"
    )
    for u in result["underlyings"]:
        table = Table(
            title=f"{u['underlying']}: loss {Decimal(u['loss']):,.2f}, "
            f"concentration {Decimal(u['concentration']):,.2f}; delta {Decimal(u['delta']):,.4f}, "
            f"gamma {Decimal(u['gamma']):,.6f}, vega {Decimal(u['vega']):,.2f}"
        )
        table.add_column("worst scenarios")
        table.add_column("PnL", justify="right")
        table.add_column("PnL x weight", justify="right")
        for w in u["worst"]:
            table.add_row(w["scenario"], f"{Decimal(w['pnl']):,.2f}", f"{Decimal(w['weighted']):,.2f}")
        console.print(table)


@click.command(help=__doc__.split("\n\n")[0])
@click.argument("book", type=click.Path(path_type=Path))
@click.option("--worst", default=3, show_default=True, help="How many worst scenarios to list per underlying.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
def cli(book: Path, worst: int, as_json: bool) -> None:
    try:
        result = simulate(load_book(book), worst)
    except BookError as error:
        raise click.ClickException(str(error)) from None
    except (ArithmeticError, ValueError) as error:  # the model's reverts (e.g. a value out of range)
        raise click.ClickException(f"{book}: the engine would refuse this book: {error}") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print(result, Console())


if __name__ == "__main__":
    sys.exit(cli())
