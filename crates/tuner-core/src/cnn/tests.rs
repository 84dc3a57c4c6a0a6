//! Tests of the CNN config reader and of `check_space`.

use super::*;
use crate::{SearchSpace, SpecFormat, parse_spec};

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
