//! Training on small slices of the real Fashion-MNIST (installed by `.ci/run`; see the
//! panic message of `data()` for how to get it locally).

use std::sync::OnceLock;

use tuner_core::cnn::{Activation, CnnConfig, CnnOptimizer};
use tuner_train::{
    BatchProgress, CLASS_NAMES, EpochControl, EpochMetrics, FashionMnist, TrainError,
    TrainObserver, TrainOptions, TrainedModel, evaluate, measure_throughput, train,
};

fn data() -> &'static FashionMnist {
    static DATA: OnceLock<FashionMnist> = OnceLock::new();
    DATA.get_or_init(|| match FashionMnist::load(None) {
        Ok(data) => data,
        Err(e) => panic!("these tests need the real Fashion-MNIST files (CI installs them): {e}"),
    })
}

fn quick(train_limit: usize, val_limit: usize, epochs: u32) -> TrainOptions {
    TrainOptions {
        epochs,
        seed: 0,
        train_limit: Some(train_limit),
        val_limit: Some(val_limit),
        ..TrainOptions::default()
    }
}

fn keep_going(_: &EpochMetrics) -> EpochControl {
    EpochControl::Continue
}

#[test]
fn summary_matches_the_published_data_set() {
    let s = data().summary();
    assert_eq!((s.train_images, s.test_images), (60_000, 10_000));
    assert_eq!(s.total_per_class(), [7_000; 10]);
    assert_eq!(s.train_per_class, [6_000; 10]);
    assert!((s.pixel_mean - 0.2860).abs() < 1e-3, "{}", s.pixel_mean);
    assert!((s.pixel_std - 0.3530).abs() < 1e-3, "{}", s.pixel_std);
    assert_eq!(CLASS_NAMES[9], "Ankle boot");
}

#[test]
fn baseline_learns_on_a_small_slice() {
    let mut epochs = Vec::new();
    let outcome = train(
        &CnnConfig::default(),
        data(),
        &quick(2_000, 1_000, 1),
        &mut |m: &EpochMetrics| {
            epochs.push(m.clone());
            EpochControl::Continue
        },
    )
    .unwrap();
    assert_eq!(outcome.train_images, 2_000);
    assert_eq!(outcome.val_images, 1_000);
    assert_eq!(epochs.len(), 1);
    let m = outcome.final_metrics().unwrap();
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "accuracy",
            "auc",
            "loss",
            "precision",
            "recall",
            "val_accuracy",
            "val_auc",
            "val_loss",
            "val_precision",
            "val_recall"
        ]
    );
    // Chance is 0.1.
    assert!(m["val_accuracy"] > 0.6, "{m:?}");
    assert!(m["val_auc"] > 0.9, "{m:?}");
    assert!(m["val_loss"] < 1.5, "{m:?}");
    assert!(m["val_precision"] > m["val_recall"] * 0.5, "{m:?}");
    let confusion = outcome.confusion.unwrap();
    assert_eq!(confusion.total(), 1_000);
    let diagonal: u64 = (0..10).map(|c| confusion.counts[c][c]).sum();
    assert!((diagonal as f64 / 1_000.0 - m["val_accuracy"]).abs() < 1e-12);
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    let cfg = CnnConfig {
        dropout: 0.3,
        conv1_filters: 8,
        conv2_filters: 16,
        dense_units: vec![32],
        ..CnnConfig::default()
    };
    let run = |seed: u64| {
        let opts = TrainOptions {
            seed,
            ..quick(600, 300, 2)
        };
        let outcome = train(&cfg, data(), &opts, &mut keep_going).unwrap();
        outcome
            .history
            .iter()
            .map(EpochMetrics::named)
            .collect::<Vec<_>>()
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

#[test]
fn every_optimizer_activation_and_pooling_trains() {
    let variants = [
        CnnConfig {
            optimizer: CnnOptimizer::Sgd,
            momentum: 0.9,
            conv_activation: Activation::Tanh,
            dense_activation: Activation::Relu,
            ..CnnConfig::default()
        },
        CnnConfig {
            optimizer: CnnOptimizer::Rmsprop,
            conv_activation: Activation::LeakyRelu,
            dense_activation: Activation::Gelu,
            pool_size: 2,
            pool_stride: 2,
            kernel_size: 5,
            ..CnnConfig::default()
        },
        CnnConfig {
            conv_activation: Activation::Elu,
            dense_units: vec![64, 32],
            dropout: 0.2,
            batch_size: 50,
            ..CnnConfig::default()
        },
    ];
    for cfg in variants {
        let outcome = train(&cfg, data(), &quick(1_000, 500, 1), &mut keep_going).unwrap();
        let m = outcome.final_metrics().unwrap();
        assert!(m["val_accuracy"] > 0.3, "{cfg:?}: {m:?}");
    }
}

struct StopAfter {
    batches: usize,
    seen: Vec<BatchProgress>,
}

impl TrainObserver for StopAfter {
    fn on_batch(&mut self, progress: &BatchProgress) -> EpochControl {
        self.seen.push(progress.clone());
        if self.seen.len() == self.batches {
            EpochControl::Stop
        } else {
            EpochControl::Continue
        }
    }

    fn on_epoch(&mut self, _: &EpochMetrics) -> EpochControl {
        EpochControl::Continue
    }
}

#[test]
fn observers_can_stop_between_batches_and_epochs() {
    let cfg = CnnConfig {
        batch_size: 100,
        ..CnnConfig::default()
    };
    // 300 images, batch 100: 3 batches per epoch; stop in the middle of epoch 2.
    let mut stop = StopAfter {
        batches: 5,
        seen: Vec::new(),
    };
    let outcome = train(&cfg, data(), &quick(300, 100, 3), &mut stop).unwrap();
    assert!(outcome.stopped_early);
    assert_eq!(outcome.history.len(), 1);
    assert!(outcome.confusion.is_none());
    let last = stop.seen.last().unwrap();
    assert_eq!((last.epoch, last.batch, last.batches), (2, 2, 3));
    assert_eq!(last.images, 200);

    let mut calls = 0;
    let outcome = train(
        &cfg,
        data(),
        &quick(300, 100, 3),
        &mut |_: &EpochMetrics| {
            calls += 1;
            EpochControl::Stop
        },
    )
    .unwrap();
    assert_eq!(calls, 1);
    assert!(outcome.stopped_early);
    assert_eq!(outcome.history.len(), 1);
    assert!(outcome.confusion.is_some());
}

#[test]
fn divergence_is_an_error_not_a_score() {
    let cfg = CnnConfig {
        optimizer: CnnOptimizer::Sgd,
        learning_rate: Some(10.0),
        momentum: 0.99,
        conv_activation: Activation::Relu,
        dense_activation: Activation::Relu,
        ..CnnConfig::default()
    };
    let err = train(&cfg, data(), &quick(1_000, 100, 3), &mut keep_going)
        .err()
        .expect("lr 10 with momentum 0.99 diverges");
    assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
}

#[test]
fn bad_options_and_configs_are_errors() {
    let opts = TrainOptions {
        validation_split: 1.0,
        ..quick(100, 100, 1)
    };
    assert!(matches!(
        train(&CnnConfig::default(), data(), &opts, &mut keep_going),
        Err(TrainError::InvalidOptions(_))
    ));
    let cfg = CnnConfig {
        kernel_size: 4,
        ..CnnConfig::default()
    };
    assert!(matches!(
        train(&cfg, data(), &quick(100, 100, 1), &mut keep_going),
        Err(TrainError::Config(_))
    ));
}

#[test]
fn save_load_and_evaluate_on_the_test_set() {
    let cfg = CnnConfig {
        conv1_filters: 8,
        conv2_filters: 16,
        dense_units: vec![32, 16],
        ..CnnConfig::default()
    };
    let outcome = train(&cfg, data(), &quick(500, 0, 1), &mut keep_going).unwrap();
    // No validation images: no validation metrics, no confusion matrix.
    assert!(outcome.history[0].val.is_none());
    assert!(
        !outcome
            .final_metrics()
            .unwrap()
            .contains_key("val_accuracy")
    );
    let test = tuner_train::Split {
        images: data().test.images[..1_000 * 784].to_vec(),
        labels: data().test.labels[..1_000].to_vec(),
    };
    let before = evaluate(&outcome.model, &test, 256).unwrap();
    assert_eq!(before.images, 1_000);
    assert_eq!(before.confusion.total(), 1_000);

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    let config_path = outcome.model.save(&weights).unwrap();
    assert_eq!(config_path, dir.path().join("model.json"));
    let loaded = TrainedModel::load(&weights).unwrap();
    assert_eq!(loaded.config, cfg);
    let after = evaluate(&loaded, &test, 1_000).unwrap();
    assert_eq!(before.metrics.accuracy, after.metrics.accuracy);
    assert!((before.metrics.loss - after.metrics.loss).abs() < 1e-5);
    assert_eq!(before.confusion, after.confusion);
}

#[test]
fn throughput_is_measured() {
    let cfg = CnnConfig {
        batch_size: 32,
        ..CnnConfig::default()
    };
    let t = measure_throughput(&cfg, data(), 3, 0).unwrap();
    assert_eq!(t.images, 96);
    assert!(t.images_per_second > 0.0);
}
