//! The attach and detach progress bar: indicatif at the edge, behind `attach::Progress`,
//! drawn only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::attach;

/// The attach and detach progress, drawn on a terminal.
pub struct Bar(ProgressBar);

impl Bar {
    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl attach::Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

/// A bar for `len` steps (hidden unless stderr is a terminal).
pub fn bar(len: u64, message: &str) -> Bar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if std::io::stderr().is_terminal() {
        pb.set_style(
            ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_message(message.to_string());
    Bar(pb)
}
