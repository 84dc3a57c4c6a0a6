#!/usr/bin/env python3
"""The baseline model, 10 epochs, several seeds: tuner's trainer against a PyTorch replica,
val_accuracy and test accuracy side by side (issue 14's fidelity question).

    .venv-optuna/bin/python fidelity.py --seeds 0,1,2,3,4,5 [--tuner-cli PATH] [--only torch|tuner]

tuner: `tuner-cli train --epochs 10 --seed S --json` (the baseline config, 48k/12k split).
torch: the same model built by optuna_student.StudentNet (Keras initializers, the stride-2
fold of the 1x1/stride-2 pooling, Adam 1e-3 with epsilon 1e-7, batch 128), trained on the
same 48k images with a fresh shuffle per epoch, the final model evaluated on the 12k
validation images and the 10k test images, all standardized with the 60k training
statistics. `--stats fit48k` standardizes with the 48k training part's statistics instead.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

import common
from optuna_student import StudentNet, accuracy, make_optimizer

BASELINE = {"conv_activation": "relu", "optimizer": "adam", "learning_rate": 1e-3, "conv1_filters": 32,
            "conv2_filters": 64, "kernel_size": 3, "dense_layers": 1, "dense_units": 128, "dense_units_1": 0,
            "dense_units_2": 0, "dense_activation": "tanh", "batch_size": 128}


def torch_run(seed, epochs, data):
    x_tr, y_tr, x_va, y_va, x_te, y_te = data
    torch.manual_seed(seed)
    model = StudentNet(BASELINE)
    opt = make_optimizer("adam", model.parameters(), BASELINE["learning_rate"])
    gen = torch.Generator().manual_seed(seed)
    started = time.time()
    for _ in range(epochs):
        perm = torch.randperm(len(y_tr), generator=gen)
        for i in range(0, len(y_tr), BASELINE["batch_size"]):
            idx = perm[i:i + BASELINE["batch_size"]]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {"val_accuracy": accuracy(model, x_va, y_va), "test_accuracy": accuracy(model, x_te, y_te),
            "seconds": time.time() - started}


def tuner_run(seed, epochs, cli):
    started = time.time()
    out = subprocess.run([cli, "train", "--epochs", str(epochs), "--seed", str(seed), "--json"],
                         capture_output=True, text=True, check=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    return {"val_accuracy": last["val_accuracy"], "test_accuracy": last["test_accuracy"],
            "seconds": time.time() - started}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["torch", "tuner"], default="")
    ap.add_argument("--stats", choices=["train60k", "fit48k"], default="train60k",
                    help="torch only: which images the standardization statistics come from")
    ap.add_argument("--tuner-cli", default=os.environ.get("TUNER_CLI", "tuner-cli"))
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    x, y, x_te, y_te = common.load_standardized()
    split = int(len(y) * (1 - common.VALIDATION_SPLIT))
    if args.stats == "fit48k":
        # x is an affine function of the pixels, so standardizing it again with the 48k
        # part's own statistics equals standardizing the pixels with that part's.
        part = x[:split].astype(np.float64)
        mean, std = part.mean(), part.std()
        x, x_te = ((x - mean) / std).astype(np.float32), ((x_te - mean) / std).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    data = (t(x[:split]).unsqueeze(1), t(y[:split]), t(x[split:]).unsqueeze(1), t(y[split:]),
            t(x_te).unsqueeze(1), t(y_te))

    rows = []
    for seed in seeds:
        for system in ("tuner", "torch"):
            if args.only and system != args.only:
                continue
            r = tuner_run(seed, args.epochs, args.tuner_cli) if system == "tuner" else torch_run(seed, args.epochs, data)
            r.update(system=system if system == "tuner" else f"torch ({args.stats})", seed=seed)
            rows.append(r)
            print(f"{r['system']:<18} seed {seed}: val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} "
                  f"gap {r['val_accuracy'] - r['test_accuracy']:+.4f} ({r['seconds']:.0f} s)", flush=True)
    for system in dict.fromkeys(r["system"] for r in rows):
        rs = [r for r in rows if r["system"] == system]
        val, test = [r["val_accuracy"] for r in rs], [r["test_accuracy"] for r in rs]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        print(f"{system:<18} n={len(rs)}: val mean {statistics.mean(val):.4f} (sd {sd(val):.4f}), "
              f"test mean {statistics.mean(test):.4f} (sd {sd(test):.4f}, range {min(test):.4f}-{max(test):.4f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"host": common.host_line(), "epochs": args.epochs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
