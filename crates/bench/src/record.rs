//! What a run writes: `manifest.json` (how the run was made) and `results.jsonl` (one
//! record per problem and condition).
//!
//! Records hold ids, numbers and flags only, never dataset text (GSM-Symbolic is
//! CC BY-NC-ND 4.0: no derived copy may be published), so run directories can be committed.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sleeptime_core::Candidate;
use sleeptime_model::Usage;

use crate::error::{BenchError, BenchErrorKind, Result};
use crate::spec::{Condition, ExperimentSpec};

/// Sleep-time cost and quality of the `c'` a record was answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepRecord {
    /// Program name, version and settings (e.g. `rethink@v1[max_rethinks=3,max_chars=5000]`).
    pub program: String,
    pub k: usize,
    /// Sleep-time usage over all drafts and steps.
    pub usage: Usage,
    /// Seconds the sleep-time calls took (the model's own timings).
    pub seconds: f64,
    /// Model calls made.
    pub steps: u32,
    /// Length of `c'` in characters.
    pub learned_chars: usize,
    /// Computed quantities in the structured `c'` (aided), if any.
    pub quantities: Option<usize>,
    /// Whether the gold answer is among the values `c'` holds (computed quantities, or the
    /// numbers written in prose notes).
    pub answer_recall: bool,
    /// Whether binding an open question's input to a number of the question gives the gold
    /// answer (aided-open; absent for other programs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_recall: Option<bool>,
    /// Sleep-time steps dropped because their prompt outgrew the context window (their
    /// questions or repairs are missing from `c'`); 0 is left out of the record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_too_long: u32,
    /// The structured `c'`'s quantities seen from the question (values and features, no
    /// text), so that engine-side choices of the answer can be compared on recorded runs;
    /// absent for prose `c'` and in records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One (problem, condition) result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub problem_id: String,
    /// The context this question belongs to (several questions share one in Multi-Query).
    pub context_id: String,
    /// 0 for the dataset's own question, 1.. for generated ones (Multi-Query).
    #[serde(default)]
    pub question_index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// [`Condition::id`].
    pub condition: String,
    pub spec: Condition,
    pub gold: f64,
    /// The number the answer ended with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<f64>,
    pub correct: bool,
    /// Test-time usage (both calls when the answer was forced; every call of a fallback).
    pub usage: Usage,
    pub calls: u32,
    /// Seconds the test-time calls took (with the prefix KV state when one was prepared).
    pub latency_s: f64,
    pub ttft_s: f64,
    /// Tokens of the prepared prefix and the seconds its prefill took (sleep-time work):
    /// `latency_s + prefix_prefill_s` estimates the latency without the cached prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_prefill_s: Option<f64>,
    pub hit_cap: bool,
    pub forced: bool,
    /// Routed conditions: `fast` or `fallback`, and the retrieval confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepRecord>,
    /// Whether the answer is a number `c'` holds (the answer anchored on the notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_in_learned: Option<bool>,
    /// `Score` records: log P(q | c), summed and per question token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_sum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_tokens: Option<u32>,
    /// Why the condition could not be evaluated (counted as wrong; retried on resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Conditions whose recorded calls make up this record, when it was composed from them
    /// instead of calling the model (a checked layout over recorded full-layout and
    /// fallback-budget answers: the same requests, which the call cache would serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composed_from: Option<Vec<String>>,
}

impl Record {
    /// A record for `condition` on a problem, with nothing measured yet.
    pub fn new(
        problem_id: &str,
        context_id: &str,
        question_index: u32,
        template_id: Option<String>,
        condition: &Condition,
        gold: f64,
    ) -> Self {
        Self {
            problem_id: problem_id.to_owned(),
            context_id: context_id.to_owned(),
            question_index,
            template_id,
            condition: condition.id(),
            spec: condition.clone(),
            gold,
            answer: None,
            correct: false,
            usage: Usage::default(),
            calls: 0,
            latency_s: 0.0,
            ttft_s: 0.0,
            prefix_tokens: None,
            prefix_prefill_s: None,
            hit_cap: false,
            forced: false,
            route: None,
            route_confidence: None,
            sleep: None,
            answer_in_learned: None,
            logprob_sum: None,
            logprob_mean: None,
            question_tokens: None,
            error: None,
            composed_from: None,
        }
    }

    /// Latency without the cached prefix: measured for cold conditions, else estimated as
    /// the measured latency plus the prefix's prefill.
    pub fn cold_latency_estimate(&self) -> f64 {
        self.latency_s + self.prefix_prefill_s.unwrap_or(0.0)
    }
}

/// The model a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub fingerprint: String,
    pub context_window: u32,
}

impl From<sleeptime_model::ModelInfo> for ModelRecord {
    fn from(info: sleeptime_model::ModelInfo) -> Self {
        Self {
            name: info.name,
            fingerprint: info.fingerprint,
            context_window: info.context_window,
        }
    }
}

/// How a run was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub preset: Option<String>,
    pub model: ModelRecord,
    /// Multi-Query generator and predictability scorer, when they differ from `model`.
    pub generator: Option<ModelRecord>,
    pub scorer: Option<ModelRecord>,
    pub dataset: String,
    /// Problem ids in run order (ids only: no dataset text).
    pub problem_ids: Vec<String>,
    /// Every condition id evaluated.
    pub conditions: Vec<String>,
    pub spec: ExperimentSpec,
    pub seed: u64,
    pub git_commit: Option<String>,
    pub command_line: Vec<String>,
    /// Unix seconds.
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// Earlier invocations of the same run (resumed runs), as start times.
    #[serde(default)]
    pub previous_starts: Vec<u64>,
    pub harness_version: String,
    /// Call-cache hits and misses of the last invocation.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub records: usize,
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds (civil-from-days, no time-zone database).
pub fn format_utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The commit checked out, if this is a git work tree.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

pub const MANIFEST: &str = "manifest.json";
pub const RESULTS: &str = "results.jsonl";

/// Read a run's manifest.
pub fn read_manifest(run_dir: &Path) -> Result<Manifest> {
    let path = run_dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| BenchError::io("read", &path, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| BenchError::corrupt(&path, "a run manifest", &e))
}

/// Read a run's manifest when the folder has one: `None` for a new run, an error for one
/// that cannot be read or parsed (a resumed run must not write over what it cannot read).
pub fn read_manifest_if_any(run_dir: &Path) -> Result<Option<Manifest>> {
    let path = run_dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BenchError::corrupt(&path, "a run manifest", &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BenchError::io("read", &path, &e)),
    }
}

/// Write a manifest atomically.
pub fn write_manifest(run_dir: &Path, manifest: &Manifest) -> Result<()> {
    write_json(&run_dir.join(MANIFEST), manifest)
}

/// Write `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        BenchError::new(
            BenchErrorKind::Io,
            format!("cannot encode {}: {e}", path.display()),
        )
    })?;
    write_atomic(path, &bytes)
}

/// Write a file through a temporary name and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| BenchError::io("write", &tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| BenchError::io("write", path, &e))?;
    Ok(())
}

/// Every record of a run. A later record for the same (problem, condition) replaces an
/// earlier one (a retried error); a torn last line (an interrupted write) is skipped.
pub fn read_records(run_dir: &Path) -> Result<Vec<Record>> {
    let path = run_dir.join(RESULTS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BenchError::io("read", &path, &e)),
    };
    let mut out: Vec<Record> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            tracing::warn!("skipping an unreadable line of {}", path.display());
            continue;
        };
        let key = (record.problem_id.clone(), record.condition.clone());
        match index.get(&key) {
            Some(&i) => out[i] = record,
            None => {
                index.insert(key, out.len());
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// The (problem, condition) pairs already done without error.
pub fn done_keys(records: &[Record]) -> HashSet<(String, String)> {
    records
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| (r.problem_id.clone(), r.condition.clone()))
        .collect()
}

/// Appends records to `results.jsonl`, one line per write, flushed at once.
#[derive(Debug)]
pub struct ResultsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsWriter {
    pub fn open(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(RESULTS);
        // A torn last line from an interrupted run must not glue onto the next record.
        let needs_newline = std::fs::read(&path)
            .map(|b| b.last().is_some_and(|&c| c != b'\n'))
            .unwrap_or(false);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| BenchError::io("open", &path, &e))?;
        if needs_newline {
            file.write_all(b"\n")
                .map_err(|e| BenchError::io("write", &path, &e))?;
        }
        Ok(Self { path, file })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| {
            BenchError::new(
                BenchErrorKind::Io,
                format!("cannot encode a record for {}: {e}", self.path.display()),
            )
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|e| BenchError::io("write", &self.path, &e))
    }
}
