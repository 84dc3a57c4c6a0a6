#!/usr/bin/env python3
"""KerasTuner BayesianOptimization on the student's space, Keras 3 on TensorFlow (CPU).

The model-building function is the student's (DESIGN.md section 4, ../../search-spaces/
student-tuner.yaml): conv block 1 -> 1x1/stride-2 "pooling" -> conv block 2 -> same ->
flatten -> 1-3 dense layers -> softmax; he_normal hidden kernels, glorot_uniform output,
the optimizer chosen with its learning rate, metrics accuracy/precision/recall/auc as the
student compiled them; batch size is a hyperparameter of fit(). Run it through
`tta.py run --system keras-bo`, which times it and stops it at the budget.
"""
import argparse
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--train-limit", type=int, default=0)
ap.add_argument("--val-limit", type=int, default=0)
ap.add_argument("--workdir", required=True, help="KerasTuner's project directory")
ap.add_argument("--max-trials", type=int, default=100000, help="the wall-clock budget ends the search")
args = ap.parse_args()
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Two cores: all of them for each op, ops one at a time (a sequential model has no
# independent ops worth running side by side).
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
from keras import layers  # noqa: E402

import common  # noqa: E402

log = common.TrialLog()
keras.utils.set_random_seed(args.seed)
x_tr, y_tr, x_va, y_va = common.load_split(args.train_limit, args.val_limit)
x_tr, x_va = x_tr[..., None], x_va[..., None]
y_tr_oh, y_va_oh = keras.utils.to_categorical(y_tr, 10), keras.utils.to_categorical(y_va, 10)


class StudentHyperModel(kt.HyperModel):
    def build(self, hp):
        conv_activation = hp.Choice("conv_activation", common.ACTIVATIONS)
        kernel = hp.Choice("kernel_size", common.KERNEL_SIZES)
        c1_lo, c1_hi, c1_step = common.CONV1_FILTERS
        c2_lo, c2_hi, c2_step = common.CONV2_FILTERS
        u_lo, u_hi, u_step = common.DENSE_UNITS
        model = keras.Sequential([
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(hp.Int("conv1_filters", c1_lo, c1_hi, step=c1_step), (kernel, kernel), strides=1,
                          padding="same", activation=conv_activation, kernel_initializer="he_normal"),
            layers.MaxPooling2D(pool_size=(1, 1), strides=(2, 2)),
            layers.Conv2D(hp.Int("conv2_filters", c2_lo, c2_hi, step=c2_step), (kernel, kernel), strides=1,
                          padding="same", activation=conv_activation, kernel_initializer="he_normal"),
            layers.MaxPooling2D(pool_size=(1, 1), strides=(2, 2)),
            layers.Flatten(),
        ])
        dense_activation = hp.Choice("dense_activation", common.ACTIVATIONS)
        for i in range(hp.Int("dense_layers", *common.DENSE_LAYERS)):
            name = "dense_units" if i == 0 else f"dense_units_{i}"
            model.add(layers.Dense(hp.Int(name, u_lo, u_hi, step=u_step), activation=dense_activation,
                                   kernel_initializer="he_normal"))
        model.add(layers.Dense(10, activation="softmax", kernel_initializer="glorot_uniform"))
        lr = hp.Float("learning_rate", *common.LR_RANGE, sampling="log")
        optimizer = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                     "rmsprop": keras.optimizers.RMSprop}[hp.Choice("optimizer", common.OPTIMIZERS)]
        model.compile(optimizer=optimizer(learning_rate=lr), loss="categorical_crossentropy",
                      metrics=["accuracy", "precision", "recall", "auc"])
        return model

    def fit(self, hp, model, *fit_args, **kwargs):
        b_lo, b_hi, b_step = common.BATCH_SIZE
        return model.fit(*fit_args, batch_size=hp.Int("batch_size", b_lo, b_hi, step=b_step), **kwargs)


class LoggedBayesianOptimization(kt.BayesianOptimization):
    """Writes each finished trial to the harness' log the moment its training ends."""

    def run_trial(self, trial, *fit_args, **kwargs):
        started = time.time()
        histories = super().run_trial(trial, *fit_args, **kwargs)
        history = histories[0] if isinstance(histories, list) else histories
        values = history.history.get("val_accuracy", [])
        log.write(number=int(trial.trial_id), state="completed" if len(values) == common.EPOCHS else "stopped",
                  epoch_values=values, params=dict(trial.hyperparameters.values),
                  duration_s=time.time() - started, value=max(values) if values else None)
        return histories


tuner = LoggedBayesianOptimization(
    StudentHyperModel(), objective="val_accuracy", max_trials=args.max_trials, seed=args.seed,
    directory=args.workdir, project_name="student", overwrite=True)
tuner.search(x_tr, y_tr_oh, epochs=common.EPOCHS, validation_data=(x_va, y_va_oh), verbose=0)
