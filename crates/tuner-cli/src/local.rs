//! Local worker processes, started by `serve --workers N` and `tune`.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tuner_core::StudyId;

use crate::stop::StopSignals;

/// How long stopping workers get to hand their trials back before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Worker child processes, killed when dropped (e.g. when the parent fails).
pub struct LocalWorkers {
    children: Vec<Child>,
}

/// Training threads per worker so that `workers` processes share the machine's cores.
pub fn threads_per_worker(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / workers.max(1)).max(1)
}

impl LocalWorkers {
    pub fn spawn(
        server: &str,
        count: usize,
        study: Option<StudyId>,
        data_dir: Option<&PathBuf>,
        token: Option<&str>,
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the tuner-cli executable")?;
        let threads = threads_per_worker(count);
        let mut children = Vec::with_capacity(count);
        for i in 0..count {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "--server",
                server,
                "worker",
                "--name",
                &format!("local-{i}"),
            ]);
            if let Some(study) = study {
                cmd.args(["--study", &study.to_string()]);
            }
            if let Some(dir) = data_dir {
                cmd.arg("--data-dir").arg(dir);
            }
            // Candle's CPU kernels size their thread pool from this variable.
            cmd.env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            match token {
                Some(t) => cmd.env("TUNER_TOKEN", t),
                None => cmd.env_remove("TUNER_TOKEN"),
            };
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "warn");
            }
            // Their own process group: a terminal's Ctrl-C reaches only the parent, which
            // passes every stop on once, as SIGTERM (a second signal would make a worker
            // quit without handing its trial back).
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            children.push(cmd.spawn().context("cannot start a worker process")?);
        }
        Ok(Self { children })
    }

    /// How many workers are still running.
    pub fn alive(&mut self) -> usize {
        self.children
            .iter_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .filter(|alive| *alive)
            .count()
    }

    /// Asks every worker to stop (SIGTERM: each hands its trial back and exits), waits
    /// up to `grace` for them, and kills the rest; at once on another Ctrl-C or SIGTERM.
    pub async fn stop(mut self, grace: Duration, signals: &mut StopSignals) {
        #[cfg(unix)]
        for c in &self.children {
            let pid = rustix::process::Pid::from_child(c);
            // An error means it has already exited.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while self.alive() > 0 && Instant::now() < deadline {
            tokio::select! {
                _ = signals.next() => break,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        // Drop kills whoever is left.
    }

    /// Waits for every worker to exit.
    pub fn wait(mut self) {
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
