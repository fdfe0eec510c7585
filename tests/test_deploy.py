"""Deployment: idempotent re-runs, manifest round trip, config validation."""

import pytest
from ape import project

from crossmargin.config import load_config, parse_config
from crossmargin.deploy import deploy
from crossmargin.manifest import Manifest, find_manifest, manifest_path
from crossmargin.protocol import Protocol
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


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"feeds": [{"key": "X", "heartbeat": 60, "min": 1, "max": 2}]}, "give an address or a mock answer"),
        ({"assets": [{"symbol": "A", "decimals": 18, "cap": 1}]}, "a feed key is required"),
        ({"assets": [{"symbol": "A", "decimals": 18, "cap": 1, "feed": "NOPE"}]}, "no feed 'NOPE'"),
        (
            {
                "feeds": [{"key": "A/USD:chainlink-v3", "heartbeat": 60, "min": 1, "max": 2, "mock": {"answer": 1}}],
                "assets": [{"symbol": "A", "decimals": 18, "cap": 1, "feed": "A/USD:chainlink-v3"}],
            },
            "asset A: key 'A/USD:chainlink-v3' is longer than 16 bytes",
        ),
        (
            {
                "feeds": [
                    {"key": "A/USD", "heartbeat": 60, "min": 1, "max": 2, "mock": {"answer": 1}},
                    {"key": "A/IV:deribit-dvol", "heartbeat": 60, "min": 1, "max": 2, "mock": {"answer": 1}},
                ],
                "underlyings": [{"name": "A", "spot": "A/USD", "vol": "A/IV:deribit-dvol"}],
            },
            "underlying A: key 'A/IV:deribit-dvol' is longer than 16 bytes",
        ),
    ],
)
def test_config__invalid__raises(raw, message):
    base = {"settlement": {"symbol": "USDC", "decimals": 6, "cap": 1}}
    with pytest.raises((ValueError, KeyError), match=message):
        parse_config("bad", {**base, **raw})


def test_config__unknown_network__raises():
    with pytest.raises(FileNotFoundError, match="no deployment config for network 'mainnet'"):
        load_config("mainnet")
