#!/usr/bin/env bash
# The whole time-to-accuracy sitting, one run after another (never two at once: each
# system gets the machine's CPUs to itself), then the report.
#
#   bash bench/tta/run_all.sh                      # 3 seeds x 30 min x every system below
#   SEEDS="0 1 2 3 4" BUDGET_MIN=30 SYSTEMS="keras-bo tuner" bash bench/tta/run_all.sh
#   SMOKE=1 bash bench/tta/run_all.sh              # 3 min per system, seed 0: does it all work?
#
# Environment: SEEDS, BUDGET_MIN, SYSTEMS (see `tta.py systems`), OUT (result folder),
# TUNER_CLI (default: the repo's target/release/tuner-cli), CPUS (taskset list, e.g. 0,1),
# EXTRA (more `tta.py run` flags, e.g. "--train-limit 8000 --val-limit 2000").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/.venv-optuna/bin/python"
[ -x "$py" ] && [ -x "$here/.venv-keras/bin/python" ] || { echo "run bench/tta/setup.sh first" >&2; exit 1; }
export TUNER_CLI="${TUNER_CLI:-$(cd "$here/../.." && pwd)/target/release/tuner-cli}"
[ -x "$TUNER_CLI" ] || { echo "no tuner-cli at $TUNER_CLI: cargo build --release -p tuner-cli, or set TUNER_CLI" >&2; exit 1; }

if [ "${SMOKE:-0}" = 1 ]; then
  SEEDS="${SEEDS:-0}"; BUDGET_MIN="${BUDGET_MIN:-3}"
fi
SEEDS="${SEEDS:-0 1 2}"
BUDGET_MIN="${BUDGET_MIN:-30}"
SYSTEMS="${SYSTEMS:-keras-bo optuna-gp optuna-tpe-hyperband optuna-tpe-median tuner tuner-no-pruner}"
OUT="${OUT:-$here/results/$(date -u +%Y%m%d-%H%M)}"
CPU_FLAG=()
[ -n "${CPUS:-}" ] && CPU_FLAG=(--cpus "$CPUS")
mkdir -p "$OUT"

n_runs=$(( $(wc -w <<<"$SEEDS") * $(wc -w <<<"$SYSTEMS") ))
echo "host: $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) / model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | xargs) / $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs" | tee "$OUT/host.txt"
echo "tuner-cli: $TUNER_CLI ($("$TUNER_CLI" --version))" | tee -a "$OUT/host.txt"
echo "$n_runs runs of $BUDGET_MIN min: about $(( n_runs * (${BUDGET_MIN%.*} + 1) )) min; results in $OUT"
# Seeds outermost, systems inside: a slow drift of the machine spreads over every system.
for seed in $SEEDS; do
  for system in $SYSTEMS; do
    # One failed run (e.g. a tuner variant this binary does not know yet) must not end the sitting.
    "$py" "$here/tta.py" run --system "$system" --seed "$seed" --budget-min "$BUDGET_MIN" \
      --out "$OUT" "${CPU_FLAG[@]}" ${EXTRA:-} || echo "[run_all] $system seed $seed failed" >&2
  done
done
"$py" "$here/tta.py" report "$OUT" --plot "$OUT/tta.png" --table "$OUT/table.md"
