"""``fedledger aggregator serve`` as a real process against Ganache, spoken to over real HTTP: health, OpenAPI,
task, model, two signed uploads, and a one-round bounty scored (aggregator.scoring), finalized on chain and
completed, after which ``--exit-when-complete`` stops the server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from eth_account import Account

from aggregator.rules import resolve_rules
from fedcore import codec
from fedcore.commitments import bind_commitment
from fedcore.keystore import create_keystore
from fedcore.rules import rules_hash
from fedcore.signing import sign_upload
from fedcore.task import TaskSpec, task_hash
from ledger.chain import connect, fund_account
from ledger.client import BountyParams, BountyStatus, FedLedgerClient
from ledger.deployment import deploy_fedledger
from ledger.devchain import free_port
from tests.aggregator.service.conftest import SERVICE_PATHS

REPO = Path(__file__).resolve().parents[3]
MIN_STAKE = 10**16
ONE_ETH = 10**18
PASSWORD = "process password"
SPEC = TaskSpec(name="service-process-test", model="logreg", feature_columns=("a", "b", "c"), label_column="y")

pytestmark = pytest.mark.ganache


def local_account(label: str):
    return Account.from_key(hashlib.sha256(f"fedledger-service-process-test/{label}".encode()).digest())


def validation_csv(path: Path, rows: int = 40) -> Path:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(rows, 3))
    y = (X @ np.array([1.0, -0.5, 0.25]) > 0).astype(int)
    path.write_text("a,b,c,y\n" + "".join(f"{a:.6f},{b:.6f},{c:.6f},{label}\n" for (a, b, c), label in zip(X, y)))
    return path


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLEDGER_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"aggregator exited with {process.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_serve_as_a_process_over_http(ganache, tmp_path):
    w3 = connect(ganache.url)
    gov, sponsor = ganache.accounts[0], ganache.accounts[1]
    deployment = deploy_fedledger(w3, gov, governance=gov.address, min_stake=MIN_STAKE, leave_cooldown=86_400)
    deployment_path = deployment.save(tmp_path / "deployment.json")
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    aggregator = local_account("process-aggregator")
    insts = [local_account(f"process-inst{i}") for i in range(2)]
    for account in [aggregator, *insts]:
        fund_account(w3, account.address, ONE_ETH)
    for i, inst in enumerate(insts):
        ledger.as_sender(inst).join(f"hospital {i}", "", stake=MIN_STAKE)
    task_path = tmp_path / "task.json"
    SPEC.save(task_path)
    validation_path = validation_csv(tmp_path / "validation.csv")
    keystore = tmp_path / "aggregator.json"
    create_keystore(keystore, PASSWORD, private_key=aggregator.key, scrypt_n=2**4)  # cheap scrypt for tests
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    rules = resolve_rules(spec=SPEC)
    rules_path = tmp_path / "rules.json"
    rules.save(rules_path)
    bounty_id = ledger.as_sender(sponsor).create_bounty(BountyParams(
        task_spec_hash=task_hash(SPEC), validation_set_hash=hashlib.sha256(validation_path.read_bytes()).digest(),
        rules_hash=rules_hash(rules),
        aggregator=aggregator.address, num_rounds=1, commit_window=3600,
        deadline=w3.eth.get_block("latest")["timestamp"] + 30 * 86_400,
    ), ONE_ETH)

    base = [sys.executable, "-m", "fedledger", "aggregator", "serve", "--bounty", str(bounty_id), "--task", str(task_path),
            "--validation", str(validation_path), "--rules", str(rules_path), "--keystore", str(keystore), "--rpc", ganache.url,
            "--deployment", str(deployment_path), "--state-dir", str(tmp_path / "state")]

    # a wrong password is one line on stderr and exit code 2
    bad = tmp_path / "bad-password.txt"
    bad.write_text("wrong\n")
    refused = subprocess.run([*base, "--password-file", str(bad)], cwd=REPO, env=clean_env(), capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [f"error: wrong password for keystore {keystore}"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "aggregator.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [*base, "--password-file", str(password_file), "--port", str(port), "--poll-interval", "0.2",
             "--upload-grace", "0", "--exit-when-complete"],
            cwd=REPO, env=clean_env(), stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        http = httpx.Client(base_url=url, timeout=30)
        health = wait_for(lambda: http.get("/health").json(), 90, "/health", process, log)
        assert health["status"] == "ok" and health["bounty_id"] == bounty_id
        assert health["chain_id"] == w3.eth.chain_id and health["ledger"] == ledger.address

        paths = set(http.get("/openapi.json").json()["paths"])
        assert paths == SERVICE_PATHS
        assert task_hash(TaskSpec.from_dict(http.get(f"/bounties/{bounty_id}/task").json())) == task_hash(SPEC)
        assert http.get(f"/bounties/{bounty_id}/rules").json() == rules.to_dict()

        current = wait_for(lambda: (c := http.get(f"/bounties/{bounty_id}/rounds/current").json())["status"] == "open" and c,
                           60, "round 1 to open", process, log)
        assert current["selected"] == sorted(i.address for i in insts)
        model = http.get(f"/bounties/{bounty_id}/model")
        chain_hash = "0x" + bytes(ledger.round(bounty_id, 1).global_model_hash).hex()
        assert "0x" + hashlib.sha256(model.content).hexdigest() == chain_hash == model.headers["X-Model-Sha256"]

        global_weights = codec.decode(model.content)
        for i, inst in enumerate(insts):
            update = codec.encode({name: (array * 0 + 0.05 * (i + 1)).astype("float32")
                                   for name, array in global_weights.items()})
            digest = hashlib.sha256(update).digest()
            commitment = bind_commitment(chain_id=w3.eth.chain_id, contract=ledger.address, bounty_id=bounty_id, round_=1,
                                         institution=inst.address, update_sha256=digest)
            ledger.as_sender(inst).commit_update(bounty_id, 1, commitment, 20 * (i + 1))
            signature = sign_upload(inst, w3.eth.chain_id, ledger.address, bounty_id, 1, digest)
            response = http.post(f"/bounties/{bounty_id}/rounds/1/updates", content=update,
                                 headers={"X-Signature": signature, "X-Update-Sha256": digest.hex(),
                                          "Content-Type": "application/octet-stream"})
            assert response.status_code == 202, response.text
            assert response.json()["institution"] == inst.address

        process.wait(timeout=120)  # --exit-when-complete: both invited institutions uploaded, so the round closes now
        assert process.returncode == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
    bounty = ledger.bounty(bounty_id)
    assert bounty.status == BountyStatus.COMPLETED and bounty.rounds_finalized == 1
    assert bounty.credited + bounty.refunded + bounty.escrowed == bounty.funded
    assert ledger.round(bounty_id, 1).finalized
