//! The student's CNN family (DESIGN §4), channels-last like Keras.
//!
//! ```text
//! input  [b, 28, 28, 1]  standardized pixels
//! conv1  'same', conv_activation -> pooling          [b, h1, h1, conv1_filters]
//! conv2  'same', conv_activation -> pooling          [b, h2, h2, conv2_filters]
//! flatten                                           [b, h2 * h2 * conv2_filters]
//! dense_i  dense_activation (+ dropout)             [b, dense_units[i]]
//! output  logits (softmax lives in the loss/metrics) [b, 10]
//! ```
//!
//! Pooling with `pool_size` 1 and stride `s` (the original 1x1/stride-2 "pooling") is
//! subsampling, so a 'same' conv followed by it is exactly a stride-`s` conv with padding
//! `k / 2`: same outputs, same gradients, `s * s` times less work. That fold is what runs.
//! `pool_size == pool_stride > 1` is a real max-pool; other pairs are refused by
//! [`CnnConfig::from_params`].

use std::sync::Mutex;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tuner_core::cnn::{Activation, CnnConfig, NUM_CLASSES};

use crate::ops::{BiasAct, ConvGeometry, Im2Col, PointAct};

/// Keras `he_normal`: a normal truncated at 2 standard deviations, rescaled by this
/// constant (the std of a unit normal truncated at +-2) so the kernel keeps std
/// `sqrt(2 / fan_in)`.
const TRUNCATED_NORMAL_STD: f64 = 0.879_625_661_034_239_8;
/// Keras' negative slope for `activation="leaky_relu"`.
const LEAKY_RELU_SLOPE: f64 = 0.2;

pub(crate) struct Conv {
    /// `[k, k, c_in, c_out]` (Keras layout).
    pub kernel: Tensor,
    /// `[c_out]`.
    pub bias: Tensor,
    pub k: usize,
    pub c_in: usize,
    pub c_out: usize,
}

pub(crate) struct Dense {
    /// `[in, out]` (Keras layout).
    pub kernel: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Dense {
    /// `[b, in]` -> `[b, out]`, activated.
    fn forward(&self, x: &Tensor, activation: Option<Activation>) -> Result<Tensor> {
        bias_activate(&x.matmul(&self.kernel)?, &self.bias, activation)
    }
}

/// How a parameter is initialized.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Initializer {
    HeTruncatedNormal { fan_in: usize },
    GlorotUniform { fan_in: usize, fan_out: usize },
    Zeros,
}

/// A parameter of the model: its name in the var map and safetensors file, shape and
/// initializer.
struct ParamSpec {
    name: String,
    shape: Vec<usize>,
    init: Initializer,
}

pub struct Model {
    pub(crate) config: CnnConfig,
    pub(crate) conv1: Conv,
    pub(crate) conv2: Conv,
    pub(crate) hidden: Vec<Dense>,
    pub(crate) output: Dense,
    /// Draws dropout masks; seeded so that training is reproducible.
    dropout_rng: Mutex<ChaCha8Rng>,
}

impl Model {
    /// Builds the model, taking its parameters from `vb` (a [`VarMap`] for training,
    /// e.g. one from [`Model::init_varmap`], or a safetensors file). Parameters missing
    /// from a var map are created as zeros; use `init_varmap` for a trainable start.
    pub fn new(config: &CnnConfig, vb: VarBuilder) -> Result<Model> {
        let specs = Self::param_specs(config);
        let mut params = specs
            .iter()
            .map(|s| vb.get_with_hints(s.shape.as_slice(), &s.name, Init::Const(0.0)));
        let mut next = || params.next().expect("one spec per parameter");
        let k = config.kernel_size as usize;
        let (c1, c2) = (config.conv1_filters as usize, config.conv2_filters as usize);
        let conv1 = Conv {
            kernel: next()?,
            bias: next()?,
            k,
            c_in: 1,
            c_out: c1,
        };
        let conv2 = Conv {
            kernel: next()?,
            bias: next()?,
            k,
            c_in: c1,
            c_out: c2,
        };
        let mut hidden = Vec::new();
        for _ in &config.dense_units {
            hidden.push(Dense {
                kernel: next()?,
                bias: next()?,
            });
        }
        let output = Dense {
            kernel: next()?,
            bias: next()?,
        };
        Ok(Model {
            config: config.clone(),
            conv1,
            conv2,
            hidden,
            output,
            dropout_rng: Mutex::new(ChaCha8Rng::seed_from_u64(0)),
        })
    }

    /// A var map holding every parameter of `config`'s model, initialized as Keras does
    /// (truncated He-normal for hidden kernels, Glorot-uniform for the output kernel,
    /// zero biases) from `seed`, reproducibly.
    pub fn init_varmap(config: &CnnConfig, seed: u64, device: &Device) -> Result<VarMap> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_INIT);
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh var map");
            for spec in Self::param_specs(config) {
                let n: usize = spec.shape.iter().product();
                let values: Vec<f32> = match spec.init {
                    Initializer::Zeros => vec![0.0; n],
                    Initializer::HeTruncatedNormal { fan_in } => {
                        let std = (2.0 / fan_in as f64).sqrt() / TRUNCATED_NORMAL_STD;
                        (0..n)
                            .map(|_| (truncated_normal(&mut rng) * std) as f32)
                            .collect()
                    }
                    Initializer::GlorotUniform { fan_in, fan_out } => {
                        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                        (0..n)
                            .map(|_| rng.random_range(-limit..limit) as f32)
                            .collect()
                    }
                };
                let tensor = Tensor::from_vec(values, spec.shape.as_slice(), device)?;
                data.insert(spec.name, Var::from_tensor(&tensor)?);
            }
        }
        Ok(varmap)
    }

    /// Seeds the dropout masks of subsequent training forward passes.
    pub fn set_dropout_seed(&self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_DROPOUT);
        *self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner()) = rng;
    }

    pub fn config(&self) -> &CnnConfig {
        &self.config
    }

    /// The parameters in a fixed order (the order of [`Model::init_varmap`]'s draws).
    fn param_specs(config: &CnnConfig) -> Vec<ParamSpec> {
        let k = config.kernel_size as usize;
        let (c1, c2) = (config.conv1_filters as usize, config.conv2_filters as usize);
        let mut specs = Vec::new();
        let mut layer = |name: &str, shape: Vec<usize>, init: Initializer| {
            let out = *shape.last().expect("kernels have dims");
            specs.push(ParamSpec {
                name: format!("{name}.kernel"),
                shape,
                init,
            });
            specs.push(ParamSpec {
                name: format!("{name}.bias"),
                shape: vec![out],
                init: Initializer::Zeros,
            });
        };
        layer(
            "conv1",
            vec![k, k, 1, c1],
            Initializer::HeTruncatedNormal { fan_in: k * k },
        );
        layer(
            "conv2",
            vec![k, k, c1, c2],
            Initializer::HeTruncatedNormal { fan_in: k * k * c1 },
        );
        let mut fan_in = config.flat_features() as usize;
        for (i, &units) in config.dense_units.iter().enumerate() {
            layer(
                &format!("dense{}", i + 1),
                vec![fan_in, units as usize],
                Initializer::HeTruncatedNormal { fan_in },
            );
            fan_in = units as usize;
        }
        let classes = NUM_CLASSES as usize;
        layer(
            "output",
            vec![fan_in, classes],
            Initializer::GlorotUniform {
                fan_in,
                fan_out: classes,
            },
        );
        specs
    }

    /// `x`: `[b, 28, 28, 1]` standardized images. Returns logits `[b, 10]`. `train`
    /// turns dropout on.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.conv_block(x, &self.conv1)?; // [b, h1, h1, c1]
        let x = self.conv_block(&x, &self.conv2)?; // [b, h2, h2, c2]
        let mut x = x.flatten_from(1)?; // [b, h2 * h2 * c2]
        for dense in &self.hidden {
            x = dense.forward(&x, Some(self.config.dense_activation))?; // [b, units]
            if train && self.config.dropout > 0.0 {
                x = self.dropout(&x)?;
            }
        }
        self.output.forward(&x, None) // [b, 10]
    }

    /// `[b, h, w, c_in]` -> conv ('same') -> activation -> pooling -> `[b, h', w', c_out]`.
    fn conv_block(&self, x: &Tensor, conv: &Conv) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        debug_assert_eq!(c, conv.c_in);
        let (pool, stride) = (
            self.config.pool_size as usize,
            self.config.pool_stride as usize,
        );
        // Subsampling folds into the conv's stride (see the module docs).
        let conv_stride = if pool == 1 { stride } else { 1 };
        let g = ConvGeometry {
            b,
            h,
            w,
            c,
            k: conv.k,
            stride: conv_stride,
            pad: conv.k / 2,
        };
        let cols = x.contiguous()?.apply_op1(Im2Col(g))?; // [b * oh * ow, k * k * c_in]
        let kernel = conv
            .kernel
            .reshape((conv.k * conv.k * conv.c_in, conv.c_out))?;
        // [b * oh * ow, c_out]: the bias gradient is a sum over rows of this matrix.
        let y = bias_activate(
            &cols.matmul(&kernel)?,
            &conv.bias,
            Some(self.config.conv_activation),
        )?;
        let y = y.reshape((b, g.out_h(), g.out_w(), conv.c_out))?;
        if pool == 1 {
            return Ok(y);
        }
        // Real max-pooling, non-overlapping (pool == stride), as a max over the axes of
        // a reshape: Candle's `max_pool2d` scales its gradient by (maxima in the
        // window) / pool^2, i.e. a quarter of the true gradient for 2x2 windows.
        let (oh, ow) = (g.out_h(), g.out_w());
        let (ph, pw) = (oh / pool, ow / pool);
        y.narrow(1, 0, ph * pool)?
            .narrow(2, 0, pw * pool)?
            .contiguous()?
            .reshape((b, ph, pool, pw, pool, conv.c_out))?
            .max(4)? // [b, ph, pool, pw, c_out]
            .max(2)? // [b, ph, pw, c_out]
            .contiguous()
    }

    /// Inverted dropout (Keras): zero each unit with probability `p`, scale the rest by
    /// `1 / (1 - p)`.
    fn dropout(&self, x: &Tensor) -> Result<Tensor> {
        let mask = self.dropout_mask(x.elem_count());
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }

    /// The next `n` factors of inverted dropout: 0 with probability `p`, else
    /// `1 / (1 - p)`. Both forward paths draw their masks here, in the same order.
    pub(crate) fn dropout_mask(&self, n: usize) -> Vec<f32> {
        let p = self.config.dropout;
        let keep = (1.0 / (1.0 - p)) as f32;
        let mut rng = self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..n)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect()
    }
}

impl Module for Model {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Model::forward(self, xs, false)
    }
}

/// RNG streams derived from one trial seed, so that e.g. enabling dropout does not
/// change the initial weights or the batch order.
pub(crate) const STREAM_INIT: u64 = 1;
pub(crate) const STREAM_SHUFFLE: u64 = 2;
pub(crate) const STREAM_DROPOUT: u64 = 3;

/// `activation(x + bias)` for `x: [n, c]`, `bias: [c]` (`None`: no activation), fused
/// into one op except for gelu, whose derivative needs its input.
fn bias_activate(x: &Tensor, bias: &Tensor, activation: Option<Activation>) -> Result<Tensor> {
    match point_act(activation) {
        Some(point) => x.apply_op2(bias, BiasAct(point)),
        None => x.apply_op2(bias, BiasAct(PointAct::Identity))?.gelu_erf(),
    }
}

/// The activation as a [`PointAct`]; `None` for gelu, whose derivative needs its input.
pub(crate) fn point_act(activation: Option<Activation>) -> Option<PointAct> {
    Some(match activation {
        None => PointAct::Identity,
        Some(Activation::Relu) => PointAct::Relu,
        Some(Activation::Tanh) => PointAct::Tanh,
        Some(Activation::LeakyRelu) => PointAct::LeakyRelu(LEAKY_RELU_SLOPE as f32),
        Some(Activation::Elu) => PointAct::Elu,
        Some(Activation::Gelu) => return None,
    })
}

/// A standard normal draw truncated to [-2, 2] by rejection (Box-Muller).
fn truncated_normal(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let u1: f64 = rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        if u1 <= f64::MIN_POSITIVE {
            continue;
        }
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

/// The tensor type everything runs in.
pub(crate) const DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    use super::*;

    fn build(cfg: &CnnConfig, seed: u64) -> (Model, VarMap) {
        let dev = Device::Cpu;
        let vm = Model::init_varmap(cfg, seed, &dev).unwrap();
        let model = Model::new(cfg, VarBuilder::from_varmap(&vm, DTYPE, &dev)).unwrap();
        (model, vm)
    }

    #[test]
    fn shapes_of_the_baseline_and_variants() {
        let x = Tensor::zeros((3, 28, 28, 1), DTYPE, &Device::Cpu).unwrap();
        let mut cfgs = vec![CnnConfig::default()];
        cfgs.push(CnnConfig {
            kernel_size: 5,
            pool_size: 2,
            pool_stride: 2,
            dense_units: vec![16, 8],
            dropout: 0.5,
            conv_activation: Activation::Gelu,
            dense_activation: Activation::LeakyRelu,
            ..CnnConfig::default()
        });
        cfgs.push(CnnConfig {
            kernel_size: 1,
            pool_stride: 3,
            conv1_filters: 4,
            conv2_filters: 6,
            conv_activation: Activation::Elu,
            ..CnnConfig::default()
        });
        for cfg in cfgs {
            let (model, vm) = build(&cfg, 1);
            for train in [false, true] {
                let y = model.forward(&x, train).unwrap();
                assert_eq!(y.dims(), &[3, 10], "{cfg:?}");
            }
            let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
            let k = cfg.kernel_size as usize;
            let (c1, c2) = (cfg.conv1_filters as usize, cfg.conv2_filters as usize);
            let mut want = k * k * c1 + c1 + k * k * c1 * c2 + c2;
            let mut fan_in = cfg.flat_features() as usize;
            for &u in &cfg.dense_units {
                want += fan_in * u as usize + u as usize;
                fan_in = u as usize;
            }
            want += fan_in * 10 + 10;
            assert_eq!(params, want, "{cfg:?}");
        }
        // The baseline has the student's 421,642 parameters.
        let (_, vm) = build(&CnnConfig::default(), 0);
        let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(params, 320 + 18_496 + 401_536 + 1_290);
    }

    #[test]
    fn initializers_follow_keras() {
        let (_, vm) = build(&CnnConfig::default(), 7);
        let get = |name: &str| -> Vec<f32> {
            let data = vm.data().lock().unwrap();
            data[name]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let stats = |v: &[f32]| {
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
            (mean, var.sqrt(), max)
        };
        // He: std sqrt(2 / fan_in), cut at 2 / 0.8796 of it.
        let (mean, std, max) = stats(&get("dense1.kernel"));
        let want = (2.0f64 / 3136.0).sqrt();
        assert!(mean.abs() < 1e-3 * want.max(1e-3), "{mean}");
        assert!((std / want - 1.0).abs() < 0.01, "{std} vs {want}");
        assert!(max <= 2.0 * want / TRUNCATED_NORMAL_STD + 1e-6);
        // Glorot-uniform: |x| < sqrt(6 / (fan_in + fan_out)), std limit / sqrt(3).
        let (_, std, max) = stats(&get("output.kernel"));
        let limit = (6.0f64 / 138.0).sqrt();
        assert!(max < limit);
        assert!((std / (limit / 3f64.sqrt()) - 1.0).abs() < 0.05);
        assert!(get("conv2.bias").iter().all(|&b| b == 0.0));
        // Same seed, same weights; other seed, other weights.
        let (_, again) = build(&CnnConfig::default(), 7);
        let first = again.data().lock().unwrap()["conv1.kernel"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(first, get("conv1.kernel"));
        let (_, other) = build(&CnnConfig::default(), 8);
        let other = other.data().lock().unwrap()["conv1.kernel"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_ne!(other, first);
    }

    /// The folded stride-2 conv computes what the original 'same' conv + 1x1/stride-2
    /// pooling computes.
    #[test]
    fn folded_subsampling_equals_conv_then_subsample() {
        let cfg = CnnConfig::default();
        let (model, _) = build(&cfg, 3);
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 28, 28, 1), &dev).unwrap();
        let folded = model.conv_block(&x, &model.conv1).unwrap(); // [2, 14, 14, 32]
        // Reference: Candle's NCHW conv, stride 1, then every second pixel.
        let kernel_oihw = model.conv1.kernel.permute((3, 2, 0, 1)).unwrap();
        let full = x
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap()
            .conv2d(&kernel_oihw, 1, 1, 1, 1)
            .unwrap()
            .relu()
            .unwrap(); // [2, 32, 28, 28]
        let idx = Tensor::from_vec((0..14u32).map(|i| 2 * i).collect(), 14, &dev).unwrap();
        let sub = full
            .index_select(&idx, 2)
            .unwrap()
            .index_select(&idx, 3)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        let diff = (folded - sub)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
