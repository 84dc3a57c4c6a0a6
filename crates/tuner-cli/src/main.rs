//! tuner-cli: the one binary users install.
//!
//! `serve` runs the HTTP service on a SQLite file; the other commands are clients
//! of a running server (`--server`, or `TUNER_SERVER`). Owns only argument parsing,
//! presentation and process wiring: the rules live in the library crates.

mod output;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tuner_api::{ApiClient, DocFormat};
use tuner_core::{SpecFormat, StudyId, parse_spec};
use tuner_server::{AppState, ServerConfig};
use tuner_store::SqliteStore;

/// Default port of the tuner server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8470";

#[derive(Parser)]
#[command(
    name = "tuner-cli",
    version,
    about = "Self-hosted hyperparameter search"
)]
struct Cli {
    /// Base URL of the tuner server (client commands).
    #[arg(
        long,
        global = true,
        env = "TUNER_SERVER",
        default_value = "http://127.0.0.1:8470"
    )]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tuner server on a SQLite file.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "TUNER_ADDR", default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// SQLite database file (created if missing).
        #[arg(long, env = "TUNER_DB", default_value = "tuner.db")]
        db: PathBuf,
        /// Seconds a lease lasts without a heartbeat or report.
        #[arg(long, env = "TUNER_LEASE_SECONDS", default_value_t = 60.0)]
        lease_seconds: f64,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body_bytes: usize,
    },
    /// Check a search-space file without a server; prints every problem.
    Validate { file: PathBuf },
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
    /// Stop a study: no new trials; running ones may finish.
    Stop { id: StudyId },
    /// Pause a study: no new trials until `resume`.
    Pause { id: StudyId },
    /// Resume a paused or stopped study.
    Resume { id: StudyId },
    /// Delete a study and all its trials.
    Delete { id: StudyId },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

fn main() -> std::process::ExitCode {
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
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn doc_format(path: &std::path::Path) -> (SpecFormat, DocFormat) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => (SpecFormat::Json, DocFormat::Json),
        _ => (SpecFormat::Yaml, DocFormat::Yaml),
    }
}

fn read_doc(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn run(cli: Cli) -> Result<()> {
    let client = ApiClient::new(&cli.server);
    match cli.command {
        Command::Serve {
            addr,
            db,
            lease_seconds,
            max_body_bytes,
        } => {
            if !(lease_seconds.is_finite() && lease_seconds > 0.0) {
                bail!("--lease-seconds must be a positive number");
            }
            serve(
                addr,
                &db,
                ServerConfig {
                    lease: Duration::from_secs_f64(lease_seconds),
                    max_body_bytes,
                },
            )
            .await
        }
        Command::Validate { file } => {
            let text = read_doc(&file)?;
            match parse_spec(&text, doc_format(&file).0) {
                Ok(spec) => {
                    println!(
                        "{}: valid ({} parameters, {} trials)",
                        file.display(),
                        spec.parameters.len(),
                        spec.budget.max_trials
                    );
                    Ok(())
                }
                Err(tuner_core::CoreError::InvalidSpec(problems)) => {
                    eprintln!("{}: {} problem(s):", file.display(), problems.len());
                    for p in &problems {
                        eprintln!("  - {}: {}", display_path(&p.path), p.message);
                    }
                    bail!("invalid search space")
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Create { file, json } => {
            let text = read_doc(&file)?;
            let study = client
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
            let list = client.list_studies().await?;
            if json {
                output::print_json(&list)
            } else {
                print!("{}", output::studies_table(&list.studies));
                Ok(())
            }
        }
        Command::Study { id, json } => {
            let study = client.get_study(id).await?;
            if json {
                output::print_json(&study)
            } else {
                print!("{}", output::study_text(&study));
                Ok(())
            }
        }
        Command::Trials { id, json } => {
            let list = client.list_trials(id).await?;
            if json {
                output::print_json(&list)
            } else {
                let study = client.get_study(id).await?;
                print!("{}", output::trials_table(&study, &list.trials));
                Ok(())
            }
        }
        Command::Best { id, format, output } => {
            let best = client.best(id).await?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&best.config)? + "\n",
                Format::Yaml => serde_yaml_ng::to_string(&best.config)?,
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "trial #{} ({} = {}) written to {}",
                        best.trial.number,
                        "value",
                        best.trial.value.unwrap_or(f64::NAN),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Stop { id } => control(&client, id, "stop").await,
        Command::Pause { id } => control(&client, id, "pause").await,
        Command::Resume { id } => control(&client, id, "resume").await,
        Command::Delete { id } => {
            client.delete_study(id).await?;
            println!("study {id} deleted");
            Ok(())
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(document)" } else { path }
}

async fn control(client: &ApiClient, id: StudyId, action: &str) -> Result<()> {
    let study = client.control(id, action).await?;
    println!("study {id} is now {}", study.state);
    Ok(())
}

async fn serve(addr: SocketAddr, db: &std::path::Path, config: ServerConfig) -> Result<()> {
    let store = SqliteStore::open(db)
        .await
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    let reap_every = (config.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let state = AppState::new(Arc::new(store.clone()), config);
    // Leases that ran out while the server was down are taken back now.
    tuner_server::reap_once(&state)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot take back expired leases")?;
    let reaper = tuner_server::spawn_reaper(state.clone(), reap_every);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another server running? try --addr 127.0.0.1:PORT)")
    })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, db = %db.display(), "tuner server listening");
    eprintln!(
        "tuner server listening on http://{local} (database {})",
        db.display()
    );
    axum::serve(listener, tuner_server::app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server error")?;
    reaper.abort();
    store.close().await;
    Ok(())
}
