use std::path::PathBuf;

/// Everything that can go wrong loading data or training a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// No directory held the Fashion-MNIST files.
    #[error(
        "Fashion-MNIST not found; looked in: {}. Install it with `apt-get install \
         dataset-fashion-mnist` (Debian/Ubuntu, puts the files in /usr/share/datasets/fashion-mnist) \
         or set FASHION_MNIST_DIR to a directory holding train-images-idx3-ubyte[.gz], \
         train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
        searched.iter().map(|(dir, why)| format!("{} ({why})", dir.display())).collect::<Vec<_>>().join("; ")
    )]
    DataNotFound {
        /// Each directory tried, with what was missing there.
        searched: Vec<(PathBuf, String)>,
    },
    /// A data file exists but is not a valid Fashion-MNIST IDX file.
    #[error(
        "{}: not a valid Fashion-MNIST file: {reason}. Reinstall it (`apt-get install --reinstall \
         dataset-fashion-mnist`) or point FASHION_MNIST_DIR at good copies",
        path.display()
    )]
    DataCorrupt { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The trial's parameters do not make a trainable model.
    #[error(transparent)]
    Config(#[from] tuner_core::CoreError),
    /// Options that make no sense (validation split of 1, empty training set, ...).
    #[error("invalid training options: {0}")]
    InvalidOptions(String),
    /// The loss became NaN or infinite: the trial failed, it must never be scored.
    #[error("training diverged in epoch {epoch}, batch {batch}: loss is {loss}")]
    Diverged { epoch: u32, batch: usize, loss: f64 },
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// Whether the fault is the machine's (data missing or unreadable, memory exhausted)
    /// rather than the configuration's: another machine could train the same config.
    pub fn is_environment(&self) -> bool {
        match self {
            TrainError::DataNotFound { .. }
            | TrainError::DataCorrupt { .. }
            | TrainError::Io { .. } => true,
            TrainError::Candle(e) => {
                let text = e.to_string().to_ascii_lowercase();
                text.contains("out of memory") || text.contains("memory allocation")
            }
            TrainError::Config(_) | TrainError::InvalidOptions(_) | TrainError::Diverged { .. } => {
                false
            }
        }
    }
}
