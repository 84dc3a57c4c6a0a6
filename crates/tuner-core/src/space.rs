//! The typed, validated form of a search-space document (version 1).
//!
//! Only [`crate::parse_spec`] builds these, so every `StudySpec` in the system has
//! passed validation: min < max, conditions acyclic, names unique, and so on.

use std::collections::BTreeMap;

use crate::{ParamValue, Params};

/// A whole study definition: what to tune, how to judge it, how much to spend.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StudySpec {
    pub version: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub objective: Objective,
    pub trainer: TrainerSpec,
    pub budget: Budget,
    pub optimizer: OptimizerSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruner: Option<PrunerSpec>,
    pub parameters: SearchSpace,
    pub fixed: Params,
}

impl StudySpec {
    /// A trial's full config: its tuned `params` over the study's `fixed` values (a
    /// tuned value wins where both name a parameter). What a worker trains, and what
    /// `best` exports.
    pub fn config(&self, params: &Params) -> Params {
        let mut config = self.fixed.clone();
        config.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        config
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

impl Direction {
    /// Whether `a` is strictly better than `b` in this direction.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Self::Maximize => a > b,
            Self::Minimize => a < b,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Maximize => "maximize",
            Self::Minimize => "minimize",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainerSpec {
    pub kind: TrainerKind,
    /// Epochs per trial (built-in trainer); passed on to external workers as-is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Train on only the first N training images (quick studies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<u32>,
    /// Validate on only the first N validation images (quick studies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerKind {
    /// The built-in Candle CNN on Fashion-MNIST.
    FashionMnistCnn,
    /// Any worker speaking the lease protocol.
    External,
}

impl TrainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FashionMnistCnn => "fashion-mnist-cnn",
            Self::External => "external",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Budget {
    /// Trials the study may spend in all: pending + running + completed + pruned.
    pub max_trials: u32,
    /// Trials in flight at once, across all workers.
    pub parallelism: u32,
    /// Times a trial whose lease expired is handed out again before it is failed.
    pub max_retries: u32,
    /// The study fails after this many trials in a row failed (bad data, impossible config).
    pub max_consecutive_failures: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    /// Trials drawn from the initial design before the model-based search starts.
    pub initial_trials: u32,
    pub seed: u64,
    /// Weigh expected improvement against each candidate's predicted cost (`gp` only).
    /// Resolved at parsing: the document's `cost_aware`, else on for the built-in
    /// trainer and off for external ones.
    pub cost_aware: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Gp,
    Random,
}

impl OptimizerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gp => "gp",
            Self::Random => "random",
        }
    }
}

/// When to stop unpromising trials early, from their per-epoch values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrunerSpec {
    /// Never stop a trial early.
    None,
    /// Stop a trial whose value at an epoch is worse than the median of finished trials
    /// at that epoch.
    Median {
        /// Epochs every trial runs before it may be stopped.
        warmup_epochs: u32,
        /// Finished trials with a value at the epoch needed before anything is stopped.
        min_trials: u32,
    },
    /// Asynchronous successive halving: at epochs `min_resource · reduction_factor^k`
    /// (the rungs), only the best `1 / reduction_factor` of the trials that reached the
    /// rung go on.
    Asha {
        min_resource: u32,
        reduction_factor: u32,
    },
    /// Learning-curve extrapolation: after `warmup_epochs`, stop a trial when even an
    /// optimistic prediction of its value at the last epoch (`trainer.epochs`), made
    /// from the curves of completed trials and its own latest gain, does not beat the
    /// best completed trial.
    Curve {
        warmup_epochs: u32,
        /// Completed trials with a value at the epoch and at the last epoch needed
        /// before anything is stopped.
        min_trials: u32,
    },
}

/// The tuned parameters, in the order the document lists them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpace {
    params: Vec<ParamSpec>,
    /// Indices into `params` such that every parameter comes after those its
    /// conditions refer to.
    order: Vec<usize>,
}

/// One tuned parameter.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(flatten)]
    pub domain: Domain,
    /// The parameter is active only when every condition holds (and its parents are active).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Domain {
    Float {
        min: f64,
        max: f64,
        log: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<f64>,
    },
    Int {
        min: i64,
        max: i64,
        step: i64,
        log: bool,
    },
    Categorical {
        values: Vec<ParamValue>,
    },
}

/// `when: {parent: <test>}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Condition {
    pub parent: String,
    pub test: ConditionTest,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionTest {
    /// The parent equals one of these values (`when: {opt: adam}` or `{opt: [adam, rmsprop]}`).
    OneOf(Vec<ParamValue>),
    /// The parent lies in `[min, max]` (`when: {layers: {min: 2}}`).
    Range { min: Option<f64>, max: Option<f64> },
}

impl ConditionTest {
    pub fn holds(&self, value: &ParamValue) -> bool {
        match self {
            Self::OneOf(values) => values.iter().any(|v| v.same_as(value)),
            Self::Range { min, max } => match value.as_f64() {
                Some(x) => min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m),
                None => false,
            },
        }
    }
}

impl serde::Serialize for SearchSpace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.params.len()))?;
        for p in &self.params {
            map.serialize_entry(&p.name, &ParamDoc(p))?;
        }
        map.end()
    }
}

/// A parameter as the document writes it (name as the map key, `when` as a map).
struct ParamDoc<'a>(&'a ParamSpec);

impl serde::Serialize for ParamDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        match &p.domain {
            Domain::Float {
                min,
                max,
                log,
                step,
            } => {
                map.serialize_entry("type", "float")?;
                map.serialize_entry("min", min)?;
                map.serialize_entry("max", max)?;
                if *log {
                    map.serialize_entry("log", log)?;
                }
                if let Some(step) = step {
                    map.serialize_entry("step", step)?;
                }
            }
            Domain::Int {
                min,
                max,
                step,
                log,
            } => {
                map.serialize_entry("type", "int")?;
                map.serialize_entry("min", min)?;
                map.serialize_entry("max", max)?;
                if *step != 1 {
                    map.serialize_entry("step", step)?;
                }
                if *log {
                    map.serialize_entry("log", log)?;
                }
            }
            Domain::Categorical { values } => {
                map.serialize_entry("type", "categorical")?;
                map.serialize_entry("values", values)?;
            }
        }
        if !p.when.is_empty() {
            let when: BTreeMap<&str, serde_json::Value> = p
                .when
                .iter()
                .map(|c| {
                    let v = match &c.test {
                        ConditionTest::OneOf(vs) if vs.len() == 1 => {
                            serde_json::to_value(&vs[0]).unwrap_or_default()
                        }
                        ConditionTest::OneOf(vs) => serde_json::to_value(vs).unwrap_or_default(),
                        ConditionTest::Range { min, max } => {
                            let mut m = serde_json::Map::new();
                            if let Some(min) = min {
                                m.insert("min".into(), (*min).into());
                            }
                            if let Some(max) = max {
                                m.insert("max".into(), (*max).into());
                            }
                            serde_json::Value::Object(m)
                        }
                    };
                    (c.parent.as_str(), v)
                })
                .collect();
            map.serialize_entry("when", &when)?;
        }
        map.end()
    }
}

impl SearchSpace {
    /// Builds a space; `order` must be a topological order of the condition graph
    /// (the validator computes it).
    pub(crate) fn new(params: Vec<ParamSpec>, order: Vec<usize>) -> Self {
        debug_assert_eq!(params.len(), order.len());
        Self { params, order }
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Parameters in document order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Parameters in an order where parents come before the parameters they condition.
    pub fn in_dependency_order(&self) -> impl Iterator<Item = &ParamSpec> {
        self.order.iter().map(|&i| &self.params[i])
    }

    /// Whether `param` is active given the values chosen so far for its parents.
    /// A parent that is absent (inactive) makes its children inactive.
    pub fn is_active(&self, param: &ParamSpec, chosen: &Params) -> bool {
        param.when.iter().all(|c| {
            chosen
                .get(&c.parent)
                .is_some_and(|value| c.test.holds(value))
        })
    }

    /// Builds a configuration by drawing a point in the unit cube for each parameter in
    /// dependency order; `draw` is called only for active parameters.
    pub fn decode_with(&self, mut draw: impl FnMut(&ParamSpec) -> f64) -> Params {
        let mut params = Params::new();
        for p in self.in_dependency_order() {
            if self.is_active(p, &params) {
                let u = draw(p);
                params.insert(p.name.clone(), p.domain.decode(u));
            }
        }
        params
    }

    /// Checks a configuration against the space: every active parameter present and
    /// inside its domain, no inactive or unknown parameter.
    pub fn check_params(&self, params: &Params) -> Result<(), crate::CoreError> {
        let mut problems = Vec::new();
        for name in params.keys() {
            if self.get(name).is_none() {
                problems.push(crate::Problem::new(name, "not a parameter of this space"));
            }
        }
        let mut seen = Params::new();
        for p in self.in_dependency_order() {
            let active = self.is_active(p, &seen);
            match (active, params.get(&p.name)) {
                (true, Some(v)) => {
                    if !p.domain.contains(v) {
                        problems.push(crate::Problem::new(
                            &p.name,
                            format!("{v} is outside the parameter's domain"),
                        ));
                    }
                    seen.insert(p.name.clone(), v.clone());
                }
                (true, None) => problems.push(crate::Problem::new(&p.name, "missing")),
                (false, Some(_)) => problems.push(crate::Problem::new(
                    &p.name,
                    "given, but its conditions make it inactive",
                )),
                (false, None) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(crate::CoreError::InvalidParams(problems))
        }
    }

    /// The number of grid points of each parameter if every parameter is discrete,
    /// multiplied together (an upper bound on distinct configurations, since
    /// conditions only merge configurations). `None` if some parameter is continuous.
    pub fn grid_size(&self) -> Option<u128> {
        self.params.iter().try_fold(1u128, |acc, p| {
            p.domain
                .grid_len()
                .map(|n| acc.saturating_mul(n as u128 + u128::from(!p.when.is_empty())))
        })
    }

    /// Every distinct configuration of an all-discrete space, if there are at most
    /// `limit` grid combinations; `None` otherwise.
    pub fn enumerate(&self, limit: u128) -> Option<Vec<Params>> {
        let size = self.grid_size()?;
        if size > limit {
            return None;
        }
        let mut configs: Vec<Params> = vec![Params::new()];
        for p in self.in_dependency_order() {
            let n = p.domain.grid_len()?;
            let mut next = Vec::with_capacity(configs.len() * n as usize);
            for config in configs {
                if self.is_active(p, &config) {
                    for k in 0..n {
                        let mut c = config.clone();
                        c.insert(p.name.clone(), p.domain.grid_value(k));
                        next.push(c);
                    }
                } else {
                    next.push(config);
                }
            }
            configs = next;
        }
        Some(configs)
    }
}

impl Domain {
    /// Maps `u` in [0, 1) to a value: uniform on the (log) scale, snapped to steps;
    /// categoricals and grids pick bucket `floor(u * n)`.
    pub fn decode(&self, u: f64) -> ParamValue {
        let u = u.clamp(0.0, 1.0);
        match self {
            Self::Float {
                min,
                max,
                log,
                step,
            } => {
                if let Some(step) = step {
                    let n = self.grid_len().unwrap_or(1);
                    let k = ((u * n as f64) as u64).min(n - 1);
                    return ParamValue::Float(snap(min + k as f64 * step, *min, *max, *step));
                }
                let x = if *log {
                    (min.ln() + u * (max.ln() - min.ln())).exp()
                } else {
                    min + u * (max - min)
                };
                // The ends exactly (exp(ln(1e-4)) is 1.0000000000000009e-4).
                let x = if u <= 0.0 {
                    *min
                } else if u >= 1.0 {
                    *max
                } else {
                    x
                };
                ParamValue::Float(x.clamp(*min, *max))
            }
            Self::Int {
                min,
                max,
                step,
                log,
            } => {
                if *log {
                    // Widen by half a unit on each side so the end values get a fair share.
                    let lo = (*min as f64 - 0.5).max(0.5).ln();
                    let hi = (*max as f64 + 0.5).ln();
                    let x = (lo + u * (hi - lo)).exp().round() as i64;
                    return ParamValue::Int(x.clamp(*min, *max));
                }
                let n = self.grid_len().unwrap_or(1);
                let k = ((u * n as f64) as u64).min(n - 1);
                ParamValue::Int(min + k as i64 * step)
            }
            Self::Categorical { values } => {
                let n = values.len();
                let k = ((u * n as f64) as usize).min(n - 1);
                values[k].clone()
            }
        }
    }

    /// Maps a value to the middle of its bucket in [0, 1] (the inverse of `decode`
    /// up to snapping). Values outside the domain are clamped.
    pub fn encode(&self, value: &ParamValue) -> Option<f64> {
        match self {
            Self::Categorical { values } => {
                let k = values.iter().position(|v| v.same_as(value))?;
                Some((k as f64 + 0.5) / values.len() as f64)
            }
            Self::Float {
                min,
                max,
                log,
                step,
            } => {
                let x = value.as_f64()?;
                if let Some(step) = step {
                    let n = self.grid_len()? as f64;
                    let k = ((x - min) / step).round().clamp(0.0, n - 1.0);
                    return Some((k + 0.5) / n);
                }
                let u = if *log {
                    (x.ln() - min.ln()) / (max.ln() - min.ln())
                } else {
                    (x - min) / (max - min)
                };
                Some(u.clamp(0.0, 1.0))
            }
            Self::Int {
                min,
                max,
                step,
                log,
            } => {
                let x = value.as_f64()?;
                if *log {
                    let lo = (*min as f64 - 0.5).max(0.5).ln();
                    let hi = (*max as f64 + 0.5).ln();
                    return Some(((x.ln() - lo) / (hi - lo)).clamp(0.0, 1.0));
                }
                let n = self.grid_len()? as f64;
                let k = ((x - *min as f64) / *step as f64)
                    .round()
                    .clamp(0.0, n - 1.0);
                Some((k + 0.5) / n)
            }
        }
    }

    /// Number of distinct values, if finite.
    pub fn grid_len(&self) -> Option<u64> {
        match self {
            Self::Float {
                min,
                max,
                step: Some(step),
                ..
            } => Some((((max - min) / step + 1e-9).floor() as u64).saturating_add(1)),
            Self::Float { step: None, .. } => None,
            Self::Int { min, max, step, .. } => {
                // In i128: a domain built by hand may span all of i64.
                let gaps = (i128::from(*max) - i128::from(*min)) / i128::from(*step);
                Some(u64::try_from(gaps).unwrap_or(u64::MAX).saturating_add(1))
            }
            Self::Categorical { values } => Some(values.len() as u64),
        }
    }

    /// The `k`-th value of a discrete domain (`k < grid_len()`).
    pub fn grid_value(&self, k: u64) -> ParamValue {
        match self {
            Self::Float { min, max, step, .. } => {
                let step = step.unwrap_or(0.0);
                ParamValue::Float(snap(min + k as f64 * step, *min, *max, step))
            }
            Self::Int { min, step, .. } => ParamValue::Int(min + k as i64 * step),
            Self::Categorical { values } => values[k as usize].clone(),
        }
    }

    /// Whether `value` is a member of this domain (on a step grid where there is one).
    pub fn contains(&self, value: &ParamValue) -> bool {
        match self {
            Self::Categorical { values } => values.iter().any(|v| v.same_as(value)),
            Self::Float { min, max, step, .. } => match value.as_f64() {
                Some(x) if x >= *min && x <= *max => step.is_none_or(|s| {
                    let k = (x - min) / s;
                    (k - k.round()).abs() < 1e-6
                }),
                _ => false,
            },
            Self::Int { min, max, step, .. } => match value {
                ParamValue::Int(x) => x >= min && x <= max && (x - min) % step == 0,
                ParamValue::Float(x) if x.fract() == 0.0 => {
                    self.contains(&ParamValue::Int(*x as i64))
                }
                _ => false,
            },
        }
    }
}

/// Rounds away float noise from `min + k * step` (0.1 + 2 * 0.1 = 0.30000000000000004)
/// by rounding to 12 decimal places, where that moves the value by a negligible part of
/// a step: not for steps finer than that, nor for values too large to have decimals
/// (where `x * 1e12` could also overflow).
fn snap(x: f64, min: f64, max: f64, step: f64) -> f64 {
    const NO_FRACTION: f64 = 4_503_599_627_370_496.0; // 2^52
    let scaled = x * 1e12;
    let rounded = if scaled.abs() < NO_FRACTION {
        scaled.round() / 1e12
    } else {
        x
    };
    let snapped = if (rounded - x).abs() <= step * 1e-9 {
        rounded
    } else {
        x
    };
    snapped.clamp(min, max)
}
