//! The dashboard's views and controls in headless Chromium, on studies that scripted
//! HTTP workers fill: contour, slices, EDF, timeline, the table's filter, brushing and
//! export, the learning curves' options (log axis, outliers, pruned trials), and
//! pause / resume / stop / extend / delete.
//!
//! With `TUNER_SCREENSHOTS=<dir>` the tests also save a PNG of each new view there
//! (`TUNER_SCREENSHOTS=docs cargo nextest run -p tuner-cli -E 'binary(dashboard)'`
//! from the repository root refreshes the ones the README shows).

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

use tuner_api::{
    ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat, FailRequest, ReportAction,
    ReportRequest,
};
use tuner_core::{StudyId, StudyState};

#[path = "support/server.rs"]
mod server;
use server::Server;

#[path = "support/browser.rs"]
mod browser;
use browser::Browser;

fn space(name: &str, metric: &str, direction: &str, max_trials: u32, parallelism: u32) -> String {
    format!(
        "version: 1\nname: {name}\nobjective: {{metric: {metric}, direction: {direction}}}\n\
         budget: {{max_trials: {max_trials}, parallelism: {parallelism}}}\n\
         optimizer: {{kind: random, seed: 3}}\n\
         parameters:\n  x: {{type: float, min: -2.0, max: 2.0}}\n  \
         n: {{type: int, min: 1, max: 64, log: true}}\n  \
         act: {{type: categorical, values: [relu, tanh, gelu]}}\nfixed: {{epochs: 3}}\n"
    )
}

/// What a scripted worker does with each trial.
#[derive(Clone, Copy)]
struct Script {
    /// Epochs reported before completing (0: none, as an external trainer may).
    epochs: u32,
    /// Trials whose number is 3 modulo this fail (with a reason) instead.
    fail_every: Option<u64>,
    /// Trial 0 reports a diverged first epoch (an outlier for the curves).
    outlier: bool,
    /// The objective is a loss: the value is x² (+ 1/epoch), reported as `val_loss`.
    loss: bool,
}

/// Runs up to `max` trials of `study`, then stops; returns how many it ran.
async fn scripted_worker(
    client: ApiClient,
    study: StudyId,
    name: String,
    max: u32,
    script: Script,
) -> u32 {
    let mut done = 0;
    while done < max {
        let req = AskRequest {
            worker: Some(name.clone()),
        };
        let a = match client.ask(study, &req).await.unwrap() {
            AskAnswer::Done => break,
            AskAnswer::Wait(d) => {
                tokio::time::sleep(d.min(Duration::from_millis(20))).await;
                continue;
            }
            AskAnswer::Leased(a) => a,
        };
        let x = a.trial.params["x"].as_f64().unwrap();
        let token = Some(a.lease.token.clone());
        // Some measurable time per trial, so the timeline has bars to see.
        tokio::time::sleep(Duration::from_millis(5 + (a.trial.number % 4) * 5)).await;
        if script.fail_every.is_some_and(|k| a.trial.number % k == 3) {
            let reason = format!(
                "scripted failure: out of memory in trial {}",
                a.trial.number
            );
            client
                .fail(
                    a.trial.id,
                    &FailRequest {
                        lease_token: token,
                        reason,
                    },
                )
                .await
                .unwrap();
            done += 1;
            continue;
        }
        let final_value = if script.loss { x * x } else { -x * x };
        let mut pruned = false;
        for epoch in 1..=script.epochs {
            let e = f64::from(epoch);
            let mut value = if script.loss {
                x * x + 1.0 / e
            } else {
                -x * x - 0.5 / e
            };
            if script.outlier && a.trial.number == 0 && epoch == 1 {
                value = -1000.0;
            }
            let mut metrics = serde_json::Map::new();
            metrics.insert("loss".into(), (x * x + 2.0 / e).into());
            let answer = client
                .report(
                    a.trial.id,
                    &ReportRequest {
                        lease_token: token.clone(),
                        epoch,
                        value: Some(value),
                        metrics,
                    },
                )
                .await
                .unwrap();
            // The study's pruner stopped it: the trial is pruned, not to be completed.
            if matches!(answer.action, ReportAction::Stop) {
                pruned = true;
                break;
            }
        }
        if pruned {
            done += 1;
            continue;
        }
        client
            .complete(
                a.trial.id,
                &CompleteRequest {
                    lease_token: token,
                    value: Some(final_value),
                    metrics: Default::default(),
                },
            )
            .await
            .unwrap();
        done += 1;
    }
    done
}

/// Creates a study and runs `workers` scripted workers on it for up to `trials` each.
async fn study_with(
    client: &ApiClient,
    doc: &str,
    workers: u32,
    trials: u32,
    script: Script,
) -> StudyId {
    let study = client.create_study(doc, DocFormat::Yaml).await.unwrap();
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            tokio::spawn(scripted_worker(
                client.clone(),
                study.id,
                format!("worker-{i}"),
                trials,
                script,
            ))
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    study.id
}

/// Where screenshots go: `TUNER_SCREENSHOTS` (relative to the repository root), else
/// the target's temporary folder.
fn shots_dir() -> PathBuf {
    match std::env::var_os("TUNER_SCREENSHOTS") {
        Some(dir) => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    }
}

/// The table's rows as {column header: cell title or text}.
const ROWS_JS: &str = "
    const heads = [...document.querySelectorAll('#trials thead th')].map((th) => th.firstChild.textContent);
    return [...document.querySelectorAll('#trials tbody tr')].map((tr) => {
      const row = {};
      [...tr.children].forEach((td, i) => { row[heads[i]] = td.getAttribute('title') || td.textContent; });
      return row;
    });";

async fn table_rows(browser: &Browser) -> Vec<HashMap<String, String>> {
    serde_json::from_value(browser.eval(ROWS_JS).await).unwrap()
}

async fn wait_rows(browser: &Browser, n: usize, what: &str) {
    browser
        .wait_for(
            &format!("document.querySelectorAll('#trials tbody tr').length === {n}"),
            what,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_draws_contour_slices_edf_timeline_and_filters_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("views.db"), &[]);
    let client = server.client();
    let script = Script {
        epochs: 3,
        fail_every: Some(7),
        outlier: true,
        loss: false,
    };
    let id = study_with(
        &client,
        &space("views", "score", "maximize", 30, 3),
        3,
        30,
        script,
    )
    .await;
    // 30 completed trials; the failed ones come on top of the budget.
    let trials = client.list_trials(id).await.unwrap().trials;
    let completed: Vec<_> = trials
        .iter()
        .filter(|t| t.state == tuner_core::TrialState::Completed)
        .collect();
    let failed = trials.len() - completed.len();
    assert!(failed >= 3, "the script fails every 7th trial");
    let workers: HashSet<_> = trials.iter().filter_map(|t| t.worker.clone()).collect();

    let browser = Browser::start().await;
    browser
        .open(&format!("{}/#/studies/{id}", server.url))
        .await;
    browser.wait_ready("study").await;
    let shots = shots_dir();

    // The header counts what uses the budget, failures beside it: never "35 of 30".
    let header = browser
        .eval("return document.querySelector('.count-total').textContent;")
        .await;
    assert_eq!(
        header,
        serde_json::json!(format!("30 of 30 trials (+{failed} failed)")),
        "{header}"
    );

    // Contour: a cell per pair of bins of the two chosen axes, a dot per completed trial.
    let contour = browser
        .eval(
            "const n = (s) => document.querySelectorAll(s).length;
             return { cells: n('#contour rect.ct-cell'), points: n('#contour circle.ct-point'),
                      x: document.querySelector('#contour select.contour-x').value,
                      y: document.querySelector('#contour select.contour-y').value };",
        )
        .await;
    let bins = |p: &serde_json::Value| if p == "act" { 3 } else { 24 };
    assert_eq!(
        contour["cells"],
        bins(&contour["x"]) * bins(&contour["y"]),
        "{contour}"
    );
    assert_eq!(contour["points"], completed.len(), "{contour}");
    // A categorical axis: a band per category, labelled.
    let with_act = browser
        .eval(
            "const pick = (axis, v) => {
               const sel = document.querySelector('#contour select.contour-' + axis);
               sel.value = v;
               sel.dispatchEvent(new Event('change'));
             };
             pick('x', 'x');
             pick('y', 'act');
             return { cells: document.querySelectorAll('#contour rect.ct-cell').length,
                      text: document.querySelector('#contour svg').textContent };",
        )
        .await;
    assert_eq!(with_act["cells"], 24 * 3, "{with_act}");
    for v in ["relu", "tanh", "gelu"] {
        assert!(with_act["text"].as_str().unwrap().contains(v), "{with_act}");
    }
    browser
        .element_screenshot("#contour", &shots.join("dashboard-contour.png"))
        .await;

    // Slices: a chart per parameter, a dot per completed trial in each.
    let slices = browser
        .eval(
            "return [...document.querySelectorAll('#slice svg.slice-chart')]
                 .map((svg) => [svg.dataset.param, svg.querySelectorAll('circle.sl-point').length]);",
        )
        .await;
    assert_eq!(
        slices,
        serde_json::json!([
            ["x", completed.len()],
            ["n", completed.len()],
            ["act", completed.len()]
        ])
    );
    browser
        .element_screenshot("#slice", &shots.join("dashboard-slices.png"))
        .await;

    // EDF: a step per distinct completed value.
    let distinct: HashSet<u64> = completed
        .iter()
        .map(|t| t.value.unwrap().to_bits())
        .collect();
    let steps = browser
        .eval("return Number(document.querySelector('#edf path.edf-line').dataset.steps)")
        .await;
    assert_eq!(steps, distinct.len(), "a step per distinct value");
    browser
        .element_screenshot("#edf", &shots.join("dashboard-edf.png"))
        .await;

    // Timeline: a bar per finished trial, coloured by state, a row per worker.
    let timeline = browser
        .eval(
            "const n = (s) => document.querySelectorAll(s).length;
             return { bars: n('#timeline rect.tl-bar'), failed: n('#timeline rect.tl-failed'),
                      workers: [...document.querySelectorAll('#timeline .tl-worker')].map((t) => t.textContent).sort() };",
        )
        .await;
    assert_eq!(timeline["bars"], trials.len(), "{timeline}");
    assert_eq!(timeline["failed"], failed, "{timeline}");
    let mut names: Vec<_> = workers.iter().cloned().collect();
    names.sort();
    assert_eq!(timeline["workers"], serde_json::json!(names), "{timeline}");
    browser
        .element_screenshot("#timeline", &shots.join("dashboard-timeline.png"))
        .await;

    // Failure reasons in the table.
    let rows = table_rows(&browser).await;
    assert_eq!(rows.len(), trials.len());
    let reasons = rows
        .iter()
        .filter(|r| r["Failure reason"].starts_with("scripted failure: out of memory"))
        .count();
    assert_eq!(reasons, failed, "every failed trial says why");

    // Learning curves: trial 0's diverged first epoch is drawn at the axis edge once
    // it is picked; the loss chart goes logarithmic when asked.
    browser
        .eval(
            "[...document.querySelectorAll('#trials tbody tr')].find((tr) => tr.dataset.tid && tr.firstChild.textContent.replace(/\\D/g, '') === '0').click();",
        )
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('#curves path.clip-mark').length >= 1",
            "the outlier is marked at the edge",
        )
        .await;
    browser.click("#curves .curves-log input").await;
    browser
        .wait_for(
            "document.querySelectorAll('#curves svg.curve-chart.log').length === 1",
            "the positive loss chart turns logarithmic",
        )
        .await;
    let curves = browser
        .eval("return document.querySelectorAll('#curves svg.curve-chart').length")
        .await;
    assert_eq!(curves, 2, "score and loss");
    // Enough trials: the server's importance, a bar per parameter.
    let bars = browser
        .eval("return document.querySelectorAll('#importance rect.bar').length")
        .await;
    assert_eq!(bars, 3);

    // Export: every trial the table holds, whatever page it is on.
    browser
        .eval(
            "window.__exports = [];
             const create = URL.createObjectURL.bind(URL);
             URL.createObjectURL = (blob) => { window.__exports.push(blob); return create(blob); };",
        )
        .await;
    browser.click("#trials button.export-csv").await;
    browser.click("#trials button.export-json").await;
    let texts = browser
        .eval_async("Promise.all(window.__exports.map((b) => b.text())).then(done);")
        .await;
    let csv = texts[0].as_str().unwrap();
    let mut lines = csv.lines();
    let head: Vec<_> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &head[..4],
        ["number", "id", "state", "score"],
        "{}",
        csv.lines().next().unwrap()
    );
    assert!(head.ends_with(&["x", "n", "act"]), "{head:?}");
    let exported: HashSet<String> = lines
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    let all: HashSet<String> = trials.iter().map(|t| t.id.to_string()).collect();
    assert_eq!(exported, all, "the CSV holds every trial's id");
    let json: Vec<serde_json::Value> = serde_json::from_str(texts[1].as_str().unwrap()).unwrap();
    assert_eq!(json.len(), trials.len());
    assert!(json.iter().all(|t| t["params"]["act"].is_string()));

    // Filter on parameter values: the rows that match, all of them.
    browser
        .type_into("#trials input.trial-filter", "act=relu")
        .await;
    let relu = trials
        .iter()
        .filter(|t| t.params["act"].to_string() == "relu")
        .count();
    wait_rows(&browser, relu, "the filter leaves the relu trials").await;
    assert!(
        table_rows(&browser)
            .await
            .iter()
            .all(|r| r["act"] == "relu")
    );
    browser
        .element_screenshot("#trials", &shots.join("dashboard-table.png"))
        .await;
    browser
        .eval(
            "const i = document.querySelector('#trials input.trial-filter');
             i.value = ''; i.dispatchEvent(new Event('input'));",
        )
        .await;
    browser
        .type_into("#trials input.trial-filter", "x < 0 n>=4")
        .await;
    let expected = trials
        .iter()
        .filter(|t| t.params["x"].as_f64().unwrap() < 0.0 && t.params["n"].as_f64().unwrap() >= 4.0)
        .count();
    browser
        .wait_for(
            &format!(
                "document.querySelectorAll('#trials tbody tr').length === {expected} && \
                 !document.querySelector('#trials .filter-status .bad')"
            ),
            "the numeric filter",
        )
        .await;
    for r in table_rows(&browser).await {
        assert!(r["x"].parse::<f64>().unwrap() < 0.0, "{r:?}");
        assert!(r["n"].parse::<i64>().unwrap() >= 4, "{r:?}");
    }
    browser
        .eval(
            "const i = document.querySelector('#trials input.trial-filter');
             i.value = ''; i.dispatchEvent(new Event('input'));",
        )
        .await;
    wait_rows(&browser, trials.len(), "all rows back").await;

    // Brushing the x axis of the parallel coordinates narrows the table to the
    // completed trials inside the brush.
    let (lo, hi) = browser.brush_first_axis((2.0, -2.0), -80, 60).await;
    let inside: HashSet<String> = completed
        .iter()
        .filter(|t| (lo..=hi).contains(&t.params["x"].as_f64().unwrap()))
        .map(|t| t.number.to_string())
        .collect();
    assert!(
        !inside.is_empty() && inside.len() < completed.len(),
        "the brush [{lo}, {hi}] keeps some trials"
    );
    let shown: HashSet<String> = table_rows(&browser)
        .await
        .iter()
        .map(|r| r["#"].trim_start_matches("★ ").trim().to_owned())
        .collect();
    assert_eq!(shown, inside, "the table holds the brushed trials");
    browser
        .element_screenshot("#parallel", &shots.join("dashboard-brushing.png"))
        .await;
    browser.click("#trials button.clear-brush").await;
    wait_rows(
        &browser,
        trials.len(),
        "clearing the brush brings every row back",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_controls_studies_with_the_token_and_hides_empty_panels() {
    const TOKEN: &str = "dashboard-test-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("controls.db"), &["--token", TOKEN]);
    let client = server.client().with_token(Some(TOKEN.into()));
    let epochs = Script {
        epochs: 2,
        fail_every: None,
        outlier: false,
        loss: false,
    };
    // A running study: 4 of its 40 trials done.
    let running = study_with(
        &client,
        &space("running", "score", "maximize", 40, 2),
        1,
        4,
        epochs,
    )
    .await;
    // An external study whose trials report no epochs: 4 trials, all done.
    let bare = Script {
        epochs: 0,
        ..epochs
    };
    let external = study_with(
        &client,
        &space("external", "score", "maximize", 4, 1),
        1,
        4,
        bare,
    )
    .await;
    // A loss objective with its training loss beside it.
    let loss = Script {
        loss: true,
        ..epochs
    };
    let lossy = study_with(
        &client,
        &space("lossy", "val_loss", "minimize", 6, 1),
        1,
        6,
        loss,
    )
    .await;

    let browser = Browser::start().await;
    browser.open(&format!("{}/#/", server.url)).await;
    browser
        .eval(&format!("localStorage.setItem('tuner.token', '{TOKEN}')"))
        .await;

    let state_is = |want: StudyState| {
        let client = client.clone();
        async move {
            for _ in 0..100 {
                if client.get_study(running).await.unwrap().state == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the study never became {want:?}");
        }
    };
    browser
        .open(&format!("{}/#/studies/{running}", server.url))
        .await;
    browser.wait_ready("study").await;
    let present = browser
        .eval(
            "return [...document.querySelectorAll('#summary .controls button')].map((b) => b.className.match(/control-(\\w+)/)[1]);",
        )
        .await;
    assert_eq!(
        present,
        serde_json::json!(["pause", "stop", "extend", "delete"])
    );
    browser
        .element_screenshot("#summary", &shots_dir().join("dashboard-controls.png"))
        .await;
    browser.click("#summary button.control-pause").await;
    state_is(StudyState::Paused).await;
    browser
        .wait_for(
            "document.querySelector('#summary button.control-resume')",
            "a resume button",
        )
        .await;
    browser.click("#summary button.control-resume").await;
    state_is(StudyState::Running).await;
    browser
        .wait_for(
            "document.querySelector('#summary button.control-stop')",
            "a stop button",
        )
        .await;
    browser.click("#summary button.control-stop").await;
    state_is(StudyState::Stopped).await;
    // Extend asks for the new budget (the request itself is the server's to test).
    browser.click("#summary button.control-extend").await;
    let asked = browser
        .eval("const d = document.querySelector('dialog.confirm[open]'); return d && Number(d.querySelector('input[name=max_trials]').min);")
        .await;
    assert_eq!(asked, 41, "a budget above the current 40");
    browser.click("dialog.confirm .dialog-cancel").await;
    // Extended to 55 through the dialog: the server has the new budget, the page says it.
    browser.click("#summary button.control-extend").await;
    browser
        .eval(
            "const i = document.querySelector('dialog.confirm[open] input[name=max_trials]');
             i.value = '55'; i.dispatchEvent(new Event('input'));",
        )
        .await;
    browser.click("dialog.confirm .dialog-ok").await;
    let mut extended = 0;
    for _ in 0..100 {
        extended = client.get_study(running).await.unwrap().max_trials;
        if extended == 55 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(extended, 55, "the dialog's budget reached the server");
    browser
        .wait_for(
            "document.querySelector('.count-total').textContent.includes('of 55 trials')",
            "the header shows the new budget",
        )
        .await;
    // Delete asks first; cancelling keeps the study.
    browser.click("#summary button.control-delete").await;
    browser.click("dialog.confirm .dialog-cancel").await;
    assert!(client.get_study(running).await.is_ok());
    browser.click("#summary button.control-delete").await;
    browser.click("dialog.confirm .dialog-ok").await;
    browser.wait_ready("list").await;
    for _ in 0..50 {
        if client.get_study(running).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client.get_study(running).await.is_err(), "deleted");

    // No epochs and no confusion matrix: no empty panels; 4 trials are too few to
    // rank parameters, and the page says so rather than inventing figures.
    browser
        .open(&format!("{}/#/studies/{external}", server.url))
        .await;
    browser.wait_ready("study").await;
    let page = browser
        .eval(
            "return { curves: document.getElementById('curves').hidden,
                      confusion: document.getElementById('confusion').hidden,
                      importance: document.querySelector('#importance .panel-body').textContent,
                      bars: document.querySelectorAll('#importance rect.bar').length };",
        )
        .await;
    assert_eq!(page["curves"], true, "{page}");
    assert_eq!(page["confusion"], true, "{page}");
    assert_eq!(page["bars"], 0, "{page}");
    assert!(
        page["importance"]
            .as_str()
            .unwrap()
            .contains("Not enough trials"),
        "{page}"
    );
    browser
        .element_screenshot("#app", &shots_dir().join("dashboard-external.png"))
        .await;

    // A loss objective: one chart of val_loss with its training loss, not two.
    browser
        .open(&format!("{}/#/studies/{lossy}", server.url))
        .await;
    browser.wait_ready("study").await;
    let charts = browser
        .eval(
            "return [...document.querySelectorAll('#curves svg.curve-chart .chart-title')].map((t) => t.textContent);",
        )
        .await;
    assert_eq!(charts, serde_json::json!(["val_loss · loss (dashed)"]));
}

/// The learning curves' "pruned" toggle: off, only the best trials' curves; on, the
/// latest pruned trials' too (thin, ending in ×, in every chart); off again, gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_learning_curves_add_pruned_trials_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("pruned.db"), &[]);
    let client = server.client();
    // One worker, so the median pruner sees finished trials before it judges the next.
    let doc = space("pruned", "score", "maximize", 24, 1)
        + "pruner: {kind: median, warmup_epochs: 1, min_trials: 3}\n";
    let script = Script {
        epochs: 3,
        fail_every: None,
        outlier: true,
        loss: false,
    };
    let id = study_with(&client, &doc, 1, 24, script).await;
    let trials = client.list_trials(id).await.unwrap().trials;
    let mut pruned: Vec<_> = trials
        .iter()
        .filter(|t| t.state == tuner_core::TrialState::Pruned)
        .collect();
    assert!(
        (2..=20).contains(&pruned.len()),
        "the median pruner stops some of the 24 trials (all of them drawn): {}",
        pruned.len()
    );
    pruned.sort_by_key(|t| t.id);
    let pruned_ids: Vec<String> = pruned.iter().map(|t| t.id.to_string()).collect();

    let browser = Browser::start().await;
    browser
        .open(&format!("{}/#/studies/{id}", server.url))
        .await;
    browser.wait_ready("study").await;
    browser
        .wait_for(
            "document.querySelectorAll('#curves svg.curve-chart').length === 2",
            "the score and loss charts",
        )
        .await;
    const PRUNED_JS: &str = "
        const ids = [...document.querySelectorAll('#curves path.curve.pruned')].map((p) => Number(p.dataset.tid));
        return { ids: [...new Set(ids)].sort((a, b) => a - b).map(String),
                 marks: document.querySelectorAll('#curves text.prune-mark').length,
                 sub: document.querySelector('#curves p.sub').textContent,
                 checked: document.querySelector('#curves .curves-pruned input').checked };";
    let off = browser.eval(PRUNED_JS).await;
    assert_eq!(off["ids"], serde_json::json!([]), "off by default: {off}");
    assert_eq!(off["checked"], false, "{off}");

    browser.click("#curves .curves-pruned input").await;
    browser
        .wait_for(
            &format!(
                "document.querySelectorAll('#curves text.prune-mark').length === {}",
                2 * pruned.len()
            ),
            "a × at the end of each pruned curve, in both charts",
        )
        .await;
    let on = browser.eval(PRUNED_JS).await;
    assert_eq!(on["ids"], serde_json::json!(pruned_ids), "{on}");
    assert!(
        on["sub"]
            .as_str()
            .unwrap_or_default()
            .contains("the latest pruned trials"),
        "the panel says what it draws: {on}"
    );
    browser
        .element_screenshot("#curves", &shots_dir().join("dashboard-curves.png"))
        .await;

    browser.click("#curves .curves-pruned input").await;
    browser
        .wait_for(
            "document.querySelectorAll('#curves path.curve.pruned').length === 0",
            "the pruned curves go again",
        )
        .await;
}
