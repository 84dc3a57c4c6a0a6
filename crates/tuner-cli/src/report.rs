//! `tuner-cli summary`: a study's results in the spirit of KerasTuner's
//! `results_summary()` — the search space, counts by state and the top trials with
//! their hyperparameters and scores.

use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use tuner_api::{ApiClient, SortKey, SortOrder, Study, Trial, TrialQuery};
use tuner_core::{StudyId, TrialState};

use crate::output;

/// What `summary --json` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub study: Study,
    /// The best completed trials, best first.
    pub top: Vec<Trial>,
    /// The most recently failed trials, latest first, with their reasons.
    pub failed: Vec<Trial>,
}

/// How many failed trials a summary shows.
const FAILED_SHOWN: usize = 5;

/// Final metrics that are bookkeeping of the run, not results of the model.
const BOOKKEEPING: [&str; 7] = [
    "epochs",
    "train_images",
    "val_images",
    "train_seconds",
    "images_per_second",
    "confusion_matrix",
    "class_names",
];

pub async fn fetch(client: &ApiClient, id: StudyId, top: usize) -> Result<Summary> {
    let study = client.get_study(id).await?;
    let query = TrialQuery {
        state: Some(TrialState::Completed),
        sort: Some(SortKey::Value),
        order: (study.objective.direction == tuner_core::Direction::Maximize)
            .then_some(SortOrder::Desc),
        limit: Some(top),
        ..TrialQuery::default()
    };
    let mut top = client.list_trials_where(id, &query).await?.trials;
    let failed_query = TrialQuery {
        state: Some(TrialState::Failed),
        order: Some(SortOrder::Desc),
        limit: Some(FAILED_SHOWN),
        ..TrialQuery::default()
    };
    let mut failed = client.list_trials_where(id, &failed_query).await?.trials;
    // The curves are not part of a summary.
    for t in top.iter_mut().chain(failed.iter_mut()) {
        t.intermediate.clear();
    }
    Ok(Summary { study, top, failed })
}

pub fn text(s: &Summary) -> String {
    let study = &s.study;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Results summary: study {} \"{}\"",
        study.id, study.name
    );
    let _ = writeln!(
        out,
        "State: {}{}",
        study.state,
        study
            .state_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Objective: {} {} · optimizer: {}",
        study.objective.direction, study.objective.metric, study.optimizer
    );
    let c = &study.counts;
    let _ = writeln!(
        out,
        "Trials: {} of the budget: {} completed, {} pruned, {} failed, {} running, {} pending",
        output::budget_text(study),
        c.completed,
        c.pruned,
        c.failed,
        c.running,
        c.pending
    );

    if let Some(spec) = &study.spec {
        search_space(&mut out, spec);
    }

    if !s.failed.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Failed trials ({} of {}, latest first):",
            s.failed.len(),
            c.failed
        );
        for t in &s.failed {
            let _ = writeln!(
                out,
                "  trial {}: {}",
                t.number,
                t.failure_reason.as_deref().unwrap_or("no reason given")
            );
        }
    }

    let _ = writeln!(out);
    if s.top.is_empty() {
        let _ = writeln!(out, "No completed trial yet.");
        return out;
    }
    let _ = writeln!(
        out,
        "Showing the {} best of {} completed trial(s)",
        s.top.len(),
        c.completed
    );
    for (rank, t) in s.top.iter().enumerate() {
        let _ = writeln!(out);
        let _ = writeln!(out, "#{} · trial {}", rank + 1, t.number);
        let _ = writeln!(out, "Hyperparameters:");
        for (name, value) in &t.params {
            let _ = writeln!(out, "  {name}: {}", output::param_value_text(value));
        }
        let _ = writeln!(
            out,
            "Score ({}): {}",
            study.objective.metric,
            output::value_text(t.value)
        );
        let mut facts = Vec::new();
        if let Some(e) = t.last_epoch {
            facts.push(format!("{e} epoch(s)"));
        }
        if let Some(d) = t.duration_seconds {
            facts.push(format!("{d:.1}s"));
        }
        if let Some(w) = &t.worker {
            facts.push(format!("worker {w}"));
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "Run: {}", facts.join(", "));
        }
        let metrics = scalar_metrics(t.metrics.as_ref(), &study.objective.metric);
        if !metrics.is_empty() {
            let _ = writeln!(out, "Other metrics: {metrics}");
        }
    }
    out
}

/// One line per parameter: its type and range or values, and its condition.
fn search_space(out: &mut String, spec: &Value) {
    let Some(params) = spec.get("parameters").and_then(Value::as_object) else {
        return;
    };
    let _ = writeln!(out);
    let _ = writeln!(out, "Search space ({} parameter(s)):", params.len());
    let width = params.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (name, p) in params {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
        let mut desc = match kind {
            "categorical" => p
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().map(scalar).collect::<Vec<_>>().join(", "))
                .map(|v| format!("one of {v}"))
                .unwrap_or_default(),
            _ => format!(
                "{} to {}",
                p.get("min").map(scalar).unwrap_or_default(),
                p.get("max").map(scalar).unwrap_or_default()
            ),
        };
        if p.get("log").and_then(Value::as_bool) == Some(true) {
            desc.push_str(", log scale");
        }
        if let Some(step) = p.get("step").filter(|s| !s.is_null()) {
            let _ = write!(desc, ", step {}", scalar(step));
        }
        if let Some(when) = p.get("when").filter(|w| !w.is_null()) {
            let _ = write!(desc, ", when {}", compact(when));
        }
        let _ = writeln!(out, "  {name:<width$}  {kind:<11}  {desc}");
    }
    if let Some(fixed) = spec
        .get("fixed")
        .and_then(Value::as_object)
        .filter(|f| !f.is_empty())
    {
        let fixed: Vec<String> = fixed
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect();
        let _ = writeln!(out, "Fixed: {}", fixed.join(", "));
    }
}

/// Numeric final metrics other than the objective and the run's bookkeeping, by name.
fn scalar_metrics(metrics: Option<&Value>, objective: &str) -> String {
    let Some(Value::Object(m)) = metrics else {
        return String::new();
    };
    let mut parts: Vec<String> = m
        .iter()
        .filter(|(k, _)| k.as_str() != objective && !BOOKKEEPING.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_f64().map(|v| format!("{k} {}", number(v))))
        .collect();
    parts.sort();
    parts.join(", ")
}

/// Counts as integers, measurements to 4 significant digits.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        output::significant(v)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", compact(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(a) => format!("[{}]", a.iter().map(compact).collect::<Vec<_>>().join(", ")),
        other => scalar(other),
    }
}
