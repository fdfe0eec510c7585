"""Deployment: idempotent re-runs, manifest round trip, config validation."""

from pathlib import Path

import pytest
from ape import project

from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import ConfigError, load_config, parse_config
from crossmargin.ops.deploy import deploy
from crossmargin.ops.manifest import Manifest, find_manifest, manifest_path
from crossmargin.units import key, to_wad


def test_deploy__second_run__sends_nothing(deployment, config, admin):
    again = deploy(config, admin, Manifest(**vars(deployment.manifest)))
    assert again.sent == 0
    assert again.manifest.contracts == deployment.manifest.contracts


def test_deploy__changed_parameter__sends_only_that(deployment, config, admin, cm):
    cm.vault.contract.set_cap(cm.token("WETH").address, 1, sender=admin)
    again = deploy(config, admin, Manifest(**vars(deployment.manifest)))
    assert again.sent == 1
    assert cm.vault.contract.assets(cm.token("WETH").address).cap == to_wad(config.assets[0].cap)


def test_deploy__dry_run__prints_old_and_new_sends_nothing(deployment, config, admin, cm, chain):
    """`ape run deploy --dry-run`: each differing setting as old -> new, nothing sent."""
    weth = cm.token("WETH").address
    changed = config.model_copy(
        update={"assets": [config.assets[0].model_copy(update={"mm_haircut": "0.04", "cap": 7}), *config.assets[1:]]}
    )
    before = chain.blocks.head.number
    lines: list[str] = []
    run = deploy(changed, admin, Manifest(**vars(deployment.manifest)), log=lines.append, dry_run=True)
    assert chain.blocks.head.number == before and run.sent == 0 and run.stopped is None
    assert run.changes == [
        f"haircuts WETH: ({weth}, {3 * 10**16}, {5 * 10**16}) -> ({weth}, {4 * 10**16}, {5 * 10**16})",
        f"cap WETH: ({weth}, {to_wad(config.assets[0].cap)}) -> ({weth}, {7 * 10**18})",
    ]
    assert [line for line in lines if line.startswith("would set")] == [f"would set {c}" for c in run.changes]
    assert cm.vault.contract.assets(weth).mm_haircut == 3 * 10**16  # unchanged


def test_deploy__dry_run_without_a_deployment__stops_at_the_first_contract(config, admin, chain):
    before = chain.blocks.head.number
    run = deploy(config, admin, Manifest(network="nowhere", chain_id=chain.chain_id), dry_run=True)
    assert (run.stopped, run.sent, run.changes) == ("token:USDC", 0, ["deploy token:USDC"])
    assert chain.blocks.head.number == before


def test_deploy__wires_everything_from_config(cm, config):
    vault, router, engine = cm.vault.contract, cm.oracle.contract, cm.engine.contract
    clearing, markets = cm.clearing.contract, cm.markets.contract
    assert engine.VAULT() == vault.address and engine.ORACLE() == router.address
    assert (engine.CLEARING(), engine.MARKETS()) == (clearing.address, markets.address)
    assert (markets.CLEARING(), markets.ORACLE(), markets.engine()) == (
        clearing.address,
        router.address,
        engine.address,
    )
    assert clearing.markets() == markets.address and cm.engine.risk_model.MARKETS() == markets.address
    for underlying in config.underlyings:
        perp = markets.perp_of(cm.manifest.underlyings[underlying.name])
        assert perp == cm.manifest.perps[underlying.name]
        assert markets.instrument(perp).oi_cap == to_wad(underlying.perp_oi_cap)
    assert vault.margin_engine() == engine.address
    assert vault.SETTLEMENT_ASSET() == cm.token("USDC").address
    for feed in config.feeds:
        stored = router.feeds(key(feed.key))
        assert (stored.heartbeat, stored.min_answer, stored.max_answer) == (
            feed.heartbeat,
            to_wad(feed.min_answer),
            to_wad(feed.max_answer),
        )
        assert cm.oracle.price(feed.key) == feed.mock_answer
    for asset in config.assets:
        listed = vault.assets(cm.token(asset.symbol).address)
        assert listed.scale == 10 ** (18 - asset.decimals)
        assert (listed.mm_haircut, listed.im_haircut) == (to_wad(asset.mm_haircut), to_wad(asset.im_haircut))
        assert bytes(listed.price_key) == key(asset.feed)


def test_deploy__manifest_entry_without_code__redeploys(deployment, config, admin):
    stale = Manifest(**{**vars(deployment.manifest), "contracts": {**deployment.manifest.contracts}})
    stale.contracts["MarginEngine"] = admin.address  # an EOA: no code there
    again = deploy(config, admin, stale)
    engine = again.manifest.contracts["MarginEngine"]
    assert engine != deployment.manifest.contracts["MarginEngine"]
    assert project.Vault.at(again.manifest.contracts["Vault"]).margin_engine() == engine
    # the markets contract's engine is set once: a new one comes with the engine, and so does
    # the clearinghouse wired to it
    markets = project.Markets.at(again.manifest.contracts["Markets"])
    assert markets.address != deployment.manifest.contracts["Markets"]
    assert markets.engine() == engine
    assert project.Clearinghouse.at(again.manifest.contracts["Clearinghouse"]).markets() == markets.address


def test_manifest__save_load_and_fork_fallback(tmp_path, deployment):
    path = manifest_path("devnet", tmp_path)
    deployment.manifest.save(path)
    assert Manifest.load(path) == deployment.manifest
    assert find_manifest("devnet-fork", tmp_path) == path
    assert find_manifest("sepolia", tmp_path) == manifest_path("sepolia", tmp_path)
    assert repr(Protocol(Manifest.load(path))).startswith("<crossmargin")


def test_configs__every_network_parses():
    for name in ("local", "devnet", "sepolia", "devnet-fork"):
        config = load_config(name)
        assert config.settlement.symbol == "USDC"
    sepolia = load_config("sepolia")
    assert sepolia.feed("ETH/USD").address == "0x694AA1769357215DE4FAC081bf1f309aDC325306"
    assert sepolia.feed("BTC/USD").address == "0x1b44F3514812d835EB1BDB0acB33d3fA3351Ee43"
    assert sepolia.feed("USDC/USD").address == "0xA2F78ab2355fe2f984D808B5CeE7FD0A93D5270E"


FEED = {"key": "A/USD", "heartbeat": 60, "min": 1, "max": 2, "mock": {"answer": 1}}
ASSET = {"symbol": "A", "decimals": 18, "cap": 1, "feed": "A/USD"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"feeds": [{"key": "X", "heartbeat": 60, "min": 1, "max": 2}]}, "feeds[0]: give an address or a mock answer"),
        ({"assets": [{"symbol": "A", "decimals": 18, "cap": 1}]}, "assets[0].feed: a feed key is required"),
        ({"assets": [{**ASSET, "feed": "NOPE"}], "feeds": [FEED]}, "assets[0].feed: no feed 'NOPE'"),
        (
            {
                "feeds": [{**FEED, "key": "A/USD:chainlink-v3"}],
                "assets": [{**ASSET, "feed": "A/USD:chainlink-v3"}],
            },
            "feeds[0].key: key 'A/USD:chainlink-v3' is longer than 16 bytes",
        ),
        (
            {
                "feeds": [FEED, {**FEED, "key": "A/IV:deribit-dvol"}],
                "underlyings": [{"name": "A", "spot": "A/USD", "vol": "A/IV:deribit-dvol"}],
            },
            "underlyings[0].vol: key 'A/IV:deribit-dvol' is longer than 16 bytes",
        ),
        # issue 16: a misspelt key no longer deploys a zero haircut; `decimal` is no KeyError
        ({"feeds": [FEED], "assets": [{**ASSET, "mm_hair_cut": "0.03"}]}, "assets[0].mm_hair_cut: unknown key"),
        (
            {"feeds": [FEED], "assets": [{k: v for k, v in ASSET.items() if k != "decimals"} | {"decimal": 18}]},
            "assets[0].decimals: Field required\nbad.yaml: assets[0].decimal: unknown key",
        ),
        # bounds the contracts enforce, caught before anything is sent
        (
            {"feeds": [FEED], "assets": [{**ASSET, "im_haircut": "0.95"}]},
            "assets[0].im_haircut: Input should be less than or equal to 0.9",
        ),
        (
            {"feeds": [FEED], "assets": [{**ASSET, "mm_haircut": "0.2", "im_haircut": "0.1"}]},
            "assets[0]: mm_haircut must not exceed im_haircut",
        ),
        ({"feeds": [{**FEED, "heartbeat": 30}]}, "feeds[0].heartbeat: Input should be greater than or equal to 60"),
        ({"feeds": [{**FEED, "min": 2, "max": 1}]}, "feeds[0]: min must be below max"),
        ({"exchange": {"taker_fee": "0.01"}}, "exchange.taker_fee: Input should be less than or equal to 0.005"),
        (
            {
                "feeds": [FEED, {**FEED, "key": "A/IV"}],
                "underlyings": [{"name": "A", "spot": "A/USD", "vol": "A/IV", "concentration_free_usd": 1500}],
            },
            "underlyings[0].concentration_free_usd: must be a multiple of 1,000 USD, not 1500",
        ),
        ({"timelock": {"delay": 40 * 86_400}}, "timelock.delay: Input should be less than or equal to 2592000"),
        ({"oracle": {"heartbeat_grace": 7200}}, "oracle.heartbeat_grace: Input should be less than or equal to 3600"),
        ({"oracel": {}}, "oracel: unknown key"),
    ],
)
def test_config__invalid__raises_naming_file_key_and_reason(raw, message):
    base = {"settlement": {"symbol": "USDC", "decimals": 6, "cap": 1}}
    with pytest.raises(ConfigError) as error:
        parse_config("bad", {**base, **raw}, source="bad.yaml")
    assert f"bad.yaml: {message}" in str(error.value), str(error.value)
    assert "Traceback" not in str(error.value) and "pydantic" not in str(error.value)


def test_load_config__unknown_key_in_a_file__names_the_file(tmp_path):
    text = (Path(__file__).resolve().parent.parent / "config" / "local.yaml").read_text()
    (tmp_path / "local.yaml").write_text(text.replace("mm_haircut: 0.03", "mm_hair_cut: 0.03", 1))
    with pytest.raises(ConfigError, match=r"local\.yaml: assets\[0\]\.mm_hair_cut: unknown key"):
        load_config("local", directory=tmp_path)


def test_config__unknown_network__raises():
    with pytest.raises(FileNotFoundError, match="no deployment config for network 'mainnet'"):
        load_config("mainnet")
