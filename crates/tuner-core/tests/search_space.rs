//! Search-space documents: the DESIGN example parses, round-trips, and every
//! malformed document is refused with the path of each problem.

use tuner_core::{
    CoreError, Domain, ParamValue, Params, SpecFormat, StudySpec, parse_spec, parse_spec_value,
};

const DESIGN_EXAMPLE: &str = r#"
version: 1
name: fashion-mnist-cnn
objective: {metric: val_accuracy, direction: maximize}
trainer: {kind: fashion-mnist-cnn, epochs: 3, validation_split: 0.2}
budget: {max_trials: 20, parallelism: 2}
optimizer: {kind: gp, initial_trials: 6, seed: 42}
pruner: {kind: median, warmup_epochs: 1}
parameters:
  conv_activation: {type: categorical, values: [relu, tanh, leaky_relu]}
  optimizer:       {type: categorical, values: [sgd, adam, rmsprop]}
  learning_rate:   {type: float, min: 1.0e-4, max: 1.0e-2, log: true}
  conv1_filters:   {type: int, min: 16, max: 128, step: 16}
  conv2_filters:   {type: int, min: 32, max: 256, step: 32}
  kernel_size:     {type: categorical, values: [3, 5]}
  dense_layers:    {type: int, min: 1, max: 3}
  dense_units_1:   {type: int, min: 32, max: 256, step: 32, when: {dense_layers: {min: 2}}}
  dense_activation: {type: categorical, values: [relu, tanh, leaky_relu]}
  batch_size:      {type: int, min: 32, max: 256, step: 32}
fixed: {pool_size: 1, pool_stride: 2}
"#;

fn parse(doc: &str) -> Result<StudySpec, CoreError> {
    parse_spec(doc, SpecFormat::Yaml)
}

#[test]
fn design_example_parses() {
    let spec = parse(DESIGN_EXAMPLE).expect("the DESIGN example is valid");
    assert_eq!(spec.parameters.len(), 10);
    assert_eq!(spec.budget.max_trials, 20);
    assert_eq!(spec.budget.parallelism, 2);
    assert_eq!(spec.fixed.get("pool_stride"), Some(&ParamValue::Int(2)));
    let names: Vec<&str> = spec
        .parameters
        .params()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names[0], "conv_activation", "document order is kept");
    let units = spec.parameters.get("dense_units_1").unwrap();
    assert_eq!(units.when.len(), 1);
    // Parents come before children in dependency order.
    let order: Vec<&str> = spec
        .parameters
        .in_dependency_order()
        .map(|p| p.name.as_str())
        .collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(pos("dense_layers") < pos("dense_units_1"));
}

#[test]
fn json_and_yaml_give_the_same_spec() {
    let yaml = parse(DESIGN_EXAMPLE).unwrap();
    let json_text = serde_json::to_string(&yaml).unwrap();
    let json = parse_spec(&json_text, SpecFormat::Json).unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn serialized_spec_round_trips_through_validation() {
    let spec = parse(DESIGN_EXAMPLE).unwrap();
    let value = serde_json::to_value(&spec).unwrap();
    let again = parse_spec_value(&value).unwrap();
    assert_eq!(spec, again);
}

#[test]
fn defaults_fill_optional_sections() {
    let spec = parse(
        "version: 1\nname: n\nobjective: {metric: loss, direction: minimize}\nbudget: {max_trials: 3}\nparameters:\n  x: {type: float, min: 0, max: 1}\n",
    )
    .unwrap();
    assert_eq!(spec.budget.parallelism, 1);
    assert_eq!(spec.budget.max_retries, 2);
    assert_eq!(spec.optimizer.kind, tuner_core::OptimizerKind::Gp);
    assert_eq!(spec.trainer.kind, tuner_core::TrainerKind::External);
    assert!(spec.pruner.is_none());
}

#[test]
fn cost_aware_is_opt_in_and_the_curve_pruner_defaults_to_no_warmup() {
    let doc = |trainer: &str, optimizer: &str, pruner: &str| {
        parse(&format!(
            "version: 1\nname: n\nobjective: {{metric: val_accuracy, direction: maximize}}\n\
             budget: {{max_trials: 3}}\n{trainer}{optimizer}{pruner}\
             parameters:\n  learning_rate: {{type: float, min: 1.0e-4, max: 1.0e-2, log: true}}\n"
        ))
        .unwrap()
    };
    let builtin = "trainer: {kind: fashion-mnist-cnn, epochs: 3}\n";
    assert!(!doc(builtin, "", "").optimizer.cost_aware);
    assert!(
        !doc(builtin, "optimizer: {kind: gp}\n", "")
            .optimizer
            .cost_aware
    );
    assert!(
        doc(builtin, "optimizer: {kind: gp, cost_aware: true}\n", "")
            .optimizer
            .cost_aware
    );
    assert!(
        !doc(builtin, "optimizer: {kind: gp, cost_aware: false}\n", "")
            .optimizer
            .cost_aware
    );
    assert!(
        !doc(builtin, "optimizer: {kind: random}\n", "")
            .optimizer
            .cost_aware
    );
    assert!(!doc("", "", "").optimizer.cost_aware, "external: off");
    assert!(
        doc("", "optimizer: {kind: gp, cost_aware: true}\n", "")
            .optimizer
            .cost_aware
    );
    let spec = doc(builtin, "", "pruner: {kind: curve}\n");
    assert_eq!(
        spec.pruner,
        Some(tuner_core::PrunerSpec::Curve {
            warmup_epochs: 0,
            min_trials: 5
        })
    );
    // The resolved spec validates to itself (a stored spec is re-read this way).
    let again = parse_spec_value(&serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(again, spec);
}

#[test]
fn decode_respects_steps_logs_and_bounds() {
    let spec = parse(DESIGN_EXAMPLE).unwrap();
    let space = &spec.parameters;
    for i in 0..200 {
        let u = (i as f64 + 0.5) / 200.0;
        let params = space.decode_with(|_| u);
        space.check_params(&params).unwrap();
        let filters = params["conv1_filters"].as_f64().unwrap();
        assert_eq!(filters % 16.0, 0.0);
        let lr = params["learning_rate"].as_f64().unwrap();
        assert!((1e-4..=1e-2).contains(&lr));
    }
    // The ends of a log scale are the bounds exactly.
    let lr = space.get("learning_rate").unwrap();
    assert_eq!(lr.domain.decode(0.0), ParamValue::Float(1.0e-4));
    assert_eq!(lr.domain.decode(1.0), ParamValue::Float(1.0e-2));
    // u = 0.5 on a log scale is the geometric middle.
    let lr = space.get("learning_rate").unwrap();
    let ParamValue::Float(mid) = lr.domain.decode(0.5) else {
        panic!()
    };
    assert!((mid - 1e-3).abs() < 1e-12);
}

#[test]
fn encode_inverts_decode() {
    let spec = parse(DESIGN_EXAMPLE).unwrap();
    for p in spec.parameters.params() {
        for i in 0..50 {
            let u = (i as f64 + 0.5) / 50.0;
            let v = p.domain.decode(u);
            let back = p.domain.encode(&v).unwrap();
            assert_eq!(p.domain.decode(back), v, "{} at u={u}", p.name);
        }
    }
}

#[test]
fn float_steps_do_not_drift() {
    let d = Domain::Float {
        min: 0.0,
        max: 0.9,
        log: false,
        step: Some(0.1),
    };
    assert_eq!(d.grid_len(), Some(10));
    assert_eq!(d.grid_value(3), ParamValue::Float(0.3));
    assert!(d.contains(&ParamValue::Float(0.7)));
    assert!(!d.contains(&ParamValue::Float(0.75)));
}

#[test]
fn conditions_switch_parameters_on_and_off() {
    let spec = parse(DESIGN_EXAMPLE).unwrap();
    let space = &spec.parameters;
    let p = space.get("dense_units_1").unwrap();
    let mut chosen = Params::new();
    chosen.insert("dense_layers".into(), ParamValue::Int(1));
    assert!(!space.is_active(p, &chosen));
    chosen.insert("dense_layers".into(), ParamValue::Int(2));
    assert!(space.is_active(p, &chosen));
}

#[test]
fn check_params_finds_missing_extra_and_out_of_range() {
    let spec = parse(DESIGN_EXAMPLE).unwrap();
    let mut params = spec.parameters.decode_with(|_| 0.1);
    params.insert("kernel_size".into(), ParamValue::Int(4));
    params.remove("batch_size");
    params.insert("bogus".into(), ParamValue::Bool(true));
    let Err(CoreError::InvalidParams(problems)) = spec.parameters.check_params(&params) else {
        panic!("expected problems")
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"kernel_size"), "{paths:?}");
    assert!(paths.contains(&"batch_size"), "{paths:?}");
    assert!(paths.contains(&"bogus"), "{paths:?}");
}

#[test]
fn enumerate_counts_conditional_configs_once() {
    let spec = parse(
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 3}\nparameters:\n  a: {type: categorical, values: [x, y]}\n  b: {type: int, min: 1, max: 3, when: {a: y}}\n",
    )
    .unwrap();
    // a=x (b inactive) + a=y with b in 1..=3.
    assert_eq!(spec.parameters.enumerate(100).unwrap().len(), 4);
}

/// Each malformed document, and a path that must be among the problems reported.
const MALFORMED: &[(&str, &str, &str)] = &[
    // A syntax error is placed at the field being read when the parser stopped.
    ("not yaml", "version: 1\nname: [unclosed\n", "name"),
    ("not a map", "- 1\n- 2\n", ""),
    (
        "wrong version",
        "version: 2\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "version",
    ),
    (
        "missing version",
        "name: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "version",
    ),
    (
        "missing name",
        "version: 1\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "name",
    ),
    (
        "empty name",
        "version: 1\nname: ''\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "name",
    ),
    (
        "unknown top-level field",
        "version: 1\nname: n\nobjetive: {}\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "objetive",
    ),
    (
        "bad direction",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximise}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "objective.direction",
    ),
    (
        "missing metric",
        "version: 1\nname: n\nobjective: {direction: maximize}\nbudget: {max_trials: 1}\nparameters: {}\n",
        "objective.metric",
    ),
    (
        "zero budget",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 0}\nparameters: {}\n",
        "budget.max_trials",
    ),
    (
        "negative parallelism",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5, parallelism: -1}\nparameters: {}\n",
        "budget.parallelism",
    ),
    (
        "absurd budget",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 1000000000}\nparameters: {}\n",
        "budget.max_trials",
    ),
    (
        "typo in budget",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trial: 5}\nparameters: {}\n",
        "budget.max_trial",
    ),
    (
        "unknown optimizer",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\noptimizer: {kind: tpe}\nparameters: {}\n",
        "optimizer.kind",
    ),
    (
        "unknown trainer",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\ntrainer: {kind: resnet}\nparameters: {}\n",
        "trainer.kind",
    ),
    (
        "bad validation split",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\ntrainer: {kind: external, validation_split: 1.5}\nparameters: {}\n",
        "trainer.validation_split",
    ),
    (
        "cost_aware not a boolean",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\noptimizer: {kind: gp, cost_aware: yes please}\nparameters: {}\n",
        "optimizer.cost_aware",
    ),
    (
        "cost_aware with the random optimizer",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\noptimizer: {kind: random, cost_aware: true}\nparameters: {}\n",
        "optimizer.cost_aware",
    ),
    (
        "curve pruner without trainer.epochs",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\npruner: {kind: curve}\nparameters: {}\n",
        "pruner.kind",
    ),
    (
        "curve pruner with too few trials to fit a line",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\ntrainer: {kind: external, epochs: 3}\nbudget: {max_trials: 5}\npruner: {kind: curve, min_trials: 2}\nparameters: {}\n",
        "pruner.min_trials",
    ),
    (
        "curve pruner with asha's fields",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\ntrainer: {kind: external, epochs: 3}\nbudget: {max_trials: 5}\npruner: {kind: curve, reduction_factor: 3}\nparameters: {}\n",
        "pruner.reduction_factor",
    ),
    (
        "unknown pruner",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\npruner: {kind: hyperband}\nparameters: {}\n",
        "pruner.kind",
    ),
    (
        "min >= max",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  lr: {type: float, min: 0.1, max: 0.01}\n",
        "parameters.lr.min",
    ),
    (
        "log with min <= 0",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  lr: {type: float, min: 0, max: 1, log: true}\n",
        "parameters.lr.min",
    ),
    (
        "int log with min 0",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  units: {type: int, min: 0, max: 100, log: true}\n",
        "parameters.units.min",
    ),
    (
        "step larger than range",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: int, min: 16, max: 32, step: 64}\n",
        "parameters.f.step",
    ),
    (
        "zero step",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: int, min: 16, max: 32, step: 0}\n",
        "parameters.f.step",
    ),
    (
        "float int bounds",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: int, min: 1.5, max: 32}\n",
        "parameters.f.min",
    ),
    (
        "missing max",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: float, min: 1}\n",
        "parameters.f.max",
    ),
    (
        "unknown type",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: double, min: 1, max: 2}\n",
        "parameters.f.type",
    ),
    (
        "typo in a parameter field",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  f: {type: float, min: 1, max: 2, lgo: true}\n",
        "parameters.f.lgo",
    ),
    (
        "empty categorical",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  act: {type: categorical, values: []}\n",
        "parameters.act.values",
    ),
    (
        "duplicate categorical",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  act: {type: categorical, values: [relu, tanh, relu]}\n",
        "parameters.act.values[2]",
    ),
    (
        "duplicate numeric categorical",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  k: {type: categorical, values: [3, 3.0]}\n",
        "parameters.k.values[1]",
    ),
    (
        "nested categorical value",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  k: {type: categorical, values: [[1, 2]]}\n",
        "parameters.k.values[0]",
    ),
    (
        "condition on unknown parameter",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  u: {type: int, min: 1, max: 4, when: {layers: {min: 2}}}\n",
        "parameters.u.when.layers",
    ),
    (
        "condition on itself",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  u: {type: int, min: 1, max: 4, when: {u: 2}}\n",
        "parameters.u.when.u",
    ),
    (
        "condition cycle",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  a: {type: int, min: 1, max: 4, when: {b: 2}}\n  b: {type: int, min: 1, max: 4, when: {a: 2}}\n",
        "parameters.b.when",
    ),
    (
        "condition value impossible",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  opt: {type: categorical, values: [sgd, adam]}\n  momentum: {type: float, min: 0, max: 1, when: {opt: sdg}}\n",
        "parameters.momentum.when.opt",
    ),
    (
        "range condition on strings",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  opt: {type: categorical, values: [sgd, adam]}\n  momentum: {type: float, min: 0, max: 1, when: {opt: {min: 2}}}\n",
        "parameters.momentum.when.opt",
    ),
    (
        "bad parameter name",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  '1st layer': {type: int, min: 1, max: 4}\n",
        "parameters.1st layer",
    ),
    (
        "parameters not a map",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters: [lr, momentum]\n",
        "parameters",
    ),
    (
        "fixed and tuned",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  lr: {type: float, min: 0.1, max: 1}\nfixed: {lr: 0.5}\n",
        "fixed.lr",
    ),
    (
        "fixed value is a map",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters: {}\nfixed: {pool: {size: 1}}\n",
        "fixed.pool",
    ),
    (
        "log with step",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  lr: {type: float, min: 0.001, max: 1, log: true, step: 0.001}\n",
        "parameters.lr.step",
    ),
    (
        "string bound",
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n  lr: {type: float, min: '0.1', max: 1}\n",
        "parameters.lr.min",
    ),
];

#[test]
fn malformed_documents_name_the_offending_path() {
    assert!(MALFORMED.len() >= 25);
    for (what, doc, path) in MALFORMED {
        match parse(doc) {
            Ok(_) => panic!("{what}: accepted a malformed document"),
            Err(CoreError::InvalidSpec(problems)) => {
                assert!(
                    problems.iter().any(|p| p.path == *path),
                    "{what}: expected a problem at `{path}`, got {problems:?}"
                );
                assert!(problems.iter().all(|p| !p.message.is_empty()));
            }
            Err(other) => panic!("{what}: unexpected error {other}"),
        }
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let doc = "version: 3\nname: n\nobjective: {metric: m, direction: up}\nbudget: {max_trials: 0}\nparameters:\n  a: {type: float, min: 2, max: 1}\n  b: {type: categorical, values: []}\n";
    let Err(CoreError::InvalidSpec(problems)) = parse(doc) else {
        panic!()
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "version",
        "objective.direction",
        "budget.max_trials",
        "parameters.a.min",
        "parameters.b.values",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}

#[test]
fn typos_get_a_suggestion() {
    let doc = "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5, paralelism: 2}\nparameters: {}\n";
    let Err(CoreError::InvalidSpec(problems)) = parse(doc) else {
        panic!()
    };
    assert!(
        problems[0].message.contains("did you mean `parallelism`"),
        "{problems:?}"
    );
}

#[test]
fn absurd_sizes_are_refused() {
    let mut doc = String::from(
        "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\nparameters:\n",
    );
    for i in 0..1001 {
        doc.push_str(&format!("  p{i}: {{type: float, min: 0, max: 1}}\n"));
    }
    let Err(CoreError::InvalidSpec(problems)) = parse(&doc) else {
        panic!()
    };
    assert_eq!(problems[0].path, "parameters");

    let values: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let doc = format!(
        "version: 1\nname: n\nobjective: {{metric: m, direction: maximize}}\nbudget: {{max_trials: 5}}\nparameters:\n  c: {{type: categorical, values: [{}]}}\n",
        values.join(", ")
    );
    let Err(CoreError::InvalidSpec(problems)) = parse(&doc) else {
        panic!()
    };
    assert_eq!(problems[0].path, "parameters.c.values");
}

/// The documents shipped in `search-spaces/` stay valid as validation gets stricter.

#[test]
fn shipped_search_spaces_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../search-spaces");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => SpecFormat::Yaml,
            Some("json") => SpecFormat::Json,
            _ => continue,
        };
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = parse_spec(&text, format) {
            panic!("{}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} files in {}", dir.display());
}

// ---------------------------------------------------------------------------
// Defects found by an outside tester; each test failed before its fix.

const HEAD_YAML: &str =
    "version: 1\nname: n\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 5}\n";
const HEAD_JSON: &str = r#""version": 1, "name": "n", "objective": {"metric": "m", "direction": "maximize"}, "budget": {"max_trials": 5}"#;

/// The problems of a document that must be refused.
fn refused(doc: &str, format: SpecFormat) -> Vec<tuner_core::Problem> {
    match parse_spec(doc, format) {
        Ok(_) => panic!("accepted: {doc}"),
        Err(CoreError::InvalidSpec(problems)) => problems,
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// A YAML document with the given `parameters:` body (indented lines).
fn yaml_params(body: &str) -> String {
    format!("{HEAD_YAML}parameters:\n{body}")
}

/// The problem at `path`, or a panic listing them all.
fn at<'a>(problems: &'a [tuner_core::Problem], path: &str) -> &'a tuner_core::Problem {
    problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at `{path}`: {problems:?}"))
}

#[test]
fn duplicate_keys_are_refused_in_yaml_and_json() {
    // (what, YAML, JSON, the path that must name the duplicate)
    let cases = [
        (
            "parameter given twice",
            yaml_params("  x: {type: float, min: 0, max: 1}\n  x: {type: float, min: 0, max: 2}\n"),
            format!(
                r#"{{{HEAD_JSON}, "parameters": {{"x": {{"type": "float", "min": 0, "max": 1}}, "x": {{"type": "float", "min": 0, "max": 2}}}}}}"#
            ),
            "parameters.x",
        ),
        (
            "top-level name twice",
            format!("{HEAD_YAML}name: other\nparameters: {{}}\n"),
            format!(r#"{{{HEAD_JSON}, "name": "other", "parameters": {{}}}}"#),
            "name",
        ),
        (
            "min twice in one parameter",
            yaml_params("  x: {type: float, min: 0, max: 1, min: 0.5}\n"),
            format!(
                r#"{{{HEAD_JSON}, "parameters": {{"x": {{"type": "float", "min": 0, "max": 1, "min": 0.5}}}}}}"#
            ),
            "parameters.x.min",
        ),
        (
            "parent twice in a condition",
            yaml_params(
                "  a: {type: int, min: 1, max: 3}\n  b: {type: int, min: 1, max: 3, when: {a: 2, a: 3}}\n",
            ),
            format!(
                r#"{{{HEAD_JSON}, "parameters": {{"a": {{"type": "int", "min": 1, "max": 3}}, "b": {{"type": "int", "min": 1, "max": 3, "when": {{"a": 2, "a": 3}}}}}}}}"#
            ),
            "parameters.b.when.a",
        ),
        (
            "fixed value twice",
            format!("{HEAD_YAML}parameters: {{}}\nfixed: {{pool_size: 1, pool_size: 2}}\n"),
            format!(
                r#"{{{HEAD_JSON}, "parameters": {{}}, "fixed": {{"pool_size": 1, "pool_size": 2}}}}"#
            ),
            "fixed.pool_size",
        ),
    ];
    for (what, yaml, json, path) in &cases {
        for (format, doc) in [(SpecFormat::Yaml, yaml), (SpecFormat::Json, json)] {
            let problems = refused(doc, format);
            let p = at(&problems, path);
            assert!(
                p.message.contains("more than once"),
                "{what} ({format:?}): {problems:?}"
            );
            // The duplicate is the only thing wrong with these documents.
            assert_eq!(problems.len(), 1, "{what} ({format:?}): {problems:?}");
        }
    }
}

#[test]
fn duplicates_are_reported_alongside_other_problems() {
    let doc =
        yaml_params("  x: {type: float, min: 0, max: 1}\n  x: {type: float, min: 2, max: 1}\n");
    let problems = refused(&doc, SpecFormat::Yaml);
    at(&problems, "parameters.x");
    at(&problems, "parameters.x.min");
}

#[test]
fn out_of_range_json_number_names_its_place() {
    let doc = format!(
        "{{{HEAD_JSON},\n \"parameters\": {{\n  \"x\": {{\"type\": \"float\", \"min\": 0, \"max\": 1e999}}}}}}"
    );
    let problems = refused(&doc, SpecFormat::Json);
    let p = at(&problems, "parameters.x.max");
    assert!(p.message.contains("line 3 column"), "{problems:?}");
    assert!(p.message.contains("out of range"), "{problems:?}");
}

#[test]
fn json_syntax_errors_name_the_enclosing_field() {
    let doc = format!(
        r#"{{{HEAD_JSON}, "parameters": {{"x": {{"type": "float" "min": 0, "max": 1}}}}}}"#
    );
    let problems = refused(&doc, SpecFormat::Json);
    let p = at(&problems, "parameters.x");
    assert!(p.message.contains("line 1 column"), "{problems:?}");
}

#[test]
fn out_of_range_yaml_numbers_say_so() {
    for bound in ["1e999", ".inf", "-.inf", ".nan"] {
        let doc = yaml_params(&format!("  x: {{type: float, min: 0, max: {bound}}}\n"));
        let problems = refused(&doc, SpecFormat::Yaml);
        let p = at(&problems, "parameters.x.max");
        assert!(
            p.message.contains("finite") || p.message.contains("out of the range"),
            "{bound}: {problems:?}"
        );
        assert_eq!(problems.len(), 1, "{bound}: {problems:?}");
    }
}

#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let json = format!(
        r#"{{{HEAD_JSON}, "parameters": {{"x": {{"type": "float", "min": 0, "max": 1}}}}}}"#
    );
    let yaml = yaml_params("  x: {type: float, min: 0, max: 1}\n");
    for (format, doc) in [(SpecFormat::Json, json), (SpecFormat::Yaml, yaml)] {
        let plain = parse_spec(&doc, format).unwrap();
        let with_bom = parse_spec(&format!("\u{feff}{doc}"), format)
            .unwrap_or_else(|e| panic!("{format:?} with a BOM: {e}"));
        assert_eq!(plain, with_bom);
    }
}

#[test]
fn int_bounds_beyond_2_pow_53_are_refused_without_overflow() {
    // The whole i64 range: both bounds are named, and no width is computed by wrapping.
    let doc =
        yaml_params("  n: {type: int, min: -9223372036854775808, max: 9223372036854775807}\n");
    let problems = refused(&doc, SpecFormat::Yaml);
    for path in ["parameters.n.min", "parameters.n.max"] {
        assert!(
            at(&problems, path).message.contains("9007199254740992"),
            "{problems:?}"
        );
    }
    assert!(
        problems.iter().all(|p| !p.message.contains("(-1)")),
        "{problems:?}"
    );

    // Past the limit, written as an integer or as a float; past i64 altogether.
    for (max, says) in [
        ("9007199254740993", "2^53"),
        ("1.0e16", "2^53"),
        ("10000000000000000000", "too large"),
        ("1.0e19", "too large"),
    ] {
        let doc = yaml_params(&format!("  n: {{type: int, min: 0, max: {max}}}\n"));
        let problems = refused(&doc, SpecFormat::Yaml);
        assert!(
            at(&problems, "parameters.n.max").message.contains(says),
            "{max}: {problems:?}"
        );
    }
    // A range with more values than the sampler's 2^53 buckets.
    let doc = yaml_params("  n: {type: int, min: -9007199254740992, max: 9007199254740992}\n");
    let problems = refused(&doc, SpecFormat::Yaml);
    assert!(
        at(&problems, "parameters.n").message.contains("2^53"),
        "{problems:?}"
    );

    // Right at the limit is fine, and its ends can be drawn.
    for body in [
        "  n: {type: int, min: 1, max: 9007199254740992}\n",
        "  n: {type: int, min: -9007199254740992, max: -1}\n",
    ] {
        let spec = parse(&yaml_params(body)).unwrap();
        let d = &spec.parameters.get("n").unwrap().domain;
        for u in [0.0, 0.5, 1.0 - f64::EPSILON / 2.0] {
            assert!(d.contains(&d.decode(u)), "{body} at {u}");
        }
    }
}

#[test]
fn float_ranges_wider_than_f64_are_refused() {
    let doc = yaml_params("  x: {type: float, min: -1.7e308, max: 1.7e308}\n");
    let problems = refused(&doc, SpecFormat::Yaml);
    assert!(
        at(&problems, "parameters.x").message.contains("overflow"),
        "{problems:?}"
    );
    // As wide as f64 allows is fine, and samples more than the maximum.
    let spec = parse(&yaml_params(
        "  x: {type: float, min: -8.0e307, max: 8.0e307}\n",
    ))
    .unwrap();
    let d = &spec.parameters.get("x").unwrap().domain;
    assert_eq!(d.decode(0.5), ParamValue::Float(0.0));
}

#[test]
fn float_grids_finer_than_f64_are_refused() {
    // Around 1e17 doubles are 16 apart: a step of 1 claims 65 values that do not exist.
    for body in [
        "  x: {type: float, min: 1.0e17, max: 100000000000000064, step: 1}\n",
        "  x: {type: float, min: 1.0e17, max: 100000000000000064, step: 24}\n",
        "  x: {type: float, min: -100000000000000064, max: -1.0e17, step: 1}\n",
        // 1.5 is between two spacings (2 apart at 1e16): the points round off the grid.
        "  x: {type: float, min: 1.0e16, max: 1.00000001e16, step: 1.5}\n",
    ] {
        let problems = refused(&yaml_params(body), SpecFormat::Yaml);
        let p = at(&problems, "parameters.x.step");
        assert!(p.message.contains("apart"), "{body}: {problems:?}");
    }
}

/// Every value of a float grid is distinct, inside the domain, and survives the unit cube.
fn assert_faithful_grid(body: &str, expected_len: u64) {
    let spec = parse(&yaml_params(body)).unwrap_or_else(|e| panic!("{body}: {e}"));
    let d = &spec.parameters.get("x").unwrap().domain;
    let n = d.grid_len().unwrap();
    assert_eq!(n, expected_len, "{body}");
    let values: Vec<ParamValue> = (0..n).map(|k| d.grid_value(k)).collect();
    for (k, v) in values.iter().enumerate() {
        assert!(d.contains(v), "{body}: value {k} = {v} not in the domain");
        let u = (k as f64 + 0.5) / n as f64;
        assert_eq!(&d.decode(u), v, "{body}: decode of bucket {k}");
        assert_eq!(
            &d.decode(d.encode(v).unwrap()),
            v,
            "{body}: round trip of {v}"
        );
        if k > 0 {
            assert!(values[k - 1].as_f64() < v.as_f64(), "{body}: {k} repeats");
        }
    }
}

#[test]
fn float_grids_at_any_magnitude_sample_every_point() {
    // Coarse enough for doubles at 1e17 (16 apart).
    assert_faithful_grid(
        "  x: {type: float, min: 1.0e17, max: 100000000000000064, step: 16}\n",
        5,
    );
    // Near the top of the f64 range (x·1e12 would overflow).
    assert_faithful_grid(
        "  x: {type: float, min: 0, max: 1.0e300, step: 1.0e299}\n",
        11,
    );
    // Far below 1e-12.
    assert_faithful_grid(
        "  x: {type: float, min: 0, max: 1.0e-15, step: 1.0e-16}\n",
        11,
    );
    // The ordinary case keeps its tidy decimals.
    assert_faithful_grid("  x: {type: float, min: 0, max: 0.9, step: 0.1}\n", 10);
    let spec = parse(&yaml_params(
        "  x: {type: float, min: 0, max: 0.9, step: 0.1}\n",
    ))
    .unwrap();
    let d = &spec.parameters.get("x").unwrap().domain;
    assert_eq!(d.grid_value(3), ParamValue::Float(0.3));
}

#[test]
fn range_conditions_that_can_never_hold_are_refused() {
    let parents = "  x: {type: float, min: 0, max: 1}\n  g: {type: int, min: 0, max: 10, step: 5}\n  f: {type: float, min: 0, max: 0.9, step: 0.3}\n  k: {type: categorical, values: [3, 5]}\n";
    for (cond, path) in [
        ("{x: {min: 5}}", "parameters.y.when.x"),
        ("{x: {max: -1}}", "parameters.y.when.x"),
        ("{x: {min: 2, max: 3}}", "parameters.y.when.x"),
        ("{x: {min: 0.8, max: 0.2}}", "parameters.y.when.x"),
        ("{g: {min: 1, max: 4}}", "parameters.y.when.g"),
        ("{g: {min: 11}}", "parameters.y.when.g"),
        ("{f: {min: 0.31, max: 0.59}}", "parameters.y.when.f"),
        ("{k: {min: 6}}", "parameters.y.when.k"),
        ("{k: {min: 3.5, max: 4.5}}", "parameters.y.when.k"),
    ] {
        let doc = yaml_params(&format!(
            "{parents}  y: {{type: float, min: 0, max: 1, when: {cond}}}\n"
        ));
        let problems = refused(&doc, SpecFormat::Yaml);
        let p = at(&problems, path);
        assert!(p.message.contains("never hold"), "{cond}: {problems:?}");
        assert_eq!(problems.len(), 1, "{cond}: {problems:?}");
    }
    // Conditions that hold somewhere, if only at an end or on one grid point.
    for cond in [
        "{x: {min: 1}}",
        "{x: {max: 0}}",
        "{x: {min: -5, max: 0.5}}",
        "{g: {min: 5, max: 5}}",
        "{g: {min: 9}}",
        "{f: {min: 0.3, max: 0.3}}",
        "{f: {min: 0.9}}",
        "{k: {min: 5}}",
        "{k: {max: 3}}",
    ] {
        let doc = yaml_params(&format!(
            "{parents}  y: {{type: float, min: 0, max: 1, when: {cond}}}\n"
        ));
        parse(&doc).unwrap_or_else(|e| panic!("{cond}: {e}"));
    }
}
