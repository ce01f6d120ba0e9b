//! Progress on standard error: a bar with bytes and rate when stderr is a terminal, silence
//! otherwise; under it, one bar per item in flight (a blob being sent or fetched,
//! [`Progress::item`]).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports bytes processed.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// The bars' common drawing place, once an item bar was asked for.
    multi: std::sync::OnceLock<MultiProgress>,
}

/// The bar of one item in flight, under the overall bar ([`Progress::item`]); removed when
/// dropped.
pub struct ItemBar {
    bar: Option<ProgressBar>,
}

impl ItemBar {
    /// Sets the item's bytes done.
    pub fn set(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
        }
    }
}

impl Drop for ItemBar {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The overall bar.
const OVERALL: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
/// An item's bar.
const ITEM: &str = "  {msg:40!} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec}";

/// The style of a bar with a known total.
fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// A progress reporter for `total` bytes (if known), drawn only on a terminal and unless `quiet`.
    pub fn new(label: &str, total: Option<u64>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                .with_style(bar_style(OVERALL)),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg} {spinner} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar), multi: std::sync::OnceLock::new() }
    }

    /// A reporter that never draws.
    pub fn hidden() -> Self {
        Progress { bar: None, multi: std::sync::OnceLock::new() }
    }

    /// A bar for one item of `size` bytes (`label`: what it is, e.g. `↑ <member>`), drawn
    /// under the overall bar until it is dropped; nothing when the overall bar is not drawn.
    pub fn item(&self, label: &str, size: u64) -> ItemBar {
        let Some(overall) = &self.bar else { return ItemBar { bar: None } };
        let multi = self.multi.get_or_init(|| {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            m.add(overall.clone());
            m
        });
        let bar = multi.add(ProgressBar::new(size).with_style(bar_style(ITEM)));
        bar.set_message(label.to_string());
        ItemBar { bar: Some(bar) }
    }

    /// Sets the position to `bytes`.
    pub fn set(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
        }
    }

    /// Advances the position by `bytes` (several workers may report into one bar).
    pub fn inc(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// Prints a line above the bar (one per finished item); nothing when the bar is not drawn.
    pub fn line(&self, text: &str) {
        match (self.multi.get(), &self.bar) {
            (Some(m), _) => {
                let _ = m.println(text);
            }
            (None, Some(b)) => b.println(text),
            (None, None) => {}
        }
    }

    /// Sets the total once it is known (turns a spinner into a bar with an ETA).
    pub fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(bar_style(OVERALL));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
