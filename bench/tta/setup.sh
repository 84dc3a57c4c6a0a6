#!/usr/bin/env bash
# Creates the two virtual environments of the time-to-accuracy benchmark from the pinned
# versions (Python 3.11; PyPI only). They are separate because TensorFlow and PyTorch each
# bring their own numerics stack; both are gitignored.
#   .venv-keras:  KerasTuner 1.4.8 + Keras 3.15.1 + tensorflow-cpu 2.21.0, plus scipy
#                 (BayesianOptimization needs it) and tensorboard (KerasTuner imports it
#                 on the TensorFlow backend; tensorflow-cpu 2.21 no longer brings it)
#   .venv-optuna: Optuna 5.0.0 + torch 2.15.0 (PyPI's Linux wheel, which pulls CUDA
#                 libraries it never uses here) + scipy, matplotlib, PyYAML; tta.py runs in it
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for env in keras optuna; do
  if [ ! -x "$here/.venv-$env/bin/python" ]; then
    python3 -m venv "$here/.venv-$env"
  fi
  "$here/.venv-$env/bin/pip" install -q -r "$here/requirements-$env.txt"
done
"$here/.venv-keras/bin/python" -c "import tensorflow as tf, keras, keras_tuner; print('keras venv:', 'tensorflow', tf.__version__, 'keras', keras.__version__, 'keras-tuner', keras_tuner.__version__)"
"$here/.venv-optuna/bin/python" -c "import torch, optuna; print('optuna venv:', 'torch', torch.__version__, 'optuna', optuna.__version__)"
