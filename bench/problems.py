"""The objectives of `tuner_optim::problems` (crates/tuner-optim/src/problems.rs) in
Python, term for term, for the side-by-side benchmark.

Standard library only, so `optuna_side_by_side.py --check` (and the Rust test that
runs it) needs no virtual environment. Search spaces and optima are not repeated
here: they come from `tuner-cli bench optimizer --list-problems`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

Params = Mapping[str, Any]


def _xs(p: Params, n: int) -> list[float]:
    return [float(p[f"x{i}"]) for i in range(n)]


def branin(p: Params) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    pi = math.pi
    b, c, t = 5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi)
    return (x2 - b * x1 * x1 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


_H6_A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
_H6_P = [
    [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
    [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
    [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
    [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
]
_H6_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(p: Params) -> float:
    x = _xs(p, 6)
    total = 0.0
    for i in range(4):
        s = 0.0
        for j in range(6):
            s += _H6_A[i][j] * (x[j] - 1e-4 * _H6_P[i][j]) ** 2
        total += _H6_ALPHA[i] * math.exp(-s)
    return -total


def levy5(p: Params) -> float:
    pi = math.pi
    w = [1.0 + (x - 1.0) / 4.0 for x in _xs(p, 5)]
    s = math.sin(pi * w[0]) ** 2
    for wi in w[:-1]:
        s += (wi - 1.0) ** 2 * (1.0 + 10.0 * math.sin(pi * wi + 1.0) ** 2)
    return s + (w[-1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * pi * w[-1]) ** 2)


def rosenbrock4(p: Params) -> float:
    x = _xs(p, 4)
    return sum(100.0 * (x[i + 1] - x[i] * x[i]) ** 2 + (1.0 - x[i]) ** 2 for i in range(3))


def mixed(p: Params) -> float:
    best_lr, offset = {"sgd": (-1.5, 0.3), "adam": (-3.0, 0.0)}.get(p["optimizer"], (-3.3, 0.1))
    f = offset + 0.5 * (math.log10(p["lr"]) - best_lr) ** 2
    f1, f2 = float(p["filters1"]), float(p["filters2"])
    if float(p["kernel"]) == 5.0:
        f += ((f1 - 96.0) / 48.0) ** 2 + ((f2 - 192.0) / 96.0) ** 2
    else:
        f += 0.15 + ((f1 - 32.0) / 48.0) ** 2 + ((f2 - 64.0) / 96.0) ** 2
    f += (math.log2(p["units"]) - 8.0) ** 2 / 16.0
    layers = int(p["layers"])
    if layers == 1:
        f += 0.25
    elif layers == 2:
        f += (math.log2(p["units_2"]) - 7.0) ** 2 / 16.0
    else:
        f += 0.05 + (math.log2(p["units_2"]) - 7.0) ** 2 / 16.0
    f += 2.0 * (p["dropout"] - 0.25) ** 2
    if p["batchnorm"] is not True:
        f += 0.1
    return f


def _hash_noise(values: list[float]) -> float:
    h = 0.0
    for i, v in enumerate(values):
        h += v * (12.9898 + 7.233 * i)
    s = math.sin(h) * 43_758.5453
    return s - math.floor(s)


_OPTS = ["sgd", "adam", "rmsprop"]
_ACTS = ["relu", "tanh", "gelu"]


def cnn_optlr(p: Params) -> float:
    opt, act = _OPTS.index(p["optimizer"]), _ACTS.index(p["activation"])
    best_lr, offset, width = [(-1.0, 0.12, 1.0), (-3.4, 0.0, 0.35), (-3.9, 0.05, 0.5)][opt]
    batch_shift = 0.4 * math.log2(p["batch_size"] / 64.0)
    act_shift = [0.0, -0.5, -0.2][act]
    d = math.log10(p["lr"]) - (best_lr + batch_shift + act_shift)
    if d > 1.2:
        return 3.0
    f = offset + (d / width) ** 2 * 0.25
    f += [0.0, 0.15, 0.03][act]
    if opt == 0:
        f += 0.3 * (p["momentum"] - 0.9) ** 2
    f += 0.05 * (math.log10(p["weight_decay"]) + 4.0) ** 2
    f += 0.8 * (p["dropout"] - 0.3) ** 2
    return f


def cnn_kernel(p: Params) -> float:
    k = int((p["kernel"] - 3) / 2)
    f1, f2, f3 = float(p["filters1"]), float(p["filters2"]), float(p["filters3"])
    c1, c2, c3, w, off = [
        (96.0, 192.0, 384.0, 1.6, 0.1),
        (64.0, 128.0, 256.0, 1.0, 0.05),
        (32.0, 64.0, 128.0, 0.6, 0.0),
    ][k]
    f = off + (((f1 - c1) / 64.0) ** 2 + ((f2 - c2) / 128.0) ** 2 + ((f3 - c3) / 256.0) ** 2) / (w * w)
    f += [0.0, 0.2, 0.02][_ACTS.index(p["activation"])]
    pool = ["max", "avg", "stride"].index(p["pool"])
    if pool == 0:
        f += 0.03
    elif pool == 1:
        f += 0.06
    elif k != 2:
        f += 0.25
    f += 0.1 * (math.log10(p["lr"]) + 3.0) ** 2
    return f


def cnn_depth(p: Params) -> float:
    layers = int(p["layers"])

    def u(name: str) -> float:
        return math.log2(p[name])

    opt = _OPTS.index(p["optimizer"])
    best_lr = [-1.5, -3.0, -3.3][opt]
    f = [0.08, 0.0, 0.04][opt] + 0.15 * (math.log10(p["lr"]) - best_lr) ** 2
    if layers == 1:
        f += 0.35
    elif layers == 2:
        f += 0.12 + ((u("units1") - 8.0) ** 2 + (u("units2") - 6.0) ** 2) / 12.0
    elif layers == 3:
        f += ((u("units1") - 9.0) ** 2 + (u("units2") - 7.0) ** 2 + (u("units3") - 5.0) ** 2) / 6.0
    else:
        f += 0.08 + (
            (u("units1") - 9.0) ** 2 + (u("units2") - 8.0) ** 2 + (u("units3") - 7.0) ** 2 + (u("units4") - 6.0) ** 2
        ) / 6.0
    f += (p["dropout"] - 0.1 * layers) ** 2
    return f


def cnn_full(p: Params) -> float:
    opt, act = _OPTS.index(p["optimizer"]), _ACTS.index(p["activation"])
    best_lr, offset, width = [(-1.2, 0.1, 1.0), (-3.4, 0.0, 0.4), (-3.8, 0.04, 0.5)][opt]
    batch = float(p["batch_size"])
    d = math.log10(p["lr"]) - (best_lr + 0.4 * math.log2(batch / 64.0) + [0.0, -0.5, -0.2][act])
    f = 2.0 if d > 1.2 else offset + 0.25 * (d / width) ** 2
    f += [0.0, 0.12, 0.02][act]
    k = int((p["kernel"] - 3) / 2)
    c1, c2, w, off = [(96.0, 192.0, 1.5, 0.08), (64.0, 128.0, 1.0, 0.04), (32.0, 64.0, 0.6, 0.0)][k]
    f += off + (((p["filters1"] - c1) / 64.0) ** 2 + ((p["filters2"] - c2) / 128.0) ** 2) / (w * w)
    layers = int(p["layers"])

    def u(name: str) -> float:
        return math.log2(p[name])

    if layers == 1:
        f += 0.2
    elif layers == 2:
        f += 0.06 + ((u("units1") - 8.0) ** 2 + (u("units2") - 6.0) ** 2) / 16.0
    else:
        f += ((u("units1") - 9.0) ** 2 + (u("units2") - 7.0) ** 2 + (u("units3") - 5.0) ** 2) / 10.0
    f += (p["dropout"] - 0.1 * layers) ** 2
    if p["batchnorm"] is not True:
        f += 0.05 + 0.1 * (batch / 256.0)
    noise = _hash_noise(
        [
            math.log10(p["lr"]),
            batch,
            float(p["filters1"]),
            float(p["filters2"]),
            float(p["dropout"]),
            float(opt),
            float(act),
            float(k),
        ]
    )
    return f + 0.02 * noise


OBJECTIVES: dict[str, Callable[[Params], float]] = {
    "branin": branin,
    "hartmann6": hartmann6,
    "levy5": levy5,
    "rosenbrock4": rosenbrock4,
    "mixed": mixed,
    "cnn_optlr": cnn_optlr,
    "cnn_kernel": cnn_kernel,
    "cnn_depth": cnn_depth,
    "cnn_full": cnn_full,
}
