#!/usr/bin/env python3
"""Held-out validation: gpupool against tuned baselines on traffic the shipped scenarios do not
contain (benches/validation/*.yaml: other days and models of the ServeGen data, the bursty Azure
code trace on the spot and plain setups). No number in gpupool was chosen on these; run it after
a change to the planner or the SLO learner to see whether what the shipped scenarios show
carries.

    python3 benches/validation.py [path/to/gpupool] [--seed N] [--jobs N]

Prints, per scenario: gpupool's SLO attainment and cost ÷ the oracle's, the cheapest baseline
setting meeting the scenario's target (`simulate --tune-baselines`), gpupool's cost ÷ that
baseline's, and whether the SLO issue's bar is met (at the target, cost at most 0.9 × that
baseline's or halfway between it and the oracle's, whichever allows more). Figures only: it
asserts nothing.
"""
import argparse
import concurrent.futures
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(binary, scenario, seed):
    cmd = [binary, "simulate", "--scenario", str(scenario), "--policy", "all",
           "--tune-baselines", "--json", "--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return scenario, None, out.stderr.strip().splitlines()[-1:]
    return scenario, json.loads(out.stdout), None


def row(name, d):
    target = d["slo_attainment_target"]
    pols = {p["policy"]: p for p in d["policies"]}
    g = pols["gpupool"]
    best = None
    for p in d["policies"]:
        t = p.get("tuned")
        if t and t["slo_attainment"] >= target and (best is None or t["cost_usd"] < best[2]):
            best = (p["policy"], t["setting"], t["cost_usd"], t["slo_attainment"])
    ratio = lambda x: "n/a" if x is None else f"{x:.2f} ×"
    base = "none meets the target" if best is None else (
        f"{best[0]} {best[1]}: {best[3] * 100:.2f} %, ${best[2]:.2f}")
    vs = "n/a" if best is None else f"{g['cost_usd'] / best[2]:.2f}"
    # The SLO issue's bar: at the target, at most 0.9 × that baseline's cost or halfway
    # between it and the oracle's, whichever allows more.
    oracle = pols.get("oracle", {}).get("cost_usd") if d.get("oracle_error") is None else None
    if best is None or oracle is None:
        bar = "n/a"
    else:
        limit = max(0.9 * best[2], (oracle + best[2]) / 2)
        met = g["slo_attainment"] >= target and g["cost_usd"] <= limit
        bar = f"${limit:.2f}: {'met' if met else 'not met'}"
    return (f"| {name} | {g['slo_attainment'] * 100:.2f} %, ${g['cost_usd']:.2f}, "
            f"{ratio(g['cost_vs_oracle'])} | {base} | {vs} | {bar} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default=str(ROOT / "target/release/gpupool"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    scenarios = sorted((ROOT / "benches/validation").glob("*.yaml"))
    print("| scenario | gpupool: SLO, cost, ÷ oracle | cheapest tuned baseline at the target "
          "| gpupool ÷ that | bar |")
    print("|---|---|---|---|---|")
    failed = False
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for scenario, d, err in ex.map(lambda s: run(a.binary, s, a.seed), scenarios):
            if d is None:
                failed = True
                print(f"| {scenario.stem} | failed: {' '.join(err)} | | | |")
            else:
                print(row(scenario.stem, d))
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
