//! The fast path checked against Candle's autograd on the same model, and its parts
//! against their definitions.

use candle_core::{Device, Var};
use candle_nn::VarBuilder;
use tuner_core::cnn::Activation;

use super::cpu::PAR_MIN;
use super::update::update_par;
use super::*;
use crate::{model::DTYPE, optim::Rule};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap();
    let b = b.flatten_all().unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.flatten_all()
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The fast forward pass and gradients equal Candle's ops and autograd on the same
/// model, for the folded configs the fast path takes.
#[test]
fn matches_candle_autograd() -> Result<()> {
    let dev = Device::Cpu;
    let small = CnnConfig {
        conv1_filters: 6,
        conv2_filters: 8,
        dense_units: vec![12],
        ..CnnConfig::default()
    };
    let cfgs = [
        small.clone(),
        CnnConfig {
            kernel_size: 5,
            ..small.clone()
        },
        CnnConfig {
            kernel_size: 1,
            pool_stride: 3,
            conv_activation: Activation::Elu,
            dense_activation: Activation::Relu,
            ..small.clone()
        },
        CnnConfig {
            conv_activation: Activation::Gelu,
            dense_activation: Activation::LeakyRelu,
            dense_units: vec![12, 9],
            dropout: 0.4,
            ..small.clone()
        },
        CnnConfig {
            pool_size: 2,
            pool_stride: 2,
            conv_activation: Activation::Tanh,
            ..small.clone()
        },
        CnnConfig {
            kernel_size: 5,
            pool_size: 3,
            pool_stride: 3,
            dropout: 0.2,
            ..small.clone()
        },
        CnnConfig {
            kernel_size: 7,
            pool_stride: 1,
            conv_activation: Activation::Tanh,
            dense_activation: Activation::Gelu,
            ..small.clone()
        },
    ];
    for (i, cfg) in cfgs.into_iter().enumerate() {
        assert!(supports(&cfg));
        let vm = Model::init_varmap(&cfg, 11, &dev)?;
        let model = Model::new(&cfg, VarBuilder::from_varmap(&vm, DTYPE, &dev))?;
        // One batch large enough for the parallel chunking, small ones otherwise.
        let b = if i == 0 { 32 } else { 3 };
        let x = Tensor::randn(0f32, 1., (b, 28, 28, 1), &dev)?;
        let labels: Vec<u32> = (0..b as u32).map(|j| (7 * j + 3) % 10).collect();
        let mut ws = Workspace::default();
        for train in [false, true, true] {
            model.set_dropout_seed(5);
            let want = model.forward(&x, train)?;
            model.set_dropout_seed(5);
            let trace = forward(&model, &x, train, &mut ws)?;
            let d = max_diff(&trace.logits, &want);
            assert!(
                d < 1e-4 * max_abs(&want).max(1.0),
                "{cfg:?}: logits differ by {d}"
            );
            if !train {
                continue;
            }
            let targets = Tensor::new(labels.as_slice(), &dev)?;
            let grads = candle_nn::loss::cross_entropy(&want, &targets)?.backward()?;
            let ours = backward(&model, &trace, &labels, &mut ws)?;
            let params = parameters(&model);
            assert_eq!(ours.len(), params.len());
            for (i, (p, g)) in params.iter().zip(&ours).enumerate() {
                let reference = grads.get(p).expect("candle gradient");
                let scale = max_abs(reference).max(1e-3);
                let d = max_diff(g, reference);
                assert!(
                    d < 1e-3 * scale,
                    "{cfg:?}: gradient {i} differs by {d} (max {scale})"
                );
            }
        }
    }
    Ok(())
}

/// Col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>.
#[test]
fn col2im_is_the_adjoint_of_im2col() -> Result<()> {
    let dev = Device::Cpu;
    for (k, stride, h, w, c) in [(3, 2, 7, 6, 2), (5, 1, 5, 5, 1), (1, 3, 8, 8, 3)] {
        let g = ConvGeometry {
            b: 2,
            h,
            w,
            c,
            k,
            stride,
            pad: k / 2,
        };
        let x = Tensor::randn(0f32, 1., (2, h, w, c), &dev)?;
        // Twice: into fresh buffers, then into the reused ones.
        let (mut b1, mut b2) = (None, None);
        for _ in 0..2 {
            let cols = im2col(&x, &g, &mut b1)?;
            let r = Tensor::randn(0f32, 1., cols.shape(), &dev)?;
            let lhs = (&cols * &r)?.sum_all()?.to_scalar::<f32>()?;
            let rhs = (&x * col2im(&r, &g, &mut b2)?)?
                .sum_all()?
                .to_scalar::<f32>()?;
            assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
        }
        let cols = im2col(&x, &g, &mut None)?;
        // And im2col equals the reference op.
        let reference = x.apply_op1(crate::ops::Im2Col(g))?;
        assert_eq!(max_diff(&cols, &reference), 0.0);
    }
    Ok(())
}

/// The parallel update equals the sequential one, with and without slots.
#[test]
fn parallel_update_equals_sequential() {
    let n = 5 * PAR_MIN + 7;
    let w0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
    for cfg in [
        CnnConfig::default(),
        CnnConfig {
            optimizer: tuner_core::cnn::CnnOptimizer::Sgd,
            ..CnnConfig::default()
        },
        CnnConfig {
            optimizer: tuner_core::cnn::CnnOptimizer::Rmsprop,
            ..CnnConfig::default()
        },
    ] {
        let rule = Rule::from_config(&cfg);
        let (one, two) = rule.slots();
        let slot = |on: bool| if on { vec![0.0; n] } else { Vec::new() };
        let (mut w1, mut a1, mut b1) = (w0.clone(), slot(one), slot(two));
        let (mut w2, mut a2, mut b2) = (w0.clone(), slot(one), slot(two));
        for t in 1..=3 {
            rule.update(t, &mut w1, &g, &mut a1, &mut b1);
            update_par(rule, t, &mut w2, &g, &mut a2, &mut b2);
        }
        assert_eq!(w1, w2, "{rule:?}");
        assert_ne!(w1, w0);
    }
}

/// One fast optimizer step changes the model's own variables.
#[test]
fn optimizer_updates_the_model_in_place() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = CnnConfig {
        conv1_filters: 2,
        conv2_filters: 3,
        dense_units: vec![4],
        ..CnnConfig::default()
    };
    let vm = Model::init_varmap(&cfg, 1, &dev)?;
    let model = Model::new(&cfg, VarBuilder::from_varmap(&vm, DTYPE, &dev))?;
    let var: Var = vm.data().lock().unwrap()["dense1.kernel"].clone();
    let before = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    let params = parameters(&model);
    let mut opt = FastOptimizer::new(Rule::from_config(&cfg), &params);
    let x = Tensor::randn(0f32, 1., (2, 28, 28, 1), &dev)?;
    let mut ws = Workspace::default();
    let trace = forward(&model, &x, true, &mut ws)?;
    let grads = backward(&model, &trace, &[1, 2], &mut ws)?;
    opt.step(&params, &grads)?;
    let after = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    assert_ne!(before, after);
    Ok(())
}
