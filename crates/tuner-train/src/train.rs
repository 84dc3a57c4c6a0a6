//! The training loop, evaluation, saving and the throughput benchmark.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Instant,
};

use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tuner_core::{Params, cnn::CnnConfig};

use crate::{
    TrainError,
    data::{FashionMnist, PIXELS, Split},
    fast::{self, FastOptimizer, Workspace},
    metrics::{ConfusionMatrix, MetricsAccumulator, SplitMetrics},
    model::{DTYPE, Model, STREAM_SHUFFLE},
    optim::{Optimizer, Rule},
};

/// How to run one training: everything that is not the model's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Epochs to run (the caller decides between the config's `epochs`, the study's
    /// and the command line's).
    pub epochs: u32,
    /// Seeds the initial weights, the per-epoch shuffles and the dropout masks.
    pub seed: u64,
    /// Fraction of the training set held out for validation: the *last* part, as Keras'
    /// `validation_split` does. 0 disables validation.
    pub validation_split: f64,
    /// Train on only the first N images of the training part (quick studies).
    pub train_limit: Option<usize>,
    /// Validate on only the first N images of the validation part.
    pub val_limit: Option<usize>,
    /// Batch size of evaluation passes (memory only; results do not depend on it).
    pub eval_batch_size: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            seed: 0,
            validation_split: 0.2,
            train_limit: None,
            val_limit: None,
            eval_batch_size: 1000,
        }
    }
}

/// What an observer wants after a batch or an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochControl {
    Continue,
    /// Stop training now (pruned by the server, Ctrl-C, ...). The outcome keeps the
    /// completed epochs.
    Stop,
}

/// Progress within an epoch, after each training batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchProgress {
    /// 1-based.
    pub epoch: u32,
    pub epochs: u32,
    /// 1-based.
    pub batch: usize,
    pub batches: usize,
    /// Images trained on so far in this epoch.
    pub images: usize,
    /// Running mean loss and accuracy of this epoch.
    pub loss: f64,
    pub accuracy: f64,
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    /// Running metrics over the epoch's training batches (Keras' train metrics).
    pub train: SplitMetrics,
    /// Metrics of the model at the end of the epoch on the validation split.
    pub val: Option<SplitMetrics>,
    pub train_seconds: f64,
    pub val_seconds: f64,
    /// Training images per second of this epoch (training passes only).
    pub images_per_second: f64,
}

impl EpochMetrics {
    /// The metrics under the names the service stores: `loss, accuracy, precision,
    /// recall, auc` and, with validation, `val_loss, val_accuracy, val_precision,
    /// val_recall, val_auc`.
    pub fn named(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut put = |prefix: &str, m: &SplitMetrics| {
            for (name, value) in [
                ("loss", m.loss),
                ("accuracy", m.accuracy),
                ("precision", m.precision),
                ("recall", m.recall),
                ("auc", m.auc),
            ] {
                out.insert(format!("{prefix}{name}"), value);
            }
        };
        put("", &self.train);
        if let Some(val) = &self.val {
            put("val_", val);
        }
        out
    }
}

/// Receives progress during [`train`]. A closure `FnMut(&EpochMetrics) -> EpochControl`
/// is an observer that ignores batches.
pub trait TrainObserver {
    /// After every training batch; cheap to call. Return `Stop` to abandon the epoch.
    fn on_batch(&mut self, _progress: &BatchProgress) -> EpochControl {
        EpochControl::Continue
    }

    /// After every epoch, with its train and validation metrics.
    fn on_epoch(&mut self, metrics: &EpochMetrics) -> EpochControl;
}

impl<F: FnMut(&EpochMetrics) -> EpochControl> TrainObserver for F {
    fn on_epoch(&mut self, metrics: &EpochMetrics) -> EpochControl {
        self(metrics)
    }
}

/// The result of [`train`].
pub struct TrainOutcome {
    /// Every completed epoch, in order.
    pub history: Vec<EpochMetrics>,
    /// The observer stopped training before the last epoch.
    pub stopped_early: bool,
    /// Confusion matrix of the final model on the validation split; `None` without
    /// validation or when training stopped in the middle of an epoch.
    pub confusion: Option<ConfusionMatrix>,
    /// Images in the training and validation parts actually used.
    pub train_images: usize,
    pub val_images: usize,
    pub model: TrainedModel,
}

impl TrainOutcome {
    /// The last completed epoch's named metrics (see [`EpochMetrics::named`]).
    pub fn final_metrics(&self) -> Option<BTreeMap<String, f64>> {
        self.history.last().map(EpochMetrics::named)
    }
}

/// A model with its parameters and the input standardization it was trained with.
pub struct TrainedModel {
    pub config: CnnConfig,
    /// Mean and std of `x / 255` used to standardize inputs.
    pub pixel_mean: f64,
    pub pixel_std: f64,
    model: Model,
    varmap: VarMap,
}

/// Evaluation of a model on one split.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub metrics: SplitMetrics,
    pub confusion: ConfusionMatrix,
    pub images: usize,
}

/// Names of the standardization statistics inside the safetensors file.
const MEAN_TENSOR: &str = "input.pixel_mean";
const STD_TENSOR: &str = "input.pixel_std";

impl TrainedModel {
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Where [`TrainedModel::save`] puts the config for `weights`
    /// (`model.safetensors` -> `model.json`).
    pub fn config_path(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }

    /// Writes the weights (and the input statistics) as safetensors to `weights`, and
    /// the config as a flat JSON parameter map beside it (the format `tuner-cli train
    /// --config` reads). Returns the config's path.
    pub fn save(&self, weights: &Path) -> Result<PathBuf, TrainError> {
        let mut tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        let dev = Device::Cpu;
        tensors.insert(
            MEAN_TENSOR.into(),
            Tensor::new(&[self.pixel_mean as f32], &dev)?,
        );
        tensors.insert(
            STD_TENSOR.into(),
            Tensor::new(&[self.pixel_std as f32], &dev)?,
        );
        candle_core::safetensors::save(&tensors, weights)?;
        let config_path = Self::config_path(weights);
        let json = serde_json::to_string_pretty(&self.config.to_params())
            .expect("params serialize to JSON");
        std::fs::write(&config_path, json + "\n").map_err(|source| TrainError::Io {
            path: config_path.clone(),
            source,
        })?;
        Ok(config_path)
    }

    /// Reads what [`TrainedModel::save`] wrote.
    pub fn load(weights: &Path) -> Result<TrainedModel, TrainError> {
        let config_path = Self::config_path(weights);
        let text = std::fs::read_to_string(&config_path).map_err(|source| TrainError::Io {
            path: config_path.clone(),
            source,
        })?;
        let params: Params = serde_json::from_str(&text).map_err(|e| {
            TrainError::InvalidOptions(format!(
                "{}: not a flat JSON parameter map: {e}",
                config_path.display()
            ))
        })?;
        let config = CnnConfig::from_params(&params)?;
        let dev = Device::Cpu;
        let mut tensors = candle_core::safetensors::load(weights, &dev)?;
        let scalar = |t: Option<Tensor>, name: &str| -> Result<f64, TrainError> {
            let t = t.ok_or_else(|| {
                TrainError::InvalidOptions(format!("{}: no tensor {name}", weights.display()))
            })?;
            Ok(f64::from(t.flatten_all()?.to_vec1::<f32>()?[0]))
        };
        let pixel_mean = scalar(tensors.remove(MEAN_TENSOR), MEAN_TENSOR)?;
        let pixel_std = scalar(tensors.remove(STD_TENSOR), STD_TENSOR)?;
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh var map");
            for (name, tensor) in tensors {
                data.insert(name, Var::from_tensor(&tensor)?);
            }
        }
        let stored = varmap.all_vars().len();
        let model = Model::new(&config, VarBuilder::from_varmap(&varmap, DTYPE, &dev))?;
        // `VarBuilder::from_varmap` creates the parameters a file lacks (as zeros), and
        // checks the shapes of those it has: a grown map means a file of another model.
        if varmap.all_vars().len() != stored {
            return Err(TrainError::InvalidOptions(format!(
                "{} lacks parameters of the model described by {}",
                weights.display(),
                config_path.display()
            )));
        }
        Ok(TrainedModel {
            config,
            pixel_mean,
            pixel_std,
            model,
            varmap,
        })
    }
}

/// Maps raw pixel bytes to standardized inputs `(x / 255 - mean) / std`.
struct Standardizer {
    table: [f32; 256],
}

impl Standardizer {
    fn new(mean: f64, std: f64) -> Self {
        let std = if std > 0.0 { std } else { 1.0 };
        Self {
            table: std::array::from_fn(|x| ((x as f64 / 255.0 - mean) / std) as f32),
        }
    }

    /// Images `indices` of `split` as a `[b, 28, 28, 1]` tensor and their labels.
    fn batch(&self, split: &Split, indices: &[usize]) -> candle_core::Result<(Tensor, Vec<u8>)> {
        let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend(split.image(i).iter().map(|&x| self.table[x as usize]));
            labels.push(split.labels[i]);
        }
        let x = Tensor::from_vec(pixels, (indices.len(), 28, 28, 1), &Device::Cpu)?;
        Ok((x, labels))
    }
}

/// Model, parameters and optimizer of one training run.
struct Session {
    model: Model,
    varmap: VarMap,
    engine: Engine,
    standardizer: Standardizer,
}

/// How a session computes its steps.
enum Engine {
    /// The hand-written forward, backward and update of [`fast`] (every valid config:
    /// folded subsampling and max-pooling alike).
    Fast {
        params: Vec<Tensor>,
        optimizer: FastOptimizer,
        workspace: Workspace,
    },
    /// Candle's ops and autograd: the reference path, for configs the fast path does
    /// not take (none of those `CnnConfig::from_params` accepts today).
    Candle { optimizer: Optimizer },
}

impl Session {
    fn new(cfg: &CnnConfig, data: &FashionMnist, seed: u64) -> Result<Session, TrainError> {
        // Re-check a config that may have been built by hand rather than parsed.
        CnnConfig::from_params(&cfg.to_params())?;
        let dev = Device::Cpu;
        let varmap = Model::init_varmap(cfg, seed, &dev)?;
        let model = Model::new(cfg, VarBuilder::from_varmap(&varmap, DTYPE, &dev))?;
        model.set_dropout_seed(seed);
        let rule = Rule::from_config(cfg);
        let engine = if fast::supports(cfg) {
            let params = fast::parameters(&model);
            let optimizer = FastOptimizer::new(rule, &params);
            Engine::Fast {
                params,
                optimizer,
                workspace: Workspace::default(),
            }
        } else {
            let mut vars: Vec<(String, Var)> = varmap
                .data()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            let optimizer = Optimizer::new(rule, vars.into_iter().map(|(_, v)| v).collect())?;
            Engine::Candle { optimizer }
        };
        Ok(Session {
            model,
            varmap,
            engine,
            standardizer: Standardizer::new(data.pixel_mean, data.pixel_std),
        })
    }

    /// One optimizer step on `indices` of `split`; adds the batch's (pre-step) outputs
    /// to `metrics` and returns the batch's mean loss.
    fn step(
        &mut self,
        split: &Split,
        indices: &[usize],
        metrics: &mut MetricsAccumulator,
    ) -> Result<f64, TrainError> {
        let (x, labels) = self.standardizer.batch(split, indices)?;
        let logits: Vec<f32> = match &mut self.engine {
            Engine::Fast {
                params,
                optimizer,
                workspace,
            } => {
                let targets: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
                let trace = fast::forward(&self.model, &x, true, workspace)?;
                let logits = trace.logits.flatten_all()?.to_vec1()?;
                let grads = fast::backward(&self.model, &trace, &targets, workspace)?;
                drop(trace);
                optimizer.step(params, &grads)?;
                logits
            }
            Engine::Candle { optimizer } => {
                let targets =
                    Tensor::from_iter(labels.iter().map(|&l| u32::from(l)), &Device::Cpu)?;
                let logits = self.model.forward(&x, true)?; // [b, 10]
                let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
                let grads = loss.backward()?;
                optimizer.step(&grads)?;
                logits.flatten_all()?.to_vec1()?
            }
        };
        Ok(metrics.add_batch(&logits, &labels))
    }
}

/// Logits `[b, 10]` of `model` on `x` for evaluation: the fast path where it applies.
fn infer(model: &Model, x: &Tensor, workspace: &mut Workspace) -> candle_core::Result<Vec<f32>> {
    let logits = if fast::supports(model.config()) {
        fast::forward(model, x, false, workspace)?.logits
    } else {
        model.forward(x, false)?
    };
    logits.flatten_all()?.to_vec1()
}

fn evaluate_model(
    model: &Model,
    standardizer: &Standardizer,
    split: &Split,
    batch_size: usize,
) -> Result<Evaluation, TrainError> {
    let mut metrics = MetricsAccumulator::default();
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut workspace = Workspace::default();
    for chunk in indices.chunks(batch_size.max(1)) {
        let (x, labels) = standardizer.batch(split, chunk)?;
        let logits = infer(model, &x, &mut workspace)?;
        metrics.add_batch(&logits, &labels);
    }
    let images = metrics.samples();
    let (metrics, confusion) = metrics.finish();
    Ok(Evaluation {
        metrics,
        confusion,
        images,
    })
}

/// Evaluates a trained model on a split (e.g. `data.test`).
pub fn evaluate(
    model: &TrainedModel,
    split: &Split,
    batch_size: usize,
) -> Result<Evaluation, TrainError> {
    let standardizer = Standardizer::new(model.pixel_mean, model.pixel_std);
    evaluate_model(&model.model, &standardizer, split, batch_size)
}

/// Trains `cfg` on `data` per DESIGN §4, reporting to `observer`. Deterministic for the
/// same config, options and seed on the same machine. A non-finite loss is
/// [`TrainError::Diverged`], never a score.
pub fn train(
    cfg: &CnnConfig,
    data: &FashionMnist,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome, TrainError> {
    if !(0.0..1.0).contains(&opts.validation_split) {
        return Err(TrainError::InvalidOptions(format!(
            "validation_split {} must be in [0, 1)",
            opts.validation_split
        )));
    }
    if opts.epochs == 0 {
        return Err(TrainError::InvalidOptions(
            "epochs must be at least 1".into(),
        ));
    }
    // Keras: the first int(n * (1 - split)) images train, the rest validate, unshuffled.
    let n = data.train.len();
    let split_at = (n as f64 * (1.0 - opts.validation_split)) as usize;
    let train_end = opts.train_limit.map_or(split_at, |l| l.min(split_at));
    let val_end = opts.val_limit.map_or(n, |l| split_at + l.min(n - split_at));
    let train_split = data.train.slice(0..train_end);
    let val_split = data.train.slice(split_at..val_end);
    if train_split.is_empty() {
        return Err(TrainError::InvalidOptions(
            "no training images left after the validation split and limit".into(),
        ));
    }

    let mut session = Session::new(cfg, data, opts.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(STREAM_SHUFFLE);
    let batch_size = cfg.batch_size as usize;
    let batches = train_split.len().div_ceil(batch_size);
    let mut order: Vec<usize> = (0..train_split.len()).collect();
    let mut history = Vec::new();
    let mut stopped_early = false;
    let mut confusion = None;

    'epochs: for epoch in 1..=opts.epochs {
        shuffle(&mut order, &mut rng);
        let started = Instant::now();
        let mut metrics = MetricsAccumulator::default();
        confusion = None;
        for (b, chunk) in order.chunks(batch_size).enumerate() {
            let loss = session.step(&train_split, chunk, &mut metrics)?;
            if !loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: b + 1,
                    loss,
                });
            }
            let (loss, accuracy) = metrics.running();
            let progress = BatchProgress {
                epoch,
                epochs: opts.epochs,
                batch: b + 1,
                batches,
                images: metrics.samples(),
                loss,
                accuracy,
            };
            if observer.on_batch(&progress) == EpochControl::Stop {
                stopped_early = true;
                break 'epochs;
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let (train_metrics, _) = metrics.finish();

        let started = Instant::now();
        let val = if val_split.is_empty() {
            None
        } else {
            let eval = evaluate_model(
                &session.model,
                &session.standardizer,
                &val_split,
                opts.eval_batch_size,
            )?;
            if !eval.metrics.loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: batches,
                    loss: eval.metrics.loss,
                });
            }
            confusion = Some(eval.confusion);
            Some(eval.metrics)
        };
        let epoch_metrics = EpochMetrics {
            epoch,
            train: train_metrics,
            val,
            train_seconds,
            val_seconds: started.elapsed().as_secs_f64(),
            images_per_second: train_split.len() as f64 / train_seconds.max(1e-9),
        };
        let control = observer.on_epoch(&epoch_metrics);
        history.push(epoch_metrics);
        if control == EpochControl::Stop && epoch < opts.epochs {
            stopped_early = true;
            break;
        }
    }

    Ok(TrainOutcome {
        history,
        stopped_early,
        confusion,
        train_images: train_split.len(),
        val_images: val_split.len(),
        model: TrainedModel {
            config: cfg.clone(),
            pixel_mean: data.pixel_mean,
            pixel_std: data.pixel_std,
            model: session.model,
            varmap: session.varmap,
        },
    })
}

/// Fisher-Yates, so the permutation depends only on the RNG stream.
fn shuffle(order: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
}

/// Result of [`measure_throughput`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Throughput {
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub batch_size: usize,
    /// Threads Candle's CPU kernels use (`RAYON_NUM_THREADS` or the core count).
    pub threads: usize,
}

/// Training speed of `cfg`: `batches` timed optimizer steps (after 2 untimed warm-up
/// steps) on shuffled training images, including the per-batch metric bookkeeping the
/// real loop does.
pub fn measure_throughput(
    cfg: &CnnConfig,
    data: &FashionMnist,
    batches: usize,
    seed: u64,
) -> Result<Throughput, TrainError> {
    let mut session = Session::new(cfg, data, seed)?;
    let batch_size = cfg.batch_size as usize;
    if data.train.is_empty() {
        return Err(TrainError::InvalidOptions("no training images".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(STREAM_SHUFFLE);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    shuffle(&mut order, &mut rng);
    let batch_at = |k: usize| -> Vec<usize> {
        (0..batch_size)
            .map(|i| order[(k * batch_size + i) % order.len()])
            .collect()
    };
    let mut metrics = MetricsAccumulator::default();
    for k in 0..2 {
        session.step(&data.train, &batch_at(k), &mut metrics)?;
    }
    let started = Instant::now();
    for k in 0..batches {
        session.step(&data.train, &batch_at(k + 2), &mut metrics)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let images = batches * batch_size;
    Ok(Throughput {
        images,
        seconds,
        images_per_second: images as f64 / seconds.max(1e-9),
        batch_size,
        threads: candle_core::utils::get_num_threads(),
    })
}
