//! Fashion-MNIST where it is not installed: the four files fetched once from a mirror,
//! checked against their SHA-256 and kept in a cache folder, as Keras'
//! `fashion_mnist.load_data()` does. An explicit folder (`--data-dir`,
//! `FASHION_MNIST_DIR`) or an installed copy (the Debian package, `./data`) is used
//! as it is and never replaced by a download.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tuner_train::data::{DIR_ENV, SYSTEM_DIR, holds_files};

/// Where the files come from unless `--data-mirror` / `TUNER_DATA_MIRROR` says
/// otherwise: the dataset's own mirror, the one torchvision uses. Plain HTTP, as that
/// endpoint serves; every file is checked against its SHA-256 below.
pub const DEFAULT_MIRROR: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// The four files and the SHA-256 of their *uncompressed* content. The hash is of the
/// IDX bytes, not of the `.gz`: copies recompressed elsewhere (Debian's package is)
/// hold the same images in different gzip bytes.
const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

/// `$XDG_CACHE_HOME/tuner/fashion-mnist`, else `~/.cache/tuner/fashion-mnist`.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("tuner").join("fashion-mnist"))
}

/// The folder to load the data from: `explicit` as given; `None` (the loader's own
/// search) when `FASHION_MNIST_DIR` is set or a copy is installed; else the cache,
/// fetched into from `mirror` first if it is empty.
pub async fn data_dir(explicit: Option<PathBuf>, mirror: &str) -> Result<Option<PathBuf>> {
    if explicit.is_some() || std::env::var_os(DIR_ENV).is_some_and(|v| !v.is_empty()) {
        return Ok(explicit);
    }
    if holds_files(Path::new(SYSTEM_DIR)) || holds_files(Path::new("data")) {
        return Ok(None);
    }
    let Some(cache) = cache_dir() else {
        // Nowhere to keep a download: the loader says what to install.
        return Ok(None);
    };
    if !holds_files(&cache) {
        fetch_into(mirror, &cache).await?;
    }
    Ok(Some(cache))
}

/// Downloads the four files from `mirror` into `cache`: all checked, or nothing kept.
pub async fn fetch_into(mirror: &str, cache: &Path) -> Result<()> {
    let parent = cache.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the cache folder {}", parent.display()))?;
    // Filled beside the cache and renamed into place once every file checks out, so an
    // interrupted or corrupt download never looks like a cached copy.
    let partial = parent.join(format!(".fashion-mnist-{}.partial", std::process::id()));
    let result = fetch_checked(mirror, &partial).await;
    let result = result.and_then(|()| {
        std::fs::rename(&partial, cache)
            .with_context(|| format!("cannot move the download into {}", cache.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

async fn fetch_checked(mirror: &str, into: &Path) -> Result<()> {
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let client = reqwest::Client::new();
    let base = mirror.trim_end_matches('/');
    eprintln!("Fashion-MNIST is not installed here; fetching it once from {base}/");
    for (name, expected) in FILES {
        let url = format!("{base}/{name}");
        let bytes = download(&client, &url, name).await.map_err(|e| {
            e.context(format!(
                "cannot fetch Fashion-MNIST from {url}. Without network, install it \
                 (`apt-get install dataset-fashion-mnist` on Debian/Ubuntu), or set \
                 FASHION_MNIST_DIR (or --data-dir) to a folder holding the four files, or \
                 --data-mirror (TUNER_DATA_MIRROR) to a mirror you can reach"
            ))
        })?;
        let found = content_sha256(&bytes)
            .with_context(|| format!("{url} is not a gzip file; nothing was cached"))?;
        if found != expected {
            bail!(
                "{url} is not the Fashion-MNIST file: its content's SHA-256 is {found}, \
                 expected {expected}; nothing was cached (try another --data-mirror)"
            );
        }
        std::fs::write(into.join(name), &bytes)
            .with_context(|| format!("cannot write {}", into.join(name).display()))?;
    }
    Ok(())
}

/// The body of `url`, with a progress bar of its bytes on a terminal.
async fn download(client: &reqwest::Client, url: &str, name: &str) -> Result<Vec<u8>> {
    let mut response = client.get(url).send().await?.error_for_status()?;
    let bar = crate::progress::bar(name, response.content_length().unwrap_or(0));
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes.extend_from_slice(&chunk);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(bytes)
}

/// SHA-256 of the gunzipped `gz`, in hex.
fn content_sha256(gz: &[u8]) -> std::io::Result<String> {
    let mut content = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut content)?;
    Ok(Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
    };

    use super::*;

    /// Serves `files` (name → bytes) over HTTP on loopback, one connection at a time,
    /// until the test process ends; 404 for other names.
    fn serve(files: Vec<(String, Vec<u8>)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = String::new();
                let _ = BufReader::new(&stream).read_line(&mut request);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let found = files.iter().find(|(n, _)| path == format!("/{n}"));
                let _ = match found {
                    Some((_, body)) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(body)),
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        url
    }

    fn installed_files() -> Vec<(String, Vec<u8>)> {
        FILES
            .iter()
            .map(|(name, _)| {
                let path = Path::new(SYSTEM_DIR).join(name);
                (
                    name.to_string(),
                    std::fs::read(&path).unwrap_or_else(|e| {
                        panic!(
                            "{}: {e} (apt-get install dataset-fashion-mnist)",
                            path.display()
                        )
                    }),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_files_are_fetched_checked_and_cached() {
        let mirror = serve(installed_files());
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("tuner").join("fashion-mnist");
        fetch_into(&mirror, &cache).await.unwrap();
        assert!(holds_files(&cache));
        let data = tuner_train::FashionMnist::load(Some(&cache)).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
        // Nothing is left beside it.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tuner")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_refused_and_nothing_is_cached() {
        let mut files = installed_files();
        // The labels of the test set, one label changed: still gzip, not the file.
        let labels = &mut files[3].1;
        let mut content = Vec::new();
        flate2::read::GzDecoder::new(labels.as_slice())
            .read_to_end(&mut content)
            .unwrap();
        content[100] = (content[100] + 1) % 10;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&content).unwrap();
        *labels = gz.finish().unwrap();
        let mirror = serve(files);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("tuner").join("fashion-mnist");
        let err = format!("{:#}", fetch_into(&mirror, &cache).await.unwrap_err());
        assert!(
            err.contains("t10k-labels-idx1-ubyte.gz is not the Fashion-MNIST file")
                && err.contains("SHA-256")
                && err.contains("nothing was cached"),
            "{err}"
        );
        assert!(!cache.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tuner")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn an_unreachable_mirror_says_what_to_install_or_set() {
        // A port that was free a moment ago: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("fashion-mnist");
        let err = format!(
            "{:#}",
            fetch_into(&format!("http://127.0.0.1:{port}/"), &cache)
                .await
                .unwrap_err()
        );
        for needed in [
            "apt-get install dataset-fashion-mnist",
            "FASHION_MNIST_DIR",
            "--data-mirror",
            "TUNER_DATA_MIRROR",
        ] {
            assert!(err.contains(needed), "{needed}: {err}");
        }
        assert!(!cache.exists());
    }
}
