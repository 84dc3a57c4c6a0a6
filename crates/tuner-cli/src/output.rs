//! Human-readable tables and JSON printing for the client commands.

use std::fmt::Write;

use anyhow::Result;
use tuner_api::{Study, TrialList};
use tuner_core::Params;

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

pub fn value_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), significant)
}

/// A measured or tuned number to 4 significant digits: `0.8795`, `12.35`, `7.992e-4`
/// (scientific below 0.001 and from 100,000 up, where fixed digits would hide it).
pub fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A parameter's value as people read it: floats to 4 significant digits.
pub fn param_value_text(v: &tuner_core::ParamValue) -> String {
    match v {
        tuner_core::ParamValue::Float(f) => significant(*f),
        other => other.to_string(),
    }
}

pub fn params_text(params: &Params) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", param_value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Trials counted against the budget out of it, and the failed ones, which are not:
/// `12/12`, `4/4 (+1 failed)`.
pub fn budget_text(s: &Study) -> String {
    let c = &s.counts;
    let spent = c.total - c.failed;
    if c.failed > 0 {
        format!("{spent}/{} (+{} failed)", s.max_trials, c.failed)
    } else {
        format!("{spent}/{}", s.max_trials)
    }
}

pub fn studies_table(studies: &[Study]) -> String {
    if studies.is_empty() {
        return "no studies yet; create one with `tuner-cli create FILE`\n".to_owned();
    }
    let rows: Vec<Vec<String>> = studies
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                s.state.to_string(),
                budget_text(s),
                s.counts.running.to_string(),
                s.counts.failed.to_string(),
                format!("{} {}", s.objective.direction, s.objective.metric),
                value_text(s.best.as_ref().map(|b| b.value)),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATE",
            "TRIALS",
            "RUNNING",
            "FAILED",
            "OBJECTIVE",
            "BEST",
        ],
        &rows,
    )
}

pub fn study_text(s: &Study) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "study {}: {}", s.id, s.name);
    let _ = writeln!(
        out,
        "state:     {}{}",
        s.state,
        s.state_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "objective: {} {}",
        s.objective.direction, s.objective.metric
    );
    let _ = writeln!(out, "optimizer: {}", s.optimizer);
    let c = &s.counts;
    let _ = writeln!(
        out,
        "trials:    {} of the budget: {} completed, {} running, {} pending, {} pruned, {} failed",
        budget_text(s),
        c.completed,
        c.running,
        c.pending,
        c.pruned,
        c.failed
    );
    match &s.best {
        Some(b) => {
            let _ = writeln!(
                out,
                "best:      trial #{} value {} ({})",
                b.number,
                value_text(Some(b.value)),
                params_text(&b.params)
            );
        }
        None => {
            let _ = writeln!(out, "best:      none yet");
        }
    }
    out
}

pub fn trials_table(study: &Study, list: &TrialList) -> String {
    let trials = &list.trials;
    if list.total == 0 {
        return format!("study {}: no trials to show\n", study.id);
    }
    let best = study.best.as_ref().map(|b| b.trial_id);
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|t| {
            let marker = if Some(t.id) == best { "*" } else { "" };
            vec![
                format!("{}{marker}", t.number),
                t.state.to_string(),
                value_text(t.value),
                t.last_epoch.map_or_else(|| "-".into(), |e| e.to_string()),
                t.attempts.to_string(),
                t.duration_seconds
                    .map_or_else(|| "-".into(), |d| format!("{d:.1}s")),
                t.worker.clone().unwrap_or_else(|| "-".into()),
                match &t.failure_reason {
                    Some(r) => format!("{} [{r}]", params_text(&t.params)),
                    None => params_text(&t.params),
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "#", "STATE", "VALUE", "EPOCH", "TRIES", "TIME", "WORKER", "PARAMS",
        ],
        &rows,
    );
    let shown = if trials.len() as u64 == list.total {
        format!("{} trials", trials.len())
    } else {
        format!("{} of {} trials", trials.len(), list.total)
    };
    let _ = writeln!(
        out,
        "{shown} ({} completed in the study); * marks the best ({} {})",
        study.counts.completed, study.objective.direction, study.objective.metric
    );
    out
}

pub fn importance_text(imp: &tuner_api::Importance) -> String {
    let mut out = String::new();
    if imp.parameters.is_empty() {
        let _ = writeln!(
            out,
            "study {}: no importance yet ({} completed trials; {})",
            imp.study_id,
            imp.completed_trials,
            imp.note.as_deref().unwrap_or("not enough data")
        );
        return out;
    }
    let width = imp
        .parameters
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0);
    for p in &imp.parameters {
        let bar = "#".repeat((p.importance * 40.0).round() as usize);
        let _ = writeln!(
            out,
            "{:<width$}  {:>5.1}%  {bar}",
            p.name,
            p.importance * 100.0
        );
    }
    let _ = writeln!(
        out,
        "({} from {} completed trials)",
        imp.method, imp.completed_trials
    );
    out
}

#[cfg(test)]
mod tests {
    use super::significant;

    #[test]
    fn numbers_get_four_significant_digits() {
        assert_eq!(significant(0.000799196502322409), "7.992e-4");
        assert_eq!(significant(0.87951234), "0.8795");
        assert_eq!(significant(0.0012345), "0.001234");
        assert_eq!(significant(12.3456), "12.35");
        assert_eq!(significant(-2.71234), "-2.712");
        assert_eq!(significant(27183.4), "27183");
        assert_eq!(significant(123456.0), "1.235e5");
        assert_eq!(significant(0.0), "0");
    }
}
