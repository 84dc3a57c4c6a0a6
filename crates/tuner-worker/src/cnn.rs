//! The built-in runner: the student's CNN family on Fashion-MNIST, via `tuner-train`.

use std::{
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Map, Value, json};
use tuner_api::LeasedTrial;
use tuner_core::{ParamValue, Params, cnn::CnnConfig};
use tuner_train::{
    BatchProgress, CLASS_NAMES, EpochMetrics, FashionMnist, TrainObserver, TrainOptions,
};

use crate::{EpochControl, RunOutcome, TrialRunner};

/// Epochs when neither the trial's config nor the study's trainer section says.
pub const DEFAULT_EPOCHS: u32 = 10;

/// Trains trials of `fashion-mnist-cnn` studies. The dataset is loaded once, on the
/// first trial, and shared by every later one.
pub struct CnnRunner {
    data_dir: Option<PathBuf>,
    data: OnceLock<Result<Arc<FashionMnist>, String>>,
}

/// Images the environment check trains on: enough for one batch of the default config.
const CHECK_IMAGES: usize = 64;

impl CnnRunner {
    /// `data_dir` overrides the usual search (`FASHION_MNIST_DIR`, the Debian
    /// package's folder, `./data`).
    pub fn new(data_dir: Option<PathBuf>) -> Self {
        Self {
            data_dir,
            data: OnceLock::new(),
        }
    }

    fn data(&self) -> Result<Arc<FashionMnist>, String> {
        self.data
            .get_or_init(|| {
                FashionMnist::load(self.data_dir.as_deref())
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// Training options from the trial's config and the study's `trainer` section.
pub fn train_options(trial: &LeasedTrial, config: &CnnConfig) -> TrainOptions {
    options_for(trial.number, &trial.config, &trial.trainer, config)
}

/// Training options of trial `number`, whose config is `params` (parsed: `config`), in a
/// study whose `trainer` section (as written) is `trainer`: what a worker trains it
/// with, and what an export must carry to retrain it exactly.
pub fn options_for(
    number: u64,
    params: &Params,
    trainer: &Value,
    config: &CnnConfig,
) -> TrainOptions {
    let epochs = config
        .epochs
        .or_else(|| {
            trainer
                .get("epochs")
                .and_then(Value::as_u64)
                .map(|e| e as u32)
        })
        .unwrap_or(DEFAULT_EPOCHS);
    let seed = match params.get("seed") {
        Some(ParamValue::Int(s)) => *s as u64,
        _ => number,
    };
    TrainOptions {
        epochs,
        seed,
        validation_split: trainer
            .get("validation_split")
            .and_then(Value::as_f64)
            .unwrap_or(0.2),
        train_limit: trainer
            .get("train_limit")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        val_limit: trainer
            .get("val_limit")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        ..TrainOptions::default()
    }
}

/// Epoch metrics as the server stores them.
pub fn epoch_map(m: &EpochMetrics) -> Map<String, Value> {
    let mut map: Map<String, Value> = m.named().into_iter().map(|(k, v)| (k, json!(v))).collect();
    map.insert("train_seconds".into(), json!(m.train_seconds));
    map.insert("images_per_second".into(), json!(m.images_per_second));
    map
}

struct Observer<'a> {
    on_epoch: &'a mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
    cancel: &'a AtomicBool,
}

impl TrainObserver for Observer<'_> {
    fn on_batch(&mut self, _: &BatchProgress) -> EpochControl {
        if self.cancel.load(Ordering::SeqCst) {
            EpochControl::Stop
        } else {
            EpochControl::Continue
        }
    }

    fn on_epoch(&mut self, metrics: &EpochMetrics) -> EpochControl {
        (self.on_epoch)(metrics.epoch, &epoch_map(metrics))
    }
}

impl TrialRunner for CnnRunner {
    fn trainer_kind(&self) -> &'static str {
        "fashion-mnist-cnn"
    }

    /// Loads the data set and trains the default config for one batch on it.
    fn check_environment(&self) -> Result<(), String> {
        let data = self.data()?;
        let options = TrainOptions {
            epochs: 1,
            train_limit: Some(CHECK_IMAGES),
            val_limit: Some(CHECK_IMAGES),
            ..TrainOptions::default()
        };
        let mut quiet = |_: &EpochMetrics| EpochControl::Continue;
        tuner_train::train(&CnnConfig::default(), &data, &options, &mut quiet)
            .map(|_| ())
            .map_err(|e| format!("the built-in trainer does not run here: {e}"))
    }

    fn run(
        &self,
        trial: &LeasedTrial,
        on_epoch: &mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
        cancel: &AtomicBool,
    ) -> RunOutcome {
        let config = match CnnConfig::from_params(&trial.config) {
            Ok(c) => c,
            Err(e) => return RunOutcome::Failed(format!("unusable config: {e}")),
        };
        let data = match self.data() {
            Ok(d) => d,
            Err(e) => return RunOutcome::WorkerFault(e),
        };
        let options = train_options(trial, &config);
        let mut observer = Observer { on_epoch, cancel };
        let outcome = match tuner_train::train(&config, &data, &options, &mut observer) {
            Ok(o) => o,
            Err(e) if e.is_environment() => return RunOutcome::WorkerFault(e.to_string()),
            Err(e) => return RunOutcome::Failed(e.to_string()),
        };
        if cancel.load(Ordering::SeqCst) {
            return RunOutcome::WorkerFault("interrupted".into());
        }
        let Some(last) = outcome.history.last() else {
            return RunOutcome::Failed("training stopped before the first epoch ended".into());
        };
        let mut metrics = epoch_map(last);
        metrics.insert("epochs".into(), json!(outcome.history.len()));
        metrics.insert("train_images".into(), json!(outcome.train_images));
        metrics.insert("val_images".into(), json!(outcome.val_images));
        if let Some(cm) = &outcome.confusion {
            metrics.insert("confusion_matrix".into(), json!(cm.to_rows()));
            metrics.insert("class_names".into(), json!(CLASS_NAMES));
        }
        RunOutcome::Completed(metrics)
    }
}
