//! `tuner-cli data`, `train` and `bench train`: the built-in trainer without a server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde_json::json;
use tuner_core::{ParamValue, Params, cnn::CnnConfig};
use tuner_train::{
    BatchProgress, CLASS_NAMES, ConfusionMatrix, EpochControl, EpochMetrics, FashionMnist,
    TrainObserver, TrainOptions,
};

use crate::read_doc;

pub fn data(dir: Option<&Path>, json: bool) -> Result<()> {
    let data = FashionMnist::load(dir)?;
    let s = data.summary();
    if json {
        return crate::output::print_json(&s);
    }
    println!("Fashion-MNIST from {}", s.dir.display());
    println!(
        "images: {} train, {} test ({} in all)",
        s.train_images,
        s.test_images,
        s.train_images + s.test_images
    );
    println!(
        "{:<12} {:>6} {:>6} {:>6}",
        "class", "train", "test", "total"
    );
    let total = s.total_per_class();
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        println!(
            "{name:<12} {:>6} {:>6} {:>6}",
            s.train_per_class[c], s.test_per_class[c], total[c]
        );
    }
    println!(
        "pixels (x / 255) over the training images: mean {:.4}, std {:.4}",
        s.pixel_mean, s.pixel_std
    );
    Ok(())
}

/// Keys of an exported config that are training options, not model parameters.
const TRAINER: &str = "trainer";
const SEED: &str = "seed";
const VALIDATION_SPLIT: &str = "validation_split";
const TRAIN_LIMIT: &str = "train_limit";
const VAL_LIMIT: &str = "val_limit";
/// Trainer kinds, as search spaces name them.
const BUILT_IN: &str = "fashion-mnist-cnn";
const EXTERNAL: &str = "external";

/// A trial's config with everything else `train` needs to retrain it exactly: its
/// trainer's kind, seed, epochs, validation split and limits, as its worker trained it
/// (`study` must carry its spec). Configs of studies for other trainers get only the
/// kind (so `train` can say why it cannot retrain them), unless a parameter of theirs is
/// named `trainer`.
pub fn reproducible_config(study: &tuner_api::Study, number: u64, mut config: Params) -> Params {
    let trainer = study
        .spec
        .as_ref()
        .and_then(|spec| spec.get("trainer"))
        .cloned()
        .unwrap_or_default();
    // A spec without a trainer is an external study (the search-space default).
    let kind = trainer
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(EXTERNAL)
        .to_owned();
    if kind == BUILT_IN
        && let Ok(cnn) = CnnConfig::from_params(&config)
    {
        add_training_options(&mut config, number, &trainer, &cnn);
    }
    if !config.contains_key(TRAINER) {
        config.insert(TRAINER.into(), ParamValue::Str(kind));
    }
    config
}

/// Adds the seed, epochs, validation split and limits trial `number` was trained with.
fn add_training_options(
    config: &mut Params,
    number: u64,
    trainer: &serde_json::Value,
    cnn: &CnnConfig,
) {
    let options = tuner_worker::options_for(number, config, trainer, cnn);
    let int = |n: u64| ParamValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    config.insert(SEED.into(), int(options.seed));
    config.insert("epochs".into(), int(options.epochs.into()));
    config.insert(
        VALIDATION_SPLIT.into(),
        ParamValue::Float(options.validation_split),
    );
    for (key, limit) in [
        (TRAIN_LIMIT, options.train_limit),
        (VAL_LIMIT, options.val_limit),
    ] {
        if let Some(n) = limit {
            config.insert(key.into(), int(n as u64));
        }
    }
}

/// The training options an exported config carries beside its parameters.
#[derive(Default)]
struct ExportedOptions {
    seed: Option<u64>,
    validation_split: Option<f64>,
    train_limit: Option<usize>,
    val_limit: Option<usize>,
}

/// Reads a flat YAML or JSON map of parameter → value (what `best` writes), with the
/// training options it may carry.
fn read_config(path: &Path) -> Result<(CnnConfig, ExportedOptions)> {
    let text = read_doc(path)?;
    let mut params: Params = serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "{}: expected a flat map of parameter name → value (as `tuner-cli best` writes)",
            path.display()
        )
    })?;
    let count = |key: &str, value: ParamValue| match value {
        ParamValue::Int(n) if n >= 0 => Ok(n as u64),
        other => bail!(
            "{}: `{key}` must be a whole number ≥ 0, not {other}",
            path.display()
        ),
    };
    match params.remove(TRAINER) {
        None => {}
        Some(ParamValue::Str(kind)) if kind == BUILT_IN => {}
        Some(ParamValue::Str(kind)) => bail!(
            "{}: this config comes from a study whose trainer is `{kind}`; `train` retrains \
             only configs of the built-in `{BUILT_IN}` trainer (run that study's own worker \
             with these parameters instead)",
            path.display()
        ),
        Some(other) => bail!(
            "{}: `{TRAINER}` must name a trainer kind (`{BUILT_IN}`), not {other}",
            path.display()
        ),
    }
    let mut options = ExportedOptions::default();
    if let Some(v) = params.remove(SEED) {
        options.seed = Some(count(SEED, v)?);
    }
    if let Some(v) = params.remove(TRAIN_LIMIT) {
        options.train_limit = Some(count(TRAIN_LIMIT, v)? as usize);
    }
    if let Some(v) = params.remove(VAL_LIMIT) {
        options.val_limit = Some(count(VAL_LIMIT, v)? as usize);
    }
    if let Some(v) = params.remove(VALIDATION_SPLIT) {
        options.validation_split = Some(match v {
            ParamValue::Float(f) => f,
            ParamValue::Int(n) => n as f64,
            other => bail!(
                "{}: `{VALIDATION_SPLIT}` must be a number, not {other}",
                path.display()
            ),
        });
    }
    let config = CnnConfig::from_params(&params).with_context(|| {
        format!(
            "{}: not a config the built-in `{BUILT_IN}` trainer can train (`train` retrains \
             only those; an `external` study's config belongs to its own worker)",
            path.display()
        )
    })?;
    Ok((config, options))
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Flat YAML or JSON map of parameter → value (default: the baseline model); what
    /// `best` exports also carries the trial's seed, epochs, validation split and limits,
    /// which this uses unless flags say otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Epochs (default: the config's `epochs`, else 10).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Seed of the initial weights, shuffles and dropout (default: the config's, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of the training images held out for validation, the last ones
    /// (default: the config's, else 0.2).
    #[arg(long)]
    pub validation_split: Option<f64>,
    /// Train on only the first N training images (default: the config's, else all).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validate on only the first N validation images (default: the config's, else all).
    #[arg(long)]
    pub val_limit: Option<usize>,
    /// Ignore the config's limits: train on every training image but the validation
    /// split, validate on all of it.
    #[arg(long, conflicts_with_all = ["train_limit", "val_limit"])]
    pub full_data: bool,
    /// End with one JSON line: val_accuracy, test_accuracy, test metrics, history.
    #[arg(long)]
    pub json: bool,
    /// Save the weights (safetensors) here, with the config beside them.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where to fetch Fashion-MNIST from when it is not installed (checked by SHA-256,
    /// cached in $XDG_CACHE_HOME/tuner/fashion-mnist).
    #[arg(long, env = "TUNER_DATA_MIRROR", default_value = crate::fetch::DEFAULT_MIRROR)]
    pub data_mirror: String,
}

/// A Keras-style log: a progress bar per epoch on a terminal, one line per epoch.
#[derive(Default)]
struct KerasLog {
    /// The running epoch's bar, made at its first batch.
    bar: Option<ProgressBar>,
}

impl TrainObserver for KerasLog {
    fn on_batch(&mut self, p: &BatchProgress) -> EpochControl {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = crate::progress::bar_with_status(p.batches as u64);
            bar.set_prefix(format!("Epoch {}/{}", p.epoch, p.epochs));
            bar
        });
        bar.set_position(p.batch as u64);
        bar.set_message(format!("loss: {:.4} - accuracy: {:.4}", p.loss, p.accuracy));
        EpochControl::Continue
    }

    fn on_epoch(&mut self, m: &EpochMetrics) -> EpochControl {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut line = format!(
            "Epoch {} - {:.1}s ({:.0} img/s) - loss: {:.4} - accuracy: {:.4} - precision: {:.4} - recall: {:.4} - auc: {:.4}",
            m.epoch,
            m.train_seconds,
            m.images_per_second,
            m.train.loss,
            m.train.accuracy,
            m.train.precision,
            m.train.recall,
            m.train.auc
        );
        if let Some(v) = &m.val {
            line.push_str(&format!(
                " - val_loss: {:.4} - val_accuracy: {:.4} - val_precision: {:.4} - val_recall: {:.4} - val_auc: {:.4}",
                v.loss, v.accuracy, v.precision, v.recall, v.auc
            ));
        }
        eprintln!("{line}");
        EpochControl::Continue
    }
}

fn print_confusion(cm: &ConfusionMatrix) {
    println!("confusion matrix (rows: true class, columns: predicted):");
    let short: Vec<String> = CLASS_NAMES
        .iter()
        .map(|n| n.chars().take(7).collect())
        .collect();
    print!("{:>12}", "");
    for s in &short {
        print!(" {s:>7}");
    }
    println!();
    for (name, row) in CLASS_NAMES.iter().zip(cm.to_rows()) {
        print!("{name:>12}");
        for v in row {
            print!(" {v:>7}");
        }
        println!();
    }
}

/// Fails now, not after the training, if `--save` cannot be written: the folder must
/// exist and take a file.
fn check_save_path(path: &std::path::Path) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "cannot save to {}: the folder {} does not exist (create it first)",
            path.display(),
            folder.display()
        );
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot save to {}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

pub fn train(args: TrainArgs) -> Result<()> {
    if let Some(path) = &args.save {
        check_save_path(path)?;
    }
    let (config, exported) = match &args.config {
        Some(path) => read_config(path)?,
        None => (CnnConfig::default(), ExportedOptions::default()),
    };
    let data = FashionMnist::load(args.data_dir.as_deref())?;
    let limit = |flag: Option<usize>, exported: Option<usize>| {
        if args.full_data {
            None
        } else {
            flag.or(exported)
        }
    };
    let options = TrainOptions {
        epochs: args
            .epochs
            .or(config.epochs)
            .unwrap_or(tuner_worker::DEFAULT_EPOCHS),
        seed: args.seed.or(exported.seed).unwrap_or(0),
        validation_split: args
            .validation_split
            .or(exported.validation_split)
            .unwrap_or(0.2),
        train_limit: limit(args.train_limit, exported.train_limit),
        val_limit: limit(args.val_limit, exported.val_limit),
        ..TrainOptions::default()
    };
    eprintln!(
        "training {} for {} epochs (seed {}) on {}",
        crate::output::params_text(&config.to_params()),
        options.epochs,
        options.seed,
        data.dir.display()
    );
    let mut log = KerasLog::default();
    let outcome = tuner_train::train(&config, &data, &options, &mut log)?;
    let test = tuner_train::evaluate(&outcome.model, &data.test, 1000)?;
    let last = outcome.history.last().context("no epoch finished")?;
    let val_accuracy = last.val.as_ref().map(|v| v.accuracy);
    if !args.json {
        let t = &test.metrics;
        println!(
            "test: loss {:.4} - accuracy {:.4} - precision {:.4} - recall {:.4} - auc {:.4} ({} images)",
            t.loss, t.accuracy, t.precision, t.recall, t.auc, test.images
        );
        print_confusion(&test.confusion);
    }
    if let Some(path) = &args.save {
        let config_path = outcome.model.save(path)?;
        eprintln!(
            "weights written to {}, config to {}",
            path.display(),
            config_path.display()
        );
    }
    if args.json {
        let history: Vec<_> = outcome.history.iter().map(EpochMetrics::named).collect();
        let summary = json!({
            "config": config.to_params(),
            "epochs": outcome.history.len(),
            "seed": options.seed,
            "val_accuracy": val_accuracy,
            "test_accuracy": test.metrics.accuracy,
            "test": test.metrics,
            "test_confusion_matrix": test.confusion.to_rows(),
            "class_names": CLASS_NAMES,
            "images_per_second": outcome.history.iter().map(|e| e.images_per_second).sum::<f64>() / outcome.history.len() as f64,
            "history": history,
        });
        println!("{summary}");
    }
    Ok(())
}

pub fn bench(
    config: Option<&Path>,
    batches: usize,
    batch_size: Option<u32>,
    data_dir: Option<&Path>,
) -> Result<()> {
    let mut config = match config {
        Some(path) => read_config(path)?.0,
        None => CnnConfig::default(),
    };
    if let Some(b) = batch_size {
        config.batch_size = b;
    }
    if batches == 0 {
        bail!("--batches must be at least 1");
    }
    let data = FashionMnist::load(data_dir)?;
    let t = tuner_train::measure_throughput(&config, &data, batches, 0)?;
    println!(
        "train throughput: {:.0} images/s ({} batches of {} in {:.2}s, {} threads) for {}",
        t.images_per_second,
        batches,
        t.batch_size,
        t.seconds,
        t.threads,
        crate::output::params_text(&config.to_params())
    );
    Ok(())
}
