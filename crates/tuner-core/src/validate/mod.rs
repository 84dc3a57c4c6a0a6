//! Parsing and validation of search-space documents.
//!
//! The document is first read into a generic JSON tree (YAML is mapped onto the same
//! tree), then walked by hand so that *every* problem is collected with its path,
//! rather than stopping at the first one as `#[serde(deny_unknown_fields)]` would.
//!
//! This module holds the entry points and the walker's primitives (a typed field with
//! its path, unknown keys with a did-you-mean); the walk itself is split by section:
//! `sections` (the top level, objective, trainer, budget, optimizer, pruner, `fixed`),
//! `domains` (each parameter's domain) and `conditions` (`when` maps and the order of
//! conditional parameters).

use serde_json::{Map, Value};

use crate::{CoreError, Problem, StudySpec, limits};

mod conditions;
mod domains;
mod sections;

/// The syntax a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Json,
    /// YAML (a superset of JSON, so also accepts JSON text).
    Yaml,
}

/// Parses and validates a search-space document (one leading UTF-8 byte-order mark is
/// ignored).
///
/// Beyond what [`parse_spec_value`] checks, refuses what only the text shows: a key
/// given twice in one map, a number that is not finite; a syntax error is reported at
/// the field the parser was reading, with its line and column.
pub fn parse_spec(text: &str, format: SpecFormat) -> Result<StudySpec, CoreError> {
    let (value, mut problems) =
        crate::read::document(text, format).map_err(|p| CoreError::InvalidSpec(vec![p]))?;
    let checked = parse_spec_value(&value);
    if problems.is_empty() {
        return checked;
    }
    if let Err(CoreError::InvalidSpec(found)) = checked {
        // What reading found at a path says more than what validation then says there.
        let more: Vec<Problem> = found
            .into_iter()
            .filter(|p| !problems.iter().any(|q| q.path == p.path))
            .collect();
        problems.extend(more);
    }
    Err(CoreError::InvalidSpec(problems))
}

/// Whether the document sets `optimizer.seed` itself. A server gives a study whose
/// document does not a fresh seed, so that two studies of one file do not replay the
/// same sequence; a seed the document sets is kept, for reproducible studies.
pub fn sets_optimizer_seed(text: &str, format: SpecFormat) -> bool {
    crate::read::document(text, format)
        .is_ok_and(|(doc, _)| doc.get("optimizer").and_then(|o| o.get("seed")).is_some())
}

/// Validates a document already read into a JSON tree.
pub fn parse_spec_value(doc: &Value) -> Result<StudySpec, CoreError> {
    let mut v = Validator::default();
    let spec = v.study(doc);
    match spec {
        Some(spec) if v.problems.is_empty() => Ok(spec),
        _ => {
            if v.problems.is_empty() {
                v.problems.push(Problem::new("", "invalid document"));
            }
            Err(CoreError::InvalidSpec(v.problems))
        }
    }
}

/// The largest magnitude of an int parameter's bounds, and the most values it may
/// have: the unit-cube encoding carries ints as f64 (`k = floor(u · n)`, `min + k · step`),
/// and condition tests compare them as f64, which holds every integer only up to 2^53.
const MAX_INT_BOUND: i64 = 1 << 53;

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn suggestion(word: &str, allowed: &[&str]) -> String {
    let best = allowed
        .iter()
        // Levenshtein distance: a misspelt field is a few edits from the right one.
        .map(|a| (strsim::levenshtein(word, a), *a))
        .min()
        .filter(|(d, a)| *d <= 2.max(a.len() / 3));
    match best {
        Some((_, a)) => format!("; did you mean `{a}`?"),
        None => format!("; expected one of: {}", allowed.join(", ")),
    }
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// A map whose keys must all be in `allowed`; reports the unknown ones.
    fn object<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        allowed: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(map) => {
                for key in map.keys() {
                    if !allowed.contains(&key.as_str()) {
                        let hint = suggestion(key, allowed);
                        self.err(join(path, key), format!("unknown field `{key}`{hint}"));
                    }
                }
                Some(map)
            }
            other => {
                self.err(path, format!("expected a map, found {}", type_of(other)));
                None
            }
        }
    }

    fn required<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a Value> {
        let v = map.get(key);
        if v.is_none() {
            self.err(join(path, key), "required field is missing");
        }
        v
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if s.trim().is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            Value::String(s) if s.len() > limits::MAX_NAME_LEN => {
                self.err(
                    path,
                    format!("longer than {} characters", limits::MAX_NAME_LEN),
                );
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(path, format!("expected a string, found {}", type_of(other)));
                None
            }
        }
    }

    fn number(&mut self, path: &str, v: &Value) -> Option<f64> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            Some(_) => {
                self.err(path, "must be a finite number");
                None
            }
            None => {
                // YAML reads a number beyond f64 (`1e999`) as a string.
                let hint = match v {
                    Value::String(s)
                        if s.parse::<f64>().is_ok_and(f64::is_infinite)
                            && s.bytes()
                                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
                    {
                        format!(
                            " (`{s}` would be out of the range of a 64-bit float, about ±{:e})",
                            f64::MAX
                        )
                    }
                    _ => String::new(),
                };
                self.err(
                    path,
                    format!("expected a number, found {}{hint}", type_of(v)),
                );
                None
            }
        }
    }

    fn integer(&mut self, path: &str, v: &Value) -> Option<i64> {
        if let Some(i) = v.as_i64() {
            return Some(i);
        }
        match v.as_f64() {
            // Whole numbers written as floats (`1.0e6`); below 2^63, so `as` is exact.
            Some(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Some(x as i64),
            Some(x) if x.fract() == 0.0 => {
                self.err(path, format!("{x:e} is too large for a 64-bit integer"));
                None
            }
            Some(x) => {
                self.err(path, format!("expected an integer, found {x}"));
                None
            }
            None => {
                self.err(path, format!("expected an integer, found {}", type_of(v)));
                None
            }
        }
    }

    /// An integer within `[lo, hi]`, or the default when absent.
    fn bounded_int(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        key: &str,
        lo: i64,
        hi: i64,
        default: Option<i64>,
    ) -> Option<i64> {
        let p = join(path, key);
        let Some(v) = map.get(key) else {
            if default.is_none() {
                self.err(p, "required field is missing");
            }
            return default;
        };
        let i = self.integer(&p, v)?;
        if i < lo {
            self.err(p, format!("must be at least {lo}, found {i}"));
            None
        } else if i > hi {
            self.err(p, format!("must be at most {hi}, found {i}"));
            None
        } else {
            Some(i)
        }
    }

    fn boolean(&mut self, path: &str, v: Option<&Value>) -> Option<bool> {
        match v {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.err(
                    path,
                    format!("expected true or false, found {}", type_of(other)),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, path: &str, v: &Value, options: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        match v {
            Value::String(s) => match options.iter().find(|(n, _)| n == s) {
                Some((_, t)) => Some(*t),
                None => {
                    let hint = suggestion(s, &names);
                    self.err(path, format!("unknown value `{s}`{hint}"));
                    None
                }
            },
            other => {
                self.err(
                    path,
                    format!(
                        "expected one of {}, found {}",
                        names.join(", "),
                        type_of(other)
                    ),
                );
                None
            }
        }
    }
}

/// A number for a message: plain when short, in exponent form when very large or small
/// (`1.7e308` rather than 309 digits).
fn num(x: f64) -> String {
    if x != 0.0 && !(1e-4..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 100
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
