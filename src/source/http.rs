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
//! A list that must be signed (`signature = "minisign"`) has its signature
//! downloaded after it, and verified before anything else is done with the
//! download ([`super::signature`]); the signature is kept beside the copy.
//!
//! Only a download that arrived whole, parsed, and did not shrink the list
//! too much replaces the last good copy, and it does so atomically (write a
//! temporary file, fsync, rename, fsync the directory), so a crash or a cut
//! connection at any point leaves the previous copy intact. A restart with
//! no network loads that copy and keeps blocking.

use std::path::Path;
use std::time::Duration;

use super::Outcome;
use super::signature;
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
    /// The list came, its signature did not (a list that must be signed).
    unsigned: bool,
}

/// Refreshes one remote list. `force` skips the conditional GET and the
/// shrink checks (an operator's explicit decision), never the signature.
pub async fn refresh(client: &reqwest::Client, spec: &ListSpec, url: &str, force: bool) -> Outcome {
    let copy = &spec.path;
    let meta = store::meta_for(copy, url);
    if let Some(dir) = copy.parent()
        && let Err(e) = store::create_dir(dir)
    {
        return Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
    }
    // A copy kept without the signature it needs (`signature` added to a
    // list already downloaded) is not loaded: download it whole again.
    let conditional =
        !force && copy.exists() && (spec.signature.is_none() || signature::path_for(copy).exists());
    let mut delay = Duration::from_millis(500);
    // Err: the outcome already, with nothing to adopt.
    let mut downloaded = Err(Outcome::Failed("no attempt".into()));
    for attempt in 1..=3 {
        let got = match download(client, spec, url, &meta, conditional).await {
            // The list, then its signature, both before anything is adopted.
            Ok(Some(d)) => match &spec.signature {
                Some(signed) => download_signature(client, spec, &signed.url)
                    .await
                    .map(|sig| Some((d, Some(sig)))),
                None => Ok(Some((d, None))),
            },
            Ok(None) => Ok(None),
            Err(a) => Err(a),
        };
        match got {
            Ok(Some(d)) => {
                downloaded = Ok(d);
                break;
            }
            Ok(None) => {
                downloaded = Err(Outcome::NotModified);
                break;
            }
            Err(a) => {
                downloaded = Err(if a.unsigned {
                    Outcome::BadSignature(a.message.clone())
                } else {
                    Outcome::Failed(format!("attempt {attempt}: {}", a.message))
                });
                if !a.retry || attempt == 3 {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
    // Verifying, parsing the download, fsyncing the copy and its metadata:
    // off the runtime that carries forwarded answers (a million-line list
    // takes a second to parse).
    let spec = spec.clone();
    super::background::run("embargo-adopt", move || {
        let mut meta = meta;
        let outcome = match downloaded {
            Ok(((tmp, etag, last_modified), sig)) => {
                let outcome = adopt(&spec, tmp.path(), sig.as_deref(), &mut meta, force);
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
    let fail = |message: String, retry: bool| Attempt {
        message,
        retry,
        unsigned: false,
    };
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

/// GETs a signed list's signature (small: at most
/// [`signature::MAX_SIGNATURE`] bytes, read whole). A server that has none
/// (404, say) is a signature failure, not a download failure: the list is
/// there, unsigned.
async fn download_signature(
    client: &reqwest::Client,
    spec: &ListSpec,
    url: &str,
) -> Result<String, Attempt> {
    let fail = |message: String, retry: bool, unsigned: bool| Attempt {
        message,
        retry,
        unsigned,
    };
    let resp = client
        .get(url)
        .timeout(spec.fetch.timeout)
        .send()
        .await
        .map_err(|e| fail(format!("signature {url}: {e}"), true, false))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(
            format!("no signature at {url}: HTTP {status}"),
            status.is_server_error(),
            !status.is_server_error(),
        ));
    }
    let max = signature::MAX_SIGNATURE;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(fail(
            format!("{url}: larger than a signature ({max} bytes at most)"),
            false,
            true,
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| fail(format!("signature {url}: {e}"), true, false))?;
    if body.len() as u64 > max {
        return Err(fail(
            format!("{url}: larger than a signature ({max} bytes at most)"),
            false,
            true,
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        fail(
            format!("{url}: not a minisign signature (not UTF-8)"),
            false,
            true,
        )
    })
}

/// Verifies the download's signature (a list that must be signed), parses
/// it; if it is acceptable ([`super::vet`]), makes it the copy in use,
/// with its signature beside it.
fn adopt(
    spec: &ListSpec,
    tmp: &Path,
    sig: Option<&str>,
    meta: &mut FetchMeta,
    force: bool,
) -> Outcome {
    let signed = match (&spec.signature, sig) {
        (None, _) => None,
        (Some(_), None) => return Outcome::BadSignature("no signature downloaded".into()),
        (Some(signed), Some(sig)) => match signature::verify(signed, tmp, sig) {
            Ok(comment) => Some((sig, comment)),
            Err(e) => return Outcome::BadSignature(format!("{} ({})", e, signed.url)),
        },
    };
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
    // After the list: should this fail (or the process stop) in between,
    // the new list sits beside the old signature, which does not verify
    // it, so it is not loaded; the metadata, written last, still has the
    // old ETag, so the next refresh downloads both again.
    meta.signed = None;
    if let Some((sig, comment)) = signed {
        let path = signature::path_for(&spec.path);
        if let Err(e) = store::write_atomic(&path, sig.as_bytes()) {
            return Outcome::Failed(format!("cannot write {}: {e}", path.display()));
        }
        meta.signed = Some(comment);
    }
    meta.entries = names;
    meta.fetched_at = Some(store::now());
    Outcome::Updated { entries: names }
}
