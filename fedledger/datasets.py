"""``fedledger data heart``: the real Fed-Heart-Disease data as per-hospital CSV files for a federation on one machine.

From the four raw UCI files (:mod:`fedsets.heart`: FLamby's preprocessing and its per-center 66/34 split, seed 43) it
writes, into ``--out``:

=========================  ===================================================================================
``<center>.csv``           each hospital's training part minus a carved validation slice (what its node trains on)
``test/<center>.csv``      each hospital's test part, untouched (what results are reported on)
``validation.csv``         the sponsor's validation set: the four carved slices, in center order, raw, with a ``site``
                           column naming each row's hospital (its sha256 goes on chain)
``task.json``              the task spec: FLamby's logistic regression with its FedAvg settings, the sponsor's scaler
                           (mean and std of the validation rows) and the utility's weighting of the ``site`` groups
                           (``fedsets.heart.HEART_WEIGHTING``)
``manifest.json``          how it was made, row counts, positives and the sha256 of every file
=========================  ===================================================================================

Every CSV has a header of the 13 feature names then the label ``num`` (0/1: ``num > 0`` in the raw data), and is
written and read by :mod:`fedcore.tables`. Every file holds the raw numbers after FLamby's cleaning and one-hot
encoding, NOT normalized: every role scales with the task's scaler (``task.json``'s ``scaling``), the nodes their
site and test rows (``node.site.load_site``), the aggregator and the auditor the validation set
(:func:`fedcore.population.load_validation_set`). The sponsor fits that scaler on its own validation rows
(:func:`fedcore.population.scaler_from_rows`), never on a hospital's private rows; the benchmark's FLamby protocol
(``bench/heart.py``, per-center scaling) is kept apart for comparison with FLamby's published figures. The slices are
carved from each center's *training* part (stratified by label like FLamby's split, seeded by ``--seed``), so the
validation set is disjoint from every test part and from the site files. Equal arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.files import write_atomic

VALIDATION_FILE = "validation.csv"
TASK_FILE = "task.json"
MANIFEST_FILE = "manifest.json"
TEST_DIR = "test"


def _write(path: Path, data: bytes) -> dict[str, Any]:
    write_atomic(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def write_heart(out: str | os.PathLike, *, validation_fraction: float = 0.25, seed: int = 42,
                data_root: str | os.PathLike | None = None, model: str | None = None) -> dict[str, Any]:
    """Write the site, test and validation CSVs, ``task.json`` and ``manifest.json`` into ``out``.

    ``model`` is the task's model (:func:`fedsets.heart.heart_task_spec`; default ``fedsets.heart.HEART_MODEL``).

    Returns
    -------
    dict
        The manifest (also written to ``out/manifest.json``)::

            {"dataset", "source", "license", "preprocessing", "split": {...}, "columns", "label",
             "task_hash": "0x..", "validation_set_hash": "0x..",
             "normalized": {...}, "validation_order": [centers],
             "sites": {center: {"file", "test_file", "train_rows", "validation_rows", "test_rows"}},
             "files": {relative path: {"rows", "positives", "sha256", "bytes"}}}

        ``task_hash`` and ``validation_set_hash`` are what ``fedledger sponsor create-bounty`` puts on chain.
    """
    from fedcore.population import scaler_from_rows
    from fedcore.tables import task_table_bytes
    from fedcore.task import TargetPopulation, task_hash_hex
    from fedsets.heart import (
        HEART_GROUP_COLUMN,
        HEART_LABEL,
        HEART_SPLIT_SEED,
        HEART_TRAIN_FRACTION,
        HEART_WEIGHTING,
        heart_parts,
        heart_paths,
        heart_task_spec,
    )

    out = Path(out)
    parts = heart_parts(validation_fraction=validation_fraction, seed=seed, data_root=data_root)
    features = parts[0].table.feature_names
    files: dict[str, dict[str, Any]] = {}
    sites: dict[str, dict[str, Any]] = {}

    def emit_csv(relative: str, X: np.ndarray, y: np.ndarray, extra: dict | None = None) -> None:
        info = _write(out / relative, task_table_bytes(features, HEART_LABEL, X, y, extra=extra))
        files[relative] = {"rows": int(len(y)), "positives": int(np.sum(y)), **info}

    for part in parts:
        table = part.table
        emit_csv(f"{part.name}.csv", table.X[part.train_index], table.y[part.train_index])
        emit_csv(f"{TEST_DIR}/{part.name}.csv", table.X[part.test_index], table.y[part.test_index])
        sites[part.name] = {"file": f"{part.name}.csv", "test_file": f"{TEST_DIR}/{part.name}.csv",
                            "train_rows": int(len(part.train_index)),
                            "validation_rows": int(len(part.validation_index)),
                            "test_rows": int(len(part.test_index))}
    X_validation = np.concatenate([p.table.X[p.validation_index] for p in parts])
    emit_csv(VALIDATION_FILE, X_validation, np.concatenate([p.table.y[p.validation_index] for p in parts]),
             {HEART_GROUP_COLUMN: [p.name for p in parts for _ in p.validation_index]})

    population = TargetPopulation(weighting=HEART_WEIGHTING, group_column=HEART_GROUP_COLUMN)
    spec = heart_task_spec(features, scaling=scaler_from_rows(X_validation), population=population,
                           **({} if model is None else {"model": model}))
    task_text = json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n"  # what TaskSpec.save writes
    files[TASK_FILE] = _write(out / TASK_FILE, task_text.encode("utf-8"))

    raw = heart_paths(data_root)
    manifest = {
        "dataset": "fed-heart-disease",
        "source": {
            "description": "UCI Heart Disease (Janosi, Steinbrunn, Pfisterer, Detrano 1988), doi:10.24432/C52P4X, "
                           "4 hospitals as in FLamby's Fed-Heart-Disease",
            "raw_files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in raw},
        },
        "license": "CC BY 4.0 (attribution required)",
        "preprocessing": "FLamby: '?' -> missing; drop slope, ca, thal; drop rows with a missing value; one-hot cp and "
                         "restecg (first level dropped); label num > 0.",
        "split": {
            "test": f"FLamby's per-center split: {HEART_TRAIN_FRACTION:g} train, random_state {HEART_SPLIT_SEED}, "
                    "stratified by label when both classes have more than 2 rows",
            "validation": "carved from each center's training part with the same rule",
            "validation_fraction": validation_fraction,
            "validation_seed": seed,
        },
        "columns": [*features, HEART_LABEL],
        "label": HEART_LABEL,
        "normalized": {"sites": False, "test": False, "validation": False,
                       "scaler": "task.json scaling: mean and std (ddof 1) of the validation rows, applied by every "
                                 "role"},
        "group_column": HEART_GROUP_COLUMN,
        "weighting": HEART_WEIGHTING,
        "task_hash": task_hash_hex(spec),
        "validation_set_hash": "0x" + files[VALIDATION_FILE]["sha256"],
        "validation_order": [p.name for p in parts],
        "sites": sites,
        "files": dict(sorted(files.items())),
    }
    _write(out / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return manifest


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fedledger data heart``."""
    from fedcore.output import add_format_option
    from fedsets.heart import HEART_MODEL, HEART_MODELS

    data = subparsers.add_parser(
        "data", help="write real data sets as per-institution CSV files",
        description="Prepare real data sets for a federation on one machine.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    heart = sub.add_parser(
        "heart", help="Fed-Heart-Disease: 4 hospital CSVs, their test parts, a validation set, the task spec",
        description=(
            "From the raw UCI Heart Disease files (FLamby's cleaning and per-center split), write per hospital its "
            "training rows minus a carved validation slice (cleveland.csv, hungarian.csv, switzerland.csv, va.csv) "
            "and its test rows (test/<name>.csv), raw; the sponsor's validation set (validation.csv: the carved "
            "slices, disjoint from every other file, raw, with a site column); task.json (FLamby's logistic "
            "regression, or with --model mlp the benchmark's ditto_mlp; the sponsor's scaler fitted on the "
            "validation rows, which every role applies, and the "
            "utility's weighting of the sites); and manifest.json (row counts, sha256 of each file)."
        ),
    )
    heart.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    heart.add_argument("--validation-fraction", type=float, default=0.25, metavar="F",
                       help="share of each hospital's training part carved for validation (default: %(default)s)")
    heart.add_argument("--seed", type=int, default=42, help="seed of the carving (default: %(default)s)")
    heart.add_argument("--model", default=HEART_MODEL, choices=HEART_MODELS,
                       help="the task's model: logreg (FLamby's) or mlp (the benchmark's ditto_mlp: a 16-unit MLP, "
                            "Ditto personal models) (default: %(default)s)")
    heart.add_argument("--data-root", default=None, metavar="DIR",
                       help="folder of the raw files (default: $FEDLEDGER_DATA or ../shared/data)")
    add_format_option(heart)
    heart.set_defaults(func=_heart)


def _heart(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    manifest = write_heart(args.out, validation_fraction=args.validation_fraction, seed=args.seed,
                           data_root=args.data_root, model=args.model)
    if args.format == "json":
        emit(manifest, "json")
        return 0
    rows = [{"file": name, "rows": info.get("rows", ""), "positives": info.get("positives", ""),
             "sha256": info["sha256"][:16] + "…"} for name, info in manifest["files"].items()]
    emit(rows)
    print(f"wrote {len(rows)} files and {MANIFEST_FILE} to {args.out}")
    print(f"task hash {manifest['task_hash']}")
    print(f"validation set hash {manifest['validation_set_hash']}")
    return 0
