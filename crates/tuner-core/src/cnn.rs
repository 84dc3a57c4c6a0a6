//! The configuration of the built-in trainer's model family (the student's Keras CNN on
//! Fashion-MNIST), read from a trial's flat parameter map.
//!
//! Pure data: this module knows which parameter names the `fashion-mnist-cnn` trainer
//! understands and which values it can train, so the server can refuse an unusable study
//! at creation ([`check_space`]) and the worker can turn a trial's params into a config
//! ([`CnnConfig::from_params`]) with the very same rules. Nothing here touches tensors.

use std::{collections::BTreeMap, fmt};

use crate::{CoreError, Domain, ParamValue, Params, Problem, SearchSpace};

/// Side of the square input images.
pub const IMAGE_SIZE: u32 = 28;
/// Number of output classes.
pub const NUM_CLASSES: u32 = 10;
/// Most dense layers a config may ask for (so `dense_units_1` ..= `dense_units_7` exist).
pub const MAX_DENSE_LAYERS: u32 = 8;
/// Upper bounds that keep one trial's memory and time sane on a small machine.
pub const MAX_FILTERS: u32 = 1024;
pub const MAX_DENSE_UNITS: u32 = 16_384;
pub const MAX_BATCH_SIZE: u32 = 8_192;
pub const MAX_EPOCHS: u32 = 1_000;
pub const MAX_KERNEL_SIZE: u32 = 7;

/// Every parameter name the built-in trainer understands, as shown in error messages.
pub const SUPPORTED_PARAMS: &[&str] = &[
    "conv_activation (relu | tanh | leaky_relu | elu | gelu)",
    "optimizer (sgd | adam | rmsprop)",
    "learning_rate (> 0; default sgd 1e-2, adam 1e-3, rmsprop 1e-3)",
    "momentum (sgd only, 0 <= m < 1)",
    "conv1_filters (1..=1024)",
    "conv2_filters (1..=1024)",
    "kernel_size (odd, 1..=7)",
    "pool_size (1, or equal to pool_stride)",
    "pool_stride (>= 1)",
    "dense_layers (1..=8)",
    "dense_units (alias top_dense_units; units of the first dense layer and default of the others)",
    "dense_units_1 .. dense_units_7 (units of dense layer 2 .. 8)",
    "dense_activation (relu | tanh | leaky_relu | elu | gelu)",
    "dropout (0 <= d < 1)",
    "batch_size (1..=8192)",
    "epochs (1..=1000)",
];

/// Hidden-layer activation functions (Keras names and defaults: leaky_relu slope 0.2,
/// elu alpha 1, exact erf gelu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Tanh,
    LeakyRelu,
    Elu,
    Gelu,
}

impl Activation {
    pub const ALL: [Activation; 5] = [
        Self::Relu,
        Self::Tanh,
        Self::LeakyRelu,
        Self::Elu,
        Self::Gelu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::LeakyRelu => "leaky_relu",
            Self::Elu => "elu",
            Self::Gelu => "gelu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Gradient-descent algorithm (Keras defaults; see [`CnnOptimizer::default_learning_rate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CnnOptimizer {
    Sgd,
    Adam,
    Rmsprop,
}

impl CnnOptimizer {
    pub const ALL: [CnnOptimizer; 3] = [Self::Sgd, Self::Adam, Self::Rmsprop];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
            Self::Rmsprop => "rmsprop",
        }
    }

    /// Keras' default learning rate for this optimizer.
    pub fn default_learning_rate(self) -> f64 {
        match self {
            Self::Sgd => 1e-2,
            Self::Adam | Self::Rmsprop => 1e-3,
        }
    }
}

impl fmt::Display for CnnOptimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model + training configuration of the built-in trainer. [`Default`] is the
/// student's baseline: conv 32/64, kernel 3, relu, pool 1 stride 2, dense 128 tanh,
/// adam 1e-3, batch 128.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnConfig {
    pub conv_activation: Activation,
    pub optimizer: CnnOptimizer,
    /// `None` means the optimizer's Keras default.
    pub learning_rate: Option<f64>,
    /// SGD momentum; ignored by the other optimizers.
    pub momentum: f64,
    pub conv1_filters: u32,
    pub conv2_filters: u32,
    pub kernel_size: u32,
    pub pool_size: u32,
    pub pool_stride: u32,
    /// Units of each dense layer, first to last (its length is `dense_layers`).
    pub dense_units: Vec<u32>,
    pub dense_activation: Activation,
    pub dropout: f64,
    pub batch_size: u32,
    /// Epochs asked for by the config itself; the caller decides whether it wins over the
    /// study's or the command line's.
    pub epochs: Option<u32>,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            conv_activation: Activation::Relu,
            optimizer: CnnOptimizer::Adam,
            learning_rate: None,
            momentum: 0.0,
            conv1_filters: 32,
            conv2_filters: 64,
            kernel_size: 3,
            pool_size: 1,
            pool_stride: 2,
            dense_units: vec![DEFAULT_DENSE_UNITS],
            dense_activation: Activation::Tanh,
            dropout: 0.0,
            batch_size: 128,
            epochs: None,
        }
    }
}

const DEFAULT_DENSE_UNITS: u32 = 128;

impl CnnConfig {
    /// Reads a trial's parameters. Absent parameters take their defaults; every unknown
    /// name, wrong type and unusable value is reported, each under its parameter's name.
    pub fn from_params(params: &Params) -> Result<CnnConfig, CoreError> {
        let mut problems = Vec::new();
        let mut cfg = CnnConfig::default();
        let mut dense_layers: u32 = 1;
        // Units by dense-layer index; index 0 is `dense_units` / `top_dense_units`.
        let mut units: BTreeMap<u32, u32> = BTreeMap::new();
        for (name, value) in params {
            match parse_setting(name, value) {
                Ok(setting) => match setting {
                    Setting::ConvActivation(a) => cfg.conv_activation = a,
                    Setting::Optimizer(o) => cfg.optimizer = o,
                    Setting::LearningRate(lr) => cfg.learning_rate = Some(lr),
                    Setting::Momentum(m) => cfg.momentum = m,
                    Setting::Conv1Filters(n) => cfg.conv1_filters = n,
                    Setting::Conv2Filters(n) => cfg.conv2_filters = n,
                    Setting::KernelSize(k) => cfg.kernel_size = k,
                    Setting::PoolSize(p) => cfg.pool_size = p,
                    Setting::PoolStride(s) => cfg.pool_stride = s,
                    Setting::DenseLayers(n) => dense_layers = n,
                    Setting::DenseUnits { layer, units: u } => {
                        units.insert(layer, u);
                    }
                    Setting::DenseActivation(a) => cfg.dense_activation = a,
                    Setting::Dropout(d) => cfg.dropout = d,
                    Setting::BatchSize(b) => cfg.batch_size = b,
                    Setting::Epochs(e) => cfg.epochs = Some(e),
                },
                Err(message) => problems.push(Problem::new(name, message)),
            }
        }
        if params.contains_key("dense_units") && params.contains_key("top_dense_units") {
            problems.push(Problem::new(
                "top_dense_units",
                "`top_dense_units` is an alias of `dense_units`; give only one of them",
            ));
        }
        let first = units.get(&0).copied().unwrap_or(DEFAULT_DENSE_UNITS);
        // Layers without their own `dense_units_<i>` use the first layer's units; entries
        // for layers beyond `dense_layers` are inactive (a conditional space leaves them
        // out, a flat file may carry them) and are ignored.
        cfg.dense_units = (0..dense_layers)
            .map(|i| units.get(&i).copied().unwrap_or(first))
            .collect();
        if let Some(message) = pool_problem(cfg.pool_size, cfg.pool_stride) {
            let name = if params.contains_key("pool_size") {
                "pool_size"
            } else {
                "pool_stride"
            };
            problems.push(Problem::new(name, message));
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(CoreError::InvalidParams(problems))
        }
    }

    /// The learning rate actually used: the given one or the optimizer's Keras default.
    pub fn effective_learning_rate(&self) -> f64 {
        self.learning_rate
            .unwrap_or_else(|| self.optimizer.default_learning_rate())
    }

    pub fn dense_layers(&self) -> u32 {
        self.dense_units.len() as u32
    }

    /// Side of the feature map after conv block `block` (1 or 2) and its pooling.
    pub fn feature_size(&self, block: u32) -> u32 {
        (0..block).fold(IMAGE_SIZE, |h, _| {
            pooled_size(h, self.pool_size, self.pool_stride)
        })
    }

    /// Inputs of the first dense layer (the flattened second conv block).
    pub fn flat_features(&self) -> u32 {
        let side = self.feature_size(2);
        side * side * self.conv2_filters
    }

    /// The config as a flat parameter map (what `from_params` reads back to an equal
    /// config): the form written beside saved weights and by `tuner-cli best`.
    pub fn to_params(&self) -> Params {
        let mut p = Params::new();
        let mut put = |name: &str, v: ParamValue| {
            p.insert(name.to_owned(), v);
        };
        put(
            "conv_activation",
            ParamValue::Str(self.conv_activation.as_str().into()),
        );
        put("optimizer", ParamValue::Str(self.optimizer.as_str().into()));
        if let Some(lr) = self.learning_rate {
            put("learning_rate", ParamValue::Float(lr));
        }
        if self.optimizer == CnnOptimizer::Sgd {
            put("momentum", ParamValue::Float(self.momentum));
        }
        put("conv1_filters", int(self.conv1_filters));
        put("conv2_filters", int(self.conv2_filters));
        put("kernel_size", int(self.kernel_size));
        put("pool_size", int(self.pool_size));
        put("pool_stride", int(self.pool_stride));
        put("dense_layers", int(self.dense_layers()));
        if let Some(first) = self.dense_units.first() {
            put("dense_units", int(*first));
        }
        for (i, u) in self.dense_units.iter().enumerate().skip(1) {
            put(&format!("dense_units_{i}"), int(*u));
        }
        put(
            "dense_activation",
            ParamValue::Str(self.dense_activation.as_str().into()),
        );
        put("dropout", ParamValue::Float(self.dropout));
        put("batch_size", int(self.batch_size));
        if let Some(e) = self.epochs {
            put("epochs", int(e));
        }
        p
    }
}

fn int(v: u32) -> ParamValue {
    ParamValue::Int(i64::from(v))
}

/// Keras 'valid' pooling: `floor((h - pool) / stride) + 1`, or 0 when the window does
/// not fit.
fn pooled_size(h: u32, pool: u32, stride: u32) -> u32 {
    if pool > h || stride == 0 {
        0
    } else {
        (h - pool) / stride + 1
    }
}

/// Why a pool size / stride pair cannot be trained, if it cannot.
fn pool_problem(pool: u32, stride: u32) -> Option<String> {
    if pool != 1 && pool != stride {
        // Candle's max-pool gradient only exists for non-overlapping, gap-free windows.
        return Some(format!(
            "pool_size {pool} with pool_stride {stride} is not supported: pool_size must be 1 \
             (subsampling, the original model) or equal to pool_stride"
        ));
    }
    let after1 = pooled_size(IMAGE_SIZE, pool, stride);
    let after2 = pooled_size(after1, pool, stride);
    if after2 == 0 {
        return Some(format!(
            "pool_size {pool} with pool_stride {stride} shrinks the {IMAGE_SIZE}x{IMAGE_SIZE} \
             image to nothing after the second conv block ({IMAGE_SIZE} -> {after1} -> {after2})"
        ));
    }
    None
}

/// One parameter, read and checked on its own.
#[derive(Debug, Clone, PartialEq)]
enum Setting {
    ConvActivation(Activation),
    Optimizer(CnnOptimizer),
    LearningRate(f64),
    Momentum(f64),
    Conv1Filters(u32),
    Conv2Filters(u32),
    KernelSize(u32),
    PoolSize(u32),
    PoolStride(u32),
    DenseLayers(u32),
    /// `layer` 0 is the first dense layer.
    DenseUnits {
        layer: u32,
        units: u32,
    },
    DenseActivation(Activation),
    Dropout(f64),
    BatchSize(u32),
    Epochs(u32),
}

/// What kind of value a known parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Int,
    Float,
    Name,
}

/// The value kind of a supported parameter name; `None` if the name is unknown.
fn value_kind(name: &str) -> Option<ValueKind> {
    match name {
        "conv_activation" | "dense_activation" | "optimizer" => Some(ValueKind::Name),
        "learning_rate" | "momentum" | "dropout" => Some(ValueKind::Float),
        "conv1_filters" | "conv2_filters" | "kernel_size" | "pool_size" | "pool_stride"
        | "dense_layers" | "dense_units" | "top_dense_units" | "batch_size" | "epochs" => {
            Some(ValueKind::Int)
        }
        _ => dense_units_index(name).map(|_| ValueKind::Int),
    }
}

/// `dense_units_<i>` with 1 <= i < MAX_DENSE_LAYERS names dense layer `i` (0-based).
fn dense_units_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("dense_units_")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u32>()
        .ok()
        .filter(|i| (1..MAX_DENSE_LAYERS).contains(i))
}

fn unknown_message(name: &str) -> String {
    format!(
        "unknown parameter `{name}` for the fashion-mnist-cnn trainer; supported parameters: {}",
        SUPPORTED_PARAMS.join(", ")
    )
}

fn parse_setting(name: &str, value: &ParamValue) -> Result<Setting, String> {
    let kind = value_kind(name).ok_or_else(|| unknown_message(name))?;
    match kind {
        ValueKind::Name => {
            let ParamValue::Str(s) = value else {
                return Err(format!(
                    "expected a name, found {} {value}",
                    value.type_name()
                ));
            };
            let s = s.to_ascii_lowercase();
            if name == "optimizer" {
                CnnOptimizer::ALL
                    .into_iter()
                    .find(|o| o.as_str() == s)
                    .map(Setting::Optimizer)
                    .ok_or_else(|| {
                        format!("unknown optimizer `{s}`; expected sgd, adam or rmsprop")
                    })
            } else {
                let a = Activation::ALL
                    .into_iter()
                    .find(|a| a.as_str() == s)
                    .ok_or_else(|| {
                        format!(
                            "unknown activation `{s}`; expected relu, tanh, leaky_relu, elu or gelu"
                        )
                    })?;
                Ok(if name == "conv_activation" {
                    Setting::ConvActivation(a)
                } else {
                    Setting::DenseActivation(a)
                })
            }
        }
        ValueKind::Float => {
            let x = match value {
                ParamValue::Int(i) => *i as f64,
                ParamValue::Float(x) if x.is_finite() => *x,
                other => {
                    return Err(format!(
                        "expected a number, found {} {other}",
                        other.type_name()
                    ));
                }
            };
            match name {
                "learning_rate" if x > 0.0 && x <= 10.0 => Ok(Setting::LearningRate(x)),
                "learning_rate" => Err(format!("learning_rate {x} must be in (0, 10]")),
                "momentum" if (0.0..1.0).contains(&x) => Ok(Setting::Momentum(x)),
                "momentum" => Err(format!("momentum {x} must be in [0, 1)")),
                _ if (0.0..1.0).contains(&x) => Ok(Setting::Dropout(x)),
                _ => Err(format!("dropout {x} must be in [0, 1)")),
            }
        }
        ValueKind::Int => {
            let n = match value {
                ParamValue::Int(i) => *i,
                ParamValue::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => *x as i64,
                other => {
                    return Err(format!(
                        "expected an integer, found {} {other}",
                        other.type_name()
                    ));
                }
            };
            let ranged = |lo: i64, hi: i64| -> Result<u32, String> {
                if (lo..=hi).contains(&n) {
                    Ok(n as u32)
                } else {
                    Err(format!("{name} {n} must be between {lo} and {hi}"))
                }
            };
            match name {
                "conv1_filters" => ranged(1, MAX_FILTERS.into()).map(Setting::Conv1Filters),
                "conv2_filters" => ranged(1, MAX_FILTERS.into()).map(Setting::Conv2Filters),
                "kernel_size" => {
                    let k = ranged(1, MAX_KERNEL_SIZE.into())?;
                    if k % 2 == 0 {
                        Err(format!(
                            "kernel_size {k} must be odd ('same' padding needs a centre pixel)"
                        ))
                    } else {
                        Ok(Setting::KernelSize(k))
                    }
                }
                "pool_size" => ranged(1, IMAGE_SIZE.into()).map(Setting::PoolSize),
                "pool_stride" => ranged(1, IMAGE_SIZE.into()).map(Setting::PoolStride),
                "dense_layers" => ranged(1, MAX_DENSE_LAYERS.into()).map(Setting::DenseLayers),
                "batch_size" => ranged(1, MAX_BATCH_SIZE.into()).map(Setting::BatchSize),
                "epochs" => ranged(1, MAX_EPOCHS.into()).map(Setting::Epochs),
                _ => {
                    let layer = dense_units_index(name).unwrap_or(0);
                    ranged(1, MAX_DENSE_UNITS.into())
                        .map(|units| Setting::DenseUnits { layer, units })
                }
            }
        }
    }
}

/// Grids up to this size are checked value by value; larger ones by their ends.
const EXHAUSTIVE_GRID: u64 = 256;

/// The values a domain can produce that are worth checking, each with the path suffix
/// to blame (`.values[i]`, `.min`, `.max` or none), or an error when the domain can
/// produce values of a kind the parameter cannot take at all.
fn candidates(domain: &Domain, kind: ValueKind) -> Result<Vec<(String, ParamValue)>, String> {
    match domain {
        Domain::Categorical { values } => Ok(values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!(".values[{i}]"), v.clone()))
            .collect()),
        Domain::Int {
            min,
            max,
            step,
            log,
        } => {
            // A log-scaled int range ignores the step and can produce any integer.
            let step = if *log { 1 } else { *step };
            let n = ((max - min) / step) as u64 + 1;
            let last = min + (n as i64 - 1) * step;
            if n <= EXHAUSTIVE_GRID {
                Ok((0..n as i64)
                    .map(|k| {
                        let v = min + k * step;
                        let suffix = if v == *min {
                            ".min"
                        } else if v == *max {
                            ".max"
                        } else {
                            ""
                        };
                        (suffix.to_owned(), ParamValue::Int(v))
                    })
                    .collect())
            } else {
                Ok(vec![
                    (".min".to_owned(), ParamValue::Int(*min)),
                    (".max".to_owned(), ParamValue::Int(last)),
                ])
            }
        }
        Domain::Float { min, max, .. } => {
            if kind == ValueKind::Int {
                // Even a stepped float range yields floats that only happen to be whole;
                // asking for `type: int` says what is meant.
                return Err("takes integer values; use `type: int` or `type: categorical`".into());
            }
            if let Some(grid) = domain.grid_len().filter(|n| *n <= EXHAUSTIVE_GRID) {
                return Ok((0..grid)
                    .map(|k| (String::new(), domain.grid_value(k)))
                    .collect());
            }
            Ok(vec![
                (".min".to_owned(), ParamValue::Float(*min)),
                (".max".to_owned(), ParamValue::Float(*max)),
            ])
        }
    }
}

/// Checks that a built-in-trainer study can train every configuration its space can
/// produce: every tuned and fixed name is supported and every value usable. Problems
/// carry document paths (`parameters.kernel_size.values[1]`, `fixed.pool_size`).
pub fn check_space(space: &SearchSpace, fixed: &Params) -> Vec<Problem> {
    let mut problems = Vec::new();
    // Values each parameter may take, for the checks that involve two parameters.
    let mut possible: BTreeMap<&str, (String, Vec<ParamValue>)> = BTreeMap::new();

    for p in space.params() {
        let path = format!("parameters.{}", p.name);
        let Some(kind) = value_kind(&p.name) else {
            problems.push(Problem::new(path, unknown_message(&p.name)));
            continue;
        };
        let values = match candidates(&p.domain, kind) {
            Ok(values) => values,
            Err(message) => {
                problems.push(Problem::new(format!("{path}.type"), message));
                continue;
            }
        };
        let is_grid = !matches!(p.domain, Domain::Categorical { .. });
        let mut bad: Vec<(String, String, &ParamValue)> = Vec::new();
        for (suffix, v) in &values {
            if let Err(message) = parse_setting(&p.name, v) {
                bad.push((suffix.clone(), message, v));
            }
        }
        if is_grid && bad.len() > 1 {
            // One problem for a range, naming the values it would produce that fail.
            let listed: Vec<String> = bad.iter().take(8).map(|(_, _, v)| v.to_string()).collect();
            let more = if bad.len() > 8 { ", ..." } else { "" };
            problems.push(Problem::new(
                path.clone(),
                format!(
                    "the range can produce unusable values ({}{more}): {}",
                    listed.join(", "),
                    bad[0].1
                ),
            ));
        } else {
            for (suffix, message, _) in bad {
                problems.push(Problem::new(format!("{path}{suffix}"), message));
            }
        }
        possible.insert(
            &p.name,
            (path, values.into_iter().map(|(_, v)| v).collect()),
        );
    }

    for (name, value) in fixed {
        let path = format!("fixed.{name}");
        if let Err(message) = parse_setting(name, value) {
            problems.push(Problem::new(path.clone(), message));
        }
        possible.insert(name, (path, vec![value.clone()]));
    }

    if let (Some((_, _)), Some((path, _))) =
        (possible.get("dense_units"), possible.get("top_dense_units"))
    {
        problems.push(Problem::new(
            path.clone(),
            "`top_dense_units` is an alias of `dense_units`; give only one of them",
        ));
    }

    // Pool size and stride only make sense together.
    let as_u32 = |v: &ParamValue| match parse_setting("pool_size", v) {
        Ok(Setting::PoolSize(n)) => Some(n),
        _ => None,
    };
    let pool_values = |name: &str, default: u32| -> (Option<String>, Vec<u32>) {
        match possible.get(name) {
            Some((path, values)) => (
                Some(path.clone()),
                values.iter().filter_map(as_u32).collect(),
            ),
            None => (None, vec![default]),
        }
    };
    let (size_path, sizes) = pool_values("pool_size", 1);
    let (stride_path, strides) = pool_values("pool_stride", 2);
    let blame = size_path.or(stride_path);
    if let Some(blame) = blame {
        let failing: Vec<String> = sizes
            .iter()
            .flat_map(|&s| strides.iter().map(move |&t| (s, t)))
            .filter_map(|(s, t)| pool_problem(s, t))
            .collect();
        if let Some(first) = failing.first() {
            let more = if failing.len() > 1 {
                format!(
                    " ({} unusable pool_size/pool_stride pairs in all)",
                    failing.len()
                )
            } else {
                String::new()
            };
            problems.push(Problem::new(blame, format!("{first}{more}")));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SpecFormat, parse_spec};

    fn params(pairs: &[(&str, ParamValue)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(x: &str) -> ParamValue {
        ParamValue::Str(x.into())
    }

    fn i(x: i64) -> ParamValue {
        ParamValue::Int(x)
    }

    fn problems_of(err: CoreError) -> Vec<Problem> {
        match err {
            CoreError::InvalidParams(p) => p,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn empty_params_give_the_baseline() {
        let cfg = CnnConfig::from_params(&Params::new()).unwrap();
        assert_eq!(cfg, CnnConfig::default());
        assert_eq!(cfg.effective_learning_rate(), 1e-3);
        assert_eq!(cfg.feature_size(1), 14);
        assert_eq!(cfg.feature_size(2), 7);
        assert_eq!(cfg.flat_features(), 64 * 7 * 7);
    }

    #[test]
    fn reads_every_parameter() {
        let p = params(&[
            ("conv_activation", s("leaky_relu")),
            ("optimizer", s("SGD")),
            ("learning_rate", ParamValue::Float(0.05)),
            ("momentum", ParamValue::Float(0.9)),
            ("conv1_filters", i(16)),
            ("conv2_filters", ParamValue::Float(48.0)),
            ("kernel_size", i(5)),
            ("pool_size", i(2)),
            ("pool_stride", i(2)),
            ("dense_layers", i(3)),
            ("top_dense_units", i(256)),
            ("dense_units_2", i(32)),
            ("dense_activation", s("gelu")),
            ("dropout", ParamValue::Float(0.25)),
            ("batch_size", i(64)),
            ("epochs", i(4)),
        ]);
        let cfg = CnnConfig::from_params(&p).unwrap();
        assert_eq!(cfg.conv_activation, Activation::LeakyRelu);
        assert_eq!(cfg.optimizer, CnnOptimizer::Sgd);
        assert_eq!(cfg.effective_learning_rate(), 0.05);
        assert_eq!(cfg.momentum, 0.9);
        assert_eq!((cfg.conv1_filters, cfg.conv2_filters), (16, 48));
        assert_eq!(cfg.kernel_size, 5);
        // Layer 2 (dense_units_1) falls back to the first layer's units.
        assert_eq!(cfg.dense_units, vec![256, 256, 32]);
        assert_eq!(cfg.dense_activation, Activation::Gelu);
        assert_eq!(cfg.dropout, 0.25);
        assert_eq!(cfg.batch_size, 64);
        assert_eq!(cfg.epochs, Some(4));
        assert_eq!(cfg.feature_size(2), 7);
        // The flat form reads back to the same config.
        assert_eq!(CnnConfig::from_params(&cfg.to_params()).unwrap(), cfg);
        assert_eq!(
            CnnConfig::from_params(&CnnConfig::default().to_params()).unwrap(),
            CnnConfig::default()
        );
    }

    #[test]
    fn default_learning_rates_follow_keras() {
        for (name, lr) in [("sgd", 1e-2), ("adam", 1e-3), ("rmsprop", 1e-3)] {
            let cfg = CnnConfig::from_params(&params(&[("optimizer", s(name))])).unwrap();
            assert_eq!(cfg.effective_learning_rate(), lr, "{name}");
        }
    }

    #[test]
    fn inactive_dense_units_are_ignored() {
        let p = params(&[("dense_layers", i(1)), ("dense_units_3", i(64))]);
        assert_eq!(CnnConfig::from_params(&p).unwrap().dense_units, vec![128]);
    }

    #[test]
    fn every_problem_is_reported() {
        let p = params(&[
            ("kernel_size", i(4)),
            ("conv1_filters", i(0)),
            ("batch_size", i(0)),
            ("dropout", ParamValue::Float(1.0)),
            ("optimizer", s("adagrad")),
            ("conv_activation", i(3)),
            ("learning_rate", ParamValue::Float(-1.0)),
            ("dense_units_9", i(3)),
            ("units", i(3)),
            ("conv2_filters", ParamValue::Float(2.5)),
        ]);
        let problems = problems_of(CnnConfig::from_params(&p).unwrap_err());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "batch_size",
                "conv1_filters",
                "conv2_filters",
                "conv_activation",
                "dense_units_9",
                "dropout",
                "kernel_size",
                "learning_rate",
                "optimizer",
                "units",
            ]
        );
        let unknown = problems.iter().find(|p| p.path == "units").unwrap();
        assert!(unknown.message.contains("supported parameters"));
        assert!(unknown.message.contains("kernel_size"));
        let kernel = problems.iter().find(|p| p.path == "kernel_size").unwrap();
        assert!(kernel.message.contains("odd"), "{}", kernel.message);
    }

    #[test]
    fn unusable_pooling_is_refused() {
        // Overlapping windows: no gradient in Candle.
        let p = params(&[("pool_size", i(3)), ("pool_stride", i(2))]);
        let problems = problems_of(CnnConfig::from_params(&p).unwrap_err());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "pool_size");
        // 28 -> 2 -> 0.
        let p = params(&[("pool_size", i(14)), ("pool_stride", i(14))]);
        let problems = problems_of(CnnConfig::from_params(&p).unwrap_err());
        assert!(problems[0].message.contains("nothing"), "{problems:?}");
        // Stride 28 with pool 1: 28 -> 1 -> 1 is tiny but trainable.
        let p = params(&[("pool_stride", i(28))]);
        assert_eq!(CnnConfig::from_params(&p).unwrap().flat_features(), 64);
        let p = params(&[("pool_size", i(2)), ("pool_stride", i(2))]);
        assert_eq!(CnnConfig::from_params(&p).unwrap().feature_size(2), 7);
    }

    #[test]
    fn alias_and_name_together_is_an_error() {
        let p = params(&[("dense_units", i(64)), ("top_dense_units", i(64))]);
        let problems = problems_of(CnnConfig::from_params(&p).unwrap_err());
        assert_eq!(problems[0].path, "top_dense_units");
    }

    fn space(yaml_params: &str, fixed: &str) -> (SearchSpace, Params) {
        let doc = format!(
            "version: 1\nname: t\nobjective: {{metric: val_accuracy, direction: maximize}}\n\
             trainer: {{kind: fashion-mnist-cnn}}\nbudget: {{max_trials: 4}}\n\
             parameters:\n{yaml_params}\nfixed: {fixed}\n"
        );
        let spec = parse_spec(&doc, SpecFormat::Yaml).unwrap();
        (spec.parameters, spec.fixed)
    }

    #[test]
    fn the_design_space_is_accepted() {
        let (sp, fixed) = space(
            "  conv_activation: {type: categorical, values: [relu, tanh, leaky_relu]}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, log: true}
  conv1_filters: {type: int, min: 16, max: 128, step: 16}
  conv2_filters: {type: int, min: 32, max: 256, step: 32}
  kernel_size: {type: categorical, values: [3, 5]}
  dense_layers: {type: int, min: 1, max: 3}
  dense_units_1: {type: int, min: 32, max: 256, step: 32, when: {dense_layers: {min: 2}}}
  dense_activation: {type: categorical, values: [relu, tanh, leaky_relu]}
  batch_size: {type: int, min: 32, max: 256, step: 32}",
            "{pool_size: 1, pool_stride: 2}",
        );
        assert_eq!(check_space(&sp, &fixed), vec![]);
    }

    #[test]
    fn unusable_spaces_are_refused_with_paths() {
        let (sp, fixed) = space(
            "  kernel_size: {type: categorical, values: [3, 4]}
  conv1_filters: {type: int, min: 0, max: 64}
  kernel_size2: {type: categorical, values: [3]}
  dropout: {type: float, min: 0.0, max: 1.0}
  conv2_filters: {type: float, min: 16, max: 64}
  pool_stride: {type: int, min: 2, max: 3}",
            "{pool_size: 2, batch_size: 0}",
        );
        let problems = check_space(&sp, &fixed);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "parameters.kernel_size.values[1]",
                "parameters.conv1_filters.min",
                "parameters.kernel_size2",
                "parameters.dropout.max",
                "parameters.conv2_filters.type",
                "fixed.batch_size",
                // pool_size 2 with stride 3 overlaps nothing but leaves gaps.
                "fixed.pool_size",
            ],
            "{problems:#?}"
        );
        assert!(problems[2].message.contains("supported parameters"));
    }

    #[test]
    fn ranges_are_checked_over_their_grid() {
        let (sp, fixed) = space("  kernel_size: {type: int, min: 1, max: 7}", "{}");
        let problems = check_space(&sp, &fixed);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "parameters.kernel_size");
        assert!(
            problems[0].message.contains("2, 4, 6"),
            "{}",
            problems[0].message
        );
        let (sp, fixed) = space("  kernel_size: {type: int, min: 1, max: 7, step: 2}", "{}");
        assert_eq!(check_space(&sp, &fixed), vec![]);
    }
}
