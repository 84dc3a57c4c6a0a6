//! Conditional parameters: each `when` map, whether its tests can hold for the
//! parent's domain, and an order in which parents come before their children.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::{Validator, join, num, type_of};
use crate::{Condition, Domain, ParamSpec, ParamValue, space::ConditionTest};

impl Validator {
    pub(super) fn conditions(
        &mut self,
        name: &str,
        when: &Map<String, Value>,
        domains: &HashMap<String, Domain>,
    ) -> Vec<Condition> {
        let mut out = Vec::new();
        for (parent, test) in when {
            let path = format!("parameters.{name}.when.{parent}");
            if parent == name {
                self.err(path, "a parameter cannot depend on itself");
                continue;
            }
            let Some(parent_domain) = domains.get(parent) else {
                self.err(path, format!("refers to unknown parameter `{parent}`"));
                continue;
            };
            let parsed = match test {
                Value::Object(m) => {
                    for key in m.keys() {
                        if key != "min" && key != "max" {
                            self.err(
                                join(&path, key),
                                format!("unknown field `{key}`; expected min and/or max"),
                            );
                        }
                    }
                    if m.is_empty() {
                        self.err(&path, "a range condition needs min and/or max");
                        None
                    } else if matches!(parent_domain, Domain::Categorical { .. }) {
                        let numeric = matches!(parent_domain, Domain::Categorical { values } if values.iter().all(|v| v.as_f64().is_some()));
                        if numeric {
                            self.range(&path, m)
                        } else {
                            self.err(
                                &path,
                                format!(
                                    "`{parent}` is not numeric; use a value or a list of values"
                                ),
                            );
                            None
                        }
                    } else {
                        self.range(&path, m)
                    }
                }
                Value::Array(list) if list.is_empty() => {
                    self.err(&path, "must list at least one value");
                    None
                }
                Value::Array(list) => {
                    let mut values = Vec::new();
                    for (i, item) in list.iter().enumerate() {
                        if let Some(v) = self.condition_value(
                            &format!("{path}[{i}]"),
                            item,
                            parent,
                            parent_domain,
                        ) {
                            values.push(v);
                        }
                    }
                    (values.len() == list.len()).then_some(ConditionTest::OneOf(values))
                }
                scalar => self
                    .condition_value(&path, scalar, parent, parent_domain)
                    .map(|v| ConditionTest::OneOf(vec![v])),
            };
            if let Some(test @ ConditionTest::Range { min, max }) = &parsed
                && !can_hold(test, parent_domain)
            {
                let wanted = match (min, max) {
                    (Some(lo), Some(hi)) => format!("in [{}, {}]", num(*lo), num(*hi)),
                    (Some(lo), None) => format!("≥ {}", num(*lo)),
                    (None, Some(hi)) => format!("≤ {}", num(*hi)),
                    (None, None) => String::new(),
                };
                self.err(
                    &path,
                    format!(
                        "the condition can never hold: {}, none of them {wanted}",
                        values_of(parent, parent_domain)
                    ),
                );
                continue;
            }
            if let Some(test) = parsed {
                out.push(Condition {
                    parent: parent.clone(),
                    test,
                });
            }
        }
        out
    }

    fn range(&mut self, path: &str, m: &Map<String, Value>) -> Option<ConditionTest> {
        let min = match m.get("min") {
            Some(v) => Some(self.number(&join(path, "min"), v)?),
            None => None,
        };
        let max = match m.get("max") {
            Some(v) => Some(self.number(&join(path, "max"), v)?),
            None => None,
        };
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            self.err(
                path,
                format!("min ({lo}) is greater than max ({hi}): the condition can never hold"),
            );
            return None;
        }
        Some(ConditionTest::Range { min, max })
    }

    fn condition_value(
        &mut self,
        path: &str,
        v: &Value,
        parent: &str,
        domain: &Domain,
    ) -> Option<ParamValue> {
        let Some(value) = ParamValue::from_json(v) else {
            self.err(
                path,
                format!(
                    "expected a value of `{parent}`, a list of them, or {{min, max}}, found {}",
                    type_of(v)
                ),
            );
            return None;
        };
        if !domain.contains(&value) {
            self.err(
                path,
                format!("`{value}` is not a possible value of `{parent}`, so the condition can never hold"),
            );
            return None;
        }
        Some(value)
    }

    /// A topological order of the condition graph; reports cycles.
    pub(super) fn dependency_order(&mut self, params: &[ParamSpec]) -> Option<Vec<usize>> {
        let index: BTreeMap<&str, usize> = params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut mark = vec![0u8; params.len()];
        let mut order = Vec::with_capacity(params.len());
        let mut cyclic = false;
        for start in 0..params.len() {
            if mark[start] != 0 {
                continue;
            }
            // Iterative DFS: (node, next parent to visit).
            let mut stack = vec![(start, 0usize)];
            mark[start] = 1;
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                let parents = &params[node].when;
                if *next < parents.len() {
                    let parent = index.get(parents[*next].parent.as_str()).copied();
                    *next += 1;
                    if let Some(parent) = parent {
                        match mark[parent] {
                            0 => {
                                mark[parent] = 1;
                                stack.push((parent, 0));
                            }
                            1 => {
                                let cycle: Vec<&str> = stack
                                    .iter()
                                    .map(|(i, _)| params[*i].name.as_str())
                                    .skip_while(|n| *n != params[parent].name)
                                    .collect();
                                self.err(
                                    format!("parameters.{}.when", params[node].name),
                                    format!(
                                        "conditions form a cycle: {} → {}",
                                        cycle.join(" → "),
                                        params[parent].name
                                    ),
                                );
                                cyclic = true;
                            }
                            _ => {}
                        }
                    }
                } else {
                    mark[node] = 2;
                    order.push(node);
                    stack.pop();
                }
            }
        }
        (!cyclic).then_some(order)
    }
}

/// Whether some value of `domain` passes a range test (any other test: true).
fn can_hold(test: &ConditionTest, domain: &Domain) -> bool {
    let ConditionTest::Range { min: lo, max: hi } = test else {
        return true;
    };
    let (first, step) = match domain {
        Domain::Categorical { values } => return values.iter().any(|v| test.holds(v)),
        Domain::Float {
            min,
            max,
            step: None,
            ..
        } => return lo.is_none_or(|lo| lo <= *max) && hi.is_none_or(|hi| hi >= *min),
        Domain::Float {
            min,
            step: Some(step),
            ..
        } => (*min, *step),
        Domain::Int { min, step, .. } => (*min as f64, *step as f64),
    };
    // On a grid, the first point ≥ lo is next to point floor((lo - min) / step);
    // test that one and its neighbours as the sampler makes them.
    let Some(n) = domain.grid_len() else {
        return true;
    };
    let last = n.saturating_sub(1);
    let k = lo.map_or(0.0, |lo| ((lo - first) / step).floor());
    let k = k.clamp(0.0, last as f64) as u64;
    (k.saturating_sub(1)..=(k + 1).min(last)).any(|k| test.holds(&domain.grid_value(k)))
}

/// What values a parent takes, for a message.
fn values_of(parent: &str, domain: &Domain) -> String {
    match domain {
        Domain::Float { min, max, step, .. } => {
            let steps = step.map_or(String::new(), |s| format!(" in steps of {}", num(s)));
            format!(
                "`{parent}` takes values from {} to {}{steps}",
                num(*min),
                num(*max)
            )
        }
        Domain::Int { min, max, step, .. } => {
            let steps = if *step == 1 {
                String::new()
            } else {
                format!(" in steps of {step}")
            };
            format!("`{parent}` takes values from {min} to {max}{steps}")
        }
        Domain::Categorical { values } => {
            let mut listed: Vec<String> = values.iter().take(10).map(ToString::to_string).collect();
            if values.len() > 10 {
                listed.push("…".into());
            }
            format!("`{parent}`'s values are {}", listed.join(", "))
        }
    }
}
