"""What every system of the time-to-accuracy benchmark shares: the data split, the
student's search space, the trial log and the host line.

Data: Fashion-MNIST from the IDX files (`$FASHION_MNIST_DIR`, else Debian's
/usr/share/datasets/fashion-mnist, else ./data), standardized as the student's notebook did
((x/255 - mean) / std with the scalar statistics of all 60k training images), then split
like Keras' validation_split=0.2: the first 48k train, the last 12k validate.

Trial log: each system appends one JSON line per finished trial to $TTA_LOG, stamped with
wall seconds since $TTA_T0 (the epoch time the harness took just before starting the
system's process), so that data loading and imports count against every system alike.
"""
import gzip
import json
import os
import struct
import time

import numpy as np

DATA_DIRS = [os.environ.get("FASHION_MNIST_DIR", ""), "/usr/share/datasets/fashion-mnist", "data"]
VALIDATION_SPLIT = 0.2
EPOCHS = 3

# The student's KerasTuner space (search-spaces/student-tuner.yaml), as plain data.
ACTIVATIONS = ["relu", "tanh", "leaky_relu"]
OPTIMIZERS = ["sgd", "adam", "rmsprop"]
LR_RANGE = (1e-4, 1e-2)  # log scale
CONV1_FILTERS = (16, 128, 16)  # min, max, step
CONV2_FILTERS = (32, 256, 32)
KERNEL_SIZES = [3, 5]
DENSE_LAYERS = (1, 3)
DENSE_UNITS = (32, 256, 32)
BATCH_SIZE = (32, 256, 32)
LEAKY_RELU_SLOPE = 0.2  # Keras' default for activation="leaky_relu"


def _read_idx(path, dims_expected):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim != dims_expected:
        raise ValueError(f"{path}: not an unsigned-byte IDX file with {dims_expected} dimensions")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, file holds {arr.size} bytes")
    return arr.reshape(dims)


def _find(folder, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def _load(kind):
    looked = []
    for folder in filter(None, DATA_DIRS):
        images, labels = _find(folder, f"{kind}-images-idx3-ubyte"), _find(folder, f"{kind}-labels-idx1-ubyte")
        if images and labels:
            break
        looked.append(folder)
    else:
        raise SystemExit(f"Fashion-MNIST ({kind}) not found in {looked}: apt-get install dataset-fashion-mnist "
                         "or set FASHION_MNIST_DIR")
    x = _read_idx(images, 3)
    y = _read_idx(labels, 1).astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise SystemExit(f"{images}: {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def load_standardized():
    """(x_train, y_train, x_test, y_test): all 60k training and 10k test images, both
    standardized with the statistics of the 60k training images."""
    x, y = _load("train")
    x_te, y_te = _load("t10k")
    scaled = x.astype(np.float64) / 255.0
    mean, std = np.float32(scaled.mean()), np.float32(scaled.std())

    def standardize(a):
        return ((a.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

    return standardize(x), y, standardize(x_te), y_te


def load_split(train_limit=0, val_limit=0):
    """(x_train, y_train, x_val, y_val) as float32 [N,28,28] standardized images and int64
    labels; `train_limit` / `val_limit` keep only the first N of each part (smoke tests)."""
    x, y, _, _ = load_standardized()
    split = int(x.shape[0] * (1 - VALIDATION_SPLIT))
    x_tr, y_tr, x_va, y_va = x[:split], y[:split], x[split:], y[split:]
    if train_limit:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    if val_limit:
        x_va, y_va = x_va[:val_limit], y_va[:val_limit]
    return x_tr, y_tr, x_va, y_va


class TrialLog:
    """Appends finished trials to $TTA_LOG as JSON lines, timed from $TTA_T0."""

    def __init__(self):
        self.path = os.environ.get("TTA_LOG")
        if not self.path:
            raise SystemExit("TTA_LOG is not set: run this through tta.py run")
        self.t0 = float(os.environ.get("TTA_T0", time.time()))

    def elapsed(self):
        return time.time() - self.t0

    def write(self, number, state, epoch_values, params, duration_s, value=None):
        """`epoch_values`: val_accuracy after each epoch the trial ran; `value`: the score
        the system itself keeps for the trial (None where it keeps none, e.g. pruned)."""
        row = {"t": self.elapsed(), "number": number, "state": state,
               "epochs": [float(v) for v in epoch_values], "value": None if value is None else float(value),
               "duration_s": duration_s, "params": params}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


def host_line():
    """The CPU as /proc/cpuinfo names it: family, model, model name (hosts of one machine
    kind differ 2x in speed)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model", "model name") and key not in info:
                    info[key] = value.strip()
                if not line.strip() and info:
                    break
    except OSError:
        pass
    return {"family": info.get("cpu family"), "model": info.get("model"), "model_name": info.get("model name"),
            "cpus": len(os.sched_getaffinity(0))}
