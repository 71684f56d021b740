"""Compiling: artifacts for deployable contracts only, one-line errors, byte-for-byte reproducible output."""

import json
from pathlib import Path

import pytest

from fedcore.errors import ConfigError
from ledger.compile import (
    ARTIFACTS_DIR,
    ROOT,
    compile_project,
    compile_sources,
    dump_artifact,
    load_artifact,
    write_artifacts,
)

TINY = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import "./lib/Base.sol";

interface ICounter { function bump() external; }

contract Counter is ICounter, Base, Ownable {
    error TooBig(uint256 value);
    uint256 public count;
    constructor() Ownable(msg.sender) {}
    function bump() external onlyOwner { if (count >= LIMIT) revert TooBig(count); count += 1; }
}
"""

BASE = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
/* import "./Missing.sol"; -- commented-out imports are ignored */
abstract contract Base { uint256 internal constant LIMIT = 3; }
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "contracts" / "lib").mkdir(parents=True)
    (tmp_path / "contracts" / "Counter.sol").write_text(TINY)
    (tmp_path / "contracts" / "lib" / "Base.sol").write_text(BASE)
    return tmp_path


def test_tiny_contract_compiles_to_an_artifact(project):
    artifacts = compile_sources(sorted((project / "contracts").rglob("*.sol")), base=project, node_modules=ROOT / "node_modules")
    assert list(artifacts) == ["Counter"]  # the interface, the abstract base and Ownable have no artifact
    counter = artifacts["Counter"]
    assert set(counter) == {"contractName", "abi", "bytecode", "deployedBytecode", "compiler", "evmVersion", "sourcePath"}
    assert counter["compiler"].startswith("0.8.24+commit.") and counter["compiler"].count(".") == 3
    assert counter["evmVersion"] == "shanghai" and counter["sourcePath"] == "contracts/Counter.sol"
    assert counter["bytecode"].startswith("0x60") and len(counter["deployedBytecode"]) > 100
    names = {e.get("name") for e in counter["abi"]}
    assert {"bump", "count", "TooBig", "OwnableUnauthorizedAccount"} <= names


def test_artifacts_are_deterministic_files(project, tmp_path):
    files = sorted((project / "contracts").rglob("*.sol"))
    out = tmp_path / "artifacts"
    write_artifacts(compile_sources(files, base=project), out)
    first = (out / "Counter.json").read_bytes()
    (out / "Stale.json").write_text("{}")
    write_artifacts(compile_sources(files, base=project), out)
    assert (out / "Counter.json").read_bytes() == first
    assert not (out / "Stale.json").exists()
    assert json.loads(first) == load_artifact("Counter", out)
    assert first.decode() == dump_artifact(json.loads(first))


def test_metadata_hash_is_left_out(project):
    files = sorted((project / "contracts").rglob("*.sol"))
    before = compile_sources(files, base=project)["Counter"]["bytecode"]
    # A comment changes the source's hash but must not change the bytecode.
    (project / "contracts" / "Counter.sol").write_text("// a comment\n" + TINY)
    assert compile_sources(files, base=project)["Counter"]["bytecode"] == before


def test_compile_error_is_one_config_error_line(tmp_path):
    (tmp_path / "Broken.sol").write_text("pragma solidity ^0.8.20;\ncontract Broken { function f() external { x = 1; } }\n")
    with pytest.raises(ConfigError) as info:
        compile_sources([tmp_path / "Broken.sol"], base=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("solidity compile failed: DeclarationError: Undeclared identifier.")
    assert "Broken.sol:2:" in message


def test_missing_import_is_reported(tmp_path):
    (tmp_path / "A.sol").write_text('pragma solidity ^0.8.20;\nimport "./Nope.sol";\ncontract A {}\n')
    with pytest.raises(ConfigError, match='Source "Nope.sol" not found'):
        compile_sources([tmp_path / "A.sol"], base=tmp_path)


def test_missing_artifact_hints_at_compile(tmp_path):
    with pytest.raises(ConfigError, match="run `fedledger contracts compile`"):
        load_artifact("Nothing", tmp_path)


@pytest.mark.skipif(not any(ARTIFACTS_DIR.glob("*.json")), reason="contracts/artifacts not committed yet")
def test_recompiling_the_sources_gives_the_committed_artifacts():
    artifacts = compile_project(ROOT, write=False)
    committed = {p.stem: p.read_text(encoding="utf-8") for p in Path(ARTIFACTS_DIR).glob("*.json")}
    assert sorted(committed) == sorted(artifacts), "artifacts out of date: run `fedledger contracts compile`"
    for name, artifact in artifacts.items():
        assert committed[name] == dump_artifact(artifact), f"{name}.json is stale: run `fedledger contracts compile`"
