#!/usr/bin/env python3
"""Time to accuracy on the student's search space: KerasTuner, Optuna and tuner side by side.

    tta.py run --system SYSTEM --seed S --budget-min 30 --out results/NAME/
    tta.py report results/NAME/ [--plot results/NAME/tta.png]
    tta.py systems

`run` starts one system (one seed, one wall-clock budget) as its own process group, stops
it at the budget (SIGINT, then SIGTERM/SIGKILL after a grace period) and writes
`OUT/SYSTEM-sS.json`: the host, the settings, every trial that finished within the budget
with its wall seconds since the start, and the best-so-far curve. Clock zero is taken just
before the system's process starts, so imports, data loading and process start-up count
for every system. `report` turns a folder of those into the table (minutes to 0.89 /
0.895 / 0.8961 / 0.90 val_accuracy, best after 10 and 30 minutes; median over seeds with
the range) and a PNG plot (median over seeds with a min-max band).

A trial's score is its val_accuracy after the 3rd epoch (the model a 3-epoch trial
leaves); only trials that ran all 3 epochs count (also those a pruner marked pruned after
their last epoch). `report --score best-epoch` uses the best
of its epochs instead (what KerasTuner calls a trial's score).
"""
import argparse
import datetime as dt
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY_KERAS = os.path.join(HERE, ".venv-keras", "bin", "python")
PY_OPTUNA = os.path.join(HERE, ".venv-optuna", "bin", "python")
STUDENT_SPACE = os.path.join(REPO, "search-spaces", "student-tuner.yaml")
TUNER_CLI = os.environ.get("TUNER_CLI", os.path.join(REPO, "target", "release", "tuner-cli"))
THRESHOLDS = [0.89, 0.895, 0.8961, 0.90]
CHECKPOINTS_MIN = [10, 30]
STOP_GRACE_S = 30

# tuner's rows: the student's file as shipped ("its defaults"), and the ablations, each a
# list of overrides `dotted.path=YAML value` applied to that file (`null` removes a key).
# Options the binary does not know yet make `tuner-cli tune` refuse the file; the run
# then fails with tuner-cli's message.
TUNER_VARIANTS = {
    "tuner": [],
    "tuner-no-pruner": ["pruner=null"],
    "tuner-median": ["pruner={kind: median, warmup_epochs: 1, min_trials: 4}"],
    "tuner-asha": ["pruner={kind: asha, min_resource: 1, reduction_factor: 3}"],
    "tuner-curve": ["pruner={kind: curve}"],
    "tuner-cost-aware": ["optimizer.cost_aware=true"],
    "tuner-no-cost-aware": ["optimizer.cost_aware=false"],
    "tuner-1-worker": ["budget.parallelism=1"],
}
OPTUNA_VARIANTS = {
    "optuna-gp": ("gp", "none"),
    "optuna-tpe-hyperband": ("tpe", "hyperband"),
    "optuna-tpe-median": ("tpe", "median"),
    "optuna-random": ("random", "none"),
}
SYSTEMS = ["keras-bo", *OPTUNA_VARIANTS, *TUNER_VARIANTS]


# ---------------------------------------------------------------------------------- run

def set_dotted(doc, path, value):
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


def tuner_spec(seed, overrides, train_limit, val_limit, name):
    """The student's file with the run's seed, a trial budget the clock ends first, the
    data limits and the overrides."""
    import yaml  # PyYAML comes with Optuna in .venv-optuna

    with open(STUDENT_SPACE) as f:
        doc = yaml.safe_load(f)
    doc["name"] = name
    set_dotted(doc, "budget.max_trials", 10000)
    set_dotted(doc, "optimizer.seed", seed)
    if train_limit:
        set_dotted(doc, "trainer.train_limit", train_limit)
    if val_limit:
        set_dotted(doc, "trainer.val_limit", val_limit)
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise SystemExit(f"override {item!r}: expected dotted.path=YAML value")
        set_dotted(doc, path.strip(), yaml.safe_load(text))
    return doc


def to_epoch_seconds(stamp):
    if stamp is None:
        return None
    if isinstance(stamp, (int, float)):
        return float(stamp) / (1000.0 if stamp > 1e11 else 1.0)
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class TunerWatcher:
    """Finds the embedded server's URL in `tuner-cli tune`'s stderr and reads the study's
    trials from it until the run stops (the last read before the stop is what counts)."""

    URL = re.compile(r"live dashboard: (http://[^/\s]+)/#/studies/(\d+)")

    def __init__(self, proc, stderr_copy):
        self.proc, self.url, self.study = proc, None, None
        self.trials, self.copy = None, stderr_copy
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.copy.write(line)
            self.copy.flush()
            m = self.URL.search(line)
            if m and self.url is None:
                self.url, self.study = m.group(1), m.group(2)

    def poll(self):
        if self.url is None:
            return
        try:
            out = subprocess.run([TUNER_CLI, "--server", self.url, "trials", self.study, "--json"],
                                 capture_output=True, timeout=20, check=True).stdout
            self.trials = json.loads(out)["trials"]
        except (subprocess.SubprocessError, ValueError, KeyError):
            pass  # the server may be busy or gone; keep the last good read


def stop_group(proc, first=signal.SIGINT):
    """SIGINT (tune hands its trials back; Python raises KeyboardInterrupt), then SIGTERM,
    then SIGKILL, to the whole process group."""
    for sig, wait in ((first, STOP_GRACE_S), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def tuner_rows(trials, t0):
    rows = []
    for t in trials or []:
        finished = to_epoch_seconds(t.get("finished_at"))
        if finished is None or t.get("state") not in ("completed", "pruned", "failed"):
            continue
        epochs = [e.get("value") for e in sorted(t.get("intermediate") or [], key=lambda e: e["epoch"])]
        rows.append({"t": finished - t0, "number": t.get("number"), "state": t["state"],
                     "epochs": [v for v in epochs if v is not None], "value": t.get("value"),
                     "duration_s": t.get("duration_seconds"), "params": t.get("params")})
    return sorted(rows, key=lambda r: r["t"])


def run(args):
    if args.system not in SYSTEMS:
        raise SystemExit(f"unknown system {args.system!r}; one of: {', '.join(SYSTEMS)}")
    label = args.label or args.system + ("+" + "+".join(args.set) if args.set else "")
    os.makedirs(args.out, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + f"-s{args.seed}"
    scratch = os.path.join(args.scratch, stem + f"-{int(time.time())}")
    os.makedirs(scratch)
    log_path = os.path.join(scratch, "trials.jsonl")
    common_flags = ["--seed", str(args.seed), "--threads", str(args.threads),
                    "--train-limit", str(args.train_limit), "--val-limit", str(args.val_limit)]
    settings = {"threads": args.threads, "train_limit": args.train_limit, "val_limit": args.val_limit}
    env = dict(os.environ, TTA_LOG=log_path, PYTHONUNBUFFERED="1")
    if args.system == "keras-bo":
        cmd = [PY_KERAS, os.path.join(HERE, "kt_student.py"), *common_flags, "--workdir", scratch]
        settings.update(tool="KerasTuner BayesianOptimization (defaults), Keras 3 on TensorFlow CPU",
                        tf_threads={"intra_op": args.threads, "inter_op": 1})
    elif args.system in OPTUNA_VARIANTS:
        sampler, pruner = OPTUNA_VARIANTS[args.system]
        cmd = [PY_OPTUNA, os.path.join(HERE, "optuna_student.py"), "--sampler", sampler, "--pruner", pruner,
               *common_flags]
        settings.update(tool="Optuna + PyTorch CPU", sampler=sampler, pruner=pruner,
                        torch_threads={"intra_op": args.threads, "inter_op": 1})
    else:
        overrides = TUNER_VARIANTS[args.system] + args.set
        spec = tuner_spec(args.seed, overrides, args.train_limit, args.val_limit, name=f"tta-{stem}")
        import yaml

        spec_path = os.path.join(scratch, "space.yaml")
        with open(spec_path, "w") as f:
            yaml.safe_dump(spec, f, sort_keys=False)
        cmd = [TUNER_CLI, "tune", spec_path, "--fresh", "--db", os.path.join(scratch, "tuner.db"),
               "-o", os.path.join(scratch, "best.yaml")]
        settings.update(tool="tuner-cli tune", overrides=overrides, spec=spec,
                        tuner_cli=os.path.realpath(TUNER_CLI))
    if args.cpus:
        cmd = ["taskset", "-c", args.cpus, *cmd]
        settings["cpus"] = args.cpus
    budget_s = args.budget_min * 60.0
    load = os.getloadavg()[0]
    if load > 1.0:
        # Busy CPUs distort every figure, PyTorch's most: its OpenMP threads spin at each
        # barrier, and a descheduled one stalls the rest (10x slower with 2 threads on a
        # shared 2-core machine, measured).
        print(f"[tta] warning: load average {load:.1f} before the start: the machine is not quiet", flush=True)
    settings["load_average_at_start"] = load
    print(f"[tta] {label} seed {args.seed}: {budget_s / 60:.1f} min, scratch {scratch}", flush=True)

    stderr_path = os.path.join(scratch, "stderr.log")
    with open(stderr_path, "w") as stderr_copy:
        t0 = time.time()
        env["TTA_T0"] = repr(t0)
        is_tuner = args.system.startswith("tuner")
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE if is_tuner else stderr_copy)
        watcher = TunerWatcher(proc, stderr_copy) if is_tuner else None
        try:
            while time.time() - t0 < budget_s and proc.poll() is None:
                time.sleep(min(15.0, max(0.1, budget_s - (time.time() - t0))))
                if watcher:
                    watcher.poll()
        finally:
            if watcher:
                watcher.poll()
            ended_by = "budget" if proc.poll() is None else f"exit {proc.returncode}"
            stop_group(proc)
            if watcher:
                watcher.reader.join(timeout=10)
    wall_s = time.time() - t0

    if watcher:
        trials = tuner_rows(watcher.trials, t0)
    else:
        trials = []
        if os.path.exists(log_path):
            with open(log_path) as f:
                trials = [json.loads(line) for line in f if line.strip()]
    within = [t for t in trials if t["t"] <= budget_s]
    if ended_by != "budget" and not within:
        with open(stderr_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"[tta] {label} seed {args.seed} stopped before its budget with no trial "
                         f"({ended_by}); no result written. Its stderr ends:\n{tail}")
    result = {"system": args.system, "label": label, "seed": args.seed, "budget_s": budget_s,
              "ended_by": ended_by, "wall_s": wall_s, "host": common.host_line(), "settings": settings,
              "command": cmd, "started_utc": dt.datetime.fromtimestamp(t0, dt.timezone.utc).isoformat(),
              "trials": within, "trials_after_budget": len(trials) - len(within)}
    out = os.path.join(args.out, stem + ".json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    done = [t for t in within if trial_score(t, "last-epoch") is not None]
    best = max((trial_score(t, "last-epoch") for t in done), default=None)
    print(f"[tta] {label} seed {args.seed}: {ended_by}; {len(within)} trials within the budget "
          f"({len(done)} ran all epochs), best {best}; wrote {out}", flush=True)


# ------------------------------------------------------------------------------- report

def trial_score(t, score):
    vals = t.get("epochs") or []
    # A trial pruned after its last epoch (tuner's median pruner does that) still left a
    # fully trained model: it counts.
    if t.get("state") not in ("completed", "pruned") or len(vals) < common.EPOCHS:
        return None
    return max(vals) if score == "best-epoch" else vals[-1]


def curve(result, score):
    """[(seconds, best so far)] at each improvement."""
    pts, best = [], None
    for t in sorted(result["trials"], key=lambda t: t["t"]):
        v = trial_score(t, score)
        if v is not None and (best is None or v > best):
            best = v
            pts.append((t["t"], best))
    return pts


def best_at(pts, seconds):
    vals = [v for t, v in pts if t <= seconds]
    return vals[-1] if vals else None


def time_to(pts, threshold):
    return next((t for t, v in pts if v >= threshold), None)


def summarize(values, fmt, missing, worse):
    """Median [min-max] of the values; seeds that never got there (None) count as `worse`
    than any value."""
    n = len(values)
    got = sorted(v for v in values if v is not None)
    if not got:
        return f"{missing} (0/{n})"
    if len(got) * 2 <= n:  # the median seed did not get there
        return f"{missing} ({len(got)}/{n}: {fmt(got[0])}-{fmt(got[-1])})"
    med = statistics.median(got + [worse] * (n - len(got)))
    rng = f"{fmt(got[0])}-{fmt(got[-1])}" + ("" if len(got) == n else f", {len(got)}/{n}")
    return f"{fmt(med)} [{rng}]"


def report(args):
    files = sorted(f for d in args.folders for f in glob.glob(os.path.join(d, "*.json")))
    runs = []
    for path in files:
        with open(path) as f:
            r = json.load(f)
        if "trials" in r and "label" in r:
            runs.append(r)
    if not runs:
        raise SystemExit(f"no run results in {args.folders}")
    labels = list(dict.fromkeys(r["label"] for r in sorted(runs, key=lambda r: SYSTEMS.index(r["system"])
                                                            if r["system"] in SYSTEMS else 99)))
    hosts = sorted({f"family {r['host']['family']} model {r['host']['model']} ({r['host']['model_name']}), "
                    f"{r['host']['cpus']} CPUs" for r in runs})
    budgets = sorted({r["budget_s"] for r in runs})
    minutes = lambda s: f"{s / 60:.1f}"  # noqa: E731
    acc = lambda v: f"{v:.4f}"  # noqa: E731
    checkpoints = [m for m in CHECKPOINTS_MIN if m * 60 <= max(budgets)] or [max(budgets) / 60]
    head = (["system", "seeds"] + [f"min to {t}" for t in THRESHOLDS]
            + [f"best at {c:g} min" for c in checkpoints] + ["trials done (pruned)", "s per 3-epoch trial"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in labels:
        rs = [r for r in runs if r["label"] == label]
        curves = [curve(r, args.score) for r in rs]
        cells = [label, ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))]
        cells += [summarize([time_to(c, th) for c in curves], minutes, "not reached", float("inf")) for th in THRESHOLDS]
        cells += [summarize([best_at(c, m * 60) for c in curves], acc, "none", float("-inf")) for m in checkpoints]
        done = [sum(1 for t in r["trials"] if trial_score(t, args.score) is not None) for r in rs]
        pruned = [sum(1 for t in r["trials"] if t["state"] == "pruned") for r in rs]
        cells.append(f"{statistics.median(done):g} ({statistics.median(pruned):g})")
        durations = [t["duration_s"] for r in rs for t in r["trials"]
                     if trial_score(t, args.score) is not None and t.get("duration_s")]
        cells.append(f"{statistics.median(durations):.0f}" if durations else "-")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join([f"Budgets: {', '.join(minutes(b) for b in budgets)} min; score: {args.score}; "
                      f"host(s): {'; '.join(hosts)}", "", *lines,
                      "", "Cells: median over seeds [min-max]; 'not reached (k/n)': the median seed never got "
                      "there, k of n seeds did."])
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(runs, labels, args)


def plot(runs, labels, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = max(r["budget_s"] for r in runs)
    grid = [horizon * i / 400 for i in range(401)]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for label in labels:
        curves = [curve(r, args.score) for r in runs if r["label"] == label]
        med, lo, hi, xs = [], [], [], []
        for s in grid:
            vals = [best_at(c, s) for c in curves]
            if sum(v is not None for v in vals) * 2 <= len(vals):
                continue  # fewer than half the seeds hold a model yet
            filled = sorted(v if v is not None else 0.0 for v in vals)
            xs.append(s / 60)
            med.append(statistics.median(filled))
            lo.append(filled[0])
            hi.append(filled[-1])
        if not xs:
            continue
        line, = ax.step(xs, med, where="post", label=f"{label} (n={len(curves)})")
        ax.fill_between(xs, lo, hi, step="post", alpha=0.15, color=line.get_color())
    ax.axhline(0.8961, color="grey", linestyle=":", linewidth=1, label="student's best (0.8961)")
    ax.set_xlabel("wall-clock minutes since start")
    ax.set_ylabel("best val_accuracy so far (3-epoch trials)")
    ax.set_ylim(args.ymin, args.ymax)
    ax.set_xlim(0, horizon / 60)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Time to accuracy, student's space: median over seeds, band = min-max")
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"wrote {args.plot}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one system, one seed, one budget")
    r.add_argument("--system", required=True, help="see `tta.py systems`")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--budget-min", type=float, default=30.0)
    r.add_argument("--threads", type=int, default=2, help="CPU threads each system may use (tuner: its "
                   "workers share the CPUs the process may run on; use --cpus to pin)")
    r.add_argument("--cpus", default="", help="taskset CPU list for the system's processes, e.g. 0,1")
    r.add_argument("--train-limit", type=int, default=0, help="smoke tests: first N of the 48k training images")
    r.add_argument("--val-limit", type=int, default=0, help="smoke tests: first N of the 12k validation images")
    r.add_argument("--set", action="append", default=[], metavar="PATH=YAML",
                   help="tuner only: extra override of the student's file, e.g. optimizer.cost_aware=false")
    r.add_argument("--label", default="", help="row name in the report (default: system and overrides)")
    r.add_argument("--out", required=True, help="folder for the result JSON")
    r.add_argument("--scratch", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tta-scratch"),
                   help="folder for databases, logs and KerasTuner's project files")
    r.set_defaults(func=run)
    p = sub.add_parser("report", help="table and plot from result folders")
    p.add_argument("folders", nargs="+")
    p.add_argument("--score", choices=["last-epoch", "best-epoch"], default="last-epoch")
    p.add_argument("--plot", default="")
    p.add_argument("--table", default="", help="also write the table (markdown) here")
    p.add_argument("--ymin", type=float, default=0.85)
    p.add_argument("--ymax", type=float, default=0.915)
    p.set_defaults(func=report)
    s = sub.add_parser("systems", help="list the systems and tuner's variants")
    s.set_defaults(func=lambda a: print("\n".join(
        [f"{k}: overrides {v}" if k in TUNER_VARIANTS else k for k, v in
         [("keras-bo", None), *OPTUNA_VARIANTS.items(), *TUNER_VARIANTS.items()]])))
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
