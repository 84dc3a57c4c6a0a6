//! One parameter of the built-in trainer, read and checked on its own: its name, the
//! kind of value it takes and whether the given value is usable.

use super::{
    Activation, CnnOptimizer, IMAGE_SIZE, MAX_BATCH_SIZE, MAX_DENSE_LAYERS, MAX_DENSE_UNITS,
    MAX_EPOCHS, MAX_FILTERS, MAX_KERNEL_SIZE, SUPPORTED_PARAMS,
};
use crate::ParamValue;

/// One parameter, read and checked on its own.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Setting {
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
pub(super) enum ValueKind {
    Int,
    Float,
    Name,
}

/// The value kind of a supported parameter name; `None` if the name is unknown.
pub(super) fn value_kind(name: &str) -> Option<ValueKind> {
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

pub(super) fn unknown_message(name: &str) -> String {
    format!(
        "unknown parameter `{name}` for the fashion-mnist-cnn trainer; supported parameters: {}",
        SUPPORTED_PARAMS.join(", ")
    )
}

pub(super) fn parse_setting(name: &str, value: &ParamValue) -> Result<Setting, String> {
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
