"""The fedledger command line: real --help, and user errors as one line with exit code 2."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedcore.output import emit
from fedledger.cli import main
from ledger.cli import parse_wei
from ledger.compile import load_artifact
from ledger.devchain import free_port
from tests.world import RPC_ENGINES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("fedledger")


def run(*args, **env):
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "fedledger"]
    return subprocess.run(
        command + list(args), capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **env}
    )


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("contracts", "chain", "deploy", "status"):
        assert command in result.stdout
    deploy_help = run("deploy", "--help").stdout
    assert "--min-stake" in deploy_help and "--deployment" in deploy_help and "--rpc" in deploy_help


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "fedledger", "chain", "up", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--port" in result.stdout


def test_missing_deployment_file_is_one_line(tmp_path):
    missing = tmp_path / "none.json"
    result = run("status", "--deployment", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"error: no deployment file at {missing}: run `fedledger deploy`\n"
    assert "Traceback" not in result.stderr + result.stdout


def test_env_var_names_the_deployment_file(tmp_path):
    result = run("status", FEDLEDGER_DEPLOYMENT=str(tmp_path / "env.json"))
    assert result.returncode == 2 and "env.json" in result.stderr


def test_no_chain_is_one_line(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["deploy", "--rpc", url]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no chain answers at {url} (start one with `fedledger chain up`)\n"


def test_bad_amount_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["deploy", "--min-stake", "lots"])
    assert info.value.code == 2 and "not an amount" in capsys.readouterr().err


def test_parse_wei():
    assert parse_wei("1000") == 1000
    assert parse_wei("0.5ether") == 5 * 10**17
    assert parse_wei("2 gwei") == 2 * 10**9
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number of wei"):
        parse_wei("0.1wei")


def test_emit_formats(capsys):
    rows = [{"name": "a", "wei": 10**30}, {"name": "bb", "wei": 1}]
    emit(rows, "json")
    assert json.loads(capsys.readouterr().out)[0]["wei"] == 10**30
    emit(rows, "text")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "wei"] and lines[1].split() == ["a", str(10**30)]


@pytest.mark.ganache
def test_status_against_ganache(ganache, tmp_path, sol_artifacts_cli):
    from ledger.chain import connect
    from ledger.deployment import Deployment, deploy

    w3 = connect(ganache.url)
    address, block = deploy(w3, "FakeFedLedger", 1, 2, w3.eth.accounts[0], sender=w3.eth.accounts[0],
                            artifact=sol_artifacts_cli["FakeFedLedger"])
    deployment = Deployment(w3.eth.chain_id, ganache.url)
    deployment.add("FedLedger", address, block)
    path = deployment.save(tmp_path / "d.json")
    result = run("status", "--deployment", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chain_id"] == 1337 and report["FedLedger"].startswith(address)


@pytest.mark.ganache
def test_deploy_command_against_ganache(ganache, tmp_path, sol_artifacts_cli):
    # A stand-in FedLedger artifact, so the test does not depend on the committed one.
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    fake = dict(sol_artifacts_cli["FakeFedLedger"], contractName="FedLedger")
    (artifacts / "FedLedger.json").write_text(json.dumps(fake))
    (artifacts / "RevenueSplitter.json").write_text(json.dumps(load_artifact("RevenueSplitter")))  # deployed beside it
    path = tmp_path / "deployment.json"
    result = run("deploy", "--rpc", ganache.url, "--deployment", str(path), "--min-stake", "0.25ether",
                 "--cooldown", "60", "--format", "json", FEDLEDGER_ARTIFACTS=str(artifacts))
    assert result.returncode == 0, result.stderr
    saved = json.loads(path.read_text())
    assert saved["chain_id"] == 1337 and saved["rpc_url"] == ganache.url
    assert json.loads(result.stdout)["FedLedger.address"] == saved["contracts"]["FedLedger"]["address"]
    assert json.loads(result.stdout)["RevenueSplitter.address"] == saved["contracts"]["RevenueSplitter"]["address"]

    from ledger.chain import connect

    w3 = connect(ganache.url)
    contract = w3.eth.contract(address=saved["contracts"]["FedLedger"]["address"], abi=fake["abi"])
    assert contract.functions.minStake().call() == 25 * 10**16
    assert contract.functions.leaveCooldown().call() == 60
    assert contract.functions.governance().call() == ganache.accounts[0].address


@pytest.mark.parametrize("engine", RPC_ENGINES)
def test_chain_up_runs_until_ctrl_c(engine):
    import shutil
    import signal

    from ledger.devchain import HARDFORK, answers

    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the dev chains need it")
    port = free_port()
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "fedledger"]
    process = subprocess.Popen(command + ["chain", "up", "--engine", engine, "--port", str(port), "--accounts", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert lines[0].startswith(f"{engine.capitalize()} listening on http://127.0.0.1:{port}")
        assert f"chain id 1337, {HARDFORK[engine]}" in lines[0]
        assert "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d" in "".join(lines)
        assert answers(f"http://127.0.0.1:{port}")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not answers(f"http://127.0.0.1:{port}"), "the chain outlived `fedledger chain up`"
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def sol_artifacts_cli():
    from ledger.compile import compile_sources

    return compile_sources([ROOT / "tests" / "ledger" / "sol" / "FakeFedLedger.sol"], base=ROOT)


@pytest.mark.parametrize(("given", "threads"), [(None, "1"), ("2", "2")])
def test_every_command_runs_torch_on_one_thread_unless_told_otherwise(given, threads):
    """Set before torch loads, so the command and the processes it starts (nodes, services) inherit it."""
    probe = ("import os, sys\nfrom fedledger.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "import torch\nsys.stderr.write(f\"{os.environ['OMP_NUM_THREADS']} {torch.get_num_threads()}\")")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if given is not None:
        env["OMP_NUM_THREADS"] = given
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=120)
    assert result.stderr.split()[-2:] == [threads, threads]
