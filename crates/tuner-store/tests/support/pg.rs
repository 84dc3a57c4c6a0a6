//! Where the PostgreSQL tests get a server from, in this order:
//! 1. `TUNER_TEST_PG_URL` (CI sets it: `.ci/run` starts a cluster for the whole run);
//! 2. Debian's binaries (`/usr/lib/postgresql/*/bin/initdb`): a private cluster for this
//!    test process, in a temp dir on a free loopback port, stopped by a watchdog once the
//!    process is gone. `initdb` runs once per machine into a cached template that each
//!    process copies, since nextest runs every test in a process of its own;
//! 3. nothing: the tests say they are skipped and pass, unless `CI` is set.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

/// The URL of a database on a server the tests may create databases in, or `None`
/// (with the reason printed) when there is no PostgreSQL here.
pub fn server_url() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TUNER_TEST_PG_URL") {
            return Some(url);
        }
        match start_private_cluster() {
            Ok(url) => url,
            Err(e) => panic!("could not start a private PostgreSQL cluster: {e}"),
        }
    });
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no PostgreSQL: CI must set TUNER_TEST_PG_URL or install postgresql"
        );
        eprintln!("skipped: no PostgreSQL (set TUNER_TEST_PG_URL or apt-get install postgresql)");
    }
    url.as_deref()
}

/// `Ok(None)` when PostgreSQL is not installed.
fn start_private_cluster() -> Result<Option<String>, String> {
    let Some(bin) = newest_bin_dir() else {
        return Ok(None);
    };
    let root = is_root();
    let template = template(&bin, root)?;
    let dir = std::env::temp_dir().join(format!("tuner-pg-{}-{}", std::process::id(), nanos()));
    run(Command::new("cp").arg("-a").arg(&template).arg(&dir))?;
    let mut last_error = String::new();
    // A port found free can be taken before the server binds it: try a few.
    for _ in 0..3 {
        let port = free_port()?;
        let start = format!(
            "{} -D {dir} -l {dir}/server.log -w -o '-p {port} -k {dir} \
             -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300' start",
            bin.join("pg_ctl").display(),
            dir = dir.display(),
        );
        match run(&mut as_owner(&start, root)) {
            Ok(()) => {
                spawn_watchdog(&bin, &dir, root);
                let user = if root {
                    "postgres".to_owned()
                } else {
                    whoami()
                };
                return Ok(Some(format!("postgres://{user}@127.0.0.1:{port}/postgres")));
            }
            Err(e) => last_error = e,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(last_error)
}

/// A data directory made by `initdb`, kept between test processes (copying it takes a
/// fraction of initdb's time).
fn template(bin: &Path, root: bool) -> Result<PathBuf, String> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let template = std::env::temp_dir().join(format!("tuner-pg-template-{version}-{}", uid()));
    if template.join("PG_VERSION").exists() {
        return Ok(template);
    }
    // Made under another name, then renamed: a process racing this one either finds
    // the finished template or loses the rename and uses the winner's.
    let fresh = std::env::temp_dir().join(format!(
        "tuner-pg-initdb-{}-{}",
        std::process::id(),
        nanos()
    ));
    std::fs::create_dir(&fresh).map_err(|e| format!("{}: {e}", fresh.display()))?;
    if root {
        // The server refuses to run as root; its directory must belong to postgres.
        run(Command::new("chown").arg("postgres:").arg(&fresh))?;
    }
    let initdb = format!(
        "{} -D {} --auth=trust --no-sync -E UTF8 --locale=C.UTF-8",
        bin.join("initdb").display(),
        fresh.display()
    );
    run(&mut as_owner(&initdb, root))?;
    if std::fs::rename(&fresh, &template).is_err() {
        let _ = std::fs::remove_dir_all(&fresh);
    }
    Ok(template)
}

/// Stops the cluster and removes its directory once this process is gone, however it
/// ends. In a session of its own, so a kill of the test's process group spares it.
fn spawn_watchdog(bin: &Path, dir: &Path, root: bool) {
    let stop = format!(
        "{} -D {} -m immediate stop",
        bin.join("pg_ctl").display(),
        dir.display()
    );
    let stop = if root {
        format!("su postgres -s /bin/sh -c '{stop}'")
    } else {
        stop
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display(),
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn newest_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A shell command run as the owner of the cluster: `postgres` when we are root.
fn as_owner(command: &str, root: bool) -> Command {
    let mut cmd = if root {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", command]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", command]);
        c
    };
    // The server inherits no pipe of ours (pg_ctl -l sends its output to a file).
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn uid() -> String {
    command_output("id", &["-u"])
}

fn is_root() -> bool {
    uid() == "0"
}

fn whoami() -> String {
    command_output("id", &["-un"])
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
