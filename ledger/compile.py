"""Compile the Solidity sources into committed, reproducible JSON artifacts.

The compiler is solc 0.8.24 through its standard-JSON interface: a native ``solc`` on PATH (called through
py-solc-x) when it is exactly that version, else the npm solc-js in ``node_modules``. Python resolves the
imports itself and hands the compiler every source's content, so both compilers get the same input and no
import callback or file-system access is involved.

Reproducibility: source unit names are paths relative to the project root (``contracts/FedLedger.sol``,
``@openzeppelin/contracts/...``) and the metadata hash is left out of the bytecode (``bytecodeHash: none``),
so comments, line endings or checkout paths cannot change the bytecode. Artifacts are written with sorted
keys and the compiler version without its platform suffix, so recompiling on any machine gives the same files.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from fedcore.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS_DIR = ROOT / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
NODE_MODULES = ROOT / "node_modules"
SOLC_VERSION = "0.8.24"
EVM_VERSION = "shanghai"

SETTINGS = {
    "evmVersion": EVM_VERSION,
    "viaIR": True,  # the finalize loop needs it (stack depth), and it saves ~2% gas per participant
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
    },
}

# The first string literal after `import` is the path, in all four import forms.
_IMPORT = re.compile(r"""\bimport\b[^;"']*["']([^"']+)["']""")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def source_files(contracts_dir: Path = CONTRACTS_DIR) -> list[Path]:
    """Every ``.sol`` file under ``contracts_dir``, sorted, skipping the artifacts folder."""
    return sorted(
        p for p in Path(contracts_dir).rglob("*.sol") if "artifacts" not in p.relative_to(contracts_dir).parts
    )


def _resolve_sources(entry_units: list[str], search: list[Path]) -> dict[str, dict]:
    """Follow the imports from ``entry_units`` and return standard-JSON ``sources`` with contents.

    A unit name is looked up in each folder of ``search`` in turn (the base folder first, then
    ``node_modules``), like solc's ``--base-path`` and ``--include-path``.
    """
    sources: dict[str, dict] = {}
    todo = list(entry_units)
    while todo:
        unit = todo.pop()
        if unit in sources:
            continue
        path = next((d / unit for d in search if (d / unit).is_file()), None)
        if path is None:
            # Let the compiler report the missing file with the importing location.
            continue
        text = path.read_text(encoding="utf-8")
        sources[unit] = {"content": text}
        for imported in _IMPORT.findall(_COMMENT.sub("", text)):
            if imported.startswith(("./", "../")):
                imported = posixpath.normpath(posixpath.join(posixpath.dirname(unit), imported))
            todo.append(imported)
    return dict(sorted(sources.items()))


@cache
def _native_solc() -> str | None:
    """Path of a native ``solc`` of the pinned version, or None (a different version would change the bytecode)."""
    exe = shutil.which("solc")
    if exe is None:
        return None
    try:
        import solcx.wrapper

        version = solcx.wrapper.get_solc_version(exe, with_commit_hash=False)
    except Exception:  # an unusable binary on PATH: fall back to solc-js
        return None
    return exe if str(version) == SOLC_VERSION else None


def _run_solcjs(standard_input: dict, node_modules: Path) -> tuple[dict, str]:
    solcjs = node_modules / "solc" / "solc.js"
    node = shutil.which("node")
    if node is None:
        raise ConfigError("node is not installed: solc-js needs Node.js (or put solc 0.8.24 on PATH)")
    if not solcjs.is_file():
        raise ConfigError(f"solc-js not found at {solcjs}: run `npm ci` (or `make setup`)")
    version = _solcjs_version(node, str(solcjs))
    # Files, not pipes: solc.js reads stdin with readFileSync (EAGAIN on a pipe with a large input) and
    # exits right after console.log (which can cut a piped output short).
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as stdin,
        tempfile.TemporaryFile("w+", encoding="utf-8") as stdout,
    ):
        json.dump(standard_input, stdin)
        stdin.seek(0)
        proc = subprocess.run(
            [node, str(solcjs), "--standard-json"], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
            text=True, check=False,
        )
        stdout.seek(0)
        out = stdout.read()
    # solc-js prints `>>> ...` notes before the JSON document.
    start = out.find("\n{") + 1 if not out.startswith("{") else 0
    if proc.returncode != 0 or not out[start:].startswith("{"):
        detail = (proc.stderr.strip() or out.strip() or "no output").splitlines()
        raise ConfigError(f"solc-js failed (exit {proc.returncode}): {detail[-1]}")
    try:
        return json.loads(out[start:]), version
    except json.JSONDecodeError as exc:
        raise ConfigError(f"solc-js printed invalid JSON: {exc}") from None


@cache
def _solcjs_version(node: str, solcjs: str) -> str:
    return subprocess.run([node, solcjs, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _run_native(standard_input: dict, exe: str) -> tuple[dict, str]:
    import solcx

    try:
        output = solcx.compile_standard(standard_input, solc_binary=exe, allow_empty=True)
    except solcx.exceptions.SolcError as exc:
        # py-solc-x raises on compiler errors; its stdout still holds the JSON with the messages.
        stdout = getattr(exc, "stdout_data", None)
        output = json.loads(stdout) if stdout else {"errors": [{"severity": "error", "formattedMessage": str(exc)}]}
    version = str(solcx.wrapper.get_solc_version(exe, with_commit_hash=True))
    return output, version


def _first_error(output: dict) -> str | None:
    for err in output.get("errors", []):
        if err.get("severity") == "error":
            message = err.get("formattedMessage", err.get("message", ""))
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            where = next((line[3:].strip().rstrip(":") for line in lines if line.startswith("-->")), None)
            return f"{lines[0]} ({where})" if where else lines[0]
    return None


def compile_sources(
    files: Iterable[Path], *, base: Path = ROOT, node_modules: Path = NODE_MODULES
) -> dict[str, dict]:
    """Compile Solidity files and return an artifact per deployable contract.

    Parameters
    ----------
    files : iterable of Path
        The ``.sol`` files whose contracts should become artifacts; imports are followed automatically.
    base : Path
        Folder the source unit names are relative to (the project root).
    node_modules : Path
        Where ``@openzeppelin/...`` imports and solc-js are found.

    Returns
    -------
    dict of str to dict
        ``{contractName: artifact}`` for every contract of ``files`` with bytecode (interfaces and
        abstract contracts have none and are skipped); keys sorted.

    Raises
    ------
    ConfigError
        On the first compiler error, as one line, or when no compiler is available, or when two
        contracts share a name.
    """
    base = Path(base).resolve()
    units = [Path(f).resolve().relative_to(base).as_posix() for f in files]
    if not units:
        raise ConfigError(f"no Solidity sources to compile under {base}")
    standard_input = {
        "language": "Solidity",
        "sources": _resolve_sources(units, [base, Path(node_modules)]),
        "settings": SETTINGS,
    }
    exe = _native_solc()
    output, version = _run_native(standard_input, exe) if exe else _run_solcjs(standard_input, Path(node_modules))
    error = _first_error(output)
    if error:
        raise ConfigError(f"solidity compile failed: {error}")
    # Drop the platform suffix (".Emscripten.clang", ".Linux.g++") so both compilers write the same files.
    release = re.match(r"\d+\.\d+\.\d+(\+commit\.[0-9a-f]+)?", version)
    if release is None:
        raise ConfigError(f"cannot read the solidity compiler version from {version!r}")
    compiler = release.group(0)

    artifacts: dict[str, dict] = {}
    for unit in sorted(units):
        for name, out in sorted(output.get("contracts", {}).get(unit, {}).items()):
            bytecode = out["evm"]["bytecode"]["object"]
            if not bytecode:
                continue
            if name in artifacts:
                raise ConfigError(f"two contracts named {name}: {artifacts[name]['sourcePath']} and {unit}")
            artifacts[name] = {
                "contractName": name,
                "abi": out["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
                "compiler": compiler,
                "evmVersion": EVM_VERSION,
                "sourcePath": unit,
            }
    return artifacts


def dump_artifact(artifact: dict) -> str:
    """The canonical text of an artifact: sorted keys, indent 1, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=1) + "\n"


def write_artifacts(artifacts: dict[str, dict], out_dir: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write one ``<name>.json`` per artifact and delete stale ``.json`` files of contracts that are gone."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_text(dump_artifact(artifact), encoding="utf-8", newline="\n")
        written.append(path)
    for stale in out_dir.glob("*.json"):
        if stale.stem not in artifacts:
            stale.unlink()
    return written


def compile_project(root: Path = ROOT, *, write: bool = True) -> dict[str, dict]:
    """Compile every ``contracts/**/*.sol`` of ``root`` (test helpers included) into ``contracts/artifacts``.

    Returns
    -------
    dict of str to dict
        The artifacts by contract name (also written to disk when ``write``).
    """
    root = Path(root)
    files = source_files(root / "contracts")
    if not files:
        raise ConfigError(f"no Solidity sources under {root / 'contracts'}")
    artifacts = compile_sources(files, base=root, node_modules=root / "node_modules")
    if write:
        write_artifacts(artifacts, root / "contracts" / "artifacts")
    return artifacts


def artifacts_dir() -> Path:
    """The artifacts folder: ``$FEDLEDGER_ARTIFACTS`` if set, else ``contracts/artifacts`` of the project."""
    return Path(os.environ.get("FEDLEDGER_ARTIFACTS", ARTIFACTS_DIR))


def load_artifact(name: str, directory: Path | None = None) -> dict:
    """Read the compiled artifact of contract ``name``.

    Raises
    ------
    ConfigError
        When it does not exist (with a hint to compile) or is not valid JSON.
    """
    path = Path(directory or artifacts_dir()) / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no compiled artifact for {name} at {path}: run `fedledger contracts compile`") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"corrupt artifact {path}: {exc}; run `fedledger contracts compile`") from None
