//! The configuration of the built-in trainer's model family (the student's Keras CNN on
//! Fashion-MNIST), read from a trial's flat parameter map.
//!
//! Pure data: this module knows which parameter names the `fashion-mnist-cnn` trainer
//! understands and which values it can train, so the server can refuse an unusable study
//! at creation ([`check_space`]) and the worker can turn a trial's params into a config
//! ([`CnnConfig::from_params`]) with the very same rules. Nothing here touches tensors.
//!
//! This module holds the config and its defaults; `setting` reads one parameter,
//! `space_check` checks a whole search space.

use std::{collections::BTreeMap, fmt};

use crate::{CoreError, ParamValue, Params, Problem};

mod setting;
mod space_check;
#[cfg(test)]
mod tests;

use setting::{Setting, parse_setting};
pub use space_check::check_space;

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
