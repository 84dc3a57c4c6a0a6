#!/usr/bin/env python3
"""Side-by-side optimizer benchmark: tuner's samplers against Optuna's on the same
problems, seeds and budgets, in one table.

1. Reads the problems (names, search spaces, optima) from
   `tuner-cli bench optimizer --list-problems`, and checks the Python objectives in
   bench/problems.py against Rust's on sample points (`--eval-points`); a mismatch
   stops the run.
2. Runs each `--tuner LABEL=PATH` binary's `bench optimizer --json-out` (through the
   HTTP API, as users reach it) and Optuna's samplers (`--optuna gp,tpe`) on every
   problem for seeds 0..N-1, timing each suggestion.
3. Writes every run to OUT/*.json and the table from `tuner-cli bench report` (the one
   implementation of the statistics) to OUT/report.md.

The first run creates bench/.venv with the pins of bench/requirements.txt and
re-executes itself there; `--check` (objectives only) needs no virtual environment.

  python3 bench/optuna_side_by_side.py --seeds 5 --budget 50 --problems all \
      --tuner tuner=target/release/tuner-cli --out bench/results/run
  python3 bench/optuna_side_by_side.py --check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
# Optuna and the objectives run single-threaded, like one tuner suggestion, so the
# latency columns compare like with like on a shared machine.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

sys.path.insert(0, str(HERE))
from problems import OBJECTIVES  # noqa: E402


def ensure_venv() -> None:
    """Re-executes this script inside bench/.venv, creating it first if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"creating {VENV} from {REQUIREMENTS.name} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    os.execv(str(python), [str(python), *sys.argv])


def tuner_json(binary: str, *args: str) -> Any:
    out = subprocess.run([binary, "bench", "optimizer", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check_objectives(binary: str, points: int = 25) -> int:
    """Compares every Python objective with Rust's on `points` configurations each."""
    mismatches = 0
    samples = tuner_json(binary, "--eval-points", str(points))
    for s in samples:
        ours = OBJECTIVES[s["problem"]](s["params"])
        theirs = s["value"]
        if abs(ours - theirs) > 1e-9 * max(1.0, abs(theirs)):
            mismatches += 1
            print(f"MISMATCH {s['problem']}: rust {theirs!r} python {ours!r} at {s['params']}", file=sys.stderr)
    print(f"objectives: {len(samples)} points, {mismatches} mismatches", file=sys.stderr)
    return mismatches


def active(param: dict[str, Any], chosen: dict[str, Any]) -> bool:
    for cond in param.get("when", []):
        if cond["parent"] not in chosen:
            return False
        value = chosen[cond["parent"]]
        test = cond["test"]
        if "one_of" in test:
            if value not in test["one_of"]:
                return False
        else:
            lo, hi = test["range"]["min"], test["range"]["max"]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
    return True


def suggest(trial: Any, space: list[dict[str, Any]]) -> dict[str, Any]:
    """Define-by-run suggestion of a tuner search space (parents precede children)."""
    chosen: dict[str, Any] = {}
    for p in space:
        if not active(p, chosen):
            continue
        name, kind = p["name"], p["type"]
        if kind == "float":
            step = p.get("step")
            chosen[name] = trial.suggest_float(name, p["min"], p["max"], log=p["log"], step=step)
        elif kind == "int":
            chosen[name] = trial.suggest_int(name, p["min"], p["max"], step=p["step"], log=p["log"])
        else:
            chosen[name] = trial.suggest_categorical(name, p["values"])
    return chosen


def make_sampler(kind: str, seed: int) -> Any:
    import optuna

    if kind == "gp":
        # Conditional parameters fall back to independent sampling; that is GPSampler's
        # documented behaviour, not worth a warning per trial.
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SystemExit(f"unknown Optuna sampler {kind}")


def run_optuna(kind: str, problem: dict[str, Any], seed: int, budget: int) -> dict[str, Any]:
    import optuna

    study = optuna.create_study(direction="minimize", sampler=make_sampler(kind, seed))
    f = OBJECTIVES[problem["name"]]
    best, regret, ask_seconds = float("inf"), [], 0.0
    for _ in range(budget):
        started = time.perf_counter()
        trial = study.ask()
        params = suggest(trial, problem["parameters"])
        ask_seconds += time.perf_counter() - started
        y = f(params)
        study.tell(trial, y)
        best = min(best, y)
        regret.append(best - problem["optimum"])
    return {
        "problem": problem["name"],
        "sampler": f"optuna-{kind}",
        "seed": seed,
        "regret": regret,
        "ask_ms": 1000.0 * ask_seconds / budget,
    }


def host() -> str:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return (
        f"{info.get('model name', platform.processor())} (family {info.get('cpu family', '?')}, "
        f"model {info.get('model', '?')}), {os.cpu_count()} CPUs"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "tuner-cli"), help="tuner-cli for problems and report")
    ap.add_argument("--tuner", action="append", default=[], metavar="LABEL=PATH", help="a tuner-cli binary to benchmark")
    ap.add_argument("--tuner-optimizers", default="gp", help="tuner optimizers (comma-separated)")
    ap.add_argument("--optuna", default="gp,tpe", help="Optuna samplers (comma-separated; empty for none)")
    ap.add_argument("--problems", default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="Optuna seeds are FIRST..FIRST+SEEDS-1 (to extend an earlier run)")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--reference", help="sampler the paired tests compare against (default: the first tuner's gp)")
    ap.add_argument("--out", default=str(HERE / "results" / "latest"))
    ap.add_argument("--include", nargs="*", default=[], help="earlier run files to put in the same report")
    ap.add_argument("--check", action="store_true", help="only compare the objectives with Rust's")
    a = ap.parse_args()

    if a.check:
        sys.exit(1 if check_objectives(a.bin) else 0)
    ensure_venv()
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
    if check_objectives(a.bin):
        sys.exit("objectives differ from Rust's; fix bench/problems.py first")

    problems = tuner_json(a.bin, "--list-problems")
    if a.problems != "all":
        wanted = a.problems.split(",")
        problems = [p for p in problems if p["name"] in wanted]
    names = ",".join(p["name"] for p in problems)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = [Path(f) for f in a.include]
    started = time.time()

    for spec in a.tuner:
        label, _, path = spec.partition("=")
        target = out / f"{label}.json"
        print(f"{label}: {path} on {names}", file=sys.stderr)
        subprocess.run(
            [path, "bench", "optimizer", "--problems", names, "--optimizers", a.tuner_optimizers,
             "--seeds", str(a.seeds), "--budget", str(a.budget), "--label", label, "--json-out", str(target)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        files.append(target)

    kinds = [k for k in a.optuna.split(",") if k]
    if kinds:
        import optuna
        import torch

        torch.set_num_threads(1)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # The first GP suggestion pays for imports and compilation; not ours to time.
        if "gp" in kinds:
            run_optuna("gp", problems[0], 0, 12)
    for kind in kinds:
        runs = []
        target = out / f"optuna-{kind}.json"
        for problem in problems:
            t0 = time.time()
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                runs.append(run_optuna(kind, problem, seed, a.budget))
                # Saved as they go: a long run that is stopped keeps what it finished.
                target.write_text(json.dumps({"runs": runs}))
            print(f"optuna-{kind} {problem['name']}: {time.time() - t0:.0f} s", file=sys.stderr)
        files.append(target)

    reference = a.reference or (f"{a.tuner[0].partition('=')[0]}-gp" if a.tuner else None)
    cmd = [a.bin, "bench", "report", *map(str, files)]
    if reference:
        cmd += ["--reference", reference]
    table = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    versions = ""
    if kinds:
        import optuna
        import torch

        versions = f"Optuna {optuna.__version__}, torch {torch.__version__}, "
    own = (
        f"{a.seeds} seeds ({a.first_seed}..{a.first_seed + a.seeds - 1} for Optuna), budget {a.budget}, "
        if a.tuner or kinds
        else ""
    )
    included = f"runs from {', '.join(Path(f).name for f in a.include)}; " if a.include else ""
    header = (
        f"{own}{included}problems {names}\n"
        f"host: {host()}; {versions}Python {platform.python_version()}; "
        f"{time.time() - started:.0f} s\n\n"
    )
    (out / "report.md").write_text(header + table)
    print(header + table)


if __name__ == "__main__":
    main()
