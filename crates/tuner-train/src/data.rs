//! Fashion-MNIST from local IDX files (gzipped or raw). Never downloads anything (the
//! CLI fetches missing files into a folder this then reads).

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use crate::TrainError;

/// Class names, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Pixels per image (28 x 28).
pub const PIXELS: usize = 28 * 28;

/// The standard directory of Debian/Ubuntu's `dataset-fashion-mnist` package.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable naming a directory with the files.
pub const DIR_ENV: &str = "FASHION_MNIST_DIR";

const IMAGES_MAGIC: u32 = 0x0000_0803; // unsigned bytes, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // unsigned bytes, 1 dimension

/// One split (train or test): images as raw bytes, row-major, `PIXELS` per image.
#[derive(Debug, Clone)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Images `range` as a new split (used for the validation split and limits).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Split {
        Split {
            images: self.images[range.start * PIXELS..range.end * PIXELS].to_vec(),
            labels: self.labels[range].to_vec(),
        }
    }
}

/// The whole data set plus the standardization statistics of its training images.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    pub train: Split,
    pub test: Split,
    /// Mean of `x / 255` over every training image (the model's input standardization,
    /// computed once over all 60k like the student's notebook, before the validation split).
    pub pixel_mean: f64,
    /// Standard deviation of `x / 255` over every training image.
    pub pixel_std: f64,
    /// Where the files were read from.
    pub dir: PathBuf,
}

/// What `tuner-cli data` prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DataSummary {
    pub dir: PathBuf,
    pub train_images: usize,
    pub test_images: usize,
    /// Images per class in the training split.
    pub train_per_class: [usize; 10],
    /// Images per class in the test split.
    pub test_per_class: [usize; 10],
    /// Mean and std of `x / 255` over the training images.
    pub pixel_mean: f64,
    pub pixel_std: f64,
}

impl DataSummary {
    /// Images per class over train + test (7,000 each for the real data set).
    pub fn total_per_class(&self) -> [usize; 10] {
        std::array::from_fn(|c| self.train_per_class[c] + self.test_per_class[c])
    }
}

impl FashionMnist {
    /// Loads from `dir` if given, else from `$FASHION_MNIST_DIR` if set, and only there:
    /// a folder the user named that lacks the files is an error, not a cue to use other
    /// data. With neither, from the first of `/usr/share/datasets/fashion-mnist` and
    /// `./data` that holds all four files.
    pub fn load(dir: Option<&Path>) -> Result<FashionMnist, TrainError> {
        if let Some(dir) = dir {
            return Self::load_from_first(&[dir.to_path_buf()]);
        }
        if let Some(env) = std::env::var_os(DIR_ENV).filter(|v| !v.is_empty()) {
            return Self::load_from_first(&[PathBuf::from(env)]).map_err(|e| match e {
                TrainError::DataNotFound { searched } => TrainError::DataNotFound {
                    searched: searched
                        .into_iter()
                        .map(|(dir, why)| (dir, format!("{why}; named by {DIR_ENV}, the only place looked in when it is set")))
                        .collect(),
                },
                other => other,
            });
        }
        Self::load_from_first(&[PathBuf::from(SYSTEM_DIR), PathBuf::from("data")])
    }

    /// Loads from the first directory of `places` that holds all four files.
    pub fn load_from_first(places: &[PathBuf]) -> Result<FashionMnist, TrainError> {
        let mut searched = Vec::new();
        for dir in places {
            let found: Vec<Result<PathBuf, String>> = FILES.iter().map(|f| find(dir, f)).collect();
            let missing: Vec<String> = found.iter().filter_map(|r| r.clone().err()).collect();
            if missing.is_empty() {
                let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
                return Self::load_files(dir, &paths[0], &paths[1], &paths[2], &paths[3]);
            }
            let why = if !dir.is_dir() {
                "no such directory".to_owned()
            } else {
                format!("missing {}", missing.join(", "))
            };
            searched.push((dir.clone(), why));
        }
        Err(TrainError::DataNotFound { searched })
    }

    fn load_files(
        dir: &Path,
        train_images: &Path,
        train_labels: &Path,
        test_images: &Path,
        test_labels: &Path,
    ) -> Result<FashionMnist, TrainError> {
        let train = read_split(train_images, train_labels)?;
        let test = read_split(test_images, test_labels)?;
        if train.is_empty() {
            return Err(TrainError::DataCorrupt {
                path: train_images.to_path_buf(),
                reason: "holds no images".into(),
            });
        }
        let (pixel_mean, pixel_std) = pixel_stats(&train.images);
        Ok(FashionMnist {
            train,
            test,
            pixel_mean,
            pixel_std,
            dir: dir.to_path_buf(),
        })
    }

    /// Counts per split and class, and the pixel statistics.
    pub fn summary(&self) -> DataSummary {
        let count = |labels: &[u8]| {
            let mut per = [0usize; 10];
            for &l in labels {
                per[l as usize] += 1;
            }
            per
        };
        DataSummary {
            dir: self.dir.clone(),
            train_images: self.train.len(),
            test_images: self.test.len(),
            train_per_class: count(&self.train.labels),
            test_per_class: count(&self.test.labels),
            pixel_mean: self.pixel_mean,
            pixel_std: self.pixel_std,
        }
    }

    /// A data set made from given splits (tests, synthetic benchmarks).
    pub fn from_splits(train: Split, test: Split) -> FashionMnist {
        let (pixel_mean, pixel_std) = pixel_stats(&train.images);
        FashionMnist {
            train,
            test,
            pixel_mean,
            pixel_std,
            dir: PathBuf::new(),
        }
    }
}

/// Base names of the four files, in the order train images, train labels, test
/// images, test labels.
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Whether `dir` holds all four files (gzipped or raw), without reading them.
pub fn holds_files(dir: &Path) -> bool {
    FILES.iter().all(|f| find(dir, f).is_ok())
}

/// `dir/name.gz` or `dir/name`, or the name that is missing.
fn find(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(format!("{name}[.gz]"))
}

/// Mean and std of `x / 255`, accumulated in integers so the result is exact and
/// independent of summation order.
fn pixel_stats(images: &[u8]) -> (f64, f64) {
    if images.is_empty() {
        return (0.0, 1.0);
    }
    let (sum, sum_sq) = images.iter().fold((0u64, 0u64), |(s, q), &x| {
        (s + u64::from(x), q + u64::from(x) * u64::from(x))
    });
    let n = images.len() as f64;
    let mean = sum as f64 / n;
    let var = (sum_sq as f64 / n - mean * mean).max(0.0);
    (mean / 255.0, var.sqrt() / 255.0)
}

fn read_split(images_path: &Path, labels_path: &Path) -> Result<Split, TrainError> {
    let images = read_idx(images_path, IMAGES_MAGIC)?;
    let labels = read_idx(labels_path, LABELS_MAGIC)?;
    let corrupt = |path: &Path, reason: String| TrainError::DataCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    if images.dims[1..] != [28, 28] {
        return Err(corrupt(
            images_path,
            format!("images are {:?}, expected N x 28 x 28", images.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(corrupt(
            labels_path,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l >= 10) {
        return Err(corrupt(
            labels_path,
            format!("label {bad} is not a class 0-9"),
        ));
    }
    Ok(Split {
        images: images.data,
        labels: labels.data,
    })
}

struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, gunzipping it if it starts with the gzip magic.
fn read_idx(path: &Path, magic: u32) -> Result<Idx, TrainError> {
    let corrupt = |reason: String| TrainError::DataCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| corrupt(format!("cannot gunzip: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 {
        return Err(corrupt(format!("only {} bytes", bytes.len())));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(corrupt(format!(
            "magic number {found:#010x}, expected {magic:#010x}"
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(corrupt("truncated header".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let body = bytes.len() - header;
    if expected != Some(body) {
        return Err(corrupt(format!(
            "header says {dims:?} ({} bytes of data) but the file holds {body} (truncated?)",
            expected.map_or("too many".to_owned(), |e| e.to_string())
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Writes a tiny valid data set (3 train, 2 test images); the train images file
    /// gzipped, the others raw.
    fn write_valid(dir: &Path) {
        let imgs =
            |n: u32, fill: u8| idx(IMAGES_MAGIC, &[n, 28, 28], &vec![fill; n as usize * PIXELS]);
        std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz(&imgs(3, 51))).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx(LABELS_MAGIC, &[3], &[0, 1, 9]),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), imgs(2, 0)).unwrap();
        std::fs::write(
            dir.join("t10k-labels-idx1-ubyte"),
            idx(LABELS_MAGIC, &[2], &[9, 9]),
        )
        .unwrap();
    }

    fn load_err(dir: &Path) -> String {
        FashionMnist::load_from_first(&[dir.to_path_buf()])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn loads_gzipped_and_raw_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_valid(tmp.path());
        let data = FashionMnist::load_from_first(&[tmp.path().to_path_buf()]).unwrap();
        assert_eq!(data.train.len(), 3);
        assert_eq!(data.test.len(), 2);
        assert_eq!(data.train.image(2)[0], 51);
        assert!((data.pixel_mean - 0.2).abs() < 1e-12);
        assert_eq!(data.pixel_std, 0.0);
        let s = data.summary();
        assert_eq!(s.train_per_class[9], 1);
        assert_eq!(s.total_per_class()[9], 3);
    }

    #[test]
    fn missing_files_name_every_place_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let nowhere = tmp.path().join("nowhere");
        let err = FashionMnist::load_from_first(&[tmp.path().to_path_buf(), nowhere.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(
            err.contains("missing train-images-idx3-ubyte[.gz]"),
            "{err}"
        );
        assert!(
            err.contains(&format!("{} (no such directory)", nowhere.display())),
            "{err}"
        );
        assert!(
            err.contains("apt-get install dataset-fashion-mnist"),
            "{err}"
        );
        assert!(err.contains("FASHION_MNIST_DIR"), "{err}");
    }

    #[test]
    fn wrong_magic_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_valid(tmp.path());
        // A labels file where an images file belongs.
        std::fs::write(
            tmp.path().join("t10k-images-idx3-ubyte"),
            idx(LABELS_MAGIC, &[2], &[1, 2]),
        )
        .unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
        assert!(
            err.contains("magic number 0x00000801, expected 0x00000803"),
            "{err}"
        );
    }

    #[test]
    fn truncated_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_valid(tmp.path());
        // Raw file cut short.
        let path = tmp.path().join("t10k-images-idx3-ubyte");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("truncated"), "{err}");

        // Gzip stream cut short.
        write_valid(tmp.path());
        let path = tmp.path().join("train-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");

        // Header only.
        std::fs::write(&path, [0u8, 0]).unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("only 2 bytes"), "{err}");
    }

    #[test]
    fn mismatched_counts_and_bad_labels_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_valid(tmp.path());
        std::fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            idx(LABELS_MAGIC, &[3], &[1, 2, 3]),
        )
        .unwrap();
        assert!(load_err(tmp.path()).contains("3 labels for 2 images"));
        std::fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            idx(LABELS_MAGIC, &[2], &[1, 12]),
        )
        .unwrap();
        assert!(load_err(tmp.path()).contains("label 12 is not a class"));
    }
}
