//! Progress bars that also work in logs.
//!
//! indicatif draws nothing when stderr is not a terminal, so a benchmark started under
//! `nohup`, in CI or with `2> run.log` ran for hours without a word. There the bar is
//! drawn through [`LogLines`] instead: its line (position, elapsed, ETA, current step)
//! is printed as plain text, at most once per interval.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// How often a bar drawn into a log prints its line.
pub const LOG_INTERVAL: Duration = Duration::from_secs(30);

/// A bar of `total` steps labelled `what`: drawn in place on a terminal, printed as a
/// line every [`LOG_INTERVAL`] otherwise, hidden when `show` is false.
pub fn bar(total: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = if io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::with_draw_target(
            Some(total),
            ProgressDrawTarget::term_like(Box::new(LogLines::new(io::stderr(), LOG_INTERVAL))),
        )
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}} elapsed, ETA {{mean_eta}}] {{msg}}"
        ))
        .map(|s| s.with_key("mean_eta", write_mean_eta))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// Time left at the mean pace so far. indicatif's own estimate weights recent steps, and
/// benchmark steps range from a second to minutes: after a long sleep-time step it read
/// years. `None` before the first step.
pub fn mean_eta(elapsed: Duration, pos: u64, len: u64) -> Option<Duration> {
    if pos == 0 {
        return None;
    }
    let left = len.saturating_sub(pos);
    Some(elapsed.mul_f64(left as f64 / pos as f64))
}

fn write_mean_eta(state: &ProgressState, w: &mut dyn fmt::Write) {
    let eta = mean_eta(state.elapsed(), state.pos(), state.len().unwrap_or(0));
    let _ = match eta {
        Some(d) => {
            let s = d.as_secs();
            write!(w, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        None => write!(w, "--:--:--"),
    };
}

/// A draw target for logs: ignores cursor movement and prints the drawn line on flush
/// when at least `every` has passed since the last printed line (the first is printed
/// at once).
pub struct LogLines {
    every: Duration,
    state: Mutex<LogState>,
}

struct LogState {
    out: Box<dyn Write + Send>,
    pending: String,
    last: Option<Instant>,
}

impl LogLines {
    pub fn new(out: impl Write + Send + 'static, every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(LogState {
                out: Box::new(out),
                pending: String::new(),
                last: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LogState) -> T) -> T {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl fmt::Debug for LogLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogLines")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        // Wide enough that the step message is not cut; logs do not wrap.
        200
    }

    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        let s = s.trim_matches(['\r', '\n']);
        if !s.trim().is_empty() {
            self.with(|st| {
                if !st.pending.is_empty() {
                    st.pending.push(' ');
                }
                st.pending.push_str(s);
            });
        }
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.with(|st| st.pending.clear());
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let every = self.every;
        self.with(|st| {
            let line = std::mem::take(&mut st.pending);
            let due = st.last.is_none_or(|t| t.elapsed() >= every);
            if line.is_empty() || !due {
                return Ok(());
            }
            st.last = Some(Instant::now());
            writeln!(st.out, "{}", line.trim_end())?;
            st.out.flush()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().expect("buffer").clone())
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn logged_bar(every: Duration) -> (ProgressBar, Shared) {
        let out = Shared::default();
        let bar = ProgressBar::with_draw_target(
            Some(10),
            ProgressDrawTarget::term_like(Box::new(LogLines::new(out.clone(), every))),
        );
        bar.set_style(ProgressStyle::with_template("run {pos}/{len} {msg}").expect("template"));
        (bar, out)
    }

    #[test]
    fn a_logged_bar_prints_its_position_and_message_as_plain_lines() {
        let (bar, out) = logged_bar(Duration::ZERO);
        bar.set_message("p1 baseline/v0");
        bar.inc(3);
        bar.tick();
        let lines = out.lines();
        assert!(!lines.is_empty());
        assert_eq!(
            lines.last().map(String::as_str),
            Some("run 3/10 p1 baseline/v0")
        );
        assert!(lines
            .iter()
            .all(|l| !l.contains('\r') && !l.contains('\x1b')));
    }

    #[test]
    fn the_eta_follows_the_mean_pace() {
        assert_eq!(mean_eta(Duration::from_secs(10), 0, 90), None);
        // 15 of 90 steps in 15 minutes: 75 minutes left, however long the last step took.
        assert_eq!(
            mean_eta(Duration::from_secs(900), 15, 90),
            Some(Duration::from_secs(4500))
        );
        assert_eq!(
            mean_eta(Duration::from_secs(60), 90, 90),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn the_bar_shows_the_mean_eta() {
        let out = Shared::default();
        let bar = ProgressBar::with_draw_target(
            Some(10),
            ProgressDrawTarget::term_like(Box::new(LogLines::new(out.clone(), Duration::ZERO))),
        );
        bar.set_style(
            ProgressStyle::with_template("ETA {mean_eta}")
                .expect("template")
                .with_key("mean_eta", write_mean_eta),
        );
        bar.tick();
        assert_eq!(out.lines().last().map(String::as_str), Some("ETA --:--:--"));
    }

    #[test]
    fn a_logged_bar_prints_at_most_once_per_interval() {
        let (bar, out) = logged_bar(Duration::from_secs(3600));
        for i in 0..5 {
            bar.set_message(format!("step {i}"));
            bar.inc(1);
            bar.tick();
        }
        let lines = out.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("run "), "{lines:?}");
    }
}
