#!/usr/bin/env python3
"""Optuna on the student's space, training the student's model family in PyTorch (CPU).

The model is the student's Keras model written in PyTorch (as ../shared/bench/anchor_torch.py
does for the baseline): 'same' convs, the 1x1/stride-2 "pooling" folded into a stride-2
conv with padding k//2 (the same outputs and gradients, 4x fewer conv MACs: PyTorch's best
setting), 1-3 dense layers, Keras initializers (truncated he_normal, glorot_uniform output,
zero biases) and Keras optimizer constants (Adam/RMSprop epsilon 1e-7, RMSprop rho 0.9).
Every epoch reports val_accuracy to the trial, so pruners see the learning curve.

The space is defined without conditionals (dense_units_1/_2 are always suggested and used
only when dense_layers needs them) so that GPSampler models every parameter instead of
sampling the conditional ones independently. Run it through `tta.py run --system optuna-...`.
"""
import argparse
import sys

import numpy as np
import optuna
import torch
import torch.nn as nn
import torch.nn.functional as F

import common

SAMPLERS = ("gp", "tpe", "random")
PRUNERS = ("none", "median", "hyperband")


def he_normal_(w):
    std = (2.0 / w[0].numel()) ** 0.5 / 0.87962566103423978  # truncated at 2 sd, as Keras
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)


def activation(name):
    return {"relu": nn.ReLU(), "tanh": nn.Tanh(),
            "leaky_relu": nn.LeakyReLU(common.LEAKY_RELU_SLOPE)}[name]


class StudentNet(nn.Module):
    def __init__(self, p):
        super().__init__()
        k = p["kernel_size"]
        self.conv1 = nn.Conv2d(1, p["conv1_filters"], k, stride=2, padding=k // 2)
        self.conv2 = nn.Conv2d(p["conv1_filters"], p["conv2_filters"], k, stride=2, padding=k // 2)
        self.conv_act = activation(p["conv_activation"])
        units = [p["dense_units"], p["dense_units_1"], p["dense_units_2"]][:p["dense_layers"]]
        widths = [p["conv2_filters"] * 7 * 7] + units
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.dense_act = activation(p["dense_activation"])
        self.out = nn.Linear(widths[-1], 10)
        for m in [self.conv1, self.conv2, *self.dense]:
            he_normal_(m.weight)
            nn.init.zeros_(m.bias)
        limit = (6.0 / (widths[-1] + 10)) ** 0.5
        nn.init.uniform_(self.out.weight, -limit, limit)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        x = self.conv_act(self.conv2(self.conv_act(self.conv1(x))))
        # Keras flattens channels-last; the order of a dense layer's inputs changes nothing.
        x = torch.flatten(x, 1)
        for layer in self.dense:
            x = self.dense_act(layer(x))
        return self.out(x)


def make_optimizer(name, params, lr):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    return torch.optim.SGD(params, lr=lr)


def suggest(trial):
    u_lo, u_hi, u_step = common.DENSE_UNITS
    return {
        "conv_activation": trial.suggest_categorical("conv_activation", common.ACTIVATIONS),
        "optimizer": trial.suggest_categorical("optimizer", common.OPTIMIZERS),
        "learning_rate": trial.suggest_float("learning_rate", *common.LR_RANGE, log=True),
        "conv1_filters": trial.suggest_int("conv1_filters", *common.CONV1_FILTERS[:2], step=common.CONV1_FILTERS[2]),
        "conv2_filters": trial.suggest_int("conv2_filters", *common.CONV2_FILTERS[:2], step=common.CONV2_FILTERS[2]),
        "kernel_size": trial.suggest_categorical("kernel_size", common.KERNEL_SIZES),
        "dense_layers": trial.suggest_int("dense_layers", *common.DENSE_LAYERS),
        "dense_units": trial.suggest_int("dense_units", u_lo, u_hi, step=u_step),
        "dense_units_1": trial.suggest_int("dense_units_1", u_lo, u_hi, step=u_step),
        "dense_units_2": trial.suggest_int("dense_units_2", u_lo, u_hi, step=u_step),
        "dense_activation": trial.suggest_categorical("dense_activation", common.ACTIVATIONS),
        "batch_size": trial.suggest_int("batch_size", *common.BATCH_SIZE[:2], step=common.BATCH_SIZE[2]),
    }


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    hits = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(y), batch))
    model.train()
    return hits / len(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sampler", choices=SAMPLERS, default="gp")
    ap.add_argument("--pruner", choices=PRUNERS, default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--val-limit", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    log = common.TrialLog()
    x_tr, y_tr, x_va, y_va = (torch.from_numpy(a) for a in common.load_split(args.train_limit, args.val_limit))
    x_tr, x_va = x_tr.unsqueeze(1), x_va.unsqueeze(1)

    def objective(trial):
        p = suggest(trial)
        print(f"trial {trial.number} starts: {p}", file=sys.stderr, flush=True)
        torch.manual_seed(args.seed * 100003 + trial.number)
        model = StudentNet(p)
        opt = make_optimizer(p["optimizer"], model.parameters(), p["learning_rate"])
        gen = torch.Generator().manual_seed(args.seed * 100003 + trial.number)
        value = None
        for epoch in range(1, common.EPOCHS + 1):
            perm = torch.randperm(len(y_tr), generator=gen)
            for i in range(0, len(y_tr), p["batch_size"]):
                idx = perm[i:i + p["batch_size"]]
                loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
                if not torch.isfinite(loss):
                    return float("nan")  # Optuna records a NaN objective as a failed trial
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            value = accuracy(model, x_va, y_va)
            trial.report(value, epoch)
            if epoch < common.EPOCHS and trial.should_prune():  # after the last epoch it saves nothing
                raise optuna.TrialPruned()
        return value

    def on_trial_end(study, frozen):
        epochs = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
        state = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}.get(frozen.state.name,
                                                                                    frozen.state.name.lower())
        log.write(number=frozen.number, state=state, epoch_values=epochs, params=frozen.params,
                  duration_s=frozen.duration.total_seconds() if frozen.duration else None, value=frozen.value)

    sampler = {"gp": lambda: optuna.samplers.GPSampler(seed=args.seed),
               "tpe": lambda: optuna.samplers.TPESampler(seed=args.seed),
               "random": lambda: optuna.samplers.RandomSampler(seed=args.seed)}[args.sampler]()
    pruner = {"none": optuna.pruners.NopPruner,
              # Steps are epochs 1..3; warm-up 2 first checks after epoch 2, as tuner's
              # student file does (warmup_epochs: 1).
              "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
              "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=common.EPOCHS,
                                                                  reduction_factor=3)}[args.pruner]()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=None, callbacks=[on_trial_end], gc_after_trial=False)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
