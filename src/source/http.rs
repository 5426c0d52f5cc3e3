//! Lists over HTTP(S): conditional GETs, streamed and size-limited, that
//! replace the copy in the state directory only when whole and sane.
//!
//! ```text
//!  timer / force ──► GET (If-None-Match, If-Modified-Since) ──► 304: nothing to do
//!                          │ 200, streamed, size-limited
//!                          ▼
//!            <state>/lists/NAME.download ── parse: how many entries? ──► none left, or shrank > max_shrink: refuse
//!                          │ fsync, rename   (background thread)         (last good copy stays)
//!                          ▼
//!            <state>/lists/NAME.list + NAME.meta.json ──► reload (snapshot rebuilt, swapped)
//! ```
//!
//! Only a download that arrived whole, parsed, and did not shrink the list
//! too much replaces the last good copy, and it does so atomically (write a
//! temporary file, fsync, rename, fsync the directory), so a crash or a cut
//! connection at any point leaves the previous copy intact. A restart with
//! no network loads that copy and keeps blocking.

use std::path::Path;
use std::time::Duration;

use super::Outcome;
use super::store::{self, FetchMeta, Scratch};
use crate::config::ListSpec;
use crate::lists;

/// The HTTP client for list downloads: rustls, no cookies, a user agent that names us.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("embargo/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// Why one attempt failed, and whether trying again may help.
struct Attempt {
    message: String,
    retry: bool,
}

/// Refreshes one remote list. `force` skips the conditional GET and the
/// shrink checks (an operator's explicit decision).
pub async fn refresh(client: &reqwest::Client, spec: &ListSpec, url: &str, force: bool) -> Outcome {
    let copy = &spec.path;
    let meta = store::meta_for(copy, url);
    if let Some(dir) = copy.parent()
        && let Err(e) = store::create_dir(dir)
    {
        return Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
    }
    let conditional = !force && copy.exists();
    let mut delay = Duration::from_millis(500);
    // Err: the outcome already, with nothing to adopt.
    let mut downloaded = Err(Outcome::Failed("no attempt".into()));
    for attempt in 1..=3 {
        match download(client, spec, url, &meta, conditional).await {
            Ok(Some(d)) => {
                downloaded = Ok(d);
                break;
            }
            Ok(None) => {
                downloaded = Err(Outcome::NotModified);
                break;
            }
            Err(a) => {
                downloaded = Err(Outcome::Failed(format!("attempt {attempt}: {}", a.message)));
                if !a.retry || attempt == 3 {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
    // Parsing the download, fsyncing the copy and its metadata: off the
    // runtime that carries forwarded answers (a million-line list takes
    // a second to parse).
    let spec = spec.clone();
    super::background::run("embargo-adopt", move || {
        let mut meta = meta;
        let outcome = match downloaded {
            Ok((tmp, etag, last_modified)) => {
                let outcome = adopt(&spec, tmp.path(), &mut meta, force);
                if matches!(outcome, Outcome::Updated { .. }) {
                    meta.etag = etag;
                    meta.last_modified = last_modified;
                }
                outcome
            }
            Err(outcome) => outcome,
        };
        store::record_outcome(&spec.path, &mut meta, &outcome, &spec.name);
        outcome
    })
    .await
    .unwrap_or_else(|e| Outcome::Failed(e.to_string()))
}

type Downloaded = (Scratch, Option<String>, Option<String>);

/// GETs the list into a temp file next to the copy. `Ok(None)` is 304.
async fn download(
    client: &reqwest::Client,
    spec: &ListSpec,
    url: &str,
    meta: &FetchMeta,
    conditional: bool,
) -> Result<Option<Downloaded>, Attempt> {
    use tokio::io::AsyncWriteExt;
    let fail = |message: String, retry: bool| Attempt { message, retry };
    let mut req = client.get(url).timeout(spec.fetch.timeout);
    if conditional {
        if let Some(etag) = &meta.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &meta.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
    }
    let mut resp = req.send().await.map_err(|e| fail(format!("{e}"), true))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}"), status.is_server_error()));
    }
    let max = spec.fetch.max_size;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(fail(
            format!("body larger than the {max}-byte limit"),
            false,
        ));
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    // Removed on every way out of here but success, and after `adopt`.
    let tmp = Scratch::new(spec.path.with_extension("download"));
    // As private as every file embargo writes, and never through a link.
    let mut file = tokio::fs::OpenOptions::from(store::private_file())
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp.path())
        .await
        .map_err(store::not_followed)
        .map_err(|e| fail(format!("cannot write {}: {e}", tmp.path().display()), false))?;
    let mut total = 0u64;
    loop {
        // A body cut short of its Content-Length is an error here, not a short list.
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| fail(format!("body: {e}"), true))?;
        let Some(chunk) = chunk else { break };
        total += chunk.len() as u64;
        if total > max {
            return Err(fail(
                format!("body larger than the {max}-byte limit"),
                false,
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| fail(format!("cannot write {}: {e}", tmp.path().display()), false))?;
    }
    file.sync_all()
        .await
        .map_err(|e| fail(format!("cannot sync {}: {e}", tmp.path().display()), false))?;
    Ok(Some((tmp, etag, last_modified)))
}

/// Parses the download; if it is acceptable ([`super::vet`]), makes it
/// the copy in use.
fn adopt(spec: &ListSpec, tmp: &Path, meta: &mut FetchMeta, force: bool) -> Outcome {
    let mut names = 0u64;
    let stats = match lists::load_file(tmp, spec.format, &mut |_, _| names += 1) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("cannot read the download: {e}")),
    };
    // An `ips` list's or a zone's networks are entries as much as names.
    let names = names + stats.nets;
    if let Some(turned_down) = super::vet(spec, names, &stats, meta.entries, force) {
        return turned_down;
    }
    if let Err(e) = store::commit(tmp, &spec.path) {
        return Outcome::Failed(format!("cannot replace {}: {e}", spec.path.display()));
    }
    meta.entries = names;
    meta.fetched_at = Some(store::now());
    Outcome::Updated { entries: names }
}
