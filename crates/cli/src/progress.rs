//! Progress display for sleep time.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sleeptime_core::{SleepEvent, SleepProgress};

/// A spinner that says which draft and step is running and what the model did.
#[derive(Debug)]
pub struct SleepSpinner {
    bar: ProgressBar,
    label: String,
}

impl SleepSpinner {
    pub fn new(label: impl Into<String>) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let label = label.into();
        bar.set_message(format!("{label}: starting"));
        Self { bar, label }
    }

    pub fn finish(&self, message: impl Into<String>) {
        self.bar
            .finish_with_message(format!("{}: {}", self.label, message.into()));
    }
}

impl SleepProgress for SleepSpinner {
    fn event(&self, event: SleepEvent) {
        let msg = match event {
            SleepEvent::StepStarted { draft, step } => {
                format!("draft {} step {step}: thinking", draft + 1)
            }
            SleepEvent::StepFinished {
                draft,
                step,
                completion_tokens,
                action,
            } => {
                format!(
                    "draft {} step {step}: {action} ({completion_tokens} tokens)",
                    draft + 1
                )
            }
            SleepEvent::DraftFinished { draft } => format!("draft {} done", draft + 1),
        };
        self.bar.set_message(format!("{}: {msg}", self.label));
    }
}
