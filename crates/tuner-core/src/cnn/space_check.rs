//! Whether every configuration a study's space can produce is one the built-in trainer
//! can train, checked at study creation with document paths.

use std::collections::BTreeMap;

use super::pool_problem;
use super::setting::{Setting, ValueKind, parse_setting, unknown_message, value_kind};
use crate::{Domain, ParamValue, Params, Problem, SearchSpace};

/// Grids up to this size are checked value by value; larger ones by their ends.
const EXHAUSTIVE_GRID: u64 = 256;

/// The values a domain can produce that are worth checking, each with the path suffix
/// to blame (`.values[i]`, `.min`, `.max` or none), or an error when the domain can
/// produce values of a kind the parameter cannot take at all.
fn candidates(domain: &Domain, kind: ValueKind) -> Result<Vec<(String, ParamValue)>, String> {
    match domain {
        Domain::Categorical { values } => Ok(values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!(".values[{i}]"), v.clone()))
            .collect()),
        Domain::Int {
            min,
            max,
            step,
            log,
        } => {
            // A log-scaled int range ignores the step and can produce any integer.
            let step = if *log { 1 } else { *step };
            let n = ((max - min) / step) as u64 + 1;
            let last = min + (n as i64 - 1) * step;
            if n <= EXHAUSTIVE_GRID {
                Ok((0..n as i64)
                    .map(|k| {
                        let v = min + k * step;
                        let suffix = if v == *min {
                            ".min"
                        } else if v == *max {
                            ".max"
                        } else {
                            ""
                        };
                        (suffix.to_owned(), ParamValue::Int(v))
                    })
                    .collect())
            } else {
                Ok(vec![
                    (".min".to_owned(), ParamValue::Int(*min)),
                    (".max".to_owned(), ParamValue::Int(last)),
                ])
            }
        }
        Domain::Float { min, max, .. } => {
            if kind == ValueKind::Int {
                // Even a stepped float range yields floats that only happen to be whole;
                // asking for `type: int` says what is meant.
                return Err("takes integer values; use `type: int` or `type: categorical`".into());
            }
            if let Some(grid) = domain.grid_len().filter(|n| *n <= EXHAUSTIVE_GRID) {
                return Ok((0..grid)
                    .map(|k| (String::new(), domain.grid_value(k)))
                    .collect());
            }
            Ok(vec![
                (".min".to_owned(), ParamValue::Float(*min)),
                (".max".to_owned(), ParamValue::Float(*max)),
            ])
        }
    }
}

/// Checks that a built-in-trainer study can train every configuration its space can
/// produce: every tuned and fixed name is supported and every value usable. Problems
/// carry document paths (`parameters.kernel_size.values[1]`, `fixed.pool_size`).
pub fn check_space(space: &SearchSpace, fixed: &Params) -> Vec<Problem> {
    let mut problems = Vec::new();
    // Values each parameter may take, for the checks that involve two parameters.
    let mut possible: BTreeMap<&str, (String, Vec<ParamValue>)> = BTreeMap::new();

    for p in space.params() {
        let path = format!("parameters.{}", p.name);
        let Some(kind) = value_kind(&p.name) else {
            problems.push(Problem::new(path, unknown_message(&p.name)));
            continue;
        };
        let values = match candidates(&p.domain, kind) {
            Ok(values) => values,
            Err(message) => {
                problems.push(Problem::new(format!("{path}.type"), message));
                continue;
            }
        };
        let is_grid = !matches!(p.domain, Domain::Categorical { .. });
        let mut bad: Vec<(String, String, &ParamValue)> = Vec::new();
        for (suffix, v) in &values {
            if let Err(message) = parse_setting(&p.name, v) {
                bad.push((suffix.clone(), message, v));
            }
        }
        if is_grid && bad.len() > 1 {
            // One problem for a range, naming the values it would produce that fail.
            let listed: Vec<String> = bad.iter().take(8).map(|(_, _, v)| v.to_string()).collect();
            let more = if bad.len() > 8 { ", ..." } else { "" };
            problems.push(Problem::new(
                path.clone(),
                format!(
                    "the range can produce unusable values ({}{more}): {}",
                    listed.join(", "),
                    bad[0].1
                ),
            ));
        } else {
            for (suffix, message, _) in bad {
                problems.push(Problem::new(format!("{path}{suffix}"), message));
            }
        }
        possible.insert(
            &p.name,
            (path, values.into_iter().map(|(_, v)| v).collect()),
        );
    }

    for (name, value) in fixed {
        let path = format!("fixed.{name}");
        if let Err(message) = parse_setting(name, value) {
            problems.push(Problem::new(path.clone(), message));
        }
        possible.insert(name, (path, vec![value.clone()]));
    }

    if let (Some((_, _)), Some((path, _))) =
        (possible.get("dense_units"), possible.get("top_dense_units"))
    {
        problems.push(Problem::new(
            path.clone(),
            "`top_dense_units` is an alias of `dense_units`; give only one of them",
        ));
    }

    // Pool size and stride only make sense together.
    let as_u32 = |v: &ParamValue| match parse_setting("pool_size", v) {
        Ok(Setting::PoolSize(n)) => Some(n),
        _ => None,
    };
    let pool_values = |name: &str, default: u32| -> (Option<String>, Vec<u32>) {
        match possible.get(name) {
            Some((path, values)) => (
                Some(path.clone()),
                values.iter().filter_map(as_u32).collect(),
            ),
            None => (None, vec![default]),
        }
    };
    let (size_path, sizes) = pool_values("pool_size", 1);
    let (stride_path, strides) = pool_values("pool_stride", 2);
    let blame = size_path.or(stride_path);
    if let Some(blame) = blame {
        let failing: Vec<String> = sizes
            .iter()
            .flat_map(|&s| strides.iter().map(move |&t| (s, t)))
            .filter_map(|(s, t)| pool_problem(s, t))
            .collect();
        if let Some(first) = failing.first() {
            let more = if failing.len() > 1 {
                format!(
                    " ({} unusable pool_size/pool_stride pairs in all)",
                    failing.len()
                )
            } else {
                String::new()
            };
            problems.push(Problem::new(blame, format!("{first}{more}")));
        }
    }
    problems
}
