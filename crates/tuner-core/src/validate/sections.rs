//! The document's top level and its sections other than `parameters`: objective,
//! trainer, budget, optimizer, pruner and `fixed`.

use serde_json::Value;

use super::{Validator, join, type_of, valid_name};
use crate::{
    Budget, Direction, Objective, OptimizerKind, OptimizerSpec, ParamValue, Params, PrunerSpec,
    SearchSpace, StudySpec, TrainerKind, TrainerSpec, limits,
};

impl Validator {
    pub(super) fn study(&mut self, doc: &Value) -> Option<StudySpec> {
        const TOP: &[&str] = &[
            "version",
            "name",
            "description",
            "objective",
            "trainer",
            "budget",
            "optimizer",
            "pruner",
            "parameters",
            "fixed",
        ];
        let map = self.object("", doc, TOP)?;

        let version = match self.required("", map, "version") {
            Some(v) => match v.as_u64() {
                Some(1) => Some(1),
                Some(n) => {
                    self.err(
                        "version",
                        format!("unsupported version {n}; this server reads version 1"),
                    );
                    None
                }
                None => {
                    self.err(
                        "version",
                        format!("expected the number 1, found {}", type_of(v)),
                    );
                    None
                }
            },
            None => None,
        };
        let name = self
            .required("", map, "name")
            .and_then(|v| self.string("name", v));
        let description = match map.get("description") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.err(
                    "description",
                    format!("expected a string, found {}", type_of(other)),
                );
                None
            }
            None => None,
        };
        let objective = self
            .required("", map, "objective")
            .and_then(|v| self.objective(v));
        let trainer = match map.get("trainer") {
            Some(v) => self.trainer(v),
            None => Some(TrainerSpec {
                kind: TrainerKind::External,
                epochs: None,
                validation_split: None,
                train_limit: None,
                val_limit: None,
            }),
        };
        let budget = self
            .required("", map, "budget")
            .and_then(|v| self.budget(v));
        let optimizer = match map.get("optimizer") {
            Some(v) => self.optimizer(v),
            None => Some(OptimizerSpec {
                kind: OptimizerKind::Gp,
                initial_trials: 10,
                seed: 0,
                cost_aware: false,
            }),
        };
        let pruner = match map.get("pruner") {
            Some(v) => self.pruner(v).map(Some),
            None => Some(None),
        };
        if let (Some(Some(PrunerSpec::Curve { .. })), Some(trainer)) = (&pruner, &trainer)
            && trainer.epochs.is_none()
        {
            self.err(
                "pruner.kind",
                "the curve pruner predicts each trial's value at its last epoch: \
                 set trainer.epochs",
            );
        }
        let parameters = self
            .required("", map, "parameters")
            .and_then(|v| self.parameters(v));
        let fixed = match map.get("fixed") {
            Some(v) => self.fixed(v, parameters.as_ref()),
            None => Some(Params::new()),
        };

        Some(StudySpec {
            version: version?,
            name: name?,
            description,
            objective: objective?,
            trainer: trainer?,
            budget: budget?,
            optimizer: optimizer?,
            pruner: pruner?,
            parameters: parameters?,
            fixed: fixed?,
        })
    }

    fn objective(&mut self, v: &Value) -> Option<Objective> {
        let map = self.object("objective", v, &["metric", "direction"])?;
        let metric = self
            .required("objective", map, "metric")
            .and_then(|v| self.string("objective.metric", v));
        let direction = self.required("objective", map, "direction").and_then(|v| {
            self.choice(
                "objective.direction",
                v,
                &[
                    ("maximize", Direction::Maximize),
                    ("minimize", Direction::Minimize),
                ],
            )
        });
        Some(Objective {
            metric: metric?,
            direction: direction?,
        })
    }

    fn trainer(&mut self, v: &Value) -> Option<TrainerSpec> {
        let map = self.object(
            "trainer",
            v,
            &[
                "kind",
                "epochs",
                "validation_split",
                "train_limit",
                "val_limit",
            ],
        )?;
        let kind = self.required("trainer", map, "kind").and_then(|v| {
            self.choice(
                "trainer.kind",
                v,
                &[
                    ("fashion-mnist-cnn", TrainerKind::FashionMnistCnn),
                    ("external", TrainerKind::External),
                ],
            )
        });
        let epochs = match map.get("epochs") {
            Some(_) => Some(
                self.bounded_int("trainer", map, "epochs", 1, 10_000, None)
                    .map(|e| e as u32),
            ),
            None => Some(None),
        };
        let validation_split = match map.get("validation_split") {
            Some(v) => match self.number("trainer.validation_split", v) {
                Some(x) if x > 0.0 && x < 1.0 => Some(Some(x)),
                Some(x) => {
                    self.err(
                        "trainer.validation_split",
                        format!("must be between 0 and 1 (exclusive), found {x}"),
                    );
                    None
                }
                None => None,
            },
            None => Some(None),
        };
        let mut limit = |key: &str| match map.get(key) {
            Some(_) => Some(
                self.bounded_int("trainer", map, key, 1, i64::from(u32::MAX), None)
                    .map(|e| e as u32),
            ),
            None => Some(None),
        };
        let train_limit = limit("train_limit");
        let val_limit = limit("val_limit");
        Some(TrainerSpec {
            kind: kind?,
            epochs: epochs?,
            validation_split: validation_split?,
            train_limit: train_limit?,
            val_limit: val_limit?,
        })
    }

    fn budget(&mut self, v: &Value) -> Option<Budget> {
        let map = self.object(
            "budget",
            v,
            &[
                "max_trials",
                "parallelism",
                "max_retries",
                "max_consecutive_failures",
            ],
        )?;
        let max_trials = self.bounded_int("budget", map, "max_trials", 1, limits::MAX_TRIALS, None);
        let parallelism = self.bounded_int(
            "budget",
            map,
            "parallelism",
            1,
            limits::MAX_PARALLELISM,
            Some(1),
        );
        let max_retries = self.bounded_int("budget", map, "max_retries", 0, 100, Some(2));
        let max_failures = self.bounded_int(
            "budget",
            map,
            "max_consecutive_failures",
            1,
            limits::MAX_TRIALS,
            Some(5),
        );
        Some(Budget {
            max_trials: max_trials? as u32,
            parallelism: parallelism? as u32,
            max_retries: max_retries? as u32,
            max_consecutive_failures: max_failures? as u32,
        })
    }

    fn optimizer(&mut self, v: &Value) -> Option<OptimizerSpec> {
        let map = self.object(
            "optimizer",
            v,
            &["kind", "initial_trials", "seed", "cost_aware"],
        )?;
        let kind = self.required("optimizer", map, "kind").and_then(|v| {
            self.choice(
                "optimizer.kind",
                v,
                &[("gp", OptimizerKind::Gp), ("random", OptimizerKind::Random)],
            )
        });
        let initial = self.bounded_int("optimizer", map, "initial_trials", 1, 100_000, Some(10));
        let seed = self.bounded_int("optimizer", map, "seed", 0, i64::MAX, Some(0));
        let cost_aware = match map.get("cost_aware") {
            Some(v) => {
                let set = self.boolean("optimizer.cost_aware", Some(v));
                if set == Some(true) && kind == Some(OptimizerKind::Random) {
                    self.err(
                        "optimizer.cost_aware",
                        "only the gp optimizer models trial costs; remove cost_aware or use kind: gp",
                    );
                    return None;
                }
                set
            }
            // Opt-in until the time-to-accuracy benchmark (bench/tta) measures it on
            // the built-in task.
            None => Some(false),
        };
        Some(OptimizerSpec {
            kind: kind?,
            initial_trials: initial? as u32,
            seed: seed? as u64,
            cost_aware: cost_aware?,
        })
    }

    fn pruner(&mut self, v: &Value) -> Option<PrunerSpec> {
        const KINDS: &[(&str, u8)] = &[("none", 0), ("median", 1), ("asha", 2), ("curve", 3)];
        let Value::Object(map) = v else {
            self.err(
                "pruner",
                format!("expected a map with a `kind`, found {}", type_of(v)),
            );
            return None;
        };
        let kind = self
            .required("pruner", map, "kind")
            .and_then(|v| self.choice("pruner.kind", v, KINDS))?;
        let allowed: &[&str] = match kind {
            0 => &["kind"],
            1 | 3 => &["kind", "warmup_epochs", "min_trials"],
            _ => &["kind", "min_resource", "reduction_factor"],
        };
        self.object("pruner", v, allowed)?;
        match kind {
            0 => Some(PrunerSpec::None),
            1 => {
                let warmup = self.bounded_int("pruner", map, "warmup_epochs", 0, 10_000, Some(1));
                let min_trials = self.bounded_int("pruner", map, "min_trials", 1, 100_000, Some(5));
                Some(PrunerSpec::Median {
                    warmup_epochs: warmup? as u32,
                    min_trials: min_trials? as u32,
                })
            }
            3 => {
                // No warmup by default: the prediction's own uncertainty (few peers,
                // an unusual first epoch) already keeps early stops cautious.
                let warmup = self.bounded_int("pruner", map, "warmup_epochs", 0, 10_000, Some(0));
                // The regression of final on current values needs a few points to
                // say anything (and to estimate its own error).
                let min_trials = self.bounded_int("pruner", map, "min_trials", 3, 100_000, Some(5));
                Some(PrunerSpec::Curve {
                    warmup_epochs: warmup? as u32,
                    min_trials: min_trials? as u32,
                })
            }
            _ => {
                let min_resource =
                    self.bounded_int("pruner", map, "min_resource", 1, 10_000, Some(1));
                let factor = self.bounded_int("pruner", map, "reduction_factor", 2, 100, Some(3));
                Some(PrunerSpec::Asha {
                    min_resource: min_resource? as u32,
                    reduction_factor: factor? as u32,
                })
            }
        }
    }

    fn fixed(&mut self, v: &Value, space: Option<&SearchSpace>) -> Option<Params> {
        let Value::Object(map) = v else {
            self.err(
                "fixed",
                format!("expected a map of name → value, found {}", type_of(v)),
            );
            return None;
        };
        let mut out = Params::new();
        let mut ok = true;
        for (name, value) in map {
            let path = join("fixed", name);
            if !valid_name(name) {
                self.err(&path, "not a valid parameter name");
                ok = false;
            }
            if space.is_some_and(|s| s.get(name).is_some()) {
                self.err(
                    &path,
                    format!("`{name}` is both fixed and tuned; remove it from one of them"),
                );
                ok = false;
            }
            match ParamValue::from_json(value) {
                Some(pv) => {
                    out.insert(name.clone(), pv);
                }
                None => {
                    self.err(
                        &path,
                        format!(
                            "expected a string, number or boolean, found {}",
                            type_of(value)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
