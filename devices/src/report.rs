//! One-line reports of what a driver did wrong (or what a backend could not do), for the
//! monitor's stderr.
//!
//! A hostile driver can break a device and reset it in a loop, hundreds of times a
//! second, and each break would be a line: [`rate_limited`] lets one line through per
//! interval and counts the rest, then says how many it held back ("N more reports were
//! suppressed") with the next line it lets through, or when its owner flushes it at
//! the end of the run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where a device writes one line about a driver bug or a backend problem.
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// How often a rate-limited report lets a line through by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The decision for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it, after a line saying how many were suppressed before it (if any).
    Write { suppressed: u64 },
    /// Count it.
    Suppress,
}

/// One line per `interval`, the rest counted (the clock is the caller's, for tests).
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Limiter {
    pub fn new(interval: Duration) -> Limiter {
        Limiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                Admit::Suppress
            }
            _ => {
                self.last = Some(now);
                Admit::Write {
                    suppressed: std::mem::take(&mut self.suppressed),
                }
            }
        }
    }

    /// Lines counted and not yet told about (the count is then reset).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// A report that writes through `sink` at most one line per `interval` (see the module
/// docs). Its owner calls [`RateLimited::flush`] when the device is gone, to tell the
/// count still held back: device threads may hold clones of the report until the
/// process ends, so no drop can be relied on for that.
#[derive(Clone)]
pub struct RateLimited(Arc<Limited>);

struct Limited {
    sink: Box<dyn Fn(&str) + Send + Sync>,
    limiter: Mutex<Limiter>,
}

impl RateLimited {
    pub fn new(sink: impl Fn(&str) + Send + Sync + 'static, interval: Duration) -> RateLimited {
        RateLimited(Arc::new(Limited {
            sink: Box::new(sink),
            limiter: Mutex::new(Limiter::new(interval)),
        }))
    }

    /// The report to give a device.
    pub fn report(&self) -> Report {
        let limited = self.0.clone();
        Arc::new(move |text: &str| {
            let admit = limited
                .limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(Instant::now());
            if let Admit::Write { suppressed } = admit {
                if suppressed > 0 {
                    (limited.sink)(&suppressed_line(suppressed));
                }
                (limited.sink)(text);
            }
        })
    }

    /// Writes how many lines were held back since the last one written, if any.
    pub fn flush(&self) {
        let n = self
            .0
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_suppressed();
        if n > 0 {
            (self.0.sink)(&suppressed_line(n));
        }
    }
}

fn suppressed_line(n: u64) -> String {
    format!(
        "{n} more report{} suppressed",
        if n == 1 { " was" } else { "s were" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_count_of_the_rest() {
        let mut l = Limiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(l.admit(at(0)), Admit::Write { suppressed: 0 });
        for ms in 1..=380 {
            assert_eq!(l.admit(at(ms)), Admit::Suppress);
        }
        assert_eq!(l.admit(at(1000)), Admit::Write { suppressed: 380 });
        assert_eq!(l.admit(at(1001)), Admit::Suppress);
        assert_eq!(l.take_suppressed(), 1);
        assert_eq!(l.take_suppressed(), 0);
        assert_eq!(l.admit(at(5000)), Admit::Write { suppressed: 0 });
    }

    #[test]
    fn the_count_held_back_is_told_on_flush() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            move |t: &str| lines.lock().unwrap().push(t.to_string())
        };
        let limited = RateLimited::new(sink, Duration::from_secs(3600));
        let report = limited.report();
        for i in 0..5 {
            report(&format!("fault {i}"));
        }
        assert_eq!(*lines.lock().unwrap(), ["fault 0"]);
        limited.flush();
        limited.flush();
        assert_eq!(
            *lines.lock().unwrap(),
            ["fault 0", "4 more reports were suppressed"]
        );
    }
}
