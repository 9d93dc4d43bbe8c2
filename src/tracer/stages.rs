//! Start-up stage times for `--debug`: how long each step before "Listening" took, so a
//! slow start can be pinned on one step (the BTF parse, the verifier, the attach) in a VM.

use std::time::Instant;

/// A clock that, when enabled, prints each stage's duration as it ends.
pub struct StageClock {
    enabled: bool,
    started: Instant,
    last: Instant,
}

impl StageClock {
    /// Starts the clock; `enabled` is `--debug`.
    pub fn start(enabled: bool) -> Self {
        let now = Instant::now();
        StageClock {
            enabled,
            started: now,
            last: now,
        }
    }

    /// Ends the stage `what`: with `--debug`, prints its duration and the time since start.
    pub fn mark(&mut self, what: &str) {
        let now = Instant::now();
        if self.enabled {
            eprintln!(
                "start-up: {what} {:.3}s (at {:.3}s)",
                (now - self.last).as_secs_f64(),
                (now - self.started).as_secs_f64()
            );
        }
        self.last = now;
    }

    /// Seconds since the clock started.
    pub fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_to_the_total() {
        let mut clock = StageClock::start(false);
        std::thread::sleep(std::time::Duration::from_millis(5));
        clock.mark("first");
        assert!(clock.last >= clock.started);
        assert!(clock.total() >= 0.005);
    }
}
