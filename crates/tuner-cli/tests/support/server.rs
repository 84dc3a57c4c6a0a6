//! The `tuner-cli serve` process the end-to-end tests talk to.

#![allow(dead_code)] // each test binary uses some of it

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tuner_api::ApiClient;

const BIN: &str = env!("CARGO_BIN_EXE_tuner-cli");

/// A `tuner-cli serve` process on an ephemeral loopback port.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(db: &Path, extra: &[&str]) -> Self {
        let addr = if extra.contains(&"--addr") {
            &[][..]
        } else {
            &["--addr", "127.0.0.1:0"][..]
        };
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(addr)
            .arg("--db")
            .arg(db)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("TUNER_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tuner-cli serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server says where it listens");
        Self { child, url }
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url)
    }

    pub fn kill(mut self) {
        // SIGKILL: no graceful shutdown, as in a crash.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
