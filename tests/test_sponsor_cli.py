"""``fedledger sponsor ...`` through the real command line (in process, on the embedded chain and on Ganache)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from aggregator.rules import resolve_rules
from fedcore.rules import RoundRules, rules_hash, rules_hash_hex
from fedcore.task import TaskSpec, TrainingSettings, task_hash
from fedledger.cli import main
from ledger.chain import fund_account
from ledger.deployment import Deployment
from ledger.devchain import free_port
from tests.world import ONE_ETH

PASSWORD = "correct horse battery"


@pytest.fixture
def task_files(tmp_path):
    spec = TaskSpec(name="t", model="logreg", feature_columns=("a", "b"), label_column="y",
                    training=TrainingSettings(local_steps=5))
    spec.save(tmp_path / "task.json")
    (tmp_path / "val.csv").write_bytes(b"a,b,y\n0.5,1,0\n-1,2,1\n")
    return spec, tmp_path / "task.json", tmp_path / "val.csv"


@pytest.fixture
def cli(joined, tmp_path, monkeypatch, capsys):
    """``run(*args) -> (exit code, parsed JSON or text, stderr)`` against ``joined``'s chain and deployment."""
    path = joined.deployment.save(tmp_path / "deployment.json")
    monkeypatch.setattr("ledger.chain.connect", lambda rpc=None, **kwargs: joined.w3)
    monkeypatch.delenv("FEDLEDGER_PASSWORD", raising=False)

    def run(*args, deployment_file=path):
        code = main([*args, "--deployment", str(deployment_file), "--format", "json"])
        captured = capsys.readouterr()
        try:
            out = json.loads(captured.out) if captured.out else None
        except ValueError:
            out = captured.out
        return code, out, captured.err

    run.world = joined
    return run


def _create(cli, task, val, *extra, sender=None, reward="1ether"):
    w = cli.world
    rules = task.parent / "rules.json"
    if not rules.exists():
        resolve_rules(spec=TaskSpec.load(task)).save(rules)
    return cli("sponsor", "create-bounty", "--task", str(task), "--validation", str(val), "--rules", str(rules),
               "--reward", reward,
               "--aggregator", w.aggregator, "--rounds", "2", "--commit-window", "600", "--deadline-days", "10",
               *extra, *(() if {"--from", "--keystore"} & set(extra) else ("--from", sender or w.sponsor)))


def test_create_fund_status_cancel_with_ether(cli, task_files):
    spec, task, val = task_files
    w = cli.world
    code, out, err = _create(cli, task, val, "--min-reputation", "100")
    assert code == 0, err
    bounty_id = out["bounty_id"]
    assert out["task_spec_hash"] == "0x" + task_hash(spec).hex()
    assert out["validation_set_hash"] == "0x" + hashlib.sha256(val.read_bytes()).hexdigest()
    on_chain = w.ledger.bounty(bounty_id)
    assert on_chain.sponsor == w.sponsor and on_chain.funded == ONE_ETH and on_chain.min_reputation == 100
    assert on_chain.task_spec_hash == task_hash(spec) and on_chain.deadline == out["deadline"]
    rules = RoundRules.load(task.parent / "rules.json")
    assert on_chain.rules_hash == rules_hash(rules) and out["rules_hash"] == rules_hash_hex(rules)

    code, out, _ = cli("sponsor", "fund", "--bounty", str(bounty_id), "--amount", "0.5ether", "--from", w.outsider)
    assert code == 0 and out["funded"] == 3 * ONE_ETH // 2 and out["escrowed"] == 3 * ONE_ETH // 2

    code, status, _ = cli("sponsor", "status", "--bounty", str(bounty_id))
    assert code == 0
    assert status["status"] == "active" and status["token"] == "ETH" and status["rounds"] == []
    assert (status["funded"], status["credited"], status["refunded"], status["escrowed"]) == (3 * ONE_ETH // 2, 0, 0,
                                                                                              3 * ONE_ETH // 2)
    # Only the sponsor cancels; before the first round it gets everything back.
    code, _, err = cli("sponsor", "cancel", "--bounty", str(bounty_id), "--from", w.outsider)
    assert code == 2 and err.startswith("error: contract reverted: NotSponsor(") and err.count("\n") == 1
    before = w.balance(w.sponsor)
    code, out, _ = cli("sponsor", "cancel", "--bounty", str(bounty_id), "--from", w.sponsor)
    assert code == 0 and out == {"bounty_id": bounty_id, "status": "cancelled", "refunded": 3 * ONE_ETH // 2,
                                 "credited": 0}
    assert w.balance(w.sponsor) > before + ONE_ETH
    assert cli("sponsor", "status", "--bounty", str(bounty_id))[1]["status"] == "cancelled"


def test_token_bounty_is_approved_first(cli, task_files):
    _, task, val = task_files
    w = cli.world
    token = w.tokens["TestToken"]
    token.as_sender(w.sponsor).mint(w.sponsor, 5 * ONE_ETH)
    code, out, err = _create(cli, task, val, "--token", token.address, "--from", w.sponsor, reward="2ether")
    assert code == 0, err
    assert out["token"] == token.address
    assert w.ledger.bounty(out["bounty_id"]).funded == 2 * ONE_ETH
    assert token.balance_of(w.sponsor) == 3 * ONE_ETH and token.balance_of(w.ledger.address) == 2 * ONE_ETH
    code, out, _ = cli("sponsor", "fund", "--bounty", str(out["bounty_id"]), "--amount", "1ether", "--from", w.sponsor)
    assert code == 0 and out["funded"] == 3 * ONE_ETH and token.balance_of(w.sponsor) == 2 * ONE_ETH


def test_keystore_sender_and_its_errors(cli, task_files, tmp_path, monkeypatch):
    _, task, val = task_files
    w = cli.world
    account = Account.create()
    keystore = tmp_path / "sponsor.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, PASSWORD, kdf="pbkdf2", iterations=2)))
    fund_account(w.w3, account.address, 5 * ONE_ETH)

    # Wrong password, from the file (the env is ignored when a file is given): one line, exit 2.
    (tmp_path / "wrong").write_text("not it\n")
    code, _, err = _create(cli, task, val, "--keystore", str(keystore), "--password-file", str(tmp_path / "wrong"))
    assert code == 2 and err == f"error: wrong password for keystore {keystore}\n"
    # No password source at all (stdin is not a terminal under pytest).
    code, _, err = _create(cli, task, val, "--keystore", str(keystore))
    assert code == 2 and "FEDLEDGER_PASSWORD" in err and err.count("\n") == 1
    code, _, err = _create(cli, task, val, "--keystore", str(tmp_path / "nope.json"))
    assert code == 2 and err.startswith(f"error: no keystore at {tmp_path / 'nope.json'}") and err.count("\n") == 1

    monkeypatch.setenv("FEDLEDGER_PASSWORD", PASSWORD)
    code, out, err = _create(cli, task, val, "--keystore", str(keystore))
    assert code == 0, err
    assert out["sponsor"] == account.address and w.ledger.bounty(out["bounty_id"]).sponsor == account.address
    (tmp_path / "right").write_text(PASSWORD + "\n")
    monkeypatch.setenv("FEDLEDGER_PASSWORD", "stale")
    code, out, err = cli("sponsor", "cancel", "--bounty", str(out["bounty_id"]), "--keystore", str(keystore),
                         "--password-file", str(tmp_path / "right"))
    assert code == 0 and out["refunded"] == ONE_ETH, err


def test_completed_bounty_revenue_and_remainder(cli, task_files):
    _, task, val = task_files
    w = cli.world
    bounty_id = _create(cli, task, val)[1]["bounty_id"]
    a, b = w.insts[:2]
    w.play_round(bounty_id, {a: 3, b: 1})  # half the escrow, split 3:1
    w.play_round(bounty_id, {a: 0, b: -1})  # nothing positive: the other half stays escrowed
    code, status, _ = cli("sponsor", "status", "--bounty", str(bounty_id))
    assert status["status"] == "completed" and status["credited"] == ONE_ETH // 2
    assert [r["finalized"] for r in status["rounds"]] == [True, True]
    assert status["rounds"][1]["global_model_hash"] == status["rounds"][0]["new_model_hash"]

    code, _, err = cli("sponsor", "refund-remainder", "--bounty", str(bounty_id), "--from", w.outsider)
    assert code == 2 and "NotSponsor" in err
    code, out, _ = cli("sponsor", "refund-remainder", "--bounty", str(bounty_id), "--from", w.sponsor)
    assert code == 0 and out["refunded"] == ONE_ETH // 2 and out["escrowed"] == 0
    code, out, _ = cli("sponsor", "pay-revenue", "--bounty", str(bounty_id), "--amount", "4000", "--from", w.outsider)
    assert code == 0 and out == {"bounty_id": bounty_id, "token": "ETH", "amount": 4000, "revenue_total": 4000}
    assert w.splitter.revenue_due(bounty_id, a) == 3000
    assert w.balance(w.splitter.address) == 4000  # revenue never mixes with the ledger's escrow


def test_rules_are_resolved_written_and_hashed(task_files, tmp_path, capsys):
    spec, task, _ = task_files
    out = tmp_path / "prox.json"
    args = ["sponsor", "rules", "--task", str(task), "--out", str(out), "--strategy", "fedprox", "--strategy-params",
            '{"mu": 0.2}', "--scorer", "tmc", "--seed", "3", "--format", "json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    rules = RoundRules.load(out)
    assert printed["rules_hash"] == rules_hash_hex(rules)
    assert rules.strategy_params["mu"] == 0.2 and rules.fit_config() == {"fedprox_mu": 0.2}
    assert rules.estimator == "tmc" and "max_permutations" in rules.estimator_params and rules.seed == 3
    assert main(args) == 0 and RoundRules.load(out) == rules  # the same choices give the same bytes
    capsys.readouterr()
    for bad, message in ((["--strategy", "fedmagic"], "unknown strategy"), (["--scorer-params", "[1]"], "JSON object"),
                         (["--scorer", "oracle"], "unknown contribution estimator")):
        assert main(["sponsor", "rules", "--task", str(task), "--out", str(tmp_path / "bad.json"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert not (tmp_path / "bad.json").exists()


def test_user_errors_are_one_line(cli, task_files, tmp_path):
    _, task, val = task_files
    w = cli.world
    code, _, err = cli("sponsor", "status", "--bounty", "99")
    assert code == 2 and err.startswith("error: unknown bounty id 99") and err.count("\n") == 1
    code, _, err = cli("sponsor", "fund", "--bounty", "99", "--amount", "1", "--from", w.sponsor)
    assert code == 2 and err.startswith("error: unknown bounty id 99")
    code, _, err = cli("sponsor", "status", "--bounty", "1", deployment_file=tmp_path / "none.json")
    assert code == 2 and err == f"error: no deployment file at {tmp_path / 'none.json'}: run `fedledger deploy`\n"
    code, _, err = _create(cli, task, val, "--from", "0x" + "12" * 20)
    assert code == 2 and "does not hold" in err
    (tmp_path / "bad.csv").write_text("a,y\n1,0\n")
    code, _, err = _create(cli, task, tmp_path / "bad.csv")
    assert code == 2 and err.startswith(f"error: {tmp_path / 'bad.csv'} line 1: missing column(s) b ")
    assert err.count("\n") == 1


def test_no_chain_is_one_line(tmp_path, task_files):
    _, task, val = task_files
    url = f"http://127.0.0.1:{free_port()}"
    Deployment(chain_id=1337, rpc_url=url, contracts={"FedLedger": {"address": "0x" + "11" * 20, "block": 0}}).save(
        tmp_path / "d.json")
    command = [sys.executable, "-m", "fedledger", "sponsor", "status", "--bounty", "1", "--rpc", url,
               "--deployment", str(tmp_path / "d.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ})
    assert result.returncode == 2
    assert result.stderr == f"error: no chain answers at {url} (start one with `fedledger chain up`)\n"


def test_create_bounty_with_a_scoring_committee(cli, task_files):
    _, task, val = task_files
    w = cli.world
    scorers = [w.outsider, w.insts[3]]
    code, out, err = _create(cli, task, val, "--scorer", scorers[0], "--scorer", scorers[1], "--quorum", "2")
    assert code == 0, err
    assert out["scorers"] == scorers and out["quorum"] == 2
    assert w.ledger.committee_of(out["bounty_id"]) == (2, 2)
    code, _, err = _create(cli, task, val, "--scorer", scorers[0], "--quorum", "3")
    assert code == 2 and err.startswith("error: --quorum must be between 1 and 2") and err.count("\n") == 1


def test_a_dp_task_fixes_its_epsilon_budget_on_chain(cli, task_files, tmp_path):
    """The task's privacy.epsilon becomes the bounty's epsilonBudget; more rounds than the budget covers are refused."""
    from dataclasses import replace

    from fedcore.task import PrivacySettings

    spec, _, val = task_files
    folder = tmp_path / "dp"
    folder.mkdir()
    private = replace(spec, privacy=PrivacySettings(epsilon=2.5, delta=1e-4, max_grad_norm=1.0, rounds=2))
    private.save(folder / "task.json")
    code, out, err = _create(cli, folder / "task.json", val)
    assert code == 0, err
    assert cli.world.ledger.bounty(out["bounty_id"]).epsilon_budget == 2_500_000
    one_round = replace(private, privacy=replace(private.privacy, rounds=1))
    one_round.save(folder / "task.json")
    (folder / "rules.json").unlink()
    code, _, err = _create(cli, folder / "task.json", val)
    assert code == 2 and err == ("error: --rounds 2 is more than the 1 rounds the task's privacy budget covers "
                                 "(privacy.rounds)\n")
