"""The deployment file and deploying from artifacts."""

import json

import pytest

from fedcore.errors import ChainError, ConfigError
from ledger.client import FedLedgerClient, RevenueSplitterClient
from ledger.compile import ARTIFACTS_DIR
from ledger.deployment import (
    CONTRACTS,
    MAIN_CONTRACT,
    SPLITTER_CONTRACT,
    Deployment,
    default_path,
    deploy,
    deploy_fedledger,
)


def test_deploy_records_address_and_block(backend, sol_artifacts, tmp_path):
    w3 = backend.w3
    address, block = deploy(w3, "Probe", 5, 0, sender=backend.local, artifact=sol_artifacts["Probe"])
    assert len(w3.eth.get_code(address)) > 0
    assert block == w3.eth.block_number

    deployment = Deployment(chain_id=w3.eth.chain_id, rpc_url="http://x")
    deployment.add("Probe", address.lower(), block)
    path = deployment.save(tmp_path / "sub" / "deployment.json")
    loaded = Deployment.load(path, w3)
    assert loaded == deployment and loaded.address("Probe") == address and loaded.block("Probe") == block
    contract = loaded.contract(w3, "Probe", abi=sol_artifacts["Probe"]["abi"])
    assert contract.functions.limit().call() == 5
    assert json.loads(path.read_text())["contracts"]["Probe"] == {"address": address, "block": block}
    assert not path.with_name("deployment.json.tmp").exists()


def test_missing_file_is_a_clear_chain_error(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(ChainError) as info:
        Deployment.load(path)
    assert str(info.value) == f"no deployment file at {path}: run `fedledger deploy`"


def test_malformed_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed deployment file"):
        Deployment.load(path)


def test_default_path_and_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDLEDGER_DEPLOYMENT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_path().name == "deployment.json"
    Deployment(1, None, {}).save()
    assert (tmp_path / "deployment.json").exists()
    monkeypatch.setenv("FEDLEDGER_DEPLOYMENT", str(tmp_path / "other.json"))
    Deployment(2, None, {}).save()
    assert Deployment.load().chain_id == 2


def test_other_chain_id_is_refused(embedded_w3, tmp_path):
    path = Deployment(chain_id=1337, rpc_url="http://127.0.0.1:8545").save(tmp_path / "d.json")
    with pytest.raises(ChainError, match="deployment is for chain id 1337 but the chain answering has id"):
        Deployment.load(path, embedded_w3)


def test_unknown_contract_name(tmp_path):
    with pytest.raises(ChainError, match="contract FedLedger is not in the deployment"):
        Deployment(1, None, {}).address("FedLedger")


def test_deploy_fedledger_matches_constructor_inputs_by_name(embedded_w3, sol_artifacts):
    fake = sol_artifacts["FakeFedLedger"]  # constructor(uint256 minStake_, uint64 leaveCooldown_, address governance_)
    sender = embedded_w3.eth.accounts[0]
    deployment = deploy_fedledger(embedded_w3, sender, artifact=fake, min_stake=5, cooldown=None)
    assert deployment.chain_id == embedded_w3.eth.chain_id and deployment.rpc_url == "embedded"
    contract = embedded_w3.eth.contract(address=deployment.address("FedLedger"), abi=fake["abi"])
    assert contract.functions.minStake().call() == 5
    assert contract.functions.leaveCooldown().call() == 7 * 24 * 3600  # default
    assert contract.functions.governance().call() == sender  # address input defaults to the sender

    governance = embedded_w3.eth.accounts[3]
    deployment = deploy_fedledger(embedded_w3, sender, artifact=fake, governance=governance, cooldown=60)
    contract = embedded_w3.eth.contract(address=deployment.address("FedLedger"), abi=fake["abi"])
    assert contract.functions.governance().call() == governance
    assert contract.functions.leaveCooldown().call() == 60  # `cooldown` is an alias of leaveCooldown

    with pytest.raises(ConfigError, match="has no input 'quorum'"):
        deploy_fedledger(embedded_w3, sender, artifact=fake, quorum=3)


@pytest.mark.skipif(not (ARTIFACTS_DIR / "FedLedger.json").exists(), reason="FedLedger not compiled yet")
def test_deploy_the_real_fedledger(embedded_w3, tmp_path):
    deployment = deploy_fedledger(embedded_w3, embedded_w3.eth.accounts[0], min_stake=10**17, cooldown=60)
    path = deployment.save(tmp_path / "deployment.json")
    loaded = Deployment.load(path, embedded_w3)
    assert len(embedded_w3.eth.get_code(loaded.address())) > 0


def test_deploy_fedledger_deploys_the_revenue_splitter_beside_the_ledger(embedded_w3):
    sender = embedded_w3.eth.accounts[0]
    deployment = deploy_fedledger(embedded_w3, sender, min_stake=10**16)
    assert sorted(deployment.contracts) == sorted(CONTRACTS)
    ledger = FedLedgerClient.from_deployment(embedded_w3, deployment)
    splitter = RevenueSplitterClient.from_deployment(embedded_w3, deployment)
    assert splitter.address != ledger.address and splitter.ledger_address() == ledger.address
    assert deployment.block(SPLITTER_CONTRACT) > deployment.block(MAIN_CONTRACT)
