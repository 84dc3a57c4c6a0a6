//! `tuner-cli trials ID --watch`: a live view of a study from its event stream.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use anyhow::Result;
use tuner_api::{ApiClient, Study, TrialEvent};
use tuner_core::StudyId;

#[derive(Default, Clone)]
struct Row {
    state: String,
    epoch: Option<u32>,
    value: Option<f64>,
}

struct View {
    name: String,
    metric: String,
    maximize: bool,
    epochs: Option<u64>,
    rows: BTreeMap<u64, Row>,
}

impl View {
    fn apply(&mut self, e: &TrialEvent) {
        let row = self.rows.entry(e.number).or_default();
        match e.kind.as_str() {
            "epoch" => {
                row.epoch = e.epoch;
                row.value = e.value.or(row.value);
            }
            "created" | "stale" | "released" => row.state = "pending".into(),
            "started" => row.state = "running".into(),
            other => {
                row.state = other.to_owned();
                row.value = e.value.or(row.value);
            }
        }
    }

    fn best(&self) -> Option<(u64, f64)> {
        self.rows
            .iter()
            .filter(|(_, r)| r.state == "completed")
            .filter_map(|(n, r)| Some((*n, r.value?)))
            .reduce(|a, b| {
                let better = if self.maximize { b.1 > a.1 } else { b.1 < a.1 };
                if better { b } else { a }
            })
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let count = |s: &str| self.rows.values().filter(|r| r.state == s).count();
        let _ = writeln!(
            out,
            "{}: {} completed, {} running, {} pending, {} pruned, {} failed",
            self.name,
            count("completed"),
            count("running"),
            count("pending"),
            count("pruned"),
            count("failed")
        );
        match self.best() {
            Some((n, v)) => {
                let _ = writeln!(out, "best: trial #{n} {} = {v:.4}", self.metric);
            }
            None => {
                let _ = writeln!(out, "best: none yet");
            }
        }
        for (n, r) in self.rows.iter().filter(|(_, r)| r.state == "running") {
            let epoch = r.epoch.unwrap_or(0);
            let bar = match self.epochs {
                Some(total) if total > 0 => {
                    let filled = (20 * u64::from(epoch) / total).min(20) as usize;
                    format!(
                        "[{}{}] epoch {epoch}/{total}",
                        "#".repeat(filled),
                        ".".repeat(20 - filled)
                    )
                }
                _ => format!("epoch {epoch}"),
            };
            let value = r.value.map_or_else(String::new, |v| format!("  {v:.4}"));
            let _ = writeln!(out, "  #{n:<4} {bar}{value}");
        }
        out
    }
}

pub async fn watch(client: &ApiClient, id: StudyId) -> Result<()> {
    let study = client.get_study(id).await?;
    let epochs = study
        .spec
        .as_ref()
        .and_then(|s| s.pointer("/trainer/epochs"))
        .and_then(|v| v.as_u64());
    let mut view = View {
        name: format!("study {} \"{}\"", study.id, study.name),
        metric: study.objective.metric.clone(),
        maximize: study.objective.direction == tuner_core::Direction::Maximize,
        epochs,
        rows: BTreeMap::new(),
    };
    let tty = std::io::stdout().is_terminal();
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let done: Study = client
        .watch(id, 0, Duration::from_secs(300), |e| {
            view.apply(e);
            if tty {
                // Redraw at most 5 times a second (replaying history is fast).
                if last_draw.elapsed() > Duration::from_millis(200) {
                    print!("\x1b[H\x1b[2J{}", view.render());
                    let _ = std::io::stdout().flush();
                    last_draw = Instant::now();
                }
            } else {
                let what = match e.epoch {
                    Some(epoch) => format!("epoch {epoch}"),
                    None => e.kind.clone(),
                };
                let value = e.value.map_or_else(String::new, |v| format!(" {v:.4}"));
                println!("{} trial #{} {what}{value}", e.at, e.number);
            }
        })
        .await?;
    if tty {
        print!("\x1b[H\x1b[2J{}", view.render());
    }
    println!(
        "study {} {}{}",
        done.id,
        done.state,
        done.state_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    Ok(())
}
