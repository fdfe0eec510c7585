"""Idempotent deployment of the whole stack from a network config.

Every step first looks at the chain: a contract listed in the manifest is reused when its
code is there and was built from the same source with the same wiring; a setting is only
sent when the chain's value differs. A second run on the same chain therefore sends no
transaction at all.

Governance: with a ``timelock`` in the config, the last step hands every contract to a
snekmate ``TimelockController`` (deployed with no delay, so the hand-over completes in this
run, then set to the configured delay). From then on a setting that differs is *scheduled*
on the timelock instead of sent; a later run executes it once the delay has passed (or
reports how long is left). Cancelling is the timelock's own ``cancel``.

A dry run (``dry_run=True``, ``ape run deploy --dry-run``) reads the chain the same way and
logs each change it would make, old value -> new value, without sending anything; it stops at
the first contract it would deploy, since nothing after it can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ape import chain, project
from eth_utils import keccak

from crossmargin.clients.fund import constructor_args as fund_constructor_args
from crossmargin.ops.config import FeedConfig, NetworkConfig, TokenConfig, UnderlyingConfig
from crossmargin.ops.manifest import Manifest
from crossmargin.units import key, to_units, to_wad

Log = Callable[[str], None]
ZERO = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\0" * 32
# The protocol contracts an owner governs, by manifest name.
OWNED = (
    "OracleRouter",
    "Vault",
    "Clearinghouse",
    "Markets",
    "MarginEngine",
    "RiskModel",
    "InsuranceFund",
    "Liquidator",
    "Exchange",
)


def _build_hash(container) -> str:
    runtime = container.contract_type.runtime_bytecode.bytecode or ""
    return keccak(hexstr=runtime).hex()


class DryRunStop(Exception):
    """A dry run reached a contract it would deploy: nothing after it can be compared."""


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    if isinstance(value, bytes | bytearray):
        return value.rstrip(b"\0").decode(errors="replace") or "0x0"
    return str(value)


class Deployment:
    """Deploys or finds each contract of ``config`` and records it in ``manifest``."""

    def __init__(
        self,
        config: NetworkConfig | None,
        sender: Any,
        manifest: Manifest,
        log: Log | None = None,
        dry_run: bool = False,
    ):
        self.config = config
        self.sender = sender
        self.manifest = manifest
        self.log: Log = log or (lambda _msg: None)
        self.dry_run = dry_run
        self.sent = 0  # transactions sent by this run
        self.changes: list[str] = []  # a dry run's changes, old -> new
        self.stopped: str | None = None  # a dry run: the contract it would deploy first

    # ------------------------------------------------------------------ helpers

    def _reusable(self, name: str, container, matches: Callable[[Any], bool]):
        address = self.manifest.contracts.get(name)
        if not address or not bytes(chain.provider.get_code(address)):
            return None
        # reuse only what was built from the same source: the manifest records the hash of the
        # compiled runtime (deployed code can't be compared byte for byte: immutables are
        # spliced into it, and where depends on the code generator)
        if self.manifest.builds.get(name) != _build_hash(container):
            return None
        contract = container.at(address)
        return contract if matches(contract) else None

    def _contract(self, name: str, container, *args, matches: Callable[[Any], bool] = lambda _c: True):
        found = self._reusable(name, container, matches)
        if found is not None:
            self.log(f"found    {name:<24} {found.address}")
            return found
        if self.dry_run:
            self.changes.append(f"deploy {name}")
            self.log(f"would deploy {name} (the dry run stops here: nothing after it can be compared)")
            raise DryRunStop(name)
        contract = self.sender.deploy(container, *args)
        self.sent += 1
        self.manifest.contracts[name] = contract.address
        self.manifest.builds[name] = _build_hash(container)
        self.log(f"deployed {name:<24} {contract.address}")
        return contract

    def _send(self, description: str, method, *args, old: Any = "not set") -> None:
        timelock = self._timelock_of(method.contract)
        if self.dry_run:
            new = args[0] if len(args) == 1 else args
            via = " (through the timelock)" if timelock is not None else ""
            self.changes.append(f"{description}: {_shown(old)} -> {_shown(new)}{via}")
            self.log(f"would set {description}: {_shown(old)} -> {_shown(new)}{via}")
            return
        if timelock is None:
            method(*args, sender=self.sender)
            self.sent += 1
            self.log(f"set      {description}")
            return
        self._through_timelock(timelock, description, method.contract.address, method.encode_input(*args))

    def _timelock_of(self, contract):
        """The timelock owning ``contract``, if the manifest has one and it is the owner."""
        address = self.manifest.contracts.get("Timelock")
        if not address or not hasattr(contract, "owner") or contract.owner() != address:
            return None
        return project.Timelock.at(address)

    def _through_timelock(self, timelock, description: str, target: str, payload) -> None:
        """Schedules an owner call on the timelock, or executes it once it is ready."""
        op = timelock.hash_operation(target, 0, payload, ZERO32, ZERO32)
        if timelock.is_operation_ready(op):
            timelock.execute(target, 0, payload, ZERO32, ZERO32, sender=self.sender)
            self.sent += 1
            self.log(f"executed {description} (timelock)")
        elif timelock.is_operation_pending(op):
            left = timelock.get_timestamp(op) - chain.pending_timestamp
            self.log(f"waiting  {description}: the timelock runs it in {max(left, 0)} s; deploy again then")
        else:
            delay = timelock.get_minimum_delay()
            timelock.schedule(target, 0, payload, ZERO32, ZERO32, delay, sender=self.sender)
            self.sent += 1
            if delay == 0:  # the hand-over: ready at once
                self._through_timelock(timelock, description, target, payload)
            else:
                self.log(f"scheduled {description} (timelock, runs in {delay} s; deploy again then)")

    # ------------------------------------------------------------------ steps

    def _token(self, token: TokenConfig):
        if not token.is_mock:
            self.manifest.tokens[token.symbol] = token.address
            return project.MockERC20.at(token.address)

        def same(contract) -> bool:
            return contract.symbol() == token.symbol and contract.decimals() == token.decimals

        contract = self._contract(
            f"token:{token.symbol}",
            project.MockERC20,
            f"Mock {token.symbol}",
            token.symbol,
            token.decimals,
            matches=same,
        )
        self.manifest.tokens[token.symbol] = contract.address
        return contract

    def _feed(self, feed: FeedConfig) -> str:
        if not feed.is_mock:
            address = feed.address
        else:
            answer = to_units(feed.mock_answer, feed.mock_decimals)
            address = self._contract(
                f"feed:{feed.key}",
                project.MockAggregator,
                feed.mock_decimals,
                feed.key,
                answer,
                matches=lambda c: c.decimals() == feed.mock_decimals,
            ).address
        self.manifest.feeds[feed.key] = address
        return address

    def run(self) -> Manifest:
        config = self.config
        self.manifest.settlement = config.settlement.symbol
        settlement = self._token(config.settlement)
        tokens = {asset.symbol: self._token(asset) for asset in config.assets}
        aggregators = {feed.key: self._feed(feed) for feed in config.feeds}

        router = self._contract("OracleRouter", project.OracleRouter, config.heartbeat_grace)
        if router.heartbeat_grace() != config.heartbeat_grace:
            self._send(
                "heartbeat grace", router.set_heartbeat_grace, config.heartbeat_grace, old=router.heartbeat_grace()
            )
        for feed in config.feeds:
            wanted = (aggregators[feed.key], feed.heartbeat, to_wad(feed.min_answer), to_wad(feed.max_answer))
            have = router.feeds(key(feed.key))
            if (have.aggregator, have.heartbeat, have.min_answer, have.max_answer) != wanted:
                old = (have.aggregator, have.heartbeat, have.min_answer, have.max_answer)
                self._send(f"feed {feed.key}", router.set_feed, key(feed.key), *wanted, old=(key(feed.key), *old))
        zero = "0x0000000000000000000000000000000000000000"
        sequencer = (config.sequencer_feed or zero).lower()
        grace = config.sequencer_grace if config.sequencer_feed else router.sequencer_grace()
        if (router.sequencer_feed().lower(), router.sequencer_grace()) != (sequencer, grace):
            old = (router.sequencer_feed(), router.sequencer_grace())
            self._send("sequencer feed", router.set_sequencer, sequencer, grace, old=old)

        vault = self._contract(
            "Vault",
            project.Vault,
            settlement.address,
            to_wad(config.settlement.cap),
            matches=lambda c: c.SETTLEMENT_ASSET() == settlement.address,
        )
        if vault.assets(settlement.address).cap != to_wad(config.settlement.cap):
            self._send(
                f"cap {config.settlement.symbol}",
                vault.set_cap,
                settlement.address,
                to_wad(config.settlement.cap),
                old=(settlement.address, vault.assets(settlement.address).cap),
            )
        for asset in config.assets:
            self._list(vault, asset, tokens[asset.symbol].address)

        # the clearinghouse's markets and the markets' engine are set once: a contract is
        # reused only if what it is wired to is reused too
        def engine_matches(c, clearing_address: str, markets_address: str) -> bool:
            sources = (vault.address, router.address, clearing_address, markets_address)
            return (c.VAULT(), c.ORACLE(), c.CLEARING(), c.MARKETS()) == sources

        def markets_matches(c, clearing_address: str) -> bool:
            if (c.CLEARING(), c.ORACLE()) != (clearing_address, router.address):
                return False
            wired = c.engine()
            found = self._reusable(
                "MarginEngine", project.MarginEngine, lambda e: engine_matches(e, clearing_address, c.address)
            )
            return wired == ZERO or (found is not None and wired == found.address)

        moves = self._contract(
            "ClearingMoves",
            project.ClearingMoves,
            vault.address,
            router.address,
            matches=lambda m: (m.VAULT(), m.ORACLE()) == (vault.address, router.address),
        )

        def clearing_matches(c) -> bool:
            if (c.VAULT(), c.ORACLE(), c.MOVES()) != (vault.address, router.address, moves.address):
                return False
            wired = c.markets()
            found = self._reusable("Markets", project.Markets, lambda m: markets_matches(m, c.address))
            return wired == ZERO or (found is not None and wired == found.address)

        clearing = self._contract(
            "Clearinghouse",
            project.Clearinghouse,
            vault.address,
            router.address,
            moves.address,
            matches=clearing_matches,
        )
        markets = self._contract(
            "Markets",
            project.Markets,
            clearing.address,
            router.address,
            matches=lambda c: markets_matches(c, clearing.address),
        )
        settlement_key = key(config.settlement.feed) if config.settlement.feed else b"\0" * 32
        engine = self._contract(
            "MarginEngine",
            project.MarginEngine,
            vault.address,
            router.address,
            clearing.address,
            markets.address,
            settlement_key,
            matches=lambda c: engine_matches(c, clearing.address, markets.address),
        )
        if bytes(engine.settlement_key()) != settlement_key:
            self._send("settlement key", engine.set_settlement_key, settlement_key, old=bytes(engine.settlement_key()))
        risk_model = self._contract(
            "RiskModel",
            project.RiskModel,
            engine.address,
            matches=lambda c: c.ENGINE() == engine.address,
        )
        if engine.risk_model() != risk_model.address:
            self._send("engine risk model", engine.set_risk_model, risk_model.address, old=engine.risk_model())
        if clearing.engine() != engine.address:
            self._send("clearinghouse engine", clearing.set_engine, engine.address, old=clearing.engine())
        if markets.engine() != engine.address:
            self._send("markets engine", markets.set_engine, engine.address, old=markets.engine())
        if clearing.markets() != markets.address:
            self._send("clearinghouse markets", clearing.set_markets, markets.address, old=clearing.markets())
        if vault.margin_engine() != engine.address:
            self._send("vault margin engine", vault.set_margin_engine, engine.address, old=vault.margin_engine())
        self._lens(vault.address, router.address, clearing.address, markets.address, engine.address)
        if not vault.clearing(clearing.address):
            self._send("vault clearing", vault.set_clearing, clearing.address, True, old=(clearing.address, False))
        if config.guardian and vault.guardian().lower() != config.guardian.lower():
            self._send("guardian", vault.set_guardian, config.guardian, old=vault.guardian())
        for underlying in config.underlyings:
            self._underlying(engine, risk_model, markets, underlying)

        fund = self._contract(
            "InsuranceFund",
            project.InsuranceFund,
            *fund_constructor_args(settlement.address, vault.address),
            matches=lambda c: (c.asset(), c.VAULT()) == (settlement.address, vault.address),
        )
        liquidator = self._contract(
            "Liquidator",
            project.Liquidator,
            vault.address,
            clearing.address,
            engine.address,
            fund.address,
            settlement.address,
            matches=lambda c: (
                (c.VAULT(), c.CLEARING(), c.ENGINE(), c.FUND())
                == (vault.address, clearing.address, engine.address, fund.address)
            ),
        )
        if vault.liquidator() != liquidator.address:
            self._send("vault liquidator", vault.set_liquidator, liquidator.address, old=vault.liquidator())
        if vault.insurance_fund() != fund.address:
            self._send("vault insurance fund", vault.set_insurance_fund, fund.address, old=vault.insurance_fund())
        if clearing.liquidator() != liquidator.address:
            self._send(
                "clearinghouse liquidator", clearing.set_liquidator, liquidator.address, old=clearing.liquidator()
            )
        if fund.liquidator() != liquidator.address:
            self._send("fund liquidator", fund.set_liquidator, liquidator.address, old=fund.liquidator())

        fees = config.exchange
        # trading fees' insurance share goes to the fund's own vault account
        insurance = fees.insurance or fund.address
        recipient = fees.fee_recipient or self.sender.address
        rates = (to_wad(fees.maker_fee), to_wad(fees.taker_fee), to_wad(fees.insurance_share))
        exchange = self._contract(
            "Exchange",
            project.Exchange,
            vault.address,
            clearing.address,
            insurance,
            recipient,
            *rates,
            matches=lambda c: c.engine() == clearing.address,
        )
        if (exchange.maker_fee(), exchange.taker_fee(), exchange.insurance_share()) != rates:
            old = (exchange.maker_fee(), exchange.taker_fee(), exchange.insurance_share())
            self._send("exchange fees", exchange.set_fees, *rates, old=old)
        if (exchange.insurance().lower(), exchange.fee_recipient().lower()) != (insurance.lower(), recipient.lower()):
            old = (exchange.insurance(), exchange.fee_recipient())
            self._send("exchange fee accounts", exchange.set_fee_accounts, insurance, recipient, old=old)
        if clearing.exchange() != exchange.address:
            self._send("clearinghouse exchange", clearing.set_exchange, exchange.address, old=clearing.exchange())
        if config.timelock is not None:
            self._govern()
        return self.manifest

    def _govern(self) -> None:
        """Hands every contract to the timelock, then sets its delay (idempotent)."""
        settings = self.config.timelock
        proposers = settings.proposers or [self.sender.address]
        executors = settings.executors or proposers
        timelock = self._contract(
            "Timelock",
            project.Timelock,
            0,  # no delay until the hand-over below is done
            proposers,
            executors,
            ZERO,
            matches=lambda c: c.hasRole(c.PROPOSER_ROLE(), proposers[0]),
        )
        accepts = []
        for name in OWNED:
            contract = getattr(project, name).at(self.manifest.contracts[name])
            if contract.owner() == timelock.address:
                continue
            if contract.pending_owner() != timelock.address:
                self._send(f"owner {name} -> timelock", contract.transfer_ownership, timelock.address)
            accepts.append((name, contract.address, contract.accept_ownership.encode_input()))
        for name, target, payload in accepts:
            self._through_timelock(timelock, f"{name} accepts the timelock as owner", target, payload)
        if timelock.get_minimum_delay() != settings.delay:
            payload = timelock.update_delay.encode_input(settings.delay)
            self._through_timelock(timelock, f"timelock delay {settings.delay} s", timelock.address, payload)

    def _lens(self, *sources: str, fresh: bool = False):
        """The view-only Lens over ``sources`` (vault, router, clearinghouse, markets, engine):
        found when one of the same build reads the same contracts, else (or with ``fresh``)
        deployed. Nothing is wired to it: replacing it changes no other contract."""
        if fresh:
            self.manifest.contracts.pop("Lens", None)
        return self._contract(
            "Lens",
            project.Lens,
            *sources,
            matches=lambda c: (c.VAULT(), c.ORACLE(), c.CLEARING(), c.MARKETS(), c.ENGINE()) == sources,
        )

    def _underlying(self, engine, risk_model, markets, underlying: UnderlyingConfig) -> None:
        name = key(underlying.name)
        u = engine.underlying_ids(name)
        if u == 0:
            # listed through the risk model, which configures the engine once the engine's
            # owner has set it (a timelocked `set_risk_model` may still be waiting)
            if engine.risk_model() != risk_model.address:
                self.log(f"waiting  underlying {underlying.name}: the engine's risk model is not set yet")
                return
            keys = (name, key(underlying.spot), key(underlying.vol))
            self._send(f"underlying {underlying.name}", risk_model.list_underlying, *keys)
            u = engine.underlying_ids(name)
            if u == 0:  # scheduled on the timelock
                return
        self.manifest.underlyings[underlying.name] = u
        free, depth = underlying.concentration_free_usd // 1000, underlying.concentration_depth_usd // 1000
        listing = engine.underlyings(u)
        if (listing.concentration_free, listing.concentration_depth) != (free, depth):
            old = (u, listing.concentration_free, listing.concentration_depth)
            self._send(f"concentration {underlying.name}", risk_model.set_concentration, u, free, depth, old=old)
        if markets.position_cap(u) != underlying.position_cap_usd:
            cap = underlying.position_cap_usd
            self._send(
                f"position cap {underlying.name}", markets.set_position_cap, u, cap, old=(u, markets.position_cap(u))
            )
        if underlying.perp_oi_cap is None:
            return
        cap = to_wad(underlying.perp_oi_cap)
        perp = markets.perp_of(u)
        if perp == 0:
            self._send(f"perp {underlying.name}", markets.list_perp, u, cap)
            perp = markets.perp_of(u)
        elif markets.instrument(perp).oi_cap != cap:
            self._send(
                f"perp cap {underlying.name}",
                markets.set_oi_cap,
                perp,
                cap,
                old=(perp, markets.instrument(perp).oi_cap),
            )
        self.manifest.perps[underlying.name] = perp

    def _list(self, vault, asset: TokenConfig, address: str) -> None:
        mm, im, cap = to_wad(asset.mm_haircut), to_wad(asset.im_haircut), to_wad(asset.cap)
        have = vault.assets(address)
        if have.scale == 0:
            underlying = key(asset.underlying) if asset.underlying else b"\0" * 32
            self._send(f"list {asset.symbol}", vault.list_asset, address, key(asset.feed), underlying, mm, im, cap)
            return
        if (have.mm_haircut, have.im_haircut) != (mm, im):
            old = (address, have.mm_haircut, have.im_haircut)
            self._send(f"haircuts {asset.symbol}", vault.set_haircuts, address, mm, im, old=old)
        if have.cap != cap:
            self._send(f"cap {asset.symbol}", vault.set_cap, address, cap, old=(address, have.cap))


def deploy(
    config: NetworkConfig,
    sender: Any,
    manifest: Manifest | None = None,
    log: Log | None = None,
    dry_run: bool = False,
) -> Deployment:
    """Deploys (or finds) the stack; returns the run, whose ``manifest`` and ``sent`` tell what
    it did. With ``dry_run`` nothing is sent: ``changes`` lists what would be (old -> new),
    and ``stopped`` names the first contract it would deploy, if any."""
    manifest = manifest or Manifest(network=config.name, chain_id=chain.chain_id)
    if not dry_run:
        manifest.chain_id = chain.chain_id
    run = Deployment(config, sender, manifest, log, dry_run=dry_run)
    try:
        run.run()
    except DryRunStop as stop:
        run.stopped = str(stop)
    return run


def deploy_lens(manifest: Manifest, sender: Any, log: Log | None = None) -> Deployment:
    """Deploys a new Lens over the contracts of ``manifest`` and records it there (the rest
    of the stack untouched, e.g. after the Lens's source changed); returns the run."""
    run = Deployment(None, sender, manifest, log)
    contracts = manifest.contracts
    names = ("Vault", "OracleRouter", "Clearinghouse", "Markets", "MarginEngine")
    run._lens(*(contracts[name] for name in names), fresh=True)
    return run
