"""bench.heart's personalized block: ``--methods`` recomputes only the named methods and keeps the rest;
validation-chosen grids choose on validation runs only. Jobs are replaced by a fake (no training)."""

from __future__ import annotations

import json

import pytest

from bench import heart

CENTERS = ("cleveland", "hungarian", "switzerland", "va")
SEEDS = [42, 43]


def fake_job(job):
    """Validation prefers the grid's first setting, test its last: choosing on test would pick the last."""
    if job["kind"] == "personal_local":
        return {c: {"local 0": 0.70, "local 1": 0.60, "majority": 0.5} for c in CENTERS}
    if job["kind"] == "personal_local_nested":  # the tuned local-only model beats Ditto on validation at VA only
        return {c: {heart.LOCAL_CANDIDATE: 0.95 if c == "va" else 0.85} for c in CENTERS}
    federation = job["federation"]
    hidden = federation["model_params"].get("hidden_size", (federation["model_params"].get("hidden_sizes") or [0])[0])
    first = hidden == heart.GRID_HIDDEN[0] and federation["training"]["lr"] == heart.GRID_LRS[0] \
        and federation["training"]["local_steps"] == heart.GRID_STEPS[0]
    on_validation = job["split"] == "validation"
    accuracy = (0.9 if first else 0.8) if on_validation else (0.7 if first else 0.95)
    if federation.get("model") == "fenda":
        return {c: {"fenda final": accuracy, "fenda last local": accuracy - 0.1} for c in CENTERS}
    return {c: {"finetune steps=0 lr=0.003": 0.5, "ditto lambda=0.3": accuracy} for c in CENTERS}


@pytest.fixture
def report(monkeypatch):
    monkeypatch.setattr(heart, "run_jobs", lambda jobs, workers, label, runner=None: [fake_job(j) for j in jobs])
    pooled = {c: {"per_seed": [0.5, 0.5]} for c in CENTERS}
    def entry(value: float) -> dict:
        return {"mean_over_centers": value, "per_center": dict.fromkeys(CENTERS, value),
                "per_center_std": dict.fromkeys(CENTERS, 0.0), "gain_over_local": dict.fromkeys(CENTERS, value - 0.75)}

    old, local = entry(0.1), entry(0.75)
    return {"seeds": SEEDS, "pooled": {"center_test_accuracy": pooled}, "tuned": {},
            "personalized": {"local_only": local, "ditto_mlp": old, "fenda": old}}


def test_methods_recompute_only_what_is_named_and_keep_the_rest(report):
    block = heart.personalized_section(report, {}, SEEDS, workers=1, only=["fenda"])
    assert block["ditto_mlp"] == report["personalized"]["ditto_mlp"]  # kept as it was
    assert block["local_only"] == report["personalized"]["local_only"]
    fenda = block["fenda"]
    assert set(fenda) >= {"mean_over_centers", "per_center", "per_center_std", "gain_over_local", "grid", "chosen_setting"}
    # chosen on validation (the first setting), not on test (where the last one is better)
    assert fenda["chosen_setting"] == next(iter(heart.personal_grids()["fenda"]))
    assert fenda["mean_over_centers"] == pytest.approx(0.7)
    assert fenda["gain_over_local"] == {c: pytest.approx(0.7 - 0.75) for c in CENTERS}  # against the kept baseline
    assert all(v["candidate"] == "fenda final" for v in fenda["chosen_per_center"].values())
    assert len(fenda["grid"]) == len(heart.GRID_HIDDEN) * len(heart.GRID_LRS) * len(heart.GRID_STEPS)
    assert list(block) == [m for m in heart.personal_methods({}) if m in block]  # catalogue order


def test_local_only_is_recomputed_when_named(report):
    block = heart.personalized_section(report, {}, SEEDS, workers=1, only=["local_only", "ditto_mlp_grid"])
    assert block["local_only"]["per_center"] == dict.fromkeys(CENTERS, 0.7)  # "local 0" wins on validation
    assert block["ditto_mlp_grid"]["gain_over_local"] == {c: pytest.approx(0.0) for c in CENTERS}
    assert block["fenda"] == report["personalized"]["fenda"]


def test_unknown_method_is_refused(report):
    with pytest.raises(SystemExit, match="unknown method"):
        heart.personalized_section(report, {}, SEEDS, workers=1, only=["nope"])


def test_cli_merges_into_the_file_and_methods_need_personalized_only(report, tmp_path, capsys):
    out = tmp_path / "heart.json"
    out.write_text(json.dumps(report))
    assert heart.main(["--personalized-only", "--methods", "fenda", "--seeds", *map(str, SEEDS), "--workers", "1",
                       "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["personalized"]["ditto_mlp"] == report["personalized"]["ditto_mlp"]
    assert saved["personalized"]["fenda"]["chosen_setting"]
    with pytest.raises(SystemExit) as exit_info:
        heart.main(["--methods", "fenda", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--methods needs --personalized-only" in capsys.readouterr().err


def test_per_hospital_selection_keeps_the_local_only_model_where_it_wins_on_validation(report):
    block = heart.personalized_section(report, {}, SEEDS, workers=1, only=["ditto_mlp_grid_or_local", "ditto_mlp_or_local"])
    grid = block["ditto_mlp_grid_or_local"]
    assert grid["chosen_setting"] == next(iter(heart.personal_grids()["ditto_mlp_grid"]))  # validation's choice
    chosen = {c: v["candidate"] for c, v in grid["chosen_per_center"].items()}
    assert chosen == {"cleveland": "ditto lambda=0.3", "hungarian": "ditto lambda=0.3", "switzerland": "ditto lambda=0.3",
                      "va": heart.LOCAL_CANDIDATE}
    # VA's test figure is its tuned local-only model's ("local 0": 0.70), so its gain is exactly 0
    assert grid["per_center"]["va"] == pytest.approx(0.70) and grid["gain_over_local"]["va"] == pytest.approx(0.0)
    assert grid["per_center"]["cleveland"] == pytest.approx(0.7)
    # the fixed-setting federation scores 0.8 on validation: below the local-only 0.85 everywhere, a tie would keep it too
    assert {v["candidate"] for v in block["ditto_mlp_or_local"]["chosen_per_center"].values()} == {heart.LOCAL_CANDIDATE}
    assert block["ditto_mlp_or_local"]["gain_over_local"] == dict.fromkeys(CENTERS, 0.0)
    assert "local_only" in block and block["local_only"] == report["personalized"]["local_only"]  # not named: kept


def test_job_cache_resumes_without_running_finished_jobs_again(tmp_path, monkeypatch):
    monkeypatch.setattr(heart, "JOB_CACHE", tmp_path / "jobs.jsonl")
    ran = []
    def runner(job):
        ran.append(job["n"])
        return {"n": job["n"] * 10}
    jobs = [{"n": 1}, {"n": 2}]
    assert heart.run_jobs(jobs, 1, "first", runner=runner) == [{"n": 10}, {"n": 20}]
    assert heart.run_jobs([{"n": 3}, *jobs], 1, "again", runner=runner) == [{"n": 30}, {"n": 10}, {"n": 20}]
    assert ran == [1, 2, 3]  # only the new job ran the second time
