//! The behaviour every [`Sampler`] must show, as a reusable suite.
//!
//! Call [`run_all`] from a sampler's tests. Each check panics with a message that
//! names the sampler and what it got wrong.

use std::collections::HashSet;

use tuner_core::{Direction, ParamValue, Params, SearchSpace, SpecFormat, config_key, parse_spec};

use crate::{Observation, OptimError, Outcome, Sampler, SuggestContext};

/// A mixed space with every kind of parameter, log scales, steps and a condition chain.
pub const MIXED_SPACE: &str = r#"
version: 1
name: conformance-mixed
objective: {metric: score, direction: maximize}
budget: {max_trials: 100}
parameters:
  lr:        {type: float, min: 1.0e-5, max: 1.0, log: true}
  momentum:  {type: float, min: 0.0, max: 0.9, step: 0.1, when: {optimizer: sgd}}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  filters:   {type: int, min: 16, max: 128, step: 16}
  units:     {type: int, min: 1, max: 1024, log: true}
  layers:    {type: int, min: 1, max: 3}
  units_2:   {type: int, min: 32, max: 256, step: 32, when: {layers: {min: 2}}}
  units_3:   {type: int, min: 32, max: 256, step: 32, when: {layers: 3, units_2: {max: 128}}}
  kernel:    {type: categorical, values: [3, 5]}
  flag:      {type: categorical, values: [true, false]}
"#;

/// A finite space with 2 × 3 = 6 configurations plus a conditional one (3 more).
pub const SMALL_SPACE: &str = r#"
version: 1
name: conformance-small
objective: {metric: loss, direction: minimize}
budget: {max_trials: 100}
parameters:
  a: {type: categorical, values: [x, y]}
  b: {type: int, min: 0, max: 2}
  c: {type: categorical, values: [1, 2, 3], when: {a: y, b: 2}}
"#;

/// Distinct configurations of [`SMALL_SPACE`]: a=x (3) + a=y,b<2 (2) + a=y,b=2 (3).
pub const SMALL_SPACE_SIZE: usize = 8;

pub fn space(doc: &str) -> SearchSpace {
    parse_spec(doc, SpecFormat::Yaml)
        .expect("conformance space parses")
        .parameters
}

fn ctx<'a>(
    space: &'a SearchSpace,
    history: &'a [Observation],
    seed: u64,
    direction: Direction,
) -> SuggestContext<'a> {
    SuggestContext {
        space,
        direction,
        seed,
        trial_number: history.len() as u64,
        history,
        batch: &[],
        seen: None,
    }
}

/// A made-up objective so model-based samplers have something to fit.
fn score(params: &Params) -> f64 {
    params
        .values()
        .map(|v| match v {
            ParamValue::Float(x) => x.abs().ln_1p(),
            ParamValue::Int(i) => (*i as f64).ln_1p() / 3.0,
            ParamValue::Bool(b) => f64::from(u8::from(*b)),
            ParamValue::Str(s) => s.len() as f64 / 10.0,
        })
        .sum()
}

/// Runs every check.
pub fn run_all(sampler: &dyn Sampler) {
    suggestions_fit_the_space(sampler);
    same_seed_and_history_give_same_suggestion(sampler);
    never_repeats_completed_pending_or_failed(sampler);
    reports_exhaustion_of_a_finite_space(sampler);
    one_point_space_gives_one_config(sampler);
    log_scale_covers_every_decade(sampler);
}

/// Every suggestion passes `check_params`: in range, on the step grid, active
/// parameters present and inactive ones absent.
pub fn suggestions_fit_the_space(sampler: &dyn Sampler) {
    let space = space(MIXED_SPACE);
    let mut history = Vec::new();
    let mut saw_inactive = false;
    let mut saw_active = false;
    for _ in 0..60 {
        let params = sampler
            .suggest(&ctx(&space, &history, 7, Direction::Maximize))
            .unwrap_or_else(|e| panic!("{}: suggest failed: {e}", sampler.name()));
        if let Err(e) = space.check_params(&params) {
            panic!(
                "{}: suggestion {params:?} does not fit: {e}",
                sampler.name()
            );
        }
        saw_active |= params.contains_key("units_3");
        saw_inactive |= !params.contains_key("units_2");
        let value = score(&params);
        history.push(Observation::new(params, Outcome::Completed(value)));
    }
    assert!(
        saw_active && saw_inactive,
        "{}: conditional parameters never switched on/off in 60 trials",
        sampler.name()
    );
}

pub fn same_seed_and_history_give_same_suggestion(sampler: &dyn Sampler) {
    let space = space(MIXED_SPACE);
    let mut history = Vec::new();
    for _ in 0..12 {
        let a = sampler
            .suggest(&ctx(&space, &history, 99, Direction::Minimize))
            .unwrap();
        let b = sampler
            .suggest(&ctx(&space, &history, 99, Direction::Minimize))
            .unwrap();
        assert_eq!(a, b, "{}: not deterministic", sampler.name());
        let value = score(&a);
        history.push(Observation::new(a, Outcome::Completed(value)));
    }
    let other = sampler
        .suggest(&ctx(&space, &[], 100, Direction::Minimize))
        .unwrap();
    let first = &history[0].params;
    assert_ne!(
        &other,
        first,
        "{}: different seeds gave the same first suggestion",
        sampler.name()
    );
}

/// In a space of 8 configurations, 8 suggestions with mixed outcomes are all distinct.
pub fn never_repeats_completed_pending_or_failed(sampler: &dyn Sampler) {
    let space = space(SMALL_SPACE);
    let mut history: Vec<Observation> = Vec::new();
    let mut keys = HashSet::new();
    for i in 0..SMALL_SPACE_SIZE {
        let params = sampler
            .suggest(&ctx(&space, &history, 3, Direction::Minimize))
            .unwrap_or_else(|e| panic!("{}: suggestion {i} failed: {e}", sampler.name()));
        space.check_params(&params).unwrap();
        assert!(
            keys.insert(config_key(&params)),
            "{}: repeated {params:?} after {i} trials",
            sampler.name()
        );
        let outcome = match i % 4 {
            0 => Outcome::Completed(score(&params)),
            1 => Outcome::Pending,
            2 => Outcome::Failed,
            _ => Outcome::Pruned(Some(1.0)),
        };
        history.push(Observation::new(params, outcome));
    }
}

pub fn reports_exhaustion_of_a_finite_space(sampler: &dyn Sampler) {
    let space = space(SMALL_SPACE);
    let all = space.enumerate(1_000).expect("small space enumerates");
    assert_eq!(all.len(), SMALL_SPACE_SIZE);
    let history: Vec<Observation> = all
        .into_iter()
        .map(|params| {
            let value = score(&params);
            Observation::new(params, Outcome::Completed(value))
        })
        .collect();
    let err = sampler
        .suggest(&ctx(&space, &history, 1, Direction::Minimize))
        .expect_err("a used-up space must not yield a suggestion");
    assert_eq!(
        err,
        OptimError::Exhausted {
            distinct: SMALL_SPACE_SIZE as u64
        },
        "{}",
        sampler.name()
    );
}

/// A space with no tuned parameters has exactly one configuration: `{}`.
pub fn one_point_space_gives_one_config(sampler: &dyn Sampler) {
    let space = space(
        "version: 1\nname: one\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\nfixed: {lr: 0.001}\n",
    );
    let first = sampler
        .suggest(&ctx(&space, &[], 0, Direction::Maximize))
        .unwrap();
    assert!(first.is_empty(), "{}: {first:?}", sampler.name());
    let history = [Observation::new(first, Outcome::Pending)];
    assert!(matches!(
        sampler.suggest(&ctx(&space, &history, 0, Direction::Maximize)),
        Err(OptimError::Exhausted { distinct: 1 })
    ));
}

/// Over the initial design, a log-scaled parameter spanning five decades lands in
/// at least four of them (a linear draw would put ~90% in the top decade).
pub fn log_scale_covers_every_decade(sampler: &dyn Sampler) {
    let space = space(MIXED_SPACE);
    let mut history = Vec::new();
    let mut decades = HashSet::new();
    for _ in 0..20 {
        let params = sampler
            .suggest(&ctx(&space, &history, 11, Direction::Maximize))
            .unwrap();
        if let Some(ParamValue::Float(lr)) = params.get("lr") {
            decades.insert(lr.log10().floor() as i64);
        }
        history.push(Observation::new(params, Outcome::Pending));
    }
    assert!(
        decades.len() >= 4,
        "{}: log-scaled lr covered only decades {decades:?} in 20 trials",
        sampler.name()
    );
}
