//! End to end: the real `tuner-cli` binary serving on loopback, driven by concurrent
//! HTTP workers, killed and restarted, and used through its client commands.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use tuner_api::{ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat, ReportRequest};
use tuner_core::{StudyId, StudyState, TrialState, config_key};

const BIN: &str = env!("CARGO_BIN_EXE_tuner-cli");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[path = "support/server.rs"]
mod server;
use server::Server;

#[path = "support/browser.rs"]
mod browser;
use browser::Browser;

fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .expect("tuner-cli runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn space(max_trials: u32, parallelism: u32) -> String {
    format!(
        "version: 1\nname: e2e\nobjective: {{metric: score, direction: maximize}}\n\
         budget: {{max_trials: {max_trials}, parallelism: {parallelism}}}\n\
         optimizer: {{kind: random, seed: 1}}\n\
         parameters:\n  x: {{type: float, min: -2.0, max: 2.0}}\n  \
         n: {{type: int, min: 1, max: 64, log: true}}\n  \
         act: {{type: categorical, values: [relu, tanh, gelu]}}\nfixed: {{epochs: 1}}\n"
    )
}

/// A worker: ask → report → complete until the study is done.
async fn worker(client: ApiClient, study: StudyId, name: String) -> u32 {
    worker_for(client, study, name, u32::MAX).await
}

/// A worker that stops after `max_trials` trials, or when the study is done.
async fn worker_for(client: ApiClient, study: StudyId, name: String, max_trials: u32) -> u32 {
    let mut done = 0;
    while done < max_trials {
        let req = AskRequest {
            worker: Some(name.clone()),
        };
        match client.ask(study, &req).await.unwrap() {
            AskAnswer::Done => break,
            AskAnswer::Wait(d) => tokio::time::sleep(d.min(Duration::from_millis(50))).await,
            AskAnswer::Leased(a) => {
                let x = a.trial.params["x"].as_f64().unwrap();
                let token = Some(a.lease.token.clone());
                client
                    .report(
                        a.trial.id,
                        &ReportRequest {
                            lease_token: token.clone(),
                            epoch: 1,
                            value: Some(-x * x),
                            metrics: Default::default(),
                        },
                    )
                    .await
                    .unwrap();
                client
                    .complete(
                        a.trial.id,
                        &CompleteRequest {
                            lease_token: token,
                            value: Some(-x * x),
                            metrics: Default::default(),
                        },
                    )
                    .await
                    .unwrap();
                done += 1;
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_workers_spend_the_budget_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("e2e.db"), &[]);
    let client = server.client();
    let study = client
        .create_study(&space(120, 16), DocFormat::Yaml)
        .await
        .unwrap();
    let handles: Vec<_> = (0..16)
        .map(|i| tokio::spawn(worker(client.clone(), study.id, format!("w{i}"))))
        .collect();
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(h.await.unwrap());
    }
    assert_eq!(per_worker.iter().sum::<u32>(), 120, "{per_worker:?}");

    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 120);
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..120).collect::<Vec<u64>>(), "dense from 0");
    assert!(trials.iter().all(|t| t.state == TrialState::Completed));
    let distinct: HashSet<String> = trials.iter().map(|t| config_key(&t.params)).collect();
    assert_eq!(distinct.len(), 120, "no configuration handed out twice");
    let study = client.get_study(study.id).await.unwrap();
    assert_eq!(study.state, StudyState::Completed);
    assert_eq!(study.counts.completed, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_with_every_trial_and_lease_intact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let server = Server::start(&db, &[]);
    let client = server.client();
    let study = client
        .create_study(&space(4, 2), DocFormat::Yaml)
        .await
        .unwrap();
    let lease = |a: AskAnswer| match a {
        AskAnswer::Leased(a) => a,
        other => panic!("expected a trial, got {other:?}"),
    };
    let first = lease(client.ask(study.id, &AskRequest::default()).await.unwrap());
    let second = lease(client.ask(study.id, &AskRequest::default()).await.unwrap());
    let complete = |token: &str, v: f64| CompleteRequest {
        lease_token: Some(token.to_owned()),
        value: Some(v),
        metrics: Default::default(),
    };
    client
        .complete(first.trial.id, &complete(&first.lease.token, 0.5))
        .await
        .unwrap();
    server.kill();

    let server = Server::start(&db, &[]);
    let client = server.client();
    // The worker holding the second trial finishes it with its old lease.
    client
        .complete(second.trial.id, &complete(&second.lease.token, 0.7))
        .await
        .unwrap();
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 2);
    assert!(trials.iter().all(|t| t.state == TrialState::Completed));
    assert_eq!(trials[0].value, Some(0.5));
    // The study goes on where it was: the next trial is number 2.
    let third = lease(client.ask(study.id, &AskRequest::default()).await.unwrap());
    assert_eq!(third.trial.number, 2);
}

#[test]
fn client_commands_create_list_and_export_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("cli.db"), &[]);
    let file = dir.path().join("space.yaml");
    std::fs::write(&file, space(3, 1)).unwrap();

    let out = cli(&server.url, &["create", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id: i64 = stdout(&out).trim().parse().expect("create prints the id");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(worker(server.client(), StudyId(id), "w".into()));

    let studies = cli(&server.url, &["studies"]);
    assert!(stdout(&studies).contains("e2e"), "{}", stdout(&studies));
    let table = cli(&server.url, &["trials", &id.to_string()]);
    assert!(stdout(&table).contains("completed"), "{}", stdout(&table));
    assert_eq!(
        stdout(&table).lines().count(),
        5,
        "header, 3 trials, summary"
    );
    let json = cli(&server.url, &["trials", &id.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["trials"].as_array().unwrap().len(), 3);
    // The best two, best first; the table says how many there are in all.
    let top = cli(
        &server.url,
        &[
            "trials",
            &id.to_string(),
            "--sort",
            "value",
            "--desc",
            "--limit",
            "2",
            "--json",
        ],
    );
    let top: serde_json::Value = serde_json::from_slice(&top.stdout).unwrap();
    let values: Vec<f64> = top["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["value"].as_f64().unwrap())
        .collect();
    assert_eq!((values.len(), top["total"].as_u64()), (2, Some(3)));
    assert!(values[0] >= values[1]);
    let page = cli(
        &server.url,
        &[
            "trials",
            &id.to_string(),
            "--limit",
            "1",
            "--state",
            "completed",
        ],
    );
    assert!(stdout(&page).contains("1 of 3 trials"), "{}", stdout(&page));

    let best = cli(&server.url, &["best", &id.to_string(), "--format", "json"]);
    assert!(best.status.success(), "{}", stderr(&best));
    let config: serde_json::Value = serde_json::from_slice(&best.stdout).unwrap();
    let obj = config.as_object().expect("one JSON object");
    assert!(obj.contains_key("x") && obj.contains_key("act"));
    assert_eq!(obj["epochs"], 1, "fixed values are part of the config");
    let best_x = obj["x"].as_f64().unwrap();
    let all_x: Vec<f64> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["params"]["x"].as_f64().unwrap())
        .collect();
    assert!(
        all_x.iter().all(|x| best_x.abs() <= x.abs()),
        "the winner has the best score"
    );

    let yaml_file = dir.path().join("best.yaml");
    let out = cli(
        &server.url,
        &[
            "best",
            &id.to_string(),
            "--format",
            "yaml",
            "-o",
            yaml_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml_file).unwrap()).unwrap();
    assert_eq!(yaml, config);
}

#[test]
fn client_commands_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nname: x\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 0}\nparameters:\n  lr: {type: float, min: 1, max: 0}\n",
    )
    .unwrap();
    let out = cli("http://127.0.0.1:9", &["validate", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("budget.max_trials") && err.contains("parameters.lr.min"),
        "{err}"
    );

    // No server there: says where it tried, once, and what to do.
    let out = cli("http://127.0.0.1:9", &["studies"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the tuner server at http://127.0.0.1:9")
            && err.contains("`tuner-cli serve`"),
        "{err}"
    );
    assert_eq!(err.matches("127.0.0.1:9").count(), 1, "{err}");

    let server = Server::start(&dir.path().join("e.db"), &[]);
    let out = cli(&server.url, &["create", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("parameters.lr.min"),
        "{}",
        stderr(&out)
    );
    let out = cli(&server.url, &["trials", "42"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("study 42 not found"),
        "{}",
        stderr(&out)
    );
    let out = cli(&server.url, &["create", "/nonexistent.yaml"]);
    assert!(
        stderr(&out).contains("cannot read /nonexistent.yaml"),
        "{}",
        stderr(&out)
    );
}

/// The README's reference search space is a document a user may copy: it must pass.
#[test]
fn the_readmes_search_space_reference_is_valid() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Search spaces (version 1)").unwrap()..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readme.yaml");
    std::fs::write(&path, block).unwrap();
    let out = cli("http://127.0.0.1:9", &["validate", path.to_str().unwrap()]);
    assert!(out.status.success(), "{block}\n{}", stderr(&out));
}

#[test]
fn every_shipped_search_space_is_valid() {
    let dir = repo_root().join("search-spaces");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = cli("http://127.0.0.1:9", &["validate", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn the_python_worker_from_the_readme_drives_a_study() {
    if Command::new("python3").arg("--version").output().is_err() {
        // Visible in nextest's output only on failure, hence the CI check: there the
        // README's worker must really run.
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is missing: CI must run the README's Python worker"
        );
        eprintln!("skipped: python3 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("py.db"), &[]);
    let space = repo_root().join("search-spaces/external-branin.yaml");
    let out = cli(&server.url, &["create", space.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let workers: Vec<Child> = (0..2)
        .map(|_| {
            Command::new("python3")
                .arg(repo_root().join("examples/python_worker.py"))
                .env("TUNER_SERVER", &server.url)
                .env("STUDY", &id)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let json = cli(&server.url, &["study", &id, "--json"]);
    let study: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(study["state"], "completed", "{study}");
    assert_eq!(study["counts"]["completed"], 30);
    assert!(study["best"]["value"].as_f64().unwrap() < 10.0);

    let imp = cli(&server.url, &["importance", &id]);
    assert!(imp.status.success(), "{}", stderr(&imp));
    let text = stdout(&imp);
    assert!(
        text.contains("x1") && text.contains("x2") && text.contains('%'),
        "{text}"
    );

    // Its export names its trainer, and `train` refuses it saying why (not "unknown
    // parameter x1").
    let best = dir.path().join("best.yaml");
    let out = cli(
        &server.url,
        &[
            "best",
            &id,
            "--format",
            "yaml",
            "-o",
            best.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The value to 4 significant digits, as everywhere else.
    let said = stderr(&out);
    let value = said
        .split("(value ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the value is said: {said}"));
    assert!(value.trim_start_matches('-').len() <= 6, "{said}");
    let config: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&best).unwrap()).unwrap();
    assert_eq!(config["trainer"], "external", "{config}");
    assert!(
        config["x1"].is_number() && config.get("seed").is_none(),
        "{config}"
    );
    let out = cli(&server.url, &["train", "--config", best.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("trainer is `external`")
            && err.contains("only configs of the built-in `fashion-mnist-cnn` trainer"),
        "{err}"
    );
    // An export written before it named its trainer: the error still says what `train` takes.
    std::fs::write(&best, "x1: 1.5\nx2: 2.0\n").unwrap();
    let out = cli(&server.url, &["train", "--config", best.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not a config the built-in `fashion-mnist-cnn` trainer can train")
            && err.contains("x1"),
        "{err}"
    );
}

#[test]
fn tune_runs_a_built_in_study_end_to_end_and_exports_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: tiny-cnn\nobjective: {metric: val_accuracy, direction: maximize}\n\
         trainer: {kind: fashion-mnist-cnn, epochs: 1, train_limit: 800, val_limit: 400}\n\
         budget: {max_trials: 3, parallelism: 2}\n\
         parameters:\n  conv1_filters: {type: categorical, values: [8, 16]}\n  \
         learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3}\n\
         fixed: {conv2_filters: 16, dense_units: 32, batch_size: 64}\n",
    )
    .unwrap();
    let best = dir.path().join("best.yaml");
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["tune", "tiny.yaml", "--db", "tune.db", "-o", "best.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("study 1 completed"), "{err}");
    assert_eq!(err.matches("completed val_accuracy").count(), 3, "{err}");
    let config: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&best).unwrap()).unwrap();
    assert_eq!(config["conv2_filters"], 16, "fixed values are exported");
    assert!(config["conv1_filters"].is_number());
    assert_eq!(
        serde_yaml_ng::from_str::<serde_json::Value>(&stdout(&out)).unwrap(),
        config,
        "the best config is printed too"
    );

    // The export carries how the trial was trained, and `train` reads it: the same
    // seed, epochs, split and limits give the same val_accuracy as the trial's.
    assert_eq!(config["epochs"], 1);
    assert_eq!(config["train_limit"], 800);
    assert_eq!(config["val_limit"], 400);
    assert_eq!(config["validation_split"], 0.2);
    assert_eq!(config["trainer"], "fashion-mnist-cnn");
    let best_value: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("best: trial #"))
        .and_then(|l| l.rsplit("= ").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the best value is printed: {err}"));
    let out = Command::new(BIN)
        .args(["train", "--config"])
        .arg(&best)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out).lines().last().unwrap().to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["seed"], config["seed"]);
    let retrained = v["val_accuracy"].as_f64().unwrap();
    assert!(
        (retrained - best_value).abs() < 5e-5,
        "retrained {retrained}, the trial had {best_value} (printed to 4 places, and \
         accuracies over 400 images are multiples of 0.0025: equal)"
    );
    // Flags override the export; `--json` ends with one JSON line.
    let out = Command::new(BIN)
        .args(["train", "--config"])
        .arg(&best)
        .args([
            "--epochs",
            "1",
            "--seed",
            "3",
            "--train-limit",
            "1000",
            "--val-limit",
            "500",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out).lines().last().unwrap().to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["seed"], 3);
    assert!(v["val_accuracy"].as_f64().unwrap() > 0.5, "{v}");
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.5, "{v}");
    assert_eq!(v["history"].as_array().unwrap().len(), 1);
    assert_eq!(v["test_confusion_matrix"].as_array().unwrap().len(), 10);
    assert!(
        stderr(&out).contains("Epoch 1"),
        "a Keras-style log: {}",
        stderr(&out)
    );
}

#[test]
fn tune_continues_the_study_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = "version: 1\nname: again\nobjective: {metric: val_accuracy, direction: maximize}\n\
         trainer: {kind: fashion-mnist-cnn, epochs: 1, train_limit: 300, val_limit: 100}\n\
         budget: {max_trials: 1, parallelism: 1}\n\
         parameters:\n  learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3}\n\
         fixed: {conv1_filters: 8, conv2_filters: 16, dense_units: 32, batch_size: 64}\n";
    std::fs::write(dir.path().join("again.yaml"), tiny).unwrap();
    let tune = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(dir.path())
            .args(["tune", "again.yaml", "--db", "again.db"])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = tune(&[]);
    assert!(first.status.success(), "{}", stderr(&first));

    // Completed with its budget spent: says how to go on.
    let spent = tune(&[]);
    assert!(!spent.status.success());
    let err = stderr(&spent);
    assert!(
        err.contains("study 1 \"again\"") && err.contains("tuner-cli extend 1 --max-trials N"),
        "{err}"
    );
    assert!(err.contains("--fresh"), "{err}");

    // Extended meanwhile: the same command continues it.
    let server = Server::start(&dir.path().join("again.db"), &[]);
    let extended = cli(&server.url, &["extend", "1", "--max-trials", "2"]);
    assert!(extended.status.success(), "{}", stderr(&extended));
    drop(server);
    let again = tune(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(err.contains("continuing study 1 \"again\""), "{err}");
    assert!(err.contains("study 1 completed"), "{err}");

    // An edited file is not silently taken for the old study.
    std::fs::write(
        dir.path().join("again.yaml"),
        tiny.replace("max: 3.0e-3", "max: 4.0e-3"),
    )
    .unwrap();
    let edited = tune(&[]);
    assert!(!edited.status.success());
    assert!(
        stderr(&edited).contains("no longer describes"),
        "{}",
        stderr(&edited)
    );

    // --fresh starts another study.
    let fresh = tune(&["--fresh"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(
        stderr(&fresh).contains("study 2 \"again\""),
        "{}",
        stderr(&fresh)
    );
}

#[test]
fn tune_and_train_explain_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["train", "--epochs", "1", "--data-dir", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Fashion-MNIST not found") && err.contains("nowhere"),
        "{err}"
    );
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );

    let space = repo_root().join("search-spaces/quick-demo.yaml");
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["tune", space.to_str().unwrap(), "--data-dir", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Fashion-MNIST not found"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("tuner.db").exists(),
        "nothing started before the check"
    );
}

#[test]
fn an_explicit_data_folder_that_does_not_exist_is_an_error() {
    // The Debian copy is installed here: it must not stand in for the folder named.
    let out = Command::new(BIN)
        .arg("data")
        .env("FASHION_MNIST_DIR", "/nonexistent/fmnist")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/fmnist (no such directory; named by FASHION_MNIST_DIR"),
        "{err}"
    );
    let worker = Command::new(BIN)
        .args([
            "--server",
            "http://127.0.0.1:9",
            "worker",
            "--data-dir",
            "/nonexistent/fmnist",
        ])
        .output()
        .unwrap();
    assert!(!worker.status.success());
    let err = stderr(&worker);
    assert!(
        err.contains("this worker cannot train") && err.contains("/nonexistent/fmnist"),
        "checked before contacting any server: {err}"
    );
}

#[test]
fn data_describes_the_dataset() {
    let out = Command::new(BIN).arg("data").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("60000 train, 10000 test"), "{text}");
    assert_eq!(
        text.matches(" 7000").count(),
        10,
        "7,000 images per class: {text}"
    );
    let out = Command::new(BIN).args(["data", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["train_images"].clone(), v["test_images"].clone()),
        (60000.into(), 10000.into())
    );
    assert_eq!(v["train_per_class"].as_array().unwrap().len(), 10);
}

#[test]
fn validate_json_gives_the_spec_or_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, space(3, 1)).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--json"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["spec"]["budget"]["max_trials"], 3);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        space(3, 1)
            .replace("min: -2.0", "min: 5.0")
            .replace("max_trials: 3", "max_trials: 0"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"budget.max_trials") && paths.iter().any(|p| p.starts_with("parameters.x")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_trial_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("kill.db"), &["--lease-seconds", "2"]);
    let client = server.client();
    let study = client
        .create_study(
            "version: 1\nname: kill-worker\nobjective: {metric: val_accuracy, direction: maximize}\n\
             trainer: {kind: fashion-mnist-cnn, epochs: 2, train_limit: 1500, val_limit: 300}\n\
             budget: {max_trials: 2, parallelism: 1}\n\
             parameters:\n  learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3}\n\
             fixed: {conv1_filters: 8, conv2_filters: 16, dense_units: 32, batch_size: 32}\n",
            DocFormat::Yaml,
        )
        .await
        .unwrap();
    let spawn_worker = || {
        Command::new(BIN)
            .args([
                "--server",
                &server.url,
                "worker",
                "--study",
                &study.id.to_string(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut doomed = spawn_worker();
    // Kill it as soon as its first trial is running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let trials = client.list_trials(study.id).await.unwrap().trials;
        if trials.iter().any(|t| t.state == TrialState::Running) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no trial started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let mut rescuer = spawn_worker();
    assert!(rescuer.wait().unwrap().success());
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert!(trials.iter().all(|t| t.state == TrialState::Completed));
    assert_eq!(
        trials[0].attempts, 2,
        "the killed worker's trial was run again"
    );
    assert_eq!(trials[1].attempts, 1);
    assert_eq!(
        client.get_study(study.id).await.unwrap().state,
        StudyState::Completed
    );
}

/// A built-in-trainer study whose trials run long enough to be interrupted.
const LONG_CNN_STUDY: &str = "version: 1\nname: sigterm\nobjective: {metric: val_accuracy, direction: maximize}\n\
     trainer: {kind: fashion-mnist-cnn, epochs: 50, train_limit: 1500, val_limit: 300}\n\
     budget: {max_trials: 2, parallelism: 1}\n\
     parameters:\n  learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3}\n\
     fixed: {conv1_filters: 8, conv2_filters: 16, dense_units: 32, batch_size: 32}\n";

/// `kill -TERM PID`, as `docker stop` does to a container's process.
fn sigterm(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits for a child to exit, failing the test after `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {limit:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_for_a_running_trial(client: &ApiClient, study: StudyId) -> tuner_api::Trial {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let trials = client.list_trials(study).await.unwrap().trials;
        if let Some(t) = trials.into_iter().find(|t| t.state == TrialState::Running) {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "no trial started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_a_worker_hand_its_trial_back_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    // A lease far longer than the test: only a release can put the trial back in time.
    let server = Server::start(&dir.path().join("term.db"), &["--lease-seconds", "600"]);
    let client = server.client();
    let study = client
        .create_study(LONG_CNN_STUDY, DocFormat::Yaml)
        .await
        .unwrap();
    // The first server in the list is dead: the worker goes on with the second.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let servers = format!("{dead},{}", server.url);
    let mut worker = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args([
            "--server",
            &servers,
            "worker",
            "--study",
            &study.id.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for_a_running_trial(&client, study.id).await;

    let sent_at = std::time::Instant::now();
    sigterm(&worker);
    let status = exit_within(&mut worker, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(worker.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("serving {dead}, {}", server.url)),
        "{err}"
    );
    assert!(err.contains("SIGTERM: stopping"), "{err}");
    assert!(err.contains("1 released"), "{err}");

    let trial = client.get_trial(running.id).await.unwrap();
    assert_eq!(
        trial.state,
        TrialState::Pending,
        "back in the queue {:?} after SIGTERM, with 600 s left on its lease",
        sent_at.elapsed()
    );
    assert_eq!(
        trial.attempts,
        running.attempts - 1,
        "a release gives the attempt back (an expired lease would count it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_with_its_local_workers_releasing_their_trials() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve-term.db");
    let mut server = Server::start(&db, &["--lease-seconds", "600", "--workers", "1"]);
    let client = server.client();
    let study = client
        .create_study(LONG_CNN_STUDY, DocFormat::Yaml)
        .await
        .unwrap();
    let running = wait_for_a_running_trial(&client, study.id).await;

    sigterm(&server.child);
    let status = exit_within(&mut server.child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");

    // The worker handed its trial back before the server went away.
    let restarted = Server::start(&db, &[]);
    let trial = restarted.client().get_trial(running.id).await.unwrap();
    assert_eq!(trial.state, TrialState::Pending, "{trial:?}");
    assert_eq!(
        trial.attempts,
        running.attempts - 1,
        "released, not expired"
    );
}

/// Starts `tune FILE` in `dir` and returns it with the URL of its embedded server, read
/// from its `live dashboard` line (its stderr is drained meanwhile).
fn start_tune(dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .arg("tune")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("live dashboard: ").nth(1) {
                let url = rest.split("/#/").next().unwrap_or("").to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tune says where its server listens");
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_tune_releases_the_running_trials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.yaml"), LONG_CNN_STUDY).unwrap();
    let (mut tune, url) = start_tune(
        dir.path(),
        &[
            "long.yaml",
            "--db",
            "tune.db",
            "--workers",
            "1",
            "--lease-seconds",
            "600",
        ],
    );
    let client = ApiClient::new(&url);
    let study = client.list_studies().await.unwrap().studies[0].id;
    let running = wait_for_a_running_trial(&client, study).await;

    let sent = Command::new("kill")
        .args(["-INT", &tune.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    exit_within(&mut tune, Duration::from_secs(30));

    // Nothing is left running, and the released trial used up no retry.
    let server = Server::start(&dir.path().join("tune.db"), &[]);
    let trials = server.client().list_trials(study).await.unwrap().trials;
    assert!(
        trials.iter().all(|t| t.state != TrialState::Running),
        "{trials:?}"
    );
    let trial = server.client().get_trial(running.id).await.unwrap();
    assert_eq!(trial.state, TrialState::Pending, "{trial:?}");
    assert_eq!(
        trial.attempts,
        running.attempts - 1,
        "released, not expired"
    );
}

#[test]
fn tokens_are_required_when_set_and_open_addresses_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("auth.db"), &["--token", "s3cret"]);
    let denied = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args(["--server", &server.url, "studies"])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("needs a token"),
        "{}",
        stderr(&denied)
    );
    let allowed = Command::new(BIN)
        .env("TUNER_TOKEN", "s3cret")
        .args(["--server", &server.url, "studies"])
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", stderr(&allowed));

    // Refused before anything binds.
    let open = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args(["serve", "--addr", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("open.db"))
        .output()
        .unwrap();
    assert!(!open.status.success());
    assert!(
        stderr(&open).contains("without a token"),
        "{}",
        stderr(&open)
    );
}

#[test]
fn blank_tokens_and_absurd_leases_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |env_token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        match env_token {
            Some(t) => cmd.env("TUNER_TOKEN", t),
            None => cmd.env_remove("TUNER_TOKEN"),
        };
        cmd.arg("serve")
            .args(args)
            .arg("--db")
            .arg(dir.path().join("t.db"))
            .output()
            .unwrap()
    };
    // An empty secret, by flag or environment, on loopback or an open address: refused
    // before anything binds (an empty bearer would have matched it).
    for (env_token, args) in [
        (None, &["--addr", "0.0.0.0:0", "--token", ""][..]),
        (None, &["--addr", "127.0.0.1:0", "--token", "   "][..]),
        (Some(""), &["--addr", "0.0.0.0:0"][..]),
        (Some(""), &["--addr", "0.0.0.0:0", "--allow-no-token"][..]),
    ] {
        let out = serve(env_token, args);
        assert!(!out.status.success(), "{args:?} started");
        assert!(
            stderr(&out).contains("the token is empty"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Leases: bounded, with a message instead of a panic or an empty expiry.
    for bad in ["1e300", "1e17", "700000", "0", "-3", "NaN", "inf"] {
        let flag = format!("--lease-seconds={bad}");
        let out = serve(None, &["--addr", "127.0.0.1:0", &flag]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--lease-seconds"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn train_checks_where_it_saves_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing").join("model.safetensors");
    let out = Command::new(BIN)
        .args(["train", "--epochs", "50", "--save"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // Refused up front (the message of a failed save after 50 epochs of training
    // would be the safetensors writer's).
    assert!(!target.exists());
}

#[test]
fn a_short_token_starts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args(["serve", "--addr", "127.0.0.1:0", "--token", "short", "--db"])
        .arg(dir.path().join("t.db"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let listening = line.contains("listening on");
        seen.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("could be guessed")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_watch_follows_a_study_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("watch.db"), &[]);
    let client = server.client();
    let study = client
        .create_study(&space(4, 2), DocFormat::Yaml)
        .await
        .unwrap();
    let mut watcher = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args([
            "--server",
            &server.url,
            "trials",
            &study.id.to_string(),
            "--watch",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, printed) = mpsc::channel::<String>();
    let stdout_lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let reader = std::thread::spawn(move || {
        for line in stdout_lines.map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // One trial, then the rest once the watcher has printed it: it follows live.
    assert_eq!(worker_for(client.clone(), study.id, "w".into(), 1).await, 1);
    let mut text = String::new();
    while !text.contains("trial #0 completed") {
        let line = tokio::task::block_in_place(|| printed.recv_timeout(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{e}: the watcher printed no completion: {text}"));
        text.push_str(&line);
        text.push('\n');
    }
    worker(client.clone(), study.id, "w".into()).await;
    let out = tokio::task::spawn_blocking(move || watcher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    reader.join().unwrap();
    text.extend(printed.try_iter().map(|line| line + "\n"));
    for n in 0..4 {
        assert!(text.contains(&format!("trial #{n} completed")), "{text}");
        assert!(text.contains(&format!("trial #{n} epoch 1")), "{text}");
    }
    assert!(
        text.trim_end()
            .ends_with("completed (budget of 4 trials spent)"),
        "{text}"
    );
}

/// The load check: 64 concurrent HTTP workers complete 10,000 random-sampler trials;
/// the bench itself fails if any trial is lost, duplicated or over budget.
#[test]
fn sixty_four_workers_complete_ten_thousand_trials() {
    let out = Command::new(BIN)
        .args(["bench", "service", "--workers", "64", "--trials", "10000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("10000 trials stored (budget 10000), numbers dense: true, distinct configs: 10000, all completed: true"),
        "{text}"
    );
}

/// A worker that keeps going through connection errors and lost leases, as a real
/// one would while the server restarts.
/// Each completion it gets an answer to adds one to `completions`.
async fn tolerant_worker(
    url: std::sync::Arc<std::sync::Mutex<String>>,
    study: StudyId,
    completions: std::sync::Arc<tokio::sync::watch::Sender<u32>>,
) -> u32 {
    let mut done = 0;
    loop {
        let client = ApiClient::new(url.lock().unwrap().clone());
        match client.ask(study, &AskRequest::default()).await {
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(AskAnswer::Done) => return done,
            Ok(AskAnswer::Wait(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(AskAnswer::Leased(a)) => {
                let x = a.trial.params["x"].as_f64().unwrap();
                let req = CompleteRequest {
                    lease_token: Some(a.lease.token.clone()),
                    value: Some(-x * x),
                    metrics: Default::default(),
                };
                // Retry through a restart; a refused completion means the lease was
                // lost (expired while the server was down): the trial runs again.
                for _ in 0..100 {
                    let client = ApiClient::new(url.lock().unwrap().clone());
                    match client.complete(a.trial.id, &req).await {
                        Ok(_) => {
                            done += 1;
                            completions.send_modify(|n| *n += 1);
                            break;
                        }
                        Err(e) if e.status().is_some() => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_during_asks_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asks.db");
    let server = Server::start(&db, &["--lease-seconds", "1"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let study = server
        .client()
        .create_study(&space(150, 16), DocFormat::Yaml)
        .await
        .unwrap();
    let url = std::sync::Arc::new(std::sync::Mutex::new(server.url.clone()));
    let (completions, mut completed_so_far) = tokio::sync::watch::channel(0);
    let completions = std::sync::Arc::new(completions);
    let workers: Vec<_> = (0..16)
        .map(|_| tokio::spawn(tolerant_worker(url.clone(), study.id, completions.clone())))
        .collect();
    // SIGKILL once the workers are under way (asks and completions in flight), then
    // restart on the same port.
    completed_so_far.wait_for(|n| *n >= 10).await.unwrap();
    server.kill();
    let at_kill = *completed_so_far.borrow();
    assert!(at_kill < 150, "killed mid-study, not after it: {at_kill}");
    let server = Server::start(&db, &["--lease-seconds", "1", "--addr", &addr]);
    let mut completed = 0;
    for w in workers {
        completed += w.await.unwrap();
    }
    let client = server.client();
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 150, "budget exact");
    assert_eq!(completed, 150);
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..150).collect::<Vec<u64>>());
    assert!(trials.iter().all(|t| t.state == TrialState::Completed));
    let distinct: HashSet<String> = trials.iter().map(|t| config_key(&t.params)).collect();
    assert_eq!(distinct.len(), 150, "no configuration run twice");
}

/// Through HTTP the GP suggests exactly what it suggests in process: parameter values
/// and objective values survive JSON and SQLite bit for bit, so the same seed and
/// history give the same suggestion wherever the sampler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gp_suggests_the_same_through_http_as_in_process() {
    use tuner_optim::{GpConfig, GpSampler, Observation, Outcome, Sampler, SuggestContext};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("gp.db"), &[]);
    let client = server.client();
    let problem = tuner_optim::problems::all()
        .into_iter()
        .find(|p| p.name == "hartmann6")
        .unwrap();
    let doc = tuner_optim::problems::document(
        "same",
        &problem.parameters,
        14,
        "{kind: gp, seed: 3, initial_trials: 8}",
    );
    let study = client.create_study(&doc, DocFormat::Yaml).await.unwrap();
    let sampler = GpSampler::new(GpConfig {
        initial_trials: 8,
        ..GpConfig::default()
    });
    let mut history: Vec<Observation> = Vec::new();
    for n in 0..14 {
        let local = sampler
            .suggest(&SuggestContext {
                space: &problem.space,
                direction: tuner_core::Direction::Minimize,
                seed: 3,
                trial_number: n,
                history: &history,
                batch: &[],
                seen: None,
            })
            .unwrap();
        let AskAnswer::Leased(a) = client.ask(study.id, &AskRequest::default()).await.unwrap()
        else {
            panic!("no trial {n}")
        };
        assert_eq!(a.trial.params, local, "trial {n}");
        let y = (problem.f)(&local);
        history.push(Observation::new(local, Outcome::Completed(y)));
        client
            .complete(
                a.trial.id,
                &CompleteRequest {
                    lease_token: Some(a.lease.token),
                    value: Some(y),
                    metrics: Default::default(),
                },
            )
            .await
            .unwrap();
    }
}

/// Creates a study of `space(max_trials, parallelism)` through `create` and runs it to
/// the end with one scripted worker; returns its id.
fn finished_study(server: &Server, dir: &Path, max_trials: u32, parallelism: u32) -> String {
    let file = dir.join("space.yaml");
    std::fs::write(&file, space(max_trials, parallelism)).unwrap();
    let out = cli(&server.url, &["create", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // One worker, the seeded random sampler: the same trials every run.
    runtime.block_on(worker(
        server.client(),
        StudyId(id.parse().unwrap()),
        "w".into(),
    ));
    id
}

/// Replaces what changes from run to run (times, durations) in JSON output.
fn redact_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k.ends_with("_at") || k == "duration_seconds" {
                    *v = serde_json::Value::String("[time]".into());
                } else {
                    redact_times(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_times),
        _ => {}
    }
}

#[test]
fn summary_and_json_reads_match_their_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("summary.db"), &[]);
    let id = finished_study(&server, dir.path(), 4, 1);

    let out = cli(&server.url, &["summary", &id, "--top", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::with_settings!({filters => vec![(r"\d+\.\ds", "[duration]")]}, {
        insta::assert_snapshot!("summary", stdout(&out));
    });

    for (name, args) in [
        ("summary_json", vec!["summary", &id, "--top", "2", "--json"]),
        ("study_json", vec!["study", &id, "--json"]),
        ("trials_json", vec!["trials", &id, "--json"]),
    ] {
        let out = cli(&server.url, &args);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name} prints one JSON document: {e}"));
        redact_times(&mut v);
        insta::assert_snapshot!(name, serde_json::to_string_pretty(&v).unwrap());
    }

    // A study that does not exist is an error, not an empty summary.
    let out = cli(&server.url, &["summary", "99"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("99"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_a_failed_study_count_truly_and_show_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("failing.db"), &[]);
    let client = server.client();
    let study = client
        .create_study(
            &space(4, 1).replace(
                "parallelism: 1}",
                "parallelism: 1, max_consecutive_failures: 2}",
            ),
            DocFormat::Yaml,
        )
        .await
        .unwrap();
    for reason in ["CUDA on fire", "NaN loss at epoch 3"] {
        let AskAnswer::Leased(a) = client.ask(study.id, &AskRequest::default()).await.unwrap()
        else {
            panic!("a trial to fail")
        };
        client
            .fail(
                a.trial.id,
                &tuner_api::FailRequest {
                    lease_token: Some(a.lease.token.clone()),
                    reason: reason.into(),
                },
            )
            .await
            .unwrap();
    }
    let id = study.id.to_string();
    let studies = stdout(&cli(&server.url, &["studies"]));
    assert!(studies.contains("0/4 (+2 failed)"), "{studies}");
    let summary = stdout(&cli(&server.url, &["summary", &id]));
    assert!(
        summary.contains("Trials: 0/4 (+2 failed) of the budget"),
        "{summary}"
    );
    assert!(
        summary.contains("Failed trials (2 of 2, latest first):\n  trial 1: NaN loss at epoch 3\n  trial 0: CUDA on fire"),
        "{summary}"
    );
    let trials = stdout(&cli(&server.url, &["trials", &id]));
    assert!(trials.contains("[CUDA on fire]"), "{trials}");
    // Floats to 4 significant digits, not 17.
    let x = trials
        .lines()
        .find_map(|l| l.split("x=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("x is listed: {trials}"));
    assert!(x.trim_start_matches('-').len() <= 7, "{x}");
}

#[test]
fn plot_writes_svg_and_png_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("plot.db"), &[]);
    let id = finished_study(&server, dir.path(), 5, 1);

    let svg = dir.path().join("history.svg");
    let out = cli(
        &server.url,
        &[
            "plot",
            &id,
            "--kind",
            "history",
            "--out",
            svg.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert_eq!(
        text.matches("<circle").count(),
        5 + 1,
        "5 trials and the legend's mark"
    );
    // The values are -x², never positive: a log axis is refused, saying why, and no
    // file is written.
    let log = dir.path().join("log.svg");
    let out = cli(
        &server.url,
        &["plot", &id, "--log", "--out", log.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--log needs positive values, and score has"),
        "{}",
        stderr(&out)
    );
    assert!(!log.exists());

    let png = dir.path().join("curves.png");
    let out = cli(
        &server.url,
        &[
            "plot",
            &id,
            "--kind",
            "curves",
            "--out",
            png.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");

    // An external study reports no confusion matrix: said, and no file left behind.
    let cm = dir.path().join("cm.png");
    let out = cli(
        &server.url,
        &[
            "plot",
            &id,
            "--kind",
            "confusion",
            "--out",
            cm.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no confusion matrix"),
        "{}",
        stderr(&out)
    );
    assert!(!cm.exists());
    let out = cli(&server.url, &["plot", &id, "--out", "chart.jpg"]);
    assert!(stderr(&out).contains(".svg or .png"), "{}", stderr(&out));
}

/// A real (tiny) built-in study, trained by `tune`, then shown by the dashboard in
/// headless Chromium: every chart has its marks, the table its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_a_finished_study_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tiny.yaml"),
        "version: 1\nname: dashboard-e2e\nobjective: {metric: val_accuracy, direction: maximize}\n\
         trainer: {kind: fashion-mnist-cnn, epochs: 2, train_limit: 600, val_limit: 300}\n\
         budget: {max_trials: 4, parallelism: 2}\noptimizer: {kind: random, seed: 5}\n\
         parameters:\n  conv1_filters: {type: categorical, values: [8, 16]}\n  \
         learning_rate: {type: float, min: 1.0e-3, max: 1.0e-2, log: true}\n  \
         dense_units: {type: int, min: 16, max: 48, step: 16}\n\
         fixed: {conv2_filters: 16, batch_size: 64}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["tune", "tiny.yaml", "--db", "dash.db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Server::start(&dir.path().join("dash.db"), &[]);
    let browser = Browser::start().await;

    browser.open(&format!("{}/#/", server.url)).await;
    browser.wait_ready("list").await;
    let rows = browser
        .eval("return document.querySelectorAll('#studies tbody tr').length")
        .await;
    assert_eq!(rows, 1, "one study listed");

    browser.open(&format!("{}/#/studies/1", server.url)).await;
    browser.wait_ready("study").await;
    let counts = browser
        .eval(
            "const n = s => document.querySelectorAll(s).length;
             return {
               points: n('#history svg circle.point'),
               lines: n('#parallel svg path.pc-line'),
               curves: n('#curves svg path.curve'),
               bars: n('#importance svg rect.bar, #importance rect.bar'),
               cells: n('#confusion svg rect.cell'),
               titled: n('#confusion svg rect.cell title'),
               rows: n('#trials tbody tr'),
             };",
        )
        .await;
    assert_eq!(counts["points"], 4, "a point per trial: {counts}");
    assert_eq!(counts["lines"], 4, "a line per trial: {counts}");
    assert!(counts["curves"].as_u64().unwrap() >= 4, "{counts}");
    assert_eq!(counts["bars"], 0, "4 trials are too few to rank: {counts}");
    assert_eq!(counts["cells"], 100, "10 × 10 classes: {counts}");
    assert_eq!(counts["titled"], 100, "every cell has a tooltip: {counts}");
    assert_eq!(counts["rows"], 4, "{counts}");
    let importance = browser
        .eval("return document.getElementById('importance').textContent")
        .await;
    assert!(
        importance.as_str().unwrap().contains("Not enough trials"),
        "{importance}"
    );
    let classes = browser
        .eval("return document.getElementById('confusion').textContent")
        .await;
    assert!(
        classes.as_str().unwrap().contains("Ankle boot"),
        "class names: {classes}"
    );

    // Sorting the table by value (best first, by the study's direction) puts the
    // best trial on top.
    let best = server.client().best(StudyId(1)).await.unwrap().trial.number;
    let first_after_sort = browser
        .eval(
            "[...document.querySelectorAll('#trials thead th')]
                 .find(h => /objective value/.test(h.title)).click();
             return document.querySelector('#trials tbody tr td').textContent.replace(/\\D/g, '');",
        )
        .await;
    assert_eq!(first_after_sort, best.to_string(), "the best trial first");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-e2e.png");
    browser.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());
    browser
        .command(reqwest::Method::DELETE, "", serde_json::Value::Null)
        .await;
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("pipe.db"), &[]);
    let id = finished_study(&server, dir.path(), 200, 8);
    // More output than a pipe holds, to a reader that stops after one line.
    let mut child = Command::new(BIN)
        .env_remove("TUNER_TOKEN")
        .args(["--server", &server.url, "trials", &id, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "{");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// A study with thousands of trials: the history draws every point, parallel
/// coordinates the best 1,000 one by one and the rest as one layer, the table one
/// page of 50 at a time, and paging and sorting work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pages_and_sorts_a_large_study() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("big.db"), &[]);
    let client = server.client();
    let study = client
        .create_study(&space(2_500, 16), DocFormat::Yaml)
        .await
        .unwrap();
    let workers: Vec<_> = (0..16)
        .map(|i| tokio::spawn(worker(client.clone(), study.id, format!("w{i}"))))
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let browser = Browser::start().await;
    browser
        .open(&format!("{}/#/studies/{}", server.url, study.id))
        .await;
    browser.wait_ready("study").await;
    let counts = browser
        .eval(
            "const n = s => document.querySelectorAll(s).length;
             return {
               points: n('#history svg circle.point'),
               lines: n('#parallel svg path.pc-line'),
               rest: n('#parallel svg path.pc-rest'),
               rows: n('#trials tbody tr'),
               page: document.querySelector('#trials .page-indicator').textContent,
             };",
        )
        .await;
    assert_eq!(counts["points"], 2_500, "{counts}");
    assert_eq!(
        (counts["lines"].clone(), counts["rest"].clone()),
        (1_000.into(), 1.into()),
        "{counts}"
    );
    assert_eq!(counts["rows"], 50, "{counts}");
    assert_eq!(counts["page"], "Page 1 of 50", "{counts}");

    let next = browser
        .eval(
            "document.querySelector('#trials .pager-bottom .next').click();
             return [document.querySelector('#trials .page-indicator').textContent,
                     document.querySelector('#trials tbody tr td').textContent.replace(/\\D/g, '')];",
        )
        .await;
    assert_eq!(next, serde_json::json!(["Page 2 of 50", "50"]));

    let best = client.best(study.id).await.unwrap().trial.number;
    let first = browser
        .eval(
            "[...document.querySelectorAll('#trials thead th')]
                 .find(h => /objective value/.test(h.title)).click();
             return [document.querySelector('#trials .page-indicator').textContent,
                     document.querySelector('#trials tbody tr td').textContent.replace(/\\D/g, '')];",
        )
        .await;
    assert_eq!(
        first[0], "Page 1 of 50",
        "sorting goes back to the first page"
    );
    assert_eq!(first[1], best.to_string(), "the best trial first: {first}");

    // Brushing the x axis narrows the table to every trial inside the brush, not
    // only those among the best 1,000 drawn as lines.
    let (lo, hi) = browser.brush_first_axis((2.0, -2.0), -130, 100).await;
    let shown = browser
        .eval("return document.querySelector('#trials .match-count').textContent")
        .await;
    let trials = client.list_trials(study.id).await.unwrap().trials;
    let inside = trials
        .iter()
        .filter(|t| (lo..=hi).contains(&t.params["x"].as_f64().unwrap()))
        .count();
    assert!(inside > 1_000, "more than the lines drawn: {inside}");
    assert_eq!(
        shown,
        format!("{} shown", fmt_thousands(inside)),
        "[{lo}, {hi}]"
    );
}

/// 1234 as "1,234", as the dashboard writes counts.
fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[path = "../../tuner-store/tests/support/pg.rs"]
#[allow(dead_code)]
mod pg_support;

/// A fresh database on the test PostgreSQL server, or `None` (said why) without one.
async fn pg_database() -> Option<String> {
    use sqlx::Connection;
    let server = pg_support::server_url()?;
    let name = format!(
        "e2e_{}_{}",
        std::process::id(),
        pg_support::nanos() % 1_000_000
    );
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// A worker that knows every replica: it asks its own, and when that one stops
/// answering it goes on with the next, completing its leased trial there (a lease
/// belongs to the database, not to the server that handed it out).
async fn replica_worker(urls: Vec<String>, home: usize, study: StudyId) -> u32 {
    let mut at = home;
    let mut done = 0;
    loop {
        match ApiClient::new(&urls[at])
            .ask(study, &AskRequest::default())
            .await
        {
            Err(e) if e.status().is_none() => at = (at + 1) % urls.len(),
            Err(e) => panic!("ask refused: {e}"),
            Ok(AskAnswer::Done) => return done,
            Ok(AskAnswer::Wait(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(AskAnswer::Leased(a)) => {
                let x = a.trial.params["x"].as_f64().unwrap();
                let req = CompleteRequest {
                    lease_token: Some(a.lease.token.clone()),
                    value: Some(-x * x),
                    metrics: Default::default(),
                };
                loop {
                    match ApiClient::new(&urls[at]).complete(a.trial.id, &req).await {
                        Ok(_) => {
                            done += 1;
                            break;
                        }
                        // Refused: the lease ran out meanwhile; the trial runs again.
                        Err(e) if e.status().is_some() => break,
                        Err(_) => at = (at + 1) % urls.len(),
                    }
                }
            }
        }
    }
}

/// Reads a study's event stream from one server until it ends: (id, kind, trial); from
/// the start, or resuming after event `after` (`Last-Event-ID`).
async fn watch_events(url: String, study: StudyId, after: Option<i64>) -> Vec<(i64, String, i64)> {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{url}/studies/{study}/trials"));
    if let Some(after) = after {
        request = request.header("Last-Event-ID", after.to_string());
    }
    let mut resp = request
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let (mut text, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            match (field("event:"), field("id:"), field("data:")) {
                (Some(kind), _, _) if kind == "end" => return events,
                (Some(kind), Some(id), Some(data)) => {
                    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
                    events.push((
                        id.parse().unwrap(),
                        kind,
                        data["trial_id"].as_i64().unwrap(),
                    ));
                }
                _ => {}
            }
        }
    }
    events
}

/// Three replicas on one PostgreSQL, 64 workers spread over them, one replica SIGKILLed
/// mid-load and restarted, a live watcher on another: the budget is exact, numbers dense,
/// configurations distinct, and the watcher saw every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_postgres_survive_a_sigkill() {
    let Some(db) = pg_database().await else {
        return;
    };
    let db_path = Path::new(&db);
    let args = ["--lease-seconds", "2"];
    let mut replicas: Vec<Server> = (0..3).map(|_| Server::start(db_path, &args)).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    const TRIALS: u32 = 2_000;
    let study = replicas[1]
        .client()
        .create_study(&space(TRIALS, 64), DocFormat::Yaml)
        .await
        .unwrap();
    let watcher = tokio::spawn(watch_events(urls[2].clone(), study.id, None));
    let workers: Vec<_> = (0..64)
        .map(|k| tokio::spawn(replica_worker(urls.clone(), k % 3, study.id)))
        .collect();

    // SIGKILL replica 0 once a good part of the study is done, while asks and
    // completions are in flight on it; restart it on the same address.
    let watch = replicas[1].client();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = watch.get_study(study.id).await.unwrap();
        if s.counts.completed >= u64::from(TRIALS / 4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a quarter of the study not done in 2 minutes: {:?}",
            s.counts
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = urls[0].trim_start_matches("http://").to_owned();
    replicas.remove(0).kill();
    let restart = ["--lease-seconds", "2", "--addr", &addr];
    replicas.insert(0, Server::start(db_path, &restart));

    let mut completed = 0;
    for w in workers {
        completed += w.await.unwrap();
    }
    let trials = replicas[0]
        .client()
        .list_trials(study.id)
        .await
        .unwrap()
        .trials;
    assert_eq!(trials.len(), TRIALS as usize, "budget exact");
    assert_eq!(completed, TRIALS, "each trial completed once");
    assert!(trials.iter().all(|t| t.state == TrialState::Completed));
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..u64::from(TRIALS)).collect::<Vec<u64>>());
    let distinct: HashSet<String> = trials.iter().map(|t| config_key(&t.params)).collect();
    assert_eq!(
        distinct.len(),
        TRIALS as usize,
        "no configuration run twice"
    );
    let state = replicas[2]
        .client()
        .get_study(study.id)
        .await
        .unwrap()
        .state;
    assert_eq!(state, StudyState::Completed);

    // The watcher on replica 2: every event once, in order, every trial's end.
    let events = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("the stream ends with the study")
        .unwrap();
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "event ids strictly increase"
    );
    let ends: HashSet<i64> = events
        .iter()
        .filter(|(_, kind, _)| kind == "completed")
        .map(|(_, _, trial)| *trial)
        .collect();
    let all: HashSet<i64> = trials.iter().map(|t| t.id.0).collect();
    assert_eq!(ends, all, "the watcher saw every trial complete");
    let created = events
        .iter()
        .filter(|(_, kind, _)| kind == "created")
        .count();
    assert_eq!(created, TRIALS as usize, "each creation seen once");

    // A cursor taken from replica 2 resumes on replica 0 (restarted meanwhile) with
    // exactly what followed it.
    let cut = events.len() / 3;
    let resumed = watch_events(urls[0].clone(), study.id, Some(events[cut].0)).await;
    assert_eq!(resumed, events[cut + 1..].to_vec());
}

/// GET `path` from a server as JSON, without what a copy changes or a clock moves: ids
/// and durations (of running trials, measured from now).
async fn json_without_ids(url: &str, path: &str) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for key in ["id", "trial_id", "study_id", "duration_seconds"] {
                    m.remove(key);
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    let mut v: serde_json::Value = resp.json().await.unwrap();
    strip(&mut v);
    v
}

/// A finished study's whole event stream from a server: each event's SSE id and data.
async fn event_log(url: &str, study: &str) -> Vec<(i64, serde_json::Value)> {
    let mut resp = reqwest::Client::new()
        .get(format!("{url}/studies/{study}/trials"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let (mut text, mut events) = (String::new(), Vec::new());
    let read = async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                match (field("event:"), field("id:"), field("data:")) {
                    (Some(kind), _, _) if kind == "end" => return,
                    (Some(_), Some(id), Some(data)) => {
                        events.push((id.parse().unwrap(), serde_json::from_str(&data).unwrap()))
                    }
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a finished study's stream ends");
    events
}

#[test]
fn copy_refuses_a_missing_source_and_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let copy = |args: &[&str]| cli("http://127.0.0.1:9", &[&["copy"][..], args].concat());

    // A missing source is an error, and no file is made for it (nor for the target).
    let out = copy(&["--from", &path("missing.db"), "--to", &path("t.db")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!dir.path().join("missing.db").exists());
    assert!(!dir.path().join("t.db").exists());

    let server = Server::start(&dir.path().join("a.db"), &[]);
    let id = finished_study(&server, dir.path(), 4, 1);
    let same = format!("sqlite:{}/./a.db", dir.path().display());
    let out = copy(&["--from", &path("a.db"), "--to", &same]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("same database"), "{}", stderr(&out));

    let out = copy(&[
        "--from",
        &path("a.db"),
        "--to",
        &path("b.db"),
        "--study",
        "99",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("study 99 not found"),
        "{}",
        stderr(&out)
    );

    // SQLite to SQLite, from a database its server is using: the chosen study.
    let out = copy(&[
        "--from",
        &path("a.db"),
        "--to",
        &path("b.db"),
        "--study",
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("study {id} → 1: 4 trials, 4 epochs, ")),
        "{}",
        stdout(&out)
    );
    let copied = Server::start(&dir.path().join("b.db"), &[]);
    let best = |s: &Server, id: &str| stdout(&cli(&s.url, &["best", id]));
    assert_eq!(best(&copied, "1"), best(&server, &id));
}

/// A study run on the SQLite default, plus one with a trial still running, copied with
/// the binary into PostgreSQL: a server on the target answers every read alike (studies,
/// trials, best, summary, the event stream), but for ids.
#[test]
fn copy_moves_studies_from_sqlite_to_postgres_where_they_read_the_same() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = runtime.block_on(pg_database()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("lite.db");
    let server = Server::start(&lite, &[]);
    let done = finished_study(&server, dir.path(), 12, 1);
    let running = runtime.block_on(async {
        let client = server.client();
        let study = client
            .create_study(&space(5, 2), DocFormat::Yaml)
            .await
            .unwrap();
        let answer = client.ask(study.id, &AskRequest::default()).await.unwrap();
        assert!(matches!(answer, AskAnswer::Leased(_)));
        study.id.to_string()
    });
    let source_events = runtime.block_on(event_log(&server.url, &done));

    let out = Command::new(BIN)
        .args(["copy", "--from", lite.to_str().unwrap(), "--to", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "study {done} → 1: 12 trials, 12 epochs, {} events\n\
             study {running} → 2: 1 trials, 0 epochs, 2 events\n",
            source_events.len()
        )
    );
    let warning = stderr(&out);
    assert!(
        warning.contains(&format!("study {running} had 1 running trial"))
            && warning.contains("re-queues them"),
        "{warning}"
    );

    let target = Server::start(Path::new(&pg), &[]);
    runtime.block_on(async {
        for (path, copy) in [
            ("/studies".to_owned(), "/studies".to_owned()),
            (format!("/studies/{done}"), "/studies/1".to_owned()),
            (
                format!("/studies/{done}/trials"),
                "/studies/1/trials".to_owned(),
            ),
            (
                format!("/studies/{done}/best"),
                "/studies/1/best".to_owned(),
            ),
            (format!("/studies/{running}"), "/studies/2".to_owned()),
            (
                format!("/studies/{running}/trials"),
                "/studies/2/trials".to_owned(),
            ),
        ] {
            assert_eq!(
                json_without_ids(&target.url, &copy).await,
                json_without_ids(&server.url, &path).await,
                "{path}"
            );
        }
        // The event log: the same events in the same order, each about the copy's trial
        // of its number.
        let copied = event_log(&target.url, "1").await;
        let strip = |events: &[(i64, serde_json::Value)]| -> Vec<serde_json::Value> {
            events
                .iter()
                .map(|(_, e)| {
                    let mut e = e.clone();
                    let m = e.as_object_mut().unwrap();
                    m.remove("id");
                    m.remove("trial_id");
                    e
                })
                .collect()
        };
        assert_eq!(strip(&copied), strip(&source_events));
        assert!(copied.windows(2).all(|w| w[0].0 < w[1].0));
        let trials = target
            .client()
            .list_trials(StudyId(1))
            .await
            .unwrap()
            .trials;
        for (_, e) in &copied {
            let trial = &trials[e["number"].as_u64().unwrap() as usize];
            assert_eq!(e["trial_id"].as_i64(), Some(trial.id.0));
        }
    });
    for args in [["best", "1"], ["summary", "1"]] {
        let (on_source, on_target) = (cli(&server.url, &[args[0], &done]), cli(&target.url, &args));
        assert!(on_target.status.success(), "{}", stderr(&on_target));
        assert_eq!(stdout(&on_target), stdout(&on_source), "{args:?}");
    }
}

/// `extend` through one replica raises the budget that another replica, which has
/// already read (and cached) the study, uses at its very next ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_on_one_replica_is_obeyed_by_the_other_at_its_next_ask() {
    let Some(db) = pg_database().await else {
        return;
    };
    let db_path = Path::new(&db);
    let (one, two) = (Server::start(db_path, &[]), Server::start(db_path, &[]));
    let study = one
        .client()
        .create_study(&space(2, 1), DocFormat::Yaml)
        .await
        .unwrap();
    assert_eq!(worker(two.client(), study.id, "w".into()).await, 2);
    assert_eq!(
        two.client().get_study(study.id).await.unwrap().state,
        StudyState::Completed
    );

    let refused = cli(&one.url, &["resume", &study.id.to_string()]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("extend"), "{}", stderr(&refused));
    let extended = cli(
        &one.url,
        &["extend", &study.id.to_string(), "--max-trials", "5"],
    );
    assert!(extended.status.success(), "{}", stderr(&extended));
    assert_eq!(
        stdout(&extended).trim(),
        format!(
            "study {} now has a budget of 5 trials and is running",
            study.id
        )
    );
    let too_few = cli(
        &one.url,
        &["extend", &study.id.to_string(), "--max-trials", "4"],
    );
    assert!(!too_few.status.success());
    assert!(
        stderr(&too_few).contains("above the study's current 5"),
        "{}",
        stderr(&too_few)
    );

    // The other replica hands out exactly the 3 new trials.
    assert_eq!(worker(two.client(), study.id, "w".into()).await, 3);
    let done = two.client().get_study(study.id).await.unwrap();
    assert_eq!(
        (done.state, done.counts.completed),
        (StudyState::Completed, 5)
    );
}
