//! Progress bars on standard error, all from `indicatif`: drawn only when standard
//! error is a terminal (at most 20 times a second); to a log or a pipe they draw
//! nothing, and the lines printed through [`log_line`] are all that appears.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` steps: `label [=====>....] done/total`, with the label as the bar's
/// message (change it with `set_message`).
pub fn bar(label: impl Into<String>, total: u64) -> ProgressBar {
    styled(total, "{msg} [{bar:30}] {pos}/{len}", label.into())
}

/// A bar of `total` steps with the bar itself as an extra: `{prefix} [=====>....]
/// done/total - {msg}` (`prefix`, e.g. `Epoch 1/10`, and `msg`, e.g. the running loss,
/// set by the caller).
pub fn bar_with_status(total: u64) -> ProgressBar {
    styled(
        total,
        "{prefix} [{bar:30}] {pos}/{len} - {msg}",
        String::new(),
    )
}

/// A status line of `total` steps without a bar: `[done/total] {msg}`.
pub fn status_line(total: u64) -> ProgressBar {
    styled(total, "[{pos}/{len}] {msg}", String::new())
}

fn styled(total: u64, template: &str, message: String) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=>.");
    ProgressBar::new(total)
        .with_style(style)
        .with_message(message)
}

/// Prints a line on standard error above the bar (the bar is redrawn below it), or
/// just the line when no bar is drawn.
pub fn log_line(bar: &ProgressBar, line: &str) {
    bar.suspend(|| eprintln!("{line}"));
}
