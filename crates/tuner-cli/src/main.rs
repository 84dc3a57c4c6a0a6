//! tuner-cli: the one binary users install.
//!
//! `serve` runs the HTTP service on a database and `copy` moves studies between
//! databases; the other commands are clients of a running server (`--server`, or
//! `TUNER_SERVER`). Owns only argument parsing,
//! presentation and process wiring: the rules live in the library crates.

mod bench_optimizer;
mod bench_report;
mod bench_service;
mod copy;
mod db;
mod fetch;
mod local;
mod output;
mod plot;
mod progress;
mod report;
mod stop;
mod training;
mod tune;
mod watch;

#[global_allocator]
// The system allocator page-faults on the trainer's per-step activation buffers.
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tuner_api::{ApiClient, DocFormat};
use tuner_core::{SpecFormat, StudyId, parse_spec};
use tuner_server::ServerConfig;

/// Default port of the tuner server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8470";

#[derive(Parser)]
#[command(
    name = "tuner-cli",
    version,
    about = "Self-hosted hyperparameter search"
)]
struct Cli {
    /// Base URL of the tuner server (client commands and workers), or several replicas'
    /// URLs separated by commas: requests go to the first that answers.
    #[arg(
        long,
        global = true,
        env = "TUNER_SERVER",
        default_value = "http://127.0.0.1:8470",
        value_delimiter = ','
    )]
    server: Vec<String>,
    /// Shared secret: `serve` requires it on every request; clients and workers send it.
    #[arg(long, global = true, env = "TUNER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tuner server on a SQLite file, or as one of several replicas on PostgreSQL.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "TUNER_ADDR", default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// The database: a SQLite file (created if missing; `sqlite:PATH` too), or
        /// `postgres://USER@HOST:PORT/DB`, which any number of servers may share.
        /// Default: $TUNER_DB, else tuner.db.
        #[arg(long, env = "TUNER_DATABASE_URL")]
        db: Option<String>,
        /// Seconds a lease lasts without a heartbeat or report.
        #[arg(long, env = "TUNER_LEASE_SECONDS", default_value_t = 60.0)]
        lease_seconds: f64,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body_bytes: usize,
        /// Start this many local built-in worker processes.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Listen on a non-loopback address without a --token (trusted networks only).
        #[arg(long)]
        allow_no_token: bool,
        /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run a study end to end: embedded server, local workers, progress, best config.
    Tune {
        file: PathBuf,
        /// Start a new study even if the database holds one of the same name (by
        /// default that one is continued).
        #[arg(long)]
        fresh: bool,
        /// SQLite database file (created if missing; studies accumulate).
        #[arg(long, env = "TUNER_DB", default_value = "tuner.db")]
        db: PathBuf,
        /// Local worker processes (default: the study's parallelism).
        #[arg(long)]
        workers: Option<usize>,
        /// Where to write the best config (default: best-study-ID.yaml).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 60.0)]
        lease_seconds: f64,
        /// Where to fetch Fashion-MNIST from when it is not installed (checked by SHA-256,
        /// cached in $XDG_CACHE_HOME/tuner/fashion-mnist).
        #[arg(long, env = "TUNER_DATA_MIRROR", default_value = fetch::DEFAULT_MIRROR)]
        data_mirror: String,
    },
    /// Lease trials from a server and train them with the built-in trainer.
    Worker {
        /// Work on this study only and exit when it is done (default: serve every
        /// running fashion-mnist-cnn study until stopped).
        #[arg(long)]
        study: Option<StudyId>,
        /// Shown in trial listings.
        #[arg(long)]
        name: Option<String>,
        /// Exit after this many trials.
        #[arg(long)]
        max_trials: Option<u32>,
        /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where to fetch Fashion-MNIST from when it is not installed (checked by SHA-256,
        /// cached in $XDG_CACHE_HOME/tuner/fashion-mnist).
        #[arg(long, env = "TUNER_DATA_MIRROR", default_value = fetch::DEFAULT_MIRROR)]
        data_mirror: String,
    },
    /// Describe the Fashion-MNIST files: images per split and class, pixel statistics.
    Data {
        /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Train one config (e.g. from `best`) and evaluate it on the test set.
    Train(training::TrainArgs),
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Check a search-space file without a server; prints every problem.
    Validate {
        file: PathBuf,
        /// Print `{"valid": true, "spec": ...}` or `{"valid": false, "problems": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Create a study from a search-space file (YAML or JSON); prints its id.
    Create {
        file: PathBuf,
        /// Print the whole study as JSON instead of its id.
        #[arg(long)]
        json: bool,
    },
    /// List studies.
    Studies {
        #[arg(long)]
        json: bool,
    },
    /// Show one study.
    Study {
        id: StudyId,
        #[arg(long)]
        json: bool,
    },
    /// List a study's trials.
    Trials {
        id: StudyId,
        #[arg(long)]
        json: bool,
        /// Only trials in this state (pending, running, completed, pruned, failed).
        #[arg(long)]
        state: Option<tuner_core::TrialState>,
        /// Order by number (default), value, duration, epoch or state.
        #[arg(long)]
        sort: Option<tuner_api::SortKey>,
        /// Largest first.
        #[arg(long)]
        desc: bool,
        /// At most this many trials.
        #[arg(long)]
        limit: Option<usize>,
        /// Skip this many first.
        #[arg(long)]
        offset: Option<usize>,
        /// Follow the study live (running trials, epochs, best so far) until it ends.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Export the best trial's config (params merged with fixed values).
    Best {
        id: StudyId,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Results summary (like KerasTuner's `results_summary()`): the search space,
    /// counts by state and the best trials with their hyperparameters and scores.
    Summary {
        id: StudyId,
        /// How many of the best trials to show.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Draw a chart of a study into an SVG or PNG file (chosen by the extension).
    Plot {
        id: StudyId,
        #[arg(long, value_enum, default_value_t = plot::PlotKind::History)]
        kind: plot::PlotKind,
        /// The file to write: .svg or .png.
        #[arg(short, long)]
        out: PathBuf,
        /// `curves`: the metric per epoch (default: the objective).
        #[arg(long)]
        metric: Option<String>,
        /// `curves`: how many of the best trials.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// A log y axis (refused for values that are not positive); without it the axis
        /// is log only where the values span two decades or more.
        #[arg(long)]
        log: bool,
    },
    /// How much each parameter matters, from a GP fitted to the completed trials.
    Importance {
        id: StudyId,
        #[arg(long)]
        json: bool,
    },
    /// Stop a study: no new trials; running ones may finish.
    Stop { id: StudyId },
    /// Pause a study: no new trials until `resume`.
    Pause { id: StudyId },
    /// Resume a paused, stopped or failed study, or a completed one with budget left.
    Resume { id: StudyId },
    /// Give a study more trials: `--max-trials` is the new total (a completed study
    /// runs again).
    Extend {
        id: StudyId,
        #[arg(long)]
        max_trials: u32,
    },
    /// Delete a study and all its trials.
    Delete { id: StudyId },
    /// Copy studies, with their trials, epochs and event log, from one database into
    /// another (e.g. SQLite to PostgreSQL); each becomes a new study of the target.
    Copy {
        /// The database to read: a SQLite file (`sqlite:PATH` too) or `postgres://...`.
        #[arg(long)]
        from: String,
        /// The database to write into (a SQLite file is created if missing).
        #[arg(long)]
        to: String,
        /// Copy this study only (repeatable; default: every study).
        #[arg(long = "study", value_name = "ID")]
        studies: Vec<StudyId>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Training images per second of a config (default: the baseline at batch 128).
    Train {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 40)]
        batches: usize,
        #[arg(long)]
        batch_size: Option<u32>,
        /// Folder with the Fashion-MNIST files (default: $FASHION_MNIST_DIR, the Debian package, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Samplers on standard test problems through the HTTP API: simple regret.
    Optimizer {
        /// Comma-separated: branin, hartmann6, levy5, rosenbrock4, mixed, cnn_optlr,
        /// cnn_kernel, cnn_depth, cnn_full (`all` for every one).
        #[arg(long, value_delimiter = ',', default_value = "branin,hartmann6")]
        problems: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "gp,random")]
        optimizers: Vec<String>,
        #[arg(long, default_value_t = 5)]
        seeds: u32,
        #[arg(long, default_value_t = 50)]
        budget: u32,
        /// Write every run's best-so-far regret trace here (input of `bench report`).
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
        /// The sampler's name in `--json-out` is `<label>-<optimizer>`.
        #[arg(long, default_value = "tuner")]
        label: String,
        /// Print the problems (name, search space, optimum) as JSON and exit.
        #[arg(long)]
        list_problems: bool,
        /// Print N pseudo-random configurations per problem with their objective
        /// values as JSON and exit (to check other implementations against ours).
        #[arg(long, value_name = "N")]
        eval_points: Option<u32>,
    },
    /// The side-by-side table from `bench optimizer --json-out` files (ours and
    /// `bench/optuna_side_by_side.py`'s): median regret with bootstrap intervals and
    /// a paired Wilcoxon signed-rank test per problem against a reference sampler.
    Report {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Trial counts to report (those beyond a run's budget are left out).
        #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
        checkpoints: Vec<u32>,
        /// The sampler the others are compared with (default: the first one found).
        #[arg(long)]
        reference: Option<String>,
    },
    /// Ask + complete cycles per second through HTTP, many workers on one study.
    Service {
        #[arg(long, default_value_t = 64)]
        workers: usize,
        #[arg(long, default_value_t = 5_000)]
        trials: u32,
        /// Servers on the database (more than one needs PostgreSQL).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// The database (default: a fresh SQLite file in a temp folder); a PostgreSQL
        /// database gets a new study in it.
        #[arg(long)]
        db: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

/// `tuner-cli trials 1 --json | head` closes the pipe early; `print!` then panics.
/// Like other command-line tools, end quietly instead (Rust ignores SIGPIPE, and
/// restoring it would need `unsafe`).
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files and container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, except that an unreachable server is said once,
/// with what to do, rather than with reqwest's chain (which repeats the URL).
fn error_text(e: &anyhow::Error) -> String {
    let unreachable =
        e.chain().find_map(
            |cause| match cause.downcast_ref::<tuner_api::ClientError>() {
                Some(tuner_api::ClientError::Connect { url, .. }) => Some(url.clone()),
                _ => None,
            },
        );
    match unreachable {
        Some(url) => format!(
            "cannot reach the tuner server at {url}. Start one with `tuner-cli serve` \
             (add `--db FILE` for another database), or point --server (or TUNER_SERVER) \
             at a running one"
        ),
        None => format!("{e:#}"),
    }
}

/// The longest lease a server hands out: beyond a week a lost worker's trial would
/// wait longer than any study runs (and far beyond, the expiry time overflows).
const MAX_LEASE_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// `--lease-seconds`, checked: positive, finite, at most a week.
pub(crate) fn lease_duration(seconds: f64) -> Result<Duration> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--lease-seconds must be a positive number of seconds (got {seconds})");
    }
    if seconds > MAX_LEASE_SECONDS {
        bail!(
            "--lease-seconds {seconds} is longer than a week ({MAX_LEASE_SECONDS} s): a lost \
             worker's trial would wait that long before it is re-queued; use heartbeats for long \
             epochs instead"
        );
    }
    // Below a millisecond every lease would have expired when it is handed out.
    Ok(Duration::from_secs_f64(seconds.max(0.001)))
}

/// Tokens shorter than this are guessable by brute force over the network.
const SHORT_TOKEN: usize = 16;

/// The server's shared secret, checked before anything binds: an empty or blank token
/// would let through any request that sends an empty one, so it is refused, never
/// taken as "no token".
fn check_server_token(token: Option<&str>) -> Result<()> {
    let Some(token) = token else { return Ok(()) };
    if token.trim().is_empty() {
        bail!(
            "the token is empty{}: an empty secret would open the server to anyone. Set a \
             real secret with --token (or TUNER_TOKEN), or unset TUNER_TOKEN to run without one",
            if token.is_empty() {
                ""
            } else {
                " (only white space)"
            }
        );
    }
    if token.chars().count() < SHORT_TOKEN {
        eprintln!(
            "warning: the token has fewer than {SHORT_TOKEN} characters and could be guessed; \
             use a long random secret (e.g. `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

pub(crate) fn doc_format(path: &std::path::Path) -> (SpecFormat, DocFormat) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => (SpecFormat::Json, DocFormat::Json),
        _ => (SpecFormat::Yaml, DocFormat::Yaml),
    }
}

pub(crate) fn read_doc(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn run(cli: Cli) -> Result<()> {
    // Built on first use: `serve` and the offline commands ignore --server, so a blank
    // TUNER_SERVER must not stop them.
    let (servers, token) = (cli.server.clone(), cli.token.clone());
    let client = move || -> Result<ApiClient> {
        Ok(ApiClient::with_servers(&servers)
            .context("--server (or TUNER_SERVER) names no server")?
            .with_token(token.clone()))
    };
    match cli.command {
        Command::Serve {
            addr,
            db,
            lease_seconds,
            max_body_bytes,
            workers,
            allow_no_token,
            data_dir,
        } => {
            let lease = lease_duration(lease_seconds)?;
            // A set-but-empty TUNER_TOKEN counts as a (blank) token, whatever clap
            // makes of it: refused below, never read as "no token".
            let env_token = std::env::var("TUNER_TOKEN").ok();
            check_server_token(cli.token.as_deref().or(env_token.as_deref()))?;
            if !addr.ip().is_loopback() && cli.token.is_none() && !allow_no_token {
                bail!(
                    "refusing to listen on {addr} without a token: anyone who can reach it could \
                     create, read and delete studies. Set --token (or TUNER_TOKEN), or pass \
                     --allow-no-token on a trusted network"
                );
            }
            let db = db
                .or_else(|| std::env::var("TUNER_DB").ok())
                .unwrap_or_else(|| "tuner.db".to_owned());
            serve(
                addr,
                &db::DbTarget::parse(&db),
                ServerConfig {
                    lease,
                    max_body_bytes,
                    token: cli.token.clone(),
                    ..ServerConfig::default()
                },
                workers,
                data_dir,
            )
            .await
        }
        Command::Tune {
            file,
            fresh,
            db,
            workers,
            output,
            data_dir,
            lease_seconds,
            data_mirror,
        } => {
            tune::tune(tune::TuneArgs {
                file,
                fresh,
                db,
                workers,
                out: output,
                data_dir,
                lease_seconds,
                data_mirror,
            })
            .await
        }
        Command::Worker {
            study,
            name,
            max_trials,
            data_dir,
            data_mirror,
        } => {
            let data_dir = fetch::data_dir(data_dir, &data_mirror).await?;
            worker(client()?, study, name, max_trials, data_dir).await
        }
        Command::Data { data_dir, json } => training::data(data_dir.as_deref(), json),
        Command::Train(mut args) => {
            args.data_dir = fetch::data_dir(args.data_dir.take(), &args.data_mirror).await?;
            tokio::task::spawn_blocking(move || training::train(args))
                .await
                .context("training thread")?
        }
        Command::Bench {
            what:
                BenchCommand::Train {
                    config,
                    batches,
                    batch_size,
                    data_dir,
                },
        } => training::bench(config.as_deref(), batches, batch_size, data_dir.as_deref()),
        Command::Bench {
            what:
                BenchCommand::Service {
                    workers,
                    trials,
                    replicas,
                    db,
                },
        } => bench_service::bench_service(workers, trials, replicas, db.as_deref()).await,
        Command::Bench {
            what:
                BenchCommand::Optimizer {
                    problems,
                    optimizers,
                    seeds,
                    budget,
                    json_out,
                    label,
                    list_problems,
                    eval_points,
                },
        } => {
            if list_problems {
                return bench_optimizer::list_problems();
            }
            if let Some(n) = eval_points {
                return bench_optimizer::eval_points(n);
            }
            bench_optimizer::bench_optimizer(bench_optimizer::OptimizerBench {
                problems,
                optimizers,
                seeds,
                budget,
                json_out,
                label,
            })
            .await
        }
        Command::Bench {
            what:
                BenchCommand::Report {
                    files,
                    checkpoints,
                    reference,
                },
        } => bench_report::report(&files, &checkpoints, reference.as_deref()),
        Command::Validate { file, json } => {
            let text = read_doc(&file)?;
            let checked = parse_spec(&text, doc_format(&file).0).and_then(|spec| {
                // What this server version can run, as `create` would check it.
                match tuner_server::check_supported(&spec) {
                    Err(tuner_server::ApiError::InvalidSpec(problems)) => {
                        Err(tuner_core::CoreError::InvalidSpec(problems))
                    }
                    _ => Ok(spec),
                }
            });
            match checked {
                Ok(spec) if json => {
                    output::print_json(&serde_json::json!({"valid": true, "spec": spec}))
                }
                Err(tuner_core::CoreError::InvalidSpec(problems)) if json => {
                    output::print_json(&serde_json::json!({"valid": false, "problems": problems}))?;
                    bail!("{}: {} problem(s)", file.display(), problems.len())
                }
                Ok(spec) => {
                    println!(
                        "{}: valid ({} parameters, {} trials)",
                        file.display(),
                        spec.parameters.len(),
                        spec.budget.max_trials
                    );
                    Ok(())
                }
                Err(e) => Err(report_problems(&file, e)),
            }
        }
        Command::Create { file, json } => {
            let text = read_doc(&file)?;
            let study = client()?
                .create_study(&text, doc_format(&file).1)
                .await
                .with_context(|| format!("cannot create a study from {}", file.display()))?;
            if json {
                output::print_json(&study)?;
            } else {
                println!("{}", study.id);
            }
            Ok(())
        }
        Command::Studies { json } => {
            let list = client()?.list_studies().await?;
            if json {
                output::print_json(&list)
            } else {
                print!("{}", output::studies_table(&list.studies));
                Ok(())
            }
        }
        Command::Study { id, json } => {
            let study = client()?.get_study(id).await?;
            if json {
                output::print_json(&study)
            } else {
                print!("{}", output::study_text(&study));
                Ok(())
            }
        }
        Command::Trials {
            id, watch: true, ..
        } => watch::watch(&client()?, id).await,
        Command::Trials {
            id,
            json,
            state,
            sort,
            desc,
            limit,
            offset,
            ..
        } => {
            let query = tuner_api::TrialQuery {
                state,
                sort,
                order: desc.then_some(tuner_api::SortOrder::Desc),
                limit,
                offset,
                ..tuner_api::TrialQuery::default()
            };
            let client = client()?;
            let list = client.list_trials_where(id, &query).await?;
            if json {
                output::print_json(&list)
            } else {
                let study = client.get_study(id).await?;
                print!("{}", output::trials_table(&study, &list));
                Ok(())
            }
        }
        Command::Best { id, format, output } => {
            let client = client()?;
            let best = client.best(id).await?;
            let study = client.get_study(id).await?;
            let config =
                training::reproducible_config(&study, best.trial.number, best.config.clone());
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&config)? + "\n",
                Format::Yaml => serde_yaml_ng::to_string(&config)?,
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "trial #{} (value {}) written to {}",
                        best.trial.number,
                        output::value_text(best.trial.value),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Summary { id, top, json } => {
            let summary = report::fetch(&client()?, id, top).await?;
            if json {
                output::print_json(&summary)
            } else {
                print!("{}", report::text(&summary));
                Ok(())
            }
        }
        Command::Plot {
            id,
            kind,
            out,
            metric,
            top,
            log,
        } => {
            let data = plot::fetch(&client()?, id, kind, top).await?;
            let scale = if log {
                plot::Scale::Log
            } else {
                plot::Scale::Auto
            };
            plot::draw(&data, kind, metric.as_deref(), scale, &out)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Importance { id, json } => {
            let importance = client()?.importance(id).await?;
            if json {
                output::print_json(&importance)
            } else {
                print!("{}", output::importance_text(&importance));
                Ok(())
            }
        }
        Command::Stop { id } => control(&client()?, id, "stop").await,
        Command::Pause { id } => control(&client()?, id, "pause").await,
        Command::Resume { id } => control(&client()?, id, "resume").await,
        Command::Extend { id, max_trials } => {
            let study = client()?.extend(id, max_trials).await?;
            println!(
                "study {id} now has a budget of {} trials and is {}",
                study.max_trials, study.state
            );
            Ok(())
        }
        Command::Copy { from, to, studies } => copy::copy(&from, &to, &studies).await,
        Command::Delete { id } => {
            client()?.delete_study(id).await?;
            println!("study {id} deleted");
            Ok(())
        }
    }
}

/// Prints every problem of an invalid document, one per line, and returns the error.
pub(crate) fn report_problems(file: &std::path::Path, e: tuner_core::CoreError) -> anyhow::Error {
    if let tuner_core::CoreError::InvalidSpec(problems) = &e {
        eprintln!("{}: {} problem(s):", file.display(), problems.len());
        for p in problems {
            let path = if p.path.is_empty() {
                "(document)"
            } else {
                &p.path
            };
            eprintln!("  - {path}: {}", p.message);
        }
        return anyhow::anyhow!("invalid search space {}", file.display());
    }
    e.into()
}

async fn worker(
    client: ApiClient,
    study: Option<StudyId>,
    name: Option<String>,
    max_trials: Option<u32>,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let mut signals = stop::StopSignals::listen()?;
    tokio::spawn(async move {
        let first = signals.next().await;
        match first {
            stop::StopSignal::Interrupt => eprintln!(
                "worker: stopping; the running trial goes back to the queue (Ctrl-C again to quit at once)"
            ),
            stop::StopSignal::Terminate => eprintln!(
                "worker: SIGTERM: stopping; the running trial goes back to the queue (a second signal quits at once)"
            ),
        }
        flag.store(true, Ordering::SeqCst);
        std::process::exit(signals.next().await.exit_code());
    });
    let mut options = tuner_worker::WorkerOptions {
        study,
        max_trials,
        ..Default::default()
    };
    if let Some(name) = name {
        options.name = name;
    }
    let runner = Arc::new(tuner_worker::CnnRunner::new(data_dir));
    let worker = tuner_worker::Worker::new(client.clone(), runner, options, shutdown);
    eprintln!(
        "worker: checking the data and one training step, then serving {}",
        client.servers().join(", ")
    );
    let summary = worker.run().await?;
    eprintln!(
        "worker: done: {} completed, {} failed, {} stopped, {} released, {} lost",
        summary.completed, summary.failed, summary.stopped, summary.released, summary.lost
    );
    Ok(())
}

async fn control(client: &ApiClient, id: StudyId, action: &str) -> Result<()> {
    let study = client.control(id, action).await?;
    println!("study {id} is now {}", study.state);
    Ok(())
}

/// How long open requests get to finish once `serve` is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn serve(
    addr: SocketAddr,
    db: &db::DbTarget,
    config: ServerConfig,
    workers: usize,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    // From the start, so that a stop during start-up is not lost.
    let mut signals = stop::StopSignals::listen()?;
    let opened = db::OpenStore::open(db).await?;
    let config_token = config.token.clone();
    // Leases that ran out while the server was down are taken back before it listens.
    let server = tuner_server::Server::start(opened.shared(), config, addr)
        .await
        .map_err(|e| match e {
            tuner_server::StartError::Reap(e) => {
                anyhow::anyhow!("{e}").context("cannot take back expired leases")
            }
            tuner_server::StartError::Bind { source, .. } => {
                anyhow::Error::new(source).context(format!(
                    "cannot listen on {addr} (is another server running? try --addr 127.0.0.1:PORT)"
                ))
            }
        })?;
    let local = server.addr();
    tracing::info!(addr = %local, db = %db.describe(), "tuner server listening");
    eprintln!(
        "tuner server listening on http://{local} (database {})",
        db.describe()
    );
    let local_workers = if workers > 0 {
        let url = server.url();
        eprintln!("starting {workers} local worker(s)");
        Some(local::LocalWorkers::spawn(
            &url,
            workers,
            None,
            data_dir.as_ref(),
            config_token.as_deref(),
        )?)
    } else {
        None
    };
    let signal = signals.next().await;
    tracing::info!("{}: shutting down", signal.name());
    // Workers first, while the server still takes their trials back.
    if let Some(w) = local_workers {
        w.stop(local::STOP_GRACE, &mut signals).await;
    }
    // Event streams (dashboards, `trials --watch`) last as long as their study: they
    // would hold a graceful shutdown open indefinitely. Cut off, their clients reconnect,
    // to another replica if they know one.
    let cut_off = server
        .shutdown_within(SHUTDOWN_GRACE)
        .await
        .context("server error")?;
    if cut_off {
        tracing::warn!("requests still open {SHUTDOWN_GRACE:?} after the stop; closing them");
    }
    opened.close().await;
    Ok(())
}
