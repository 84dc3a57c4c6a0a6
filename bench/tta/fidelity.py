#!/usr/bin/env python3
"""The baseline model, 10 epochs, several seeds: tuner's trainer against a PyTorch replica,
val_accuracy and test accuracy side by side (issue 14's fidelity question).

    .venv-optuna/bin/python fidelity.py --seeds 0,1,2,3,4,5 [--tuner-cli PATH] [--only torch|tuner] [--keras-adam]
    .venv-optuna/bin/python fidelity.py --check-weights FILE.safetensors   # tuner's saved model, evaluated by PyTorch
    .venv-optuna/bin/python fidelity.py --check-steps [--tuner-cli PATH]    # 5 Adam steps, tuner against PyTorch

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


class KerasAdam(torch.optim.Optimizer):
    """Keras 3's Adam (what tuner's optim.rs implements): epsilon added to sqrt(v) before
    the bias correction, `w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`;
    PyTorch adds it to the bias-corrected sqrt(v)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-7):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["t"] += 1
                t, m, v = state["t"], state["m"], state["v"]
                m.add_((p.grad - m) * (1 - b1))
                v.add_((p.grad * p.grad - v) * (1 - b2))
                alpha = group["lr"] * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
                p.sub_(alpha * m / (v.sqrt() + group["eps"]))


def torch_run(seed, epochs, data, keras_adam=False):
    x_tr, y_tr, x_va, y_va, x_te, y_te = data
    torch.manual_seed(seed)
    model = StudentNet(BASELINE)
    opt = (KerasAdam(model.parameters(), lr=BASELINE["learning_rate"]) if keras_adam
           else make_optimizer("adam", model.parameters(), BASELINE["learning_rate"]))
    gen = torch.Generator().manual_seed(seed)
    started = time.time()
    history = []
    for _ in range(epochs):
        perm = torch.randperm(len(y_tr), generator=gen)
        loss_sum, hits = 0.0, 0
        for i in range(0, len(y_tr), BASELINE["batch_size"]):
            idx = perm[i:i + BASELINE["batch_size"]]
            logits = model(x_tr[idx])
            loss = F.cross_entropy(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            hits += (logits.argmax(1) == y_tr[idx]).sum().item()
        # Keras-style running train metrics of the epoch, and the validation accuracy after it.
        history.append({"loss": loss_sum / len(y_tr), "accuracy": hits / len(y_tr),
                        "val_accuracy": accuracy(model, x_va, y_va)})
    return {"val_accuracy": history[-1]["val_accuracy"], "test_accuracy": accuracy(model, x_te, y_te),
            "seconds": time.time() - started, "history": history}


def tuner_run(seed, epochs, cli):
    started = time.time()
    out = subprocess.run([cli, "train", "--epochs", str(epochs), "--seed", str(seed), "--json"],
                         capture_output=True, text=True, check=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    return {"val_accuracy": last["val_accuracy"], "test_accuracy": last["test_accuracy"],
            "seconds": time.time() - started}


def read_safetensors(path):
    """{name: float32 array} from a safetensors file (8-byte header length, JSON header,
    raw little-endian data), without the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start:8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def load_into(model, w):
    """Puts tuner's baseline weights (Keras layouts) into a StudentNet and makes it flatten
    channels-last, as tuner does, so its first dense kernel applies unchanged."""
    with torch.no_grad():
        for name in ("conv1", "conv2"):  # [k, k, c_in, c_out] -> [c_out, c_in, k, k]
            getattr(model, name).weight.copy_(torch.from_numpy(w[f"{name}.kernel"].transpose(3, 2, 0, 1).copy()))
            getattr(model, name).bias.copy_(torch.from_numpy(w[f"{name}.bias"].copy()))
        for layer, name in ((model.dense[0], "dense1"), (model.out, "output")):  # [in, out] -> [out, in]
            layer.weight.copy_(torch.from_numpy(w[f"{name}.kernel"].T.copy()))
            layer.bias.copy_(torch.from_numpy(w[f"{name}.bias"].copy()))
    model.forward = lambda x: model.out(model.dense_act(model.dense[0](torch.flatten(
        model.conv_act(model.conv2(model.conv_act(model.conv1(x)))).permute(0, 2, 3, 1), 1))))
    return model


def check_steps(cli, steps=5):
    """tuner's Adam steps at full size against PyTorch's: tuner trains the baseline for
    `steps` epochs of one 128-image batch (so the batch order cannot differ); PyTorch
    starts from tuner's initial weights (an SGD run with a learning rate of 1e-30 saves
    them) and takes the same steps with Keras' Adam and with its own."""
    x, y, _, _ = common.load_split(train_limit=128)
    xb, yb = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
    saved = {}
    for opt, lr, epochs in (("sgd", 1e-30, 1), ("adam", 1e-3, steps)):
        cfg = f"/tmp/tta-fidelity-{opt}.yaml"
        with open(cfg, "w") as f:
            f.write("".join(f"{k}: {v}\n" for k, v in BASELINE.items() if not k.startswith("dense_units_"))
                    .replace("optimizer: adam", f"optimizer: {opt}").replace("learning_rate: 0.001", f"learning_rate: {lr}"))
        subprocess.run([cli, "train", "--config", cfg, "--epochs", str(epochs), "--train-limit", "128", "--val-limit", "10",
                        "--seed", "0", "--save", cfg.replace(".yaml", ".safetensors")], check=True, capture_output=True)
        saved[opt] = read_safetensors(cfg.replace(".yaml", ".safetensors"))
    w0, w_tuner = saved["sgd"], saved["adam"]
    for form in ("keras", "pytorch"):
        model = load_into(StudentNet(BASELINE), w0)
        opt = (KerasAdam(model.parameters(), lr=1e-3) if form == "keras"
               else torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7))
        for _ in range(steps):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for name, layer in (("conv1", model.conv1), ("conv2", model.conv2), ("dense1", model.dense[0]),
                            ("output", model.out)):
            mine = layer.weight.detach().numpy()
            mine = mine.transpose(2, 3, 1, 0) if name.startswith("conv") else mine.T
            moved = np.linalg.norm(w_tuner[f"{name}.kernel"] - w0[f"{name}.kernel"])
            off = np.linalg.norm(w_tuner[f"{name}.kernel"] - mine)
            print(f"{steps} steps, PyTorch with {form:7s} Adam: {name:6s} kernel differs from tuner's by "
                  f"{off / moved:.1e} of tuner's move ({moved:.4f})")


def check_weights(path, data):
    """Evaluates a baseline model that `tuner-cli train --save` wrote with PyTorch on the
    same validation and test images: does tuner's evaluation path agree?"""
    w = read_safetensors(path)
    model = load_into(StudentNet(BASELINE), w)
    _, _, x_va, y_va, x_te, y_te = data
    print(f"{path}: stored statistics mean {float(w['input.pixel_mean'][0]):.6f} std {float(w['input.pixel_std'][0]):.6f}; "
          f"PyTorch evaluation: val {accuracy(model, x_va, y_va):.4f} test {accuracy(model, x_te, y_te):.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["torch", "tuner"], default="")
    ap.add_argument("--stats", choices=["train60k", "fit48k"], default="train60k",
                    help="torch only: which images the standardization statistics come from")
    ap.add_argument("--keras-adam", action="store_true",
                    help="torch only: Keras' Adam update (tuner's) instead of PyTorch's")
    ap.add_argument("--tuner-cli", default=os.environ.get("TUNER_CLI", "tuner-cli"))
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    ap.add_argument("--check-steps", action="store_true",
                    help="only compare 5 Adam steps of tuner with PyTorch's (Keras' and PyTorch's Adam) from the same weights")
    ap.add_argument("--check-weights", default="", metavar="FILE.safetensors",
                    help="only evaluate a baseline model saved by `tuner-cli train --save` with PyTorch")
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

    if args.check_steps:
        check_steps(args.tuner_cli)
        return
    if args.check_weights:
        check_weights(args.check_weights, data)
        return
    rows = []
    for seed in seeds:
        for system in ("tuner", "torch"):
            if args.only and system != args.only:
                continue
            r = tuner_run(seed, args.epochs, args.tuner_cli) if system == "tuner" else torch_run(seed, args.epochs, data, args.keras_adam)
            r.update(system=system if system == "tuner" else
                     f"torch ({args.stats}{', keras adam' if args.keras_adam else ''})", seed=seed)
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
