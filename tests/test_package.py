"""The SDK as an integrator installs it (issue 16, "installable SDK"): the ABIs bundled in the
package match the compiled contracts; `ape run deploy` writes the ABI of every deployed
contract next to its manifest; outside a checkout the clients are built from those ABIs (no
compiler, no `.build/`); and a wheel installed into a fresh venv in a temp directory imports,
is typed, carries the ABIs and the known manifests, runs the `crossmargin` command and loads
a deployment (this session's, from its manifest and ABIs, bundled or written by deploy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ape import project
from click.testing import CliRunner

import crossmargin.abi
from crossmargin.abi import BUNDLED, CONTRACTS, AbiContracts, abi_json
from crossmargin.clients.protocol import Protocol
from crossmargin.commands import main
from crossmargin.ops.manifest import BUNDLED_DEPLOYMENTS, Manifest, abi_dir, find_manifest

ROOT = Path(__file__).resolve().parent.parent
# What a wheel is built from (`MANIFEST.in` and the package data in pyproject.toml say what
# of it ships).
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "crossmargin", "deployments")


# ------------------------------------------------------------------ ABIs, in process


@pytest.mark.parametrize("name", CONTRACTS)
def test_bundled_abi__matches_the_compiled_contract(name):
    path = BUNDLED / f"{name}.json"
    assert path.is_file(), f"{path} missing: run `ape run abi`"
    assert json.loads(path.read_text()) == abi_json(name), f"{path} is stale: run `ape run abi`"


def test_manifest__write_abis__one_json_per_deployed_contract(cm, tmp_path):
    path = tmp_path / "testnet.json"
    cm.manifest.save(path)
    written = Manifest.load(path).write_abis(path)
    assert abi_dir(path) == tmp_path / "testnet.abi"
    stack = [name for name in cm.manifest.contracts if ":" not in name]  # `token:USDC`, `feed:ETH/USD`: mocks
    assert sorted(p.stem for p in written) == sorted([*stack, "MockERC20", "MockAggregator"])
    vault = json.loads((tmp_path / "testnet.abi" / "Vault.json").read_text())
    [cash_of] = [entry for entry in vault if entry.get("name") == "cash_of"]
    assert cash_of["type"] == "function" and [i["type"] for i in cash_of["inputs"]] == ["address", "uint96"]


def test_protocol__outside_a_checkout__clients_from_the_manifest_abis(cm, tmp_path, monkeypatch, trader):
    """With no ape project of this repository, `Protocol` builds every client from the
    deployment's own ABIs (``<network>.abi/``) and reads the chain as the compiled ones do."""
    path = tmp_path / "testnet.json"
    cm.manifest.save(path)
    Manifest.load(path).write_abis(path)
    monkeypatch.setattr(crossmargin.abi, "in_checkout", lambda: False)
    source = crossmargin.abi.contracts(abi_dir(path))
    assert isinstance(source, AbiContracts) and source.Vault.contract_type.source_id is None  # not compiled
    loaded = Protocol(Manifest.load(path))
    assert loaded.vault.contract.contract_type.abi == project.Vault.contract_type.abi
    assert loaded.oracle.price("ETH/USD") == cm.oracle.price("ETH/USD")
    assert loaded.engine.margin(trader) == cm.engine.margin(trader)
    assert loaded.token("USDC").decimals == 6


def test_protocol__no_deployment_abis__falls_back_to_the_bundled_ones(cm, tmp_path, monkeypatch):
    path = tmp_path / "testnet.json"
    cm.manifest.save(path)  # no testnet.abi/
    monkeypatch.setattr(crossmargin.abi, "in_checkout", lambda: False)
    loaded = Protocol(Manifest.load(path))
    assert loaded.vault.contract.contract_type.abi == project.Vault.contract_type.abi
    assert loaded.oracle.price("ETH/USD") == cm.oracle.price("ETH/USD")


def test_abi_contracts__unknown_contract__missing_deployment_error(tmp_path):
    with pytest.raises(Exception, match="^no ABI of Nope: not in .* nor bundled$"):
        AbiContracts(tmp_path).Nope  # noqa: B018


def test_find_manifest__deployments_dir_then_bundled(tmp_path, monkeypatch):
    own, bundled = tmp_path / "own", tmp_path / "bundled"
    for directory in (own, bundled):
        directory.mkdir()
    (bundled / "sepolia.json").write_text("{}")
    monkeypatch.setattr("crossmargin.ops.manifest.DEPLOYMENTS_DIR", own)
    monkeypatch.setattr("crossmargin.ops.manifest.BUNDLED_DEPLOYMENTS", bundled)
    assert find_manifest("sepolia") == bundled / "sepolia.json"
    assert find_manifest("sepolia-fork") == bundled / "sepolia.json"
    (own / "sepolia.json").write_text("{}")
    assert find_manifest("sepolia") == own / "sepolia.json"
    assert find_manifest("mainnet") == own / "mainnet.json"  # where deploy would write it
    assert find_manifest("sepolia", bundled) == bundled / "sepolia.json"  # an explicit directory only


def test_checkout__has_no_bundled_deployments_dir():
    assert not BUNDLED_DEPLOYMENTS.exists()  # a wheel maps deployments/ there
    assert crossmargin.abi.in_checkout()


def test_crossmargin_command__subcommands_are_the_ape_run_scripts():
    """`crossmargin status|keeper|faucet` and `ape run status|keeper|faucet` are one command
    each (the scripts re-export the package's)."""
    import importlib.util

    assert sorted(main.commands) == ["faucet", "keeper", "preview", "simulate", "status"]
    for name in ("status", "keeper", "preview", "faucet"):
        spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        assert script.cli is main.commands[name]
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Mint mock tokens on a local or devnet network." in result.output


# ------------------------------------------------------------------ the wheel, in a fresh venv


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    assert Path(uv).exists(), "uv is needed to build and install the wheel"
    return uv


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _last_json(out: str) -> dict:
    """The JSON document a script printed last (ape may log a line before it)."""
    assert out.strip(), "no output"
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(cm, tmp_path_factory):
    """A wheel built from a copy of the package's sources, with this session's deployment as
    a known manifest (``testnet``, ABIs written as deploy writes them), installed into a
    fresh venv outside the repository with the locked dependencies (offline from uv's cache
    when it has them all). Returns ``run(args, cwd)`` in the venv and the work directory."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "local*", "devnet*")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    known = Manifest(**{**vars(cm.manifest), "network": "testnet", "path": None})
    known.save(source / "deployments" / "testnet.json")
    known.write_abis(source / "deployments" / "testnet.json")
    (source / "deployments" / "local.json").write_text("{}")  # a throwaway chain's: not shipped

    uv = _uv()
    _run([uv, "build", "--wheel", "--offline", "-o", str(base / "dist")], cwd=source)
    [wheel] = (base / "dist").glob("crossmargin-*.whl")
    venv = base / "venv"
    _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], cwd=base)
    install = [
        uv,
        "pip",
        "install",
        "-q",
        "--python",
        str(venv / "bin" / "python"),
        "-c",
        str(ROOT / "requirements.txt"),
    ]
    try:
        _run([*install, "--offline", str(wheel)], cwd=base)
    except AssertionError:  # something not in uv's cache: fetch it
        _run([*install, str(wheel)], cwd=base)

    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CROSSMARGIN_DEPLOYMENTS", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"

    def run(*args: str, cwd: Path = work) -> str:
        return _run(list(args), cwd=cwd, env=env)

    run.work = work
    return run


SITE_CHECK = """
import json, pathlib, crossmargin
from crossmargin.abi import BUNDLED, CONTRACTS, in_checkout
from crossmargin.ops.manifest import BUNDLED_DEPLOYMENTS, find_manifest
package = pathlib.Path(crossmargin.__file__).parent
print(json.dumps({
    "package": str(package),
    "typed": (package / "py.typed").is_file(),
    "abis": sorted(p.stem for p in BUNDLED.glob("*.json")),
    "vault_abi_entries": len(json.loads((BUNDLED / "Vault.json").read_text())),
    "in_checkout": in_checkout(),
    "deployments": sorted(p.name for p in BUNDLED_DEPLOYMENTS.iterdir()),
    "testnet": str(find_manifest("testnet")),
    "subpackages": sorted(p.parent.name for p in package.glob("*/__init__.py")),
    "modules": sorted(str(p.relative_to(package)) for p in package.rglob("*.py")),
}))
"""


@pytest.mark.slow  # builds a wheel and a venv (about a minute on a loaded 2-core machine)
def test_wheel__fresh_venv_outside_the_repo__typed_with_abis_and_known_manifests(installed):
    out = json.loads(installed("python", "-c", SITE_CHECK))
    package = Path(out["package"])
    assert ROOT not in package.parents and "site-packages" in package.parts
    assert out["typed"] is True
    assert out["abis"] == sorted(CONTRACTS) and out["vault_abi_entries"] > 0
    assert out["in_checkout"] is False
    # the known manifest and its ABIs ship; a throwaway chain's do not
    assert out["deployments"] == ["README.md", "testnet.abi", "testnet.json"]
    assert out["testnet"] == str(package / "deployments" / "testnet.json")
    # the installed API's parts; the checkout's tooling (crossmargin.tools) is not shipped
    assert out["subpackages"] == ["abi", "clients", "commands", "keeper", "model", "ops"]
    assert not [m for m in out["modules"] if m.startswith("tools")]


@pytest.mark.slow
def test_wheel__crossmargin_command__help_and_simulate(installed):
    help_text = installed("crossmargin", "--help")
    for command in ("status", "keeper", "preview", "faucet", "simulate"):
        assert f"  {command} " in help_text
    assert "--network" in installed("crossmargin", "status", "--help")
    shutil.copy(ROOT / "examples" / "book.yaml", installed.work / "book.yaml")
    simulated = installed("crossmargin", "simulate", "book.yaml")
    assert simulated.startswith("equity 22,922.77  IM 1,820.05  MM 1,374.66")


LOAD = """
import json, sys
from ape import networks
from crossmargin.clients.protocol import Protocol
network, owner = sys.argv[1], sys.argv[2]
with networks.parse_network_choice(sys.argv[3]):
    cm = Protocol.load(network)
    print(json.dumps({
        "manifest": str(cm.manifest.path),
        "vault": cm.vault.address,
        "compiled": cm.vault.contract.contract_type.source_id is not None,
        "eth": str(cm.oracle.price("ETH/USD")),
        "usdc_decimals": cm.token("USDC").decimals,
        "equity": str(cm.engine.margin(owner).equity),
    }))
"""


@pytest.mark.slow
def test_wheel__loads_the_bundled_deployment(installed, cm, chain):
    uri = f"ethereum:local:{chain.provider.uri}"
    fund = cm.fund.address  # an account with cash: the insurance fund's
    out = _last_json(installed("python", "-c", LOAD, "testnet", fund, uri))
    assert out["manifest"].endswith("site-packages/crossmargin/deployments/testnet.json")
    assert out["vault"] == cm.vault.address and out["compiled"] is False
    assert out["eth"] == str(cm.oracle.price("ETH/USD")) and out["usdc_decimals"] == 6
    assert out["equity"] == str(cm.engine.margin(fund).equity)


@pytest.mark.slow
def test_wheel__loads_the_manifest_and_abis_ape_run_deploy_writes(installed, cm, chain, tmp_path):
    """`ape run deploy` on this session's chain (a deployed stack: nothing to send) writes the
    manifest and one JSON ABI per deployed contract; the installed SDK loads them from the
    working directory's ``deployments/``."""
    deployments = tmp_path / "deployments"
    cm.manifest.save(deployments / "local.json")
    uri = f"ethereum:local:{chain.provider.uri}"
    env = {**os.environ, "CROSSMARGIN_DEPLOYMENTS": str(deployments), "COLUMNS": "200"}
    out = _run(["ape", "run", "deploy", "--network", uri], cwd=ROOT, env=env)
    assert "ABIs to" in out
    abis = deployments / "local.abi"
    assert sorted(p.stem for p in abis.glob("*.json")) == sorted(
        Manifest.load(deployments / "local.json").contract_names()
    )
    assert json.loads((abis / "Exchange.json").read_text()) == abi_json("Exchange")

    shutil.copytree(deployments, installed.work / "deployments", dirs_exist_ok=True)
    loaded = _last_json(installed("python", "-c", LOAD, "local", cm.fund.address, uri))
    assert loaded["manifest"] == str(installed.work / "deployments" / "local.json")
    assert loaded["vault"] == cm.vault.address and loaded["compiled"] is False
    # and the installed `crossmargin status` reads that deployment
    status = _last_json(installed("crossmargin", "status", "--json", "--no-model", "--network", uri))
    assert status["network"] == "local" and "fund" in status


def test_commands__do_not_import_the_checkouts_tools():
    """`crossmargin.tools` is not in the wheel, so no command of the installed package may need it."""
    check = (
        "import sys, crossmargin.commands, crossmargin.keeper, crossmargin.clients.protocol\n"
        "print(sorted(m for m in sys.modules if m.startswith('crossmargin.tools')))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = _run([sys.executable, "-c", check], cwd=ROOT, env=env)
    assert out.strip().splitlines()[-1] == "[]"
