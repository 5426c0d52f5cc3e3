//! `GET /api/log?client=&list=&name=&since=&until=&limit=`: the query
//! log's files searched as `embargo log` searches them
//! (`observe::querylog::search`), the newest matches first. Without a
//! filter `/api/log` stays what it was, the observer's latest records
//! from memory (`api::log`).
//!
//! A search reads files, perhaps many compressed ones: it runs on a
//! blocking thread, never a runtime worker, and is bounded three ways: at
//! most [`MAX`] records, [`TIME`] of reading (then the newest found so far
//! are answered, with `"timed_out": true`), and [`SEARCHES`] at a time (one
//! more is 429).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use super::Api;
use crate::config::LogPath;
use crate::observe::Decision;
use crate::observe::querylog::search::{self, Asked};

/// Records a search answers when no `limit` is asked.
const DEFAULT: usize = 1000;
/// ... and at most.
const MAX: usize = 10_000;
/// How long a search may read.
const TIME: Duration = Duration::from_secs(10);
/// Searches at a time: each holds a blocking thread and reads disk.
static SEARCHES: Semaphore = Semaphore::const_new(2);

/// `/api/log`'s filters (its `limit` is read with them, in `api.rs`).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Filters {
    client: Option<String>,
    list: Option<String>,
    name: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl Filters {
    /// The filters asked for.
    pub(super) fn asked(&self) -> Asked<'_> {
        Asked {
            client: self.client.as_deref(),
            list: self.list.as_deref(),
            name: self.name.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        }
    }
}

/// The search (module doc).
pub(super) async fn log(api: Arc<Api>, params: Filters, limit: Option<usize>) -> Response {
    let path = match api.log.as_ref().map(|l| &l.path) {
        Some(LogPath::File(p)) => p.clone(),
        Some(LogPath::Stdout) => {
            return not_found(
                "the query log goes to standard output ([log] path = \"-\"): there are no files to search",
            );
        }
        None => return not_found("this server has no query log files to search"),
    };
    let limit = limit.unwrap_or(DEFAULT);
    if limit == 0 || limit > MAX {
        return bad_request(format!("limit: from 1 to {MAX} records, {limit} asked"));
    }
    let mode = api
        .log
        .as_ref()
        .map_or(crate::config::ClientIp::Full, |l| l.client_ip);
    let snap = api.handler.state().load_full();
    let lists: Vec<&str> = snap.lists.iter().map(|l| l.spec.name.as_str()).collect();
    let (filter, notes) = match params.asked().filter(&lists, mode, SystemTime::now()) {
        Ok(f) => f,
        Err(e) => return bad_request(e.to_string()),
    };
    drop(snap);
    let Ok(permit) = SEARCHES.try_acquire() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": "other searches of the query log are running: ask again when they are done" })),
        )
            .into_response();
    };
    let found = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let deadline = Instant::now() + TIME;
        search::files(&path).map(|files| search::latest(&files, &filter, limit, Some(deadline)))
    })
    .await;
    let found = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": format!("the query log's directory: {e}") })),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let logs = api.handler.observer().logged();
    let logged: Vec<&str> = Decision::ALL
        .into_iter()
        .filter(|d| logs.contains(*d))
        .map(Decision::as_str)
        .collect();
    let records: Vec<_> = found.records.iter().rev().collect();
    Json(json!({
        "logged": logged,
        "records": records,
        "more": found.more,
        "timed_out": found.timed_out,
        "searched": found.stats,
        "notes": notes,
    }))
    .into_response()
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}

fn not_found(why: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": why }))).into_response()
}
