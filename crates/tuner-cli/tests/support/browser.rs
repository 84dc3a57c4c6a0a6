//! Headless Chromium driven over WebDriver, for the dashboard's tests.

#![allow(dead_code)] // each test binary uses some of it

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A WebDriver session on headless Chromium (Debian's `chromium` and
/// `chromium-driver`; `.ci/run` installs them).
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): the dashboard test drives headless Chromium; \
                     install it with `apt-get install chromium chromium-driver` (as .ci/run does)"
                )
            });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let capabilities = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--window-size=1400,2600",
            ]},
        }}});
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(resp) = http
                .post(format!("{base}/session"))
                .json(&capabilities)
                .send()
                .await
            {
                answer = Some(resp.json::<serde_json::Value>().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = answer.expect("chromedriver answers");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
        }
    }

    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let answer = self.try_command(method, path, body).await;
        assert!(answer.get("error").is_none(), "WebDriver {path}: {answer}");
        answer
    }

    /// A command's `value`, which may be an error (`{"error": …}`).
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let url = format!("{}/session/{}", self.base, self.session);
        let url = if path.is_empty() {
            url
        } else {
            format!("{url}/{path}")
        };
        let mut request = self.http.request(method, url);
        // GET and DELETE carry no body.
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(
            reqwest::Method::POST,
            "url",
            serde_json::json!({"url": url}),
        )
        .await;
    }

    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.command(
            reqwest::Method::POST,
            "execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until the page says it has drawn (`body[data-ready]`), or shows an error.
    pub async fn wait_ready(&self, page: &str) {
        for _ in 0..300 {
            let state = self
                .eval("return [document.body.dataset.ready || '', (document.getElementById('error') || {}).textContent || '']")
                .await;
            assert_eq!(
                state[1].as_str().unwrap_or("").trim(),
                "",
                "the page shows an error"
            );
            if state[0] == page {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the {page} page never finished drawing");
    }

    pub async fn screenshot(&self, path: &Path) {
        self.save_png("screenshot", path).await;
    }

    /// Writes the PNG a WebDriver screenshot command answers (base64) to `path`.
    async fn save_png(&self, command: &str, path: &Path) {
        use base64::Engine;
        let data = self
            .command(reqwest::Method::GET, command, serde_json::Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Browser {
    /// Runs `script` as an async function body: it ends by calling `done(value)`.
    pub async fn eval_async(&self, script: &str) -> serde_json::Value {
        let body = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.command(
            reqwest::Method::POST,
            "execute/async",
            serde_json::json!({"script": body, "args": []}),
        )
        .await
    }

    /// The WebDriver id of the first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "element",
                serde_json::json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks an element as a user would (scrolled to the middle of the window first,
    /// clear of the sticky top bar). A page that redraws the element between finding
    /// and clicking it gets a second try on the new one.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            self.eval(&format!(
                "document.querySelector({}).scrollIntoView({{block: 'center'}})",
                serde_json::Value::from(css)
            ))
            .await;
            let id = self.find(css).await;
            let answer = self
                .try_command(
                    reqwest::Method::POST,
                    &format!("element/{id}/click"),
                    serde_json::json!({}),
                )
                .await;
            match answer.get("error").and_then(|e| e.as_str()) {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("WebDriver click on {css}: {answer}"),
            }
        }
        panic!("{css} was redrawn under every click");
    }

    /// Types `text` into an element, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("element/{id}/value"),
            serde_json::json!({"text": text}),
        )
        .await;
    }

    /// Drags the mouse over an element from one offset to another (pixels from its
    /// centre), as a user brushing an axis does.
    pub async fn drag(&self, css: &str, from: (i64, i64), to: (i64, i64)) {
        let centre = self
            .eval(&format!(
                "const el = document.querySelector({});
                 el.scrollIntoView({{block: 'center'}});
                 const r = el.getBoundingClientRect();
                 return [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)];",
                serde_json::Value::from(css)
            ))
            .await;
        let (cx, cy) = (centre[0].as_i64().unwrap(), centre[1].as_i64().unwrap());
        let at = |(x, y): (i64, i64)| (cx + x, cy + y);
        let (a, b) = (at(from), at(to));
        let mid = ((a.0 + b.0) / 2, (a.1 + b.1) / 2);
        let actions = serde_json::json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "origin": "viewport", "x": a.0, "y": a.1},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerMove", "origin": "viewport", "x": mid.0, "y": mid.1, "duration": 50},
                {"type": "pointerMove", "origin": "viewport", "x": b.0, "y": b.1, "duration": 50},
                {"type": "pointerUp", "button": 0},
            ],
        }]});
        self.command(reqwest::Method::POST, "actions", actions)
            .await;
        self.command(reqwest::Method::DELETE, "actions", serde_json::Value::Null)
            .await;
    }

    /// A PNG of one element (scrolled into view).
    pub async fn element_screenshot(&self, css: &str, path: &Path) {
        self.eval(&format!(
            "document.querySelector({}).scrollIntoView({{block: 'center'}})",
            serde_json::Value::from(css)
        ))
        .await;
        let id = self.find(css).await;
        self.save_png(&format!("element/{id}/screenshot"), path)
            .await;
    }

    /// Brushes the parallel coordinates' first axis, which runs from `top` down to
    /// `bottom` (the values at its ends), between two offsets from its centre; returns
    /// the range of values the brush covers, (low, high).
    pub async fn brush_first_axis(
        &self,
        (top, bottom): (f64, f64),
        from: i64,
        to: i64,
    ) -> (f64, f64) {
        let axis = "#parallel .pc-axis:first-child";
        self.drag(&format!("{axis} rect.brush-zone"), (0, from), (0, to))
            .await;
        let at = self
            .eval(&format!(
                "const b = document.querySelector('{axis} rect.brush');
                 const d = document.querySelector('{axis} line.pc-domain');
                 return [Number(b.getAttribute('y')), Number(b.getAttribute('height')),
                         Number(d.getAttribute('y1')), Number(d.getAttribute('y2'))];"
            ))
            .await;
        let [y, height, y1, y2] = [0, 1, 2, 3].map(|i| at[i].as_f64().unwrap());
        let value = |px: f64| top + (bottom - top) * (px - y1) / (y2 - y1);
        (value(y + height), value(y))
    }

    /// Polls `script` (an expression) until it is true, or fails naming `what`.
    pub async fn wait_for(&self, script: &str, what: &str) {
        for _ in 0..100 {
            if self.eval(&format!("return !!({script})")).await == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never happened: {what} ({script})");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
