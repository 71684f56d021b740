"""The demo's report as text (the tables ``fedledger demo`` prints) and as PNG plots (matplotlib, Agg backend).

Both read only the report dict of :func:`fedledger.demo.run_demo`, so they can be re-rendered from a saved
``report.json``: ``format_report(json.load(open("runs/demo/report.json")))``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import fmean
from typing import Any

PLOTS = {"accuracy": "accuracy.png", "contributions": "contributions.png", "payouts": "payouts.png"}
TIMING_ORDER = ("setup", "baselines", "rounds", "per_round_mean", "payouts", "audit", "plots", "total")
ROLE_COLORS = {"honest": "#4c72b0", "free-rider": "#dd8452", "attacker": "#c44e52"}


def eth(wei: int) -> str:
    """Wei as ether with 4 decimals (the exact wei stay in report.json)."""
    return f"{int(wei) / 10**18:.4f}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Aligned columns; columns in ``right`` (indexes) are right-aligned."""
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def round_story(*, committed: Iterable[str], used: Iterable[str], excluded: Mapping[str, str],
                left_out_by_strategy: Mapping[str, str], v_empty: float | None, v_grand: float | None
                ) -> dict[str, Any]:
    """Who took part in a round and what entered its model, from the aggregator's record (pure).

    Parameters
    ----------
    committed : the institutions with a commitment on chain in the round
    used : the updates the round computation admitted (``RoundState.used``: committed, verified, within bounds)
    excluded : institution -> why it was not admitted (``RoundState.excluded``)
    left_out_by_strategy : institution -> why an admitted update stayed out of the aggregate (the gate or the
        strategy: ``aggregate.excluded_by_strategy``)
    v_empty, v_grand : the scores' utilities of the global model and of the last set the scorer valued

    Returns
    -------
    dict
        ``committed`` and ``kept`` (entered the model), sorted; ``left_out``: every other committer or uploader with
        its reason; ``gain``: ``v(kept) - v(empty)``, the number ``pay_only_gain`` decides on (0 when nothing entered
        the model: then ``v_grand`` describes a set the gate left out); ``v_empty``; ``v_kept``.
    """
    left_out = {**excluded, **left_out_by_strategy}
    kept = sorted(set(used) - set(left_out))
    gain = float(v_grand - v_empty) if kept and v_grand is not None and v_empty is not None else 0.0
    return {"committed": sorted(committed), "kept": kept, "left_out": dict(sorted(left_out.items())), "gain": gain,
            "v_empty": v_empty, "v_kept": None if v_empty is None else v_empty + gain}


def round_table(report: dict[str, Any]) -> str:
    """Per round: how many committed, who entered the model, who was left out (and the reason's first words),
    and the gain of what entered the model on the validation set."""
    headers = ["round", "committed", "entered the model", "left out", "gain"]
    rows = []
    for r in report["rounds"]:
        left_out = ", ".join(f"{who} ({why.split(':')[0]})" for who, why in r["left_out"].items()) or "-"
        rows.append([str(r["round"]), str(len(r["committed"])), ", ".join(r["kept"]) or "nothing", left_out,
                     f"{r['gain']:+.4f}"])
    return _table(headers, rows, right={0, 1, 4})


def accuracy_table(report: dict[str, Any]) -> str:
    """Per round: the global model's accuracy (mean over the hospitals' test parts, and per hospital)."""
    names = [i["name"] for i in report["institutions"]]
    headers = ["round", "global (mean)", *names]
    initial = report["initial"]["accuracy"]
    rows = [["0", _acc(initial["mean_center"]), *(_acc(initial["centers"].get(n)) for n in names)]]
    for r in report["rounds"]:
        rows.append([str(r["round"]), _acc(r["accuracy"]["mean_center"]),
                     *(_acc(r["accuracy"]["centers"].get(n)) for n in names)])
    return _table(headers, rows, right=set(range(len(headers))))


def outcome_table(report: dict[str, Any]) -> str:
    """Per hospital, on its own test part: alone (tuned local-only), federated (final global model), personalized."""
    headers = ["institution", "alone", "federated", "personalized", "gain over alone", "personalized model"]
    rows = []
    for i in report["institutions"]:
        gain = i["accuracy_personalized"] - i["accuracy_alone"]
        rows.append([i["name"], _acc(i["accuracy_alone"]), _acc(i["accuracy_federated"]),
                     _acc(i["accuracy_personalized"]), f"{gain:+.3f}", i["personalized_model"]])
    means = [fmean(i[k] for i in report["institutions"])
             for k in ("accuracy_alone", "accuracy_federated", "accuracy_personalized")]
    rows.append(["mean", *(_acc(m) for m in means), f"{means[2] - means[0]:+.3f}", ""])
    return _table(headers, rows, right={1, 2, 3, 4})


def institution_table(report: dict[str, Any]) -> str:
    """Per institution: role, rows, contribution share, reputation, payout (accuracies: :func:`outcome_table`)."""
    headers = ["institution", "role", "address", "rows", "score sum", "contribution",
               "reputation", "credited ETH", "claimed ETH"]
    rows = []
    for i in report["institutions"]:
        rows.append([
            i["name"], i["role"], i["address"][:10] + "…", f"{i['train_rows']}/{i['test_rows']}",
            f"{i['score_sum']:+.4f}",
            f"{i['contribution_share']:.1%}", f"{i['reputation'] / 100:.2f}%", eth(i["credited"]), eth(i["claimed"]),
        ])
    return _table(headers, rows, right=set(range(3, len(headers))))


def audit_summary(audit: dict[str, Any]) -> str:
    """The audit's check names, per-round checks folded: ``commitments, ..., scores_round_<r> x15``."""
    import re

    counts: dict[str, int] = {}
    for check in audit["checks"]:
        name = re.sub(r"_round_\d+$", "_round_<r>", check["name"])
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())


def format_report(report: dict[str, Any]) -> str:
    """Everything ``fedledger demo`` prints at the end."""
    demo, money, audit = report["demo"], report["bounty"], report["audit"]
    lines = [
        "",
        f"fedledger demo: {demo['data']}, {len(report['institutions'])} institutions, {demo['rounds']} rounds, "
        f"strategy {demo['strategy']}, scorer {demo['scorer']}, seed {demo['seed']}, chain {demo['chain']}",
        f"bounty {money['id']} on ledger {demo['ledger']} (chain id {demo['chain_id']})",
        "",
        "Accuracy of the federated global model on each hospital's test part, per round",
        accuracy_table(report),
        "",
        "What each round's model is made of (gain: v(kept) - v(empty), validation "
        + next((r["metric"] for r in report["rounds"] if r.get("metric")), "utility")
        + "; not positive: nobody is paid)",
        round_table(report),
        "",
        "Each hospital's own test part: alone (its tuned local-only model), federated, personalized (its own model)",
        outcome_table(report),
        "",
        "Contribution (share of the positive scores of the rounds that paid, weighted by their rewards), reputation "
        "and payout",
        institution_table(report),
        "",
        f"bounty   funded {eth(money['funded'])} ETH = credited {eth(money['credited'])} + refunded "
        f"{eth(money['refunded'])} + remaining {eth(money['remaining'])}  ("
        + ("holds to the wei" if money["identity_holds"] else "DOES NOT HOLD") + f"); claimed {eth(money['claimed'])}",
        "gas      " + ", ".join(f"{kind} {g['count']}x{g['mean']:,}" for kind, g in report["gas"].items()),
        "audit    " + (f"VERIFIED: {len(audit['checks'])} checks passed ({audit_summary(audit)})" if audit["verified"]
                       else "NOT VERIFIED: " + "; ".join(audit["reasons"])),
    ]
    timings = report.get("timings") or {}
    if timings:
        order = [k for k in TIMING_ORDER if k in timings] + sorted(set(timings) - set(TIMING_ORDER))
        lines.append("time     " + ", ".join(f"{k.replace('_', ' ')} {timings[k]:.1f}s" for k in order))
    plots = report.get("plots") or {}
    if plots:
        lines.append("files    " + ", ".join(["report.json", *plots.values()]) + f" in {demo.get('out', '')}".rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plots


def write_plots(report: dict[str, Any], out: str | Path) -> dict[str, str]:
    """Write accuracy.png, contributions.png and payouts.png into ``out``; returns ``{plot: file name}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    institutions = report["institutions"]
    names = [i["name"] for i in institutions]
    tab10 = plt.get_cmap("tab10")
    colors = [tab10(k) for k in range(10)]
    rounds = [0, *(r["round"] for r in report["rounds"])]
    demo = report["demo"]
    subtitle = f"{demo['data']}, {demo['strategy']}, scorer {demo['scorer']}, seed {demo['seed']}"
    if demo.get("free_rider"):
        subtitle += f", free rider {demo['free_rider']}"
    if demo.get("attacker"):
        subtitle += f", attacker {demo['attacker']}"
    labels = [i["name"] if i["role"] == "honest" else f"{i['name']}\n({i['role']})" for i in institutions]

    # left: the global model per round; right: each hospital alone, federated and personalized, bars from 0
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    for k, name in enumerate(names):
        fed = [report["initial"]["accuracy"]["centers"].get(name)] + [
            r["accuracy"]["centers"].get(name) for r in report["rounds"]]
        ax.plot(rounds, fed, color=colors[k % 10], marker="o", markersize=3, label=name)
    mean = [report["initial"]["accuracy"]["mean_center"]] + [r["accuracy"]["mean_center"] for r in report["rounds"]]
    ax.plot(rounds, mean, color="black", linewidth=2.5, label="mean over hospitals")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy on the hospital's test part")
    ax.set_ylim(0, 1)
    ax.set_title(f"Global model per round\n{subtitle}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    kinds = (("accuracy_alone", "alone (tuned local-only)", "#bbbbbb"), ("accuracy_federated", "federated", "#4c72b0"),
             ("accuracy_personalized", "personalized", "#dd8452"))
    groups = [*labels, "mean"]
    width = 0.8 / len(kinds)
    for k, (key, label, color) in enumerate(kinds):
        values = [i[key] for i in institutions]
        values.append(fmean(values))
        xs = [x - 0.4 + width * (k + 0.5) for x in range(len(groups))]
        bars.bar(xs, values, width=width, color=color, label=label)
        for x, v in zip(xs, values):
            bars.text(x, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7, rotation=90)
    bars.set_xticks(range(len(groups)), groups, fontsize=8)
    bars.set_ylim(0, 1.15)
    bars.set_ylabel("accuracy on the hospital's test part")
    bars.set_title("Each hospital alone, federated and personalized", fontsize=11)
    bars.legend(fontsize=8, loc="upper left", ncols=3)
    bars.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / PLOTS["accuracy"], dpi=110)
    plt.close(fig)

    # contribution score of each hospital in each round
    fig, ax = plt.subplots(figsize=(9, 5))
    score_rounds = [r["round"] for r in report["rounds"]]
    width = 0.8 / max(1, len(names))
    for k, inst in enumerate(institutions):
        values = [r["scores"].get(inst["name"]) or 0.0 for r in report["rounds"]]
        xs = [x - 0.4 + width * (k + 0.5) for x in score_rounds]
        label = inst["name"] + ("" if inst["role"] == "honest" else f" ({inst['role']})")
        ax.bar(xs, values, width=width, color=colors[k % 10], label=label,
               edgecolor="black" if inst["role"] != "honest" else None, linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    metric = next((r.get("metric") for r in report["rounds"] if r.get("metric")), "utility")
    ax.set_xlabel("round")
    ax.set_ylabel(f"contribution score (Δ validation {metric})")
    ax.set_xticks(score_rounds)
    ax.set_title(f"Contribution per hospital per round (on chain, fixed point)\n{subtitle}", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS["contributions"], dpi=110)
    plt.close(fig)

    # payouts: credited ether per hospital, with share and reputation
    fig, ax = plt.subplots(figsize=(8, 5))
    credited = [int(i["credited"]) / 10**18 for i in institutions]
    bars = ax.bar(labels, credited, color=[ROLE_COLORS.get(i["role"], "#4c72b0") for i in institutions])
    top = max(credited, default=0) or 1.0
    for bar, inst in zip(bars, institutions):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.01,
                f"{int(inst['credited']) / 10**18:.3f} ETH\n{inst['payout_share']:.1%} of payouts\n"
                f"reputation {inst['reputation'] / 100:.1f}%",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_ylabel("credited (ETH), all claimed")
    money = report["bounty"]
    ax.set_title(f"Payouts: {int(money['funded']) / 10**18:g} ETH funded, {int(money['refunded'])} wei refunded "
                 f"to the sponsor\n{subtitle}", fontsize=11)
    roles = [role for role in ROLE_COLORS if any(i["role"] == role for i in institutions)]
    if roles != ["honest"]:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=ROLE_COLORS[role], label=role) for role in roles], fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / PLOTS["payouts"], dpi=110)
    plt.close(fig)
    return dict(PLOTS)
