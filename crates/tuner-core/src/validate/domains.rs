//! The `parameters` section: each parameter's name and domain (float, int or
//! categorical, with their bounds, steps and log scale).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{MAX_INT_BOUND, Validator, join, num, type_of, valid_name};
use crate::{Domain, ParamSpec, ParamValue, SearchSpace, limits};

impl Validator {
    pub(super) fn parameters(&mut self, v: &Value) -> Option<SearchSpace> {
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
