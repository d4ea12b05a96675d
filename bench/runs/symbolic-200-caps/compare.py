#!/usr/bin/env python3
"""Cross-run figures quoted in bench/README's symbolic-200-caps section.

`sleeptime bench report` pairs conditions within one run only; this reads symbolic-200-caps
beside symbolic-200 (same 200 questions) and prints: how often the rerun v0/v2/v4 give the
same answer, the routed conditions paired with the capped baselines, symbolic-200's routing
sweep read against the caps run's measured frontier, and v4's median tokens.
Run from the repository root: python3 bench/runs/symbolic-200-caps/compare.py
"""
import json
import statistics
from pathlib import Path

RUNS = Path(__file__).resolve().parent.parent


def records(run):
    by_condition = {}
    for line in open(RUNS / run / "results.jsonl"):
        r = json.loads(line)
        by_condition.setdefault(r["condition"], {})[(r["problem_id"], r["question_index"])] = r
    return by_condition


caps, base = records("symbolic-200-caps"), records("symbolic-200")

print("rerun of the baseline budgets (same answer; correct here vs symbolic-200)")
for cond in ("baseline/v0", "baseline/v2", "baseline/v4"):
    new, old = caps[cond], base[cond]
    same = sum(new[k]["answer"] == old[k]["answer"] for k in new)
    print(f"  {cond}: {same}/{len(new)} same; correct {sum(r['correct'] for r in new.values())}"
          f" vs {sum(old[k]['correct'] for k in new)}")

print("paired across runs (wins, losses of the routed condition)")
for routed in ("aided/k1/routed/v0", "aided-solve/k1/routed/v0"):
    for cap in ("baseline/cap64", "baseline/cap128"):
        a, b = base[routed], caps[cap]
        wins = sum(a[k]["correct"] and not b[k]["correct"] for k in b)
        losses = sum(b[k]["correct"] and not a[k]["correct"] for k in b)
        print(f"  {routed} vs {cap}: {wins} wins, {losses} losses")

summary = json.load(open(RUNS / "symbolic-200-caps" / "summary.json"))
points = sorted((c["completion_tokens"], c["accuracy"]) for c in summary["conditions"]
                if c["condition"].startswith("baseline/"))
frontier = []  # Pareto frontier: each point more accurate than every cheaper one
for tokens, accuracy in points:
    if not frontier or accuracy > frontier[-1][1]:
        frontier.append((tokens, accuracy))


def baseline_at(tokens):
    for (t0, a0), (t1, a1) in zip(frontier, frontier[1:]):
        if t0 <= tokens <= t1:
            return a0 + (a1 - a0) * (tokens - t0) / (t1 - t0)
    return None


print("frontier:", ", ".join(f"{a:.1%} at {t:.0f}" for t, a in frontier))
print("symbolic-200's routing sweep vs the measured frontier")
sweep = json.load(open(RUNS / "symbolic-200" / "summary.json"))["route_thresholds"]
for row in sweep:
    b = baseline_at(row["tokens"])
    if b is not None:
        print(f"  {row['condition']} threshold {row['threshold']:.1f}: {row['accuracy']:.1%} at"
              f" {row['tokens']:.0f} tokens; baseline {b:.1%}; gap {100 * (row['accuracy'] - b):+.1f}")

v4 = [r["usage"]["completion_tokens"] for r in caps["baseline/v4"].values()]
print(f"baseline/v4 median completion tokens: {statistics.median(v4)}")
