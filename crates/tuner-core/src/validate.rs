//! Parsing and validation of search-space documents.
//!
//! The document is first read into a generic JSON tree (YAML is mapped onto the same
//! tree), then walked by hand so that *every* problem is collected with its path,
//! rather than stopping at the first one as `#[serde(deny_unknown_fields)]` would.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::{
    Budget, Condition, CoreError, Direction, Domain, Objective, OptimizerKind, OptimizerSpec,
    ParamSpec, ParamValue, Params, Problem, PrunerSpec, SearchSpace, StudySpec, TrainerKind,
    TrainerSpec, limits, space::ConditionTest,
};

/// The syntax a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Json,
    /// YAML (a superset of JSON, so also accepts JSON text).
    Yaml,
}

/// Parses and validates a search-space document (one leading UTF-8 byte-order mark is
/// ignored).
///
/// Beyond what [`parse_spec_value`] checks, refuses what only the text shows: a key
/// given twice in one map, a number that is not finite; a syntax error is reported at
/// the field the parser was reading, with its line and column.
pub fn parse_spec(text: &str, format: SpecFormat) -> Result<StudySpec, CoreError> {
    let (value, mut problems) =
        crate::read::document(text, format).map_err(|p| CoreError::InvalidSpec(vec![p]))?;
    let checked = parse_spec_value(&value);
    if problems.is_empty() {
        return checked;
    }
    if let Err(CoreError::InvalidSpec(found)) = checked {
        // What reading found at a path says more than what validation then says there.
        let more: Vec<Problem> = found
            .into_iter()
            .filter(|p| !problems.iter().any(|q| q.path == p.path))
            .collect();
        problems.extend(more);
    }
    Err(CoreError::InvalidSpec(problems))
}

/// Validates a document already read into a JSON tree.
pub fn parse_spec_value(doc: &Value) -> Result<StudySpec, CoreError> {
    let mut v = Validator::default();
    let spec = v.study(doc);
    match spec {
        Some(spec) if v.problems.is_empty() => Ok(spec),
        _ => {
            if v.problems.is_empty() {
                v.problems.push(Problem::new("", "invalid document"));
            }
            Err(CoreError::InvalidSpec(v.problems))
        }
    }
}

/// The largest magnitude of an int parameter's bounds, and the most values it may
/// have: the unit-cube encoding carries ints as f64 (`k = floor(u · n)`, `min + k · step`),
/// and condition tests compare them as f64, which holds every integer only up to 2^53.
const MAX_INT_BOUND: i64 = 1 << 53;

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn suggestion(word: &str, allowed: &[&str]) -> String {
    let best = allowed
        .iter()
        // Levenshtein distance: a misspelt field is a few edits from the right one.
        .map(|a| (strsim::levenshtein(word, a), *a))
        .min()
        .filter(|(d, a)| *d <= 2.max(a.len() / 3));
    match best {
        Some((_, a)) => format!("; did you mean `{a}`?"),
        None => format!("; expected one of: {}", allowed.join(", ")),
    }
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// A map whose keys must all be in `allowed`; reports the unknown ones.
    fn object<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        allowed: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(map) => {
                for key in map.keys() {
                    if !allowed.contains(&key.as_str()) {
                        let hint = suggestion(key, allowed);
                        self.err(join(path, key), format!("unknown field `{key}`{hint}"));
                    }
                }
                Some(map)
            }
            other => {
                self.err(path, format!("expected a map, found {}", type_of(other)));
                None
            }
        }
    }

    fn required<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a Value> {
        let v = map.get(key);
        if v.is_none() {
            self.err(join(path, key), "required field is missing");
        }
        v
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if s.trim().is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            Value::String(s) if s.len() > limits::MAX_NAME_LEN => {
                self.err(
                    path,
                    format!("longer than {} characters", limits::MAX_NAME_LEN),
                );
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(path, format!("expected a string, found {}", type_of(other)));
                None
            }
        }
    }

    fn number(&mut self, path: &str, v: &Value) -> Option<f64> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            Some(_) => {
                self.err(path, "must be a finite number");
                None
            }
            None => {
                // YAML reads a number beyond f64 (`1e999`) as a string.
                let hint = match v {
                    Value::String(s)
                        if s.parse::<f64>().is_ok_and(f64::is_infinite)
                            && s.bytes()
                                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
                    {
                        format!(
                            " (`{s}` would be out of the range of a 64-bit float, about ±{:e})",
                            f64::MAX
                        )
                    }
                    _ => String::new(),
                };
                self.err(
                    path,
                    format!("expected a number, found {}{hint}", type_of(v)),
                );
                None
            }
        }
    }

    fn integer(&mut self, path: &str, v: &Value) -> Option<i64> {
        if let Some(i) = v.as_i64() {
            return Some(i);
        }
        match v.as_f64() {
            // Whole numbers written as floats (`1.0e6`); below 2^63, so `as` is exact.
            Some(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Some(x as i64),
            Some(x) if x.fract() == 0.0 => {
                self.err(path, format!("{x:e} is too large for a 64-bit integer"));
                None
            }
            Some(x) => {
                self.err(path, format!("expected an integer, found {x}"));
                None
            }
            None => {
                self.err(path, format!("expected an integer, found {}", type_of(v)));
                None
            }
        }
    }

    /// An integer within `[lo, hi]`, or the default when absent.
    fn bounded_int(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        key: &str,
        lo: i64,
        hi: i64,
        default: Option<i64>,
    ) -> Option<i64> {
        let p = join(path, key);
        let Some(v) = map.get(key) else {
            if default.is_none() {
                self.err(p, "required field is missing");
            }
            return default;
        };
        let i = self.integer(&p, v)?;
        if i < lo {
            self.err(p, format!("must be at least {lo}, found {i}"));
            None
        } else if i > hi {
            self.err(p, format!("must be at most {hi}, found {i}"));
            None
        } else {
            Some(i)
        }
    }

    fn boolean(&mut self, path: &str, v: Option<&Value>) -> Option<bool> {
        match v {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.err(
                    path,
                    format!("expected true or false, found {}", type_of(other)),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, path: &str, v: &Value, options: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        match v {
            Value::String(s) => match options.iter().find(|(n, _)| n == s) {
                Some((_, t)) => Some(*t),
                None => {
                    let hint = suggestion(s, &names);
                    self.err(path, format!("unknown value `{s}`{hint}"));
                    None
                }
            },
            other => {
                self.err(
                    path,
                    format!(
                        "expected one of {}, found {}",
                        names.join(", "),
                        type_of(other)
                    ),
                );
                None
            }
        }
    }

    fn study(&mut self, doc: &Value) -> Option<StudySpec> {
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
            }),
        };
        let pruner = match map.get("pruner") {
            Some(v) => self.pruner(v).map(Some),
            None => Some(None),
        };
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
        let map = self.object("optimizer", v, &["kind", "initial_trials", "seed"])?;
        let kind = self.required("optimizer", map, "kind").and_then(|v| {
            self.choice(
                "optimizer.kind",
                v,
                &[("gp", OptimizerKind::Gp), ("random", OptimizerKind::Random)],
            )
        });
        let initial = self.bounded_int("optimizer", map, "initial_trials", 1, 100_000, Some(10));
        let seed = self.bounded_int("optimizer", map, "seed", 0, i64::MAX, Some(0));
        Some(OptimizerSpec {
            kind: kind?,
            initial_trials: initial? as u32,
            seed: seed? as u64,
        })
    }

    fn pruner(&mut self, v: &Value) -> Option<PrunerSpec> {
        const KINDS: &[(&str, u8)] = &[("none", 0), ("median", 1), ("asha", 2)];
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
            1 => &["kind", "warmup_epochs", "min_trials"],
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

    fn parameters(&mut self, v: &Value) -> Option<SearchSpace> {
        let Value::Object(map) = v else {
            self.err(
                "parameters",
                format!("expected a map of parameters, found {}", type_of(v)),
            );
            return None;
        };
        if map.len() > limits::MAX_PARAMETERS {
            self.err(
                "parameters",
                format!(
                    "{} parameters; at most {} are allowed",
                    map.len(),
                    limits::MAX_PARAMETERS
                ),
            );
            return None;
        }
        let before = self.problems.len();
        let mut params = Vec::with_capacity(map.len());
        let mut conditions: Vec<(String, Map<String, Value>)> = Vec::new();
        for (name, pv) in map {
            let path = join("parameters", name);
            if !valid_name(name) {
                self.err(
                    &path,
                    "parameter names must start with a letter or `_` and contain only letters, digits, `_`, `-` and `.` (at most 100 characters)",
                );
            }
            if let Some((domain, when)) = self.param(&path, pv) {
                params.push(ParamSpec {
                    name: name.clone(),
                    domain,
                    when: Vec::new(),
                });
                if let Some(when) = when {
                    conditions.push((name.clone(), when));
                }
            }
        }
        // Conditions refer to other parameters, so they are resolved once all are known.
        let domains: HashMap<String, Domain> = params
            .iter()
            .map(|p| (p.name.clone(), p.domain.clone()))
            .collect();
        for (name, when) in conditions {
            let parsed = self.conditions(&name, &when, &domains);
            if let Some(p) = params.iter_mut().find(|p| p.name == name) {
                p.when = parsed;
            }
        }
        let order = self.dependency_order(&params)?;
        if self.problems.len() > before {
            return None;
        }
        Some(SearchSpace::new(params, order))
    }

    /// One parameter: its domain and its raw `when` map.
    fn param(&mut self, path: &str, v: &Value) -> Option<(Domain, Option<Map<String, Value>>)> {
        let Value::Object(map) = v else {
            self.err(
                path,
                format!(
                    "expected a map with a `type` (float, int or categorical), found {}",
                    type_of(v)
                ),
            );
            return None;
        };
        let kind = self.required(path, map, "type").and_then(|t| {
            self.choice(
                &join(path, "type"),
                t,
                &[("float", 0u8), ("int", 1u8), ("categorical", 2u8)],
            )
        })?;
        let allowed: &[&str] = match kind {
            0 => &["type", "min", "max", "log", "step", "when"],
            1 => &["type", "min", "max", "log", "step", "when"],
            _ => &["type", "values", "when"],
        };
        self.object(path, v, allowed);
        let when = match map.get("when") {
            Some(Value::Object(w)) if !w.is_empty() => Some(w.clone()),
            Some(Value::Object(_)) => {
                self.err(join(path, "when"), "must name at least one parameter");
                None
            }
            Some(other) => {
                self.err(
                    join(path, "when"),
                    format!(
                        "expected a map of parameter → condition, found {}",
                        type_of(other)
                    ),
                );
                None
            }
            None => None,
        };
        let domain = match kind {
            0 => self.float_domain(path, map),
            1 => self.int_domain(path, map),
            _ => self.categorical_domain(path, map),
        }?;
        Some((domain, when))
    }

    fn float_domain(&mut self, path: &str, map: &Map<String, Value>) -> Option<Domain> {
        let min = self
            .required(path, map, "min")
            .and_then(|v| self.number(&join(path, "min"), v));
        let max = self
            .required(path, map, "max")
            .and_then(|v| self.number(&join(path, "max"), v));
        let log = self.boolean(&join(path, "log"), map.get("log"));
        let step = match map.get("step") {
            Some(v) => match self.number(&join(path, "step"), v) {
                Some(s) if s > 0.0 => Some(Some(s)),
                Some(s) => {
                    self.err(join(path, "step"), format!("must be positive, found {s}"));
                    None
                }
                None => None,
            },
            None => Some(None),
        };
        let (min, max, log, step) = (min?, max?, log?, step?);
        let mut ok = true;
        if min >= max {
            self.err(
                join(path, "min"),
                format!("min ({min}) must be less than max ({max})"),
            );
            ok = false;
        }
        if log && min <= 0.0 {
            self.err(
                join(path, "min"),
                format!("a log scale needs min > 0, found {min}"),
            );
            ok = false;
        }
        // Drawn as min + u·(max - min): that width must be a number.
        if ok && !(max - min).is_finite() {
            self.err(
                path,
                format!(
                    "the range from {} to {} is too wide: max - min overflows a 64-bit float (largest {}), so values could not be drawn across it; narrow it",
                    num(min),
                    num(max),
                    num(f64::MAX)
                ),
            );
            ok = false;
        }
        if let Some(s) = step {
            if log {
                self.err(join(path, "step"), "step cannot be combined with log: true");
                ok = false;
            } else if ok && s > max - min {
                self.err(
                    join(path, "step"),
                    format!(
                        "step ({s}) is larger than the range max - min ({})",
                        max - min
                    ),
                );
                ok = false;
            } else if ok && (max - min) / s > 1e9 {
                self.err(
                    join(path, "step"),
                    "step is so small the grid has more than 1e9 points; drop step for a continuous parameter",
                );
                ok = false;
            } else if ok {
                let grid = Domain::Float {
                    min,
                    max,
                    log,
                    step: Some(s),
                };
                let end = min.abs().max(max.abs());
                let gap = if end.next_up().is_finite() {
                    end.next_up() - end
                } else {
                    end - end.next_down()
                };
                // Rounding in min + k·step is a few gaps; far below a step, every point
                // is its own value. Closer to the gap, the grid is checked point by point.
                if s < gap * 8_388_608.0 && !grid_is_faithful(&grid) {
                    self.err(
                        join(path, "step"),
                        format!(
                            "step ({}) is too fine for values this large: near {} 64-bit floats are {} apart, so the grid's points cannot all be told apart; use a larger step, or drop step",
                            num(s),
                            num(end),
                            num(gap)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Domain::Float {
            min,
            max,
            log,
            step,
        })
    }

    fn int_domain(&mut self, path: &str, map: &Map<String, Value>) -> Option<Domain> {
        let min = self
            .required(path, map, "min")
            .and_then(|v| self.integer(&join(path, "min"), v));
        let max = self
            .required(path, map, "max")
            .and_then(|v| self.integer(&join(path, "max"), v));
        let log = self.boolean(&join(path, "log"), map.get("log"));
        let step = match map.get("step") {
            Some(v) => match self.integer(&join(path, "step"), v) {
                Some(s) if s >= 1 => Some(s),
                Some(s) => {
                    self.err(
                        join(path, "step"),
                        format!("must be a positive integer, found {s}"),
                    );
                    None
                }
                None => None,
            },
            None => Some(1),
        };
        let (min, max, log, step) = (min?, max?, log?, step?);
        let mut ok = true;
        for (key, bound) in [("min", min), ("max", max)] {
            if bound.unsigned_abs() > MAX_INT_BOUND.unsigned_abs() {
                self.err(
                    join(path, key),
                    format!(
                        "{bound} is beyond ±2^53 (±{MAX_INT_BOUND}): int parameters are sampled through 64-bit floats, which hold every integer only up to 2^53"
                    ),
                );
                ok = false;
            }
        }
        if min >= max {
            self.err(
                join(path, "min"),
                format!("min ({min}) must be less than max ({max})"),
            );
            ok = false;
        }
        if log && min < 1 {
            self.err(
                join(path, "min"),
                format!("a log scale needs min ≥ 1, found {min}"),
            );
            ok = false;
        }
        // In i128, so that no width overflows.
        let width = i128::from(max) - i128::from(min);
        if log && step != 1 {
            self.err(join(path, "step"), "step cannot be combined with log: true");
            ok = false;
        } else if ok && i128::from(step) > width {
            self.err(
                join(path, "step"),
                format!("step ({step}) is larger than the range max - min ({width})"),
            );
            ok = false;
        } else if ok && !log && width / i128::from(step) + 1 > i128::from(MAX_INT_BOUND) {
            // The sampler picks bucket floor(u · n) of n values, u an f64 in [0, 1).
            self.err(
                path,
                format!(
                    "{min} to {max} in steps of {step} is {} values, more than the 2^53 ({MAX_INT_BOUND}) the sampler can tell apart; narrow the range or use a larger step",
                    width / i128::from(step) + 1
                ),
            );
            ok = false;
        }
        ok.then_some(Domain::Int {
            min,
            max,
            step,
            log,
        })
    }

    fn categorical_domain(&mut self, path: &str, map: &Map<String, Value>) -> Option<Domain> {
        let vpath = join(path, "values");
        let list = match self.required(path, map, "values")? {
            Value::Array(list) => list,
            other => {
                self.err(
                    vpath,
                    format!("expected a list of values, found {}", type_of(other)),
                );
                return None;
            }
        };
        if list.is_empty() {
            self.err(vpath, "must list at least one value");
            return None;
        }
        if list.len() > limits::MAX_CATEGORIES {
            self.err(
                vpath,
                format!(
                    "{} values; at most {} are allowed",
                    list.len(),
                    limits::MAX_CATEGORIES
                ),
            );
            return None;
        }
        let mut values: Vec<ParamValue> = Vec::with_capacity(list.len());
        let mut ok = true;
        for (i, item) in list.iter().enumerate() {
            let ipath = format!("{vpath}[{i}]");
            match ParamValue::from_json(item) {
                Some(value) => {
                    if values.iter().any(|v| v.same_as(&value)) {
                        self.err(ipath, format!("duplicate value `{value}`"));
                        ok = false;
                    } else {
                        values.push(value);
                    }
                }
                None => {
                    self.err(
                        ipath,
                        format!(
                            "values must be strings, numbers or booleans, found {}",
                            type_of(item)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Domain::Categorical { values })
    }

    fn conditions(
        &mut self,
        name: &str,
        when: &Map<String, Value>,
        domains: &HashMap<String, Domain>,
    ) -> Vec<Condition> {
        let mut out = Vec::new();
        for (parent, test) in when {
            let path = format!("parameters.{name}.when.{parent}");
            if parent == name {
                self.err(path, "a parameter cannot depend on itself");
                continue;
            }
            let Some(parent_domain) = domains.get(parent) else {
                self.err(path, format!("refers to unknown parameter `{parent}`"));
                continue;
            };
            let parsed = match test {
                Value::Object(m) => {
                    for key in m.keys() {
                        if key != "min" && key != "max" {
                            self.err(
                                join(&path, key),
                                format!("unknown field `{key}`; expected min and/or max"),
                            );
                        }
                    }
                    if m.is_empty() {
                        self.err(&path, "a range condition needs min and/or max");
                        None
                    } else if matches!(parent_domain, Domain::Categorical { .. }) {
                        let numeric = matches!(parent_domain, Domain::Categorical { values } if values.iter().all(|v| v.as_f64().is_some()));
                        if numeric {
                            self.range(&path, m)
                        } else {
                            self.err(
                                &path,
                                format!(
                                    "`{parent}` is not numeric; use a value or a list of values"
                                ),
                            );
                            None
                        }
                    } else {
                        self.range(&path, m)
                    }
                }
                Value::Array(list) if list.is_empty() => {
                    self.err(&path, "must list at least one value");
                    None
                }
                Value::Array(list) => {
                    let mut values = Vec::new();
                    for (i, item) in list.iter().enumerate() {
                        if let Some(v) = self.condition_value(
                            &format!("{path}[{i}]"),
                            item,
                            parent,
                            parent_domain,
                        ) {
                            values.push(v);
                        }
                    }
                    (values.len() == list.len()).then_some(ConditionTest::OneOf(values))
                }
                scalar => self
                    .condition_value(&path, scalar, parent, parent_domain)
                    .map(|v| ConditionTest::OneOf(vec![v])),
            };
            if let Some(test @ ConditionTest::Range { min, max }) = &parsed
                && !can_hold(test, parent_domain)
            {
                let wanted = match (min, max) {
                    (Some(lo), Some(hi)) => format!("in [{}, {}]", num(*lo), num(*hi)),
                    (Some(lo), None) => format!("≥ {}", num(*lo)),
                    (None, Some(hi)) => format!("≤ {}", num(*hi)),
                    (None, None) => String::new(),
                };
                self.err(
                    &path,
                    format!(
                        "the condition can never hold: {}, none of them {wanted}",
                        values_of(parent, parent_domain)
                    ),
                );
                continue;
            }
            if let Some(test) = parsed {
                out.push(Condition {
                    parent: parent.clone(),
                    test,
                });
            }
        }
        out
    }

    fn range(&mut self, path: &str, m: &Map<String, Value>) -> Option<ConditionTest> {
        let min = match m.get("min") {
            Some(v) => Some(self.number(&join(path, "min"), v)?),
            None => None,
        };
        let max = match m.get("max") {
            Some(v) => Some(self.number(&join(path, "max"), v)?),
            None => None,
        };
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            self.err(
                path,
                format!("min ({lo}) is greater than max ({hi}): the condition can never hold"),
            );
            return None;
        }
        Some(ConditionTest::Range { min, max })
    }

    fn condition_value(
        &mut self,
        path: &str,
        v: &Value,
        parent: &str,
        domain: &Domain,
    ) -> Option<ParamValue> {
        let Some(value) = ParamValue::from_json(v) else {
            self.err(
                path,
                format!(
                    "expected a value of `{parent}`, a list of them, or {{min, max}}, found {}",
                    type_of(v)
                ),
            );
            return None;
        };
        if !domain.contains(&value) {
            self.err(
                path,
                format!("`{value}` is not a possible value of `{parent}`, so the condition can never hold"),
            );
            return None;
        }
        Some(value)
    }

    /// A topological order of the condition graph; reports cycles.
    fn dependency_order(&mut self, params: &[ParamSpec]) -> Option<Vec<usize>> {
        let index: BTreeMap<&str, usize> = params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut mark = vec![0u8; params.len()];
        let mut order = Vec::with_capacity(params.len());
        let mut cyclic = false;
        for start in 0..params.len() {
            if mark[start] != 0 {
                continue;
            }
            // Iterative DFS: (node, next parent to visit).
            let mut stack = vec![(start, 0usize)];
            mark[start] = 1;
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                let parents = &params[node].when;
                if *next < parents.len() {
                    let parent = index.get(parents[*next].parent.as_str()).copied();
                    *next += 1;
                    if let Some(parent) = parent {
                        match mark[parent] {
                            0 => {
                                mark[parent] = 1;
                                stack.push((parent, 0));
                            }
                            1 => {
                                let cycle: Vec<&str> = stack
                                    .iter()
                                    .map(|(i, _)| params[*i].name.as_str())
                                    .skip_while(|n| *n != params[parent].name)
                                    .collect();
                                self.err(
                                    format!("parameters.{}.when", params[node].name),
                                    format!(
                                        "conditions form a cycle: {} → {}",
                                        cycle.join(" → "),
                                        params[parent].name
                                    ),
                                );
                                cyclic = true;
                            }
                            _ => {}
                        }
                    }
                } else {
                    mark[node] = 2;
                    order.push(node);
                    stack.pop();
                }
            }
        }
        (!cyclic).then_some(order)
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

/// Whether some value of `domain` passes a range test (any other test: true).
fn can_hold(test: &ConditionTest, domain: &Domain) -> bool {
    let ConditionTest::Range { min: lo, max: hi } = test else {
        return true;
    };
    let (first, step) = match domain {
        Domain::Categorical { values } => return values.iter().any(|v| test.holds(v)),
        Domain::Float {
            min,
            max,
            step: None,
            ..
        } => return lo.is_none_or(|lo| lo <= *max) && hi.is_none_or(|hi| hi >= *min),
        Domain::Float {
            min,
            step: Some(step),
            ..
        } => (*min, *step),
        Domain::Int { min, step, .. } => (*min as f64, *step as f64),
    };
    // On a grid, the first point ≥ lo is next to point floor((lo - min) / step);
    // test that one and its neighbours as the sampler makes them.
    let Some(n) = domain.grid_len() else {
        return true;
    };
    let last = n.saturating_sub(1);
    let k = lo.map_or(0.0, |lo| ((lo - first) / step).floor());
    let k = k.clamp(0.0, last as f64) as u64;
    (k.saturating_sub(1)..=(k + 1).min(last)).any(|k| test.holds(&domain.grid_value(k)))
}

/// What values a parent takes, for a message.
fn values_of(parent: &str, domain: &Domain) -> String {
    match domain {
        Domain::Float { min, max, step, .. } => {
            let steps = step.map_or(String::new(), |s| format!(" in steps of {}", num(s)));
            format!(
                "`{parent}` takes values from {} to {}{steps}",
                num(*min),
                num(*max)
            )
        }
        Domain::Int { min, max, step, .. } => {
            let steps = if *step == 1 {
                String::new()
            } else {
                format!(" in steps of {step}")
            };
            format!("`{parent}` takes values from {min} to {max}{steps}")
        }
        Domain::Categorical { values } => {
            let mut listed: Vec<String> = values.iter().take(10).map(ToString::to_string).collect();
            if values.len() > 10 {
                listed.push("…".into());
            }
            format!("`{parent}`'s values are {}", listed.join(", "))
        }
    }
}

/// Whether every point of a float grid is a value of its own, as the sampler makes it:
/// distinct from its neighbours, inside the domain, decoded from its own bucket and
/// encoded back to it. Checks the first and last points, where the ends lie (doubles
/// are sparsest at one of them).
fn grid_is_faithful(grid: &Domain) -> bool {
    const EDGE: u64 = 256;
    let Some(n) = grid.grid_len() else {
        return true;
    };
    let ks = (0..n.min(EDGE)).chain(n.saturating_sub(EDGE).max(EDGE)..n);
    let mut previous: Option<(u64, f64)> = None;
    for k in ks {
        let value = grid.grid_value(k);
        let Some(x) = value.as_f64() else {
            return false;
        };
        let bucket = (k as f64 + 0.5) / n as f64;
        let round_trip = grid.encode(&value).map(|u| grid.decode(u));
        if !grid.contains(&value)
            || grid.decode(bucket) != value
            || round_trip.as_ref() != Some(&value)
            || previous.is_some_and(|(j, before)| j + 1 == k && before >= x)
        {
            return false;
        }
        previous = Some((k, x));
    }
    true
}

/// A number for a message: plain when short, in exponent form when very large or small
/// (`1.7e308` rather than 309 digits).
fn num(x: f64) -> String {
    if x != 0.0 && !(1e-4..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 100
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
