"""``fedledger scorer``: what it refuses before scoring (the end-to-end tests run it against a real aggregator:
tests/e2e/test_committee.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import pytest

from aggregator.rules import resolve_rules
from fedcore.errors import ConfigError
from fedcore.rules import rules_hash
from fedcore.task import TaskSpec, task_hash
from fedledger.cli import main
from fedledger.scorer import check_inputs

SPEC = TaskSpec(name="scorer-test", model="logreg", feature_columns=("a", "b"), label_column="y")


@dataclass(frozen=True)
class FixedOnChain:
    id: int
    task_spec_hash: bytes
    validation_set_hash: bytes
    rules_hash: bytes


@pytest.fixture
def files(tmp_path):
    rules = resolve_rules(spec=SPEC, strategy="fedavg", seed=3)
    task, validation, rules_path = tmp_path / "task.json", tmp_path / "validation.csv", tmp_path / "rules.json"
    SPEC.save(task)
    validation.write_text("a,b,y\n0.1,0.2,1\n0.3,0.1,0\n")
    rules.save(rules_path)
    bounty = FixedOnChain(7, task_hash(SPEC), hashlib.sha256(validation.read_bytes()).digest(), rules_hash(rules))
    return bounty, {"task": task, "validation": validation, "rules": rules_path}


def test_a_scorer_refuses_inputs_other_than_the_bountys(files, tmp_path):
    bounty, paths = files
    check_inputs(bounty, **paths)  # the bounty's own: accepted
    other = tmp_path / "other.json"
    resolve_rules(spec=SPEC, strategy="fedavg", seed=4).save(other)
    with pytest.raises(ConfigError, match="--rules hashes to"):
        check_inputs(bounty, **{**paths, "rules": other})
    with pytest.raises(ConfigError, match="--validation hashes to"):
        check_inputs(replace(bounty, validation_set_hash=bytes(32)), **paths)
    with pytest.raises(ConfigError, match="--task hashes to"):
        check_inputs(replace(bounty, task_spec_hash=bytes(32)), **paths)


def test_the_cli_reports_a_usage_error_in_one_line(files, tmp_path, capsys):
    _, paths = files
    code = main(["scorer", "attest", "--bounty", "1", "--round", "1", "--aggregator", "http://127.0.0.1:9",
                 "--task", str(paths["task"]), "--validation", str(paths["validation"]), "--rules", str(paths["rules"]),
                 "--deployment", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
