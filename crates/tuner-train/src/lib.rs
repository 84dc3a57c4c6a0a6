//! tuner-train: the built-in trainer of tuner.
//!
//! Owns the Fashion-MNIST loader (local IDX files, gzipped or raw), the student's CNN
//! family built with Candle from a [`tuner_core::cnn::CnnConfig`], Keras-faithful
//! optimizers (SGD with momentum, Adam and RMSprop with Keras' epsilon), the training
//! loop with Keras' validation split, Keras-semantics metrics (loss, accuracy, precision,
//! recall, ROC AUC) and the confusion matrix, test-set evaluation, safetensors saving and
//! a throughput benchmark. Training steps of the configs it covers run the
//! hand-written forward, backward and update of the private `fast` module (Candle's
//! autograd stays the reference and the path of the others).
//!
//! Must not depend on async runtimes, HTTP or SQL libraries, or any tuner crate other
//! than `tuner-core`: the worker and the CLI drive it through plain blocking calls
//! ([`train`], [`evaluate`], [`measure_throughput`]) and callbacks ([`TrainObserver`]).

pub mod data;
mod error;
mod fast;
pub mod metrics;
pub mod model;
mod ops;
pub mod optim;
mod train;

pub use data::{CLASS_NAMES, DataSummary, FashionMnist, Split};
pub use error::TrainError;
pub use metrics::{ConfusionMatrix, SplitMetrics};
pub use model::Model;
pub use train::{
    BatchProgress, EpochControl, EpochMetrics, Evaluation, Throughput, TrainObserver, TrainOptions,
    TrainOutcome, TrainedModel, evaluate, measure_throughput, train,
};
pub use tuner_core::cnn::CnnConfig;
