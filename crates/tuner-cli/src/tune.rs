//! `tuner-cli tune FILE`: the whole loop in one command. An embedded server on a
//! local SQLite file, local worker processes, a live progress view, and the best
//! config printed and exported at the end.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use tuner_api::{ApiClient, Study, Trial};
use tuner_core::{StudyState, TrainerKind, TrialState, parse_spec};
use tuner_server::ServerConfig;
use tuner_store::SqliteStore;

use crate::{
    doc_format,
    local::{LocalWorkers, STOP_GRACE},
    output, read_doc, report_problems,
    stop::{StopSignal, StopSignals},
};

/// Takes up `study`, of the same name as the file's, where it stopped: resumed unless it
/// runs; refused if its budget is spent or the file now describes another study.
async fn continue_study(
    client: &ApiClient,
    study: Study,
    spec: &tuner_core::StudySpec,
    args: &TuneArgs,
) -> Result<Study> {
    let (id, file, db) = (study.id, args.file.display(), args.db.display());
    // What may differ between a file and its study: the seed the server chose, and a
    // budget extended since.
    let comparable = |doc: &serde_json::Value| {
        let mut doc = doc.clone();
        if let Some(o) = doc.get_mut("optimizer").and_then(|o| o.as_object_mut()) {
            o.remove("seed");
        }
        if let Some(b) = doc.get_mut("budget").and_then(|b| b.as_object_mut()) {
            b.remove("max_trials");
        }
        doc
    };
    let stored = study.spec.as_ref().map(comparable);
    if stored != Some(comparable(&serde_json::to_value(spec)?)) {
        bail!(
            "{db} holds study {id} \"{}\", which {file} no longer describes; \
             start a new study with `tuner-cli tune {file} --fresh`, or rename it in the file",
            study.name
        );
    }
    let spent = study.counts.total - study.counts.failed;
    match study.state {
        StudyState::Running => {
            eprintln!("continuing study {id} \"{}\" from {db}", study.name);
            Ok(study)
        }
        StudyState::Completed if spent >= u64::from(study.max_trials) => bail!(
            "study {id} \"{}\" in {db} is completed: its {} trials are done. To run more, \
             extend it (`tuner-cli serve --db {db}`, then `tuner-cli extend {id} --max-trials N` \
             and this command again), or start a new study with `tuner-cli tune {file} --fresh`",
            study.name,
            study.max_trials
        ),
        _ => {
            let resumed = client.control(id, "resume").await?;
            eprintln!(
                "continuing study {id} \"{}\" from {db} (it was {})",
                study.name, study.state
            );
            Ok(resumed)
        }
    }
}

pub struct TuneArgs {
    pub file: PathBuf,
    /// Create a new study even where one of the same name exists.
    pub fresh: bool,
    pub db: PathBuf,
    pub workers: Option<usize>,
    pub out: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub lease_seconds: f64,
    /// Where to fetch the data from when it is not installed.
    pub data_mirror: String,
}

pub async fn tune(mut args: TuneArgs) -> Result<()> {
    let mut signals = StopSignals::listen()?;
    let text = read_doc(&args.file)?;
    let (spec_format, doc_format) = doc_format(&args.file);
    let spec = parse_spec(&text, spec_format).map_err(|e| report_problems(&args.file, e))?;
    let builtin = spec.trainer.kind == TrainerKind::FashionMnistCnn;
    let lease = crate::lease_duration(args.lease_seconds)?;
    if builtin {
        args.data_dir = crate::fetch::data_dir(args.data_dir.take(), &args.data_mirror).await?;
        // Fail before starting anything if the data is missing.
        tuner_train::data::FashionMnist::load(args.data_dir.as_deref())
            .context("the built-in trainer needs Fashion-MNIST")?;
    }

    let store = SqliteStore::open(&args.db)
        .await
        .with_context(|| format!("cannot open the database {}", args.db.display()))?;
    let server = tuner_server::Server::start(
        Arc::new(store.clone()),
        ServerConfig {
            lease,
            ..ServerConfig::default()
        },
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    )
    .await
    .context("cannot start the embedded server")?;
    let url = server.url();

    let client = ApiClient::new(&url);
    let existing = if args.fresh {
        None
    } else {
        let latest = client
            .list_studies()
            .await?
            .studies
            .into_iter()
            .filter(|s| s.name == spec.name)
            .max_by_key(|s| s.id);
        match latest {
            Some(s) => Some(client.get_study(s.id).await?),
            None => None,
        }
    };
    let study = match existing {
        Some(study) => continue_study(&client, study, &spec, &args).await?,
        None => client
            .create_study(&text, doc_format)
            .await
            .with_context(|| format!("cannot create a study from {}", args.file.display()))?,
    };
    let parallelism = spec.budget.parallelism as usize;
    let count = args.workers.unwrap_or(parallelism).max(1);
    eprintln!(
        "study {} \"{}\": {} trials, {} {} ({} optimizer), database {}",
        study.id,
        study.name,
        study.max_trials,
        spec.objective.direction.as_str(),
        spec.objective.metric,
        spec.optimizer.kind.as_str(),
        args.db.display()
    );
    eprintln!("live dashboard: {url}/#/studies/{}", study.id);
    let mut workers = if builtin {
        eprintln!(
            "{count} local worker(s), {} training thread(s) each; Ctrl-C stops (the same command continues the study)",
            crate::local::threads_per_worker(count),
        );
        Some(LocalWorkers::spawn(
            &url,
            count,
            Some(study.id),
            args.data_dir.as_ref(),
            None,
        )?)
    } else {
        eprintln!(
            "trainer is external: start workers against {url} for study {} (see examples/python_worker.py)",
            study.id
        );
        None
    };

    let epochs = spec.trainer.epochs.unwrap_or(tuner_worker::DEFAULT_EPOCHS);
    let mut trial_log = TrialLog::new(epochs);
    let started = Instant::now();
    let result: Result<Study> = loop {
        tokio::select! {
            signal = signals.next() => {
                trial_log.finish();
                let what = match signal {
                    StopSignal::Interrupt => "interrupted",
                    StopSignal::Terminate => "terminated (SIGTERM)",
                };
                eprintln!("{what}: workers release their trials; study {} stays resumable", study.id);
                break Err(anyhow::anyhow!("interrupted"));
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let current = client.get_study(study.id).await?;
        let trials = client.list_trials(study.id).await?.trials;
        trial_log.update(&current, &trials);
        let finished = !current.state.is_active() && current.counts.running == 0;
        if finished {
            break Ok(current);
        }
        if let Some(w) = workers.as_mut()
            && w.alive() == 0
        {
            break Err(anyhow::anyhow!(
                "every local worker exited before the study finished; see their messages above"
            ));
        }
    };
    trial_log.finish();
    if let Some(w) = workers.take() {
        if result.is_ok() {
            w.wait();
        } else {
            w.stop(STOP_GRACE, &mut signals).await;
        }
    }
    let _ = server.shutdown().await;
    store.close().await;
    let study = result?;

    eprintln!(
        "study {} {} after {:.0}s: {} completed, {} pruned, {} failed{}",
        study.id,
        study.state,
        started.elapsed().as_secs_f64(),
        study.counts.completed,
        study.counts.pruned,
        study.counts.failed,
        study
            .state_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    if study.state == StudyState::Failed {
        bail!(
            "the study failed: {}",
            study.state_reason.unwrap_or_default()
        );
    }
    let Some(best) = &study.best else {
        bail!("no trial completed, so there is no best config");
    };
    eprintln!(
        "best: trial #{} with {} = {}",
        best.number,
        study.objective.metric,
        output::significant(best.value)
    );
    let config =
        crate::training::reproducible_config(&study, best.number, spec.config(&best.params));
    let yaml = serde_yaml_ng::to_string(&config)?;
    print!("{yaml}");
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("best-study-{}.yaml", study.id)));
    std::fs::write(&out, &yaml).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "best config written to {} (retrain it with `tuner-cli train --config {}`)",
        out.display(),
        out.display()
    );
    eprintln!(
        "look back at it: `tuner-cli serve --db {}` and open http://127.0.0.1:8470/#/studies/{}, \
         or `tuner-cli summary {}` / `tuner-cli plot {} --kind history --out history.svg` against that server",
        args.db.display(),
        study.id,
        study.id,
        study.id
    );
    Ok(())
}

/// Prints each trial as it finishes, under a status line of the running ones (the
/// line only on a terminal).
struct TrialLog {
    epochs: u32,
    printed: HashSet<i64>,
    best: Option<f64>,
    status: ProgressBar,
}

impl TrialLog {
    fn new(epochs: u32) -> Self {
        Self {
            epochs,
            printed: HashSet::new(),
            best: None,
            status: crate::progress::status_line(0),
        }
    }

    /// Clears the status line for good, so what is printed next starts clean.
    fn finish(&mut self) {
        self.status.finish_and_clear();
    }

    fn update(&mut self, study: &Study, trials: &[Trial]) {
        let maximize = study.objective.direction == tuner_core::Direction::Maximize;
        for t in trials {
            if !t.state.is_finished() || !self.printed.insert(t.id.0) {
                continue;
            }
            let mut note = String::new();
            if t.state == TrialState::Completed
                && let Some(v) = t.value
            {
                let better = self
                    .best
                    .is_none_or(|b| if maximize { v > b } else { v < b });
                if better {
                    self.best = Some(v);
                    note = "  <- best so far".into();
                }
            }
            let value = output::value_text(t.value);
            let time = t
                .duration_seconds
                .map_or_else(String::new, |d| format!("{d:.0}s"));
            let line = format!(
                "trial #{:<3} {:<9} {} = {:<7} {:>5}  {}{}{}",
                t.number,
                t.state.to_string(),
                study.objective.metric,
                value,
                time,
                output::params_text(&t.params),
                t.failure_reason
                    .as_deref()
                    .map(|r| format!("  [{r}]"))
                    .unwrap_or_default(),
                note
            );
            crate::progress::log_line(&self.status, &line);
        }
        let running: Vec<String> = trials
            .iter()
            .filter(|t| t.state == TrialState::Running)
            .map(|t| {
                format!(
                    "#{} epoch {}/{}",
                    t.number,
                    t.last_epoch.unwrap_or(0),
                    self.epochs
                )
            })
            .collect();
        let done = study.counts.completed + study.counts.pruned;
        let line = format!(
            "running: {} | best {}",
            if running.is_empty() {
                "-".to_owned()
            } else {
                running.join(", ")
            },
            study.best.as_ref().map_or_else(
                || "-".to_owned(),
                |b| format!("{} (#{})", output::significant(b.value), b.number)
            )
        );
        self.status.set_length(u64::from(study.max_trials));
        self.status.set_position(done);
        self.status.set_message(line);
    }
}
