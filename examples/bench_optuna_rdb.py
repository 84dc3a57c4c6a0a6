"""Optuna's RDB storage on the same database as `tuner-cli bench service`: ask + tell
cycles per second with N processes on one study (the anchor for our replica figures).

    pip install optuna psycopg2-binary
    python3 examples/bench_optuna_rdb.py --url postgresql+psycopg2://USER@127.0.0.1:PORT/DB \
        --processes 8 --trials 2000

Each process loads the study (not timed) and runs ask → suggest three parameters (the same space as
the bench: a float, a categorical, an int) → tell, until the study has `--trials`
finished trials. Random sampler, as in our bench, so the figure is the storage's.
"""

import argparse
import multiprocessing as mp
import platform
import time


def host():
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    fields.setdefault(k, v)
    except OSError:
        pass
    return "{} (family {}, model {}), {} cores".format(
        fields.get("model name", platform.processor()),
        fields.get("cpu family", "?"),
        fields.get("model", "?"),
        mp.cpu_count(),
    )


def work(url, name, trials, counter, ready):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=name, storage=url, sampler=optuna.samplers.RandomSampler()
    )
    # Timing starts once every process has imported optuna and loaded the study.
    ready.wait()
    while True:
        with counter.get_lock():
            if counter.value >= trials:
                return
            counter.value += 1
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_categorical("k", ["a", "b", "c"])
        trial.suggest_int("n", 1, 100)
        study.tell(trial, x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--trials", type=int, default=2000)
    args = p.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{int(time.time() * 1000)}"
    optuna.create_study(study_name=name, storage=args.url, direction="maximize")
    counter = mp.Value("i", 0)
    ready = mp.Barrier(args.processes + 1)
    procs = [
        mp.Process(target=work, args=(args.url, name, args.trials, counter, ready))
        for _ in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    ready.wait()
    started = time.perf_counter()
    for proc in procs:
        proc.join()
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=args.url)
    done = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    print(f"host: {host()}")
    print(
        f"optuna rdb: {done / seconds:.0f} ask+tell cycles/s "
        f"({done} trials, {args.processes} processes, {seconds:.2f}s)"
    )


if __name__ == "__main__":
    main()
