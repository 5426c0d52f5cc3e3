//! The endpoints. Each reads the server's parts through [`Api`]; none
//! touches a UDP worker or takes a lock that the query path takes (the
//! cache's shard locks are held only to count entries).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use crate::observe::metrics::{self, CacheUsage, ObserverCounts, Refresh, ReloadCounts, Scrape};
use crate::observe::{Decision, LATEST};
use crate::source;
use crate::state::Snapshot;

/// An upstream that answered longer ago than this no longer makes the
/// server ready by itself: `/readyz` asks one first.
const FRESH_ANSWER: Duration = Duration::from_secs(60);
/// How long `POST /api/reload` waits for the reload before answering 202.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// The dashboard, built into the binary: no build step, no other file.
const DASHBOARD: &str = include_str!("assets/dashboard.html");

pub(super) async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything it needs is in the page and this server's API.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

pub(super) async fn series(
    State(api): State<Arc<Api>>,
) -> Json<crate::observe::series::SeriesView> {
    Json(api.series.view())
}

/// What each list's refreshes came to: the remote ones from their meta
/// files in the state directory, the local ones from the snapshot.
fn refreshes(snap: &Snapshot) -> Vec<(Refresh, Option<source::FetchMeta>)> {
    snap.lists
        .iter()
        .map(|l| {
            if l.spec.source.is_remote() {
                let meta = source::read_meta(&l.spec.path);
                let r = Refresh {
                    last_success: meta.fetched_at,
                    errors: meta.failures,
                    signature_failures: meta.signature_failures,
                };
                (r, Some(meta))
            } else {
                let r = Refresh {
                    last_success: Some(snap.loaded_at),
                    errors: 0,
                    signature_failures: 0,
                };
                (r, None)
            }
        })
        .collect()
}

fn cache_and_reloads(api: &Api) -> (CacheUsage, ReloadCounts) {
    let (ok, failed) = api.reload.counts();
    (api.handler.cache().usage(), ReloadCounts { ok, failed })
}

pub(super) async fn metrics(State(api): State<Arc<Api>>) -> Response {
    // Meta files are read from disk: off the runtime's threads.
    let text = tokio::task::spawn_blocking(move || {
        let snap = api.handler.state().load_full();
        let refresh: Vec<Refresh> = refreshes(&snap).into_iter().map(|(r, _)| r).collect();
        let (cache, reloads) = cache_and_reloads(&api);
        let observer = api.handler.observer();
        let sets = api.handler.upstreams().all();
        let mut text = metrics::render(&Scrape {
            stats: &api.stats,
            snapshot: &snap,
            refresh: &refresh,
            cache,
            upstreams: &crate::upstream::server_rows(&sets),
            reloads,
            observer: ObserverCounts {
                log_written: observer.written(),
                log_dropped: observer.dropped(),
                dnstap_sent: observer.dnstap_sent(),
                dnstap_dropped: observer.dnstap_dropped(),
                hit_lists: observer.hit_summary(),
                alerts: observer.alert_counts(),
            },
            started: api.started,
        });
        text.push_str(&api.canaries.render());
        text
    })
    .await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A root NS query (RD set, no EDNS): what `/readyz` asks an upstream that
/// has not answered lately. Any answer, whatever its rcode, shows it is up.
fn probe_query() -> Vec<u8> {
    let mut q = fastrand::u16(..).to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&[0, 0, 2, 0, 1]);
    q
}

pub(super) async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let mut reasons = Vec::new();
    let snap = api.handler.state().load_full();
    for l in &snap.lists {
        if let Some(note) = &l.note {
            reasons.push(format!("list {}: {note}", l.spec.name));
        }
    }
    drop(snap);
    // A list that lost its canary is loaded, yet not doing its job.
    reasons.extend(api.canaries.failures());
    let upstream = api.handler.upstream();
    if !upstream.answered_within(FRESH_ANSWER)
        && let Err(e) = upstream.forward(&probe_query()).await
        // An upstream that answered, if only to refuse the probe, is there.
        && !e.answered()
    {
        reasons.push(format!(
            "no upstream answered in the last {} s, nor a probe just now: {}",
            FRESH_ANSWER.as_secs(),
            e.kind()
        ));
    }
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

pub(super) async fn lists(State(api): State<Arc<Api>>) -> Response {
    let body = tokio::task::spawn_blocking(move || {
        let snap = api.handler.state().load_full();
        let refresh = refreshes(&snap);
        let lists: Vec<Value> = snap
            .lists
            .iter()
            .zip(refresh)
            .map(|(l, (r, meta))| {
                let s = &l.stats;
                let p = &l.spec.provenance;
                json!({
                    "name": l.spec.name,
                    "source": l.spec.source.to_string(),
                    "format": s.format.map(|f| f.as_str()),
                    "entries": s.entries(),
                    "lines": s.lines,
                    "duplicates": s.duplicates,
                    "invalid": s.invalid,
                    "unsupported": s.unsupported,
                    "action": l.spec.action.as_str(),
                    "provenance": {
                        "authority": p.authority,
                        "reason": p.reason,
                        "reference": p.reference,
                    },
                    "in_force": l.note.is_none(),
                    "note": l.note,
                    "last_refresh": r.last_success,
                    "last_checked": meta.as_ref().and_then(|m| m.checked_at),
                    "last_result": meta.as_ref().map(|m| m.last_result.clone()),
                    "refresh_errors": r.errors,
                    "expires": l.spec.expires.map(crate::expiry::format),
                    "expired": l.spec.expired(std::time::SystemTime::now()),
                    "signature": l.spec.signature.as_ref().map(|signed| json!({
                        "required": true,
                        "url": signed.url,
                        "signed": meta.as_ref().and_then(|m| m.signed.clone()),
                        "failures": r.signature_failures,
                    })),
                    "blocked": api.stats.blocked(l.slot),
                    "canary": l.spec.canary.as_deref().map(|c| api.canaries.json(&l.spec.name, c, l.canary_listed)),
                })
            })
            .collect();
        json!({ "lists": lists })
    })
    .await;
    match body {
        Ok(body) => Json(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckParams {
    name: Option<String>,
    client: Option<String>,
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}

pub(super) async fn check(
    State(api): State<Arc<Api>>,
    Query(params): Query<CheckParams>,
) -> Response {
    let Some(name) = params.name.filter(|n| !n.is_empty()) else {
        return bad_request("give the name to check: /api/check?name=example.org".into());
    };
    let client = match params.client.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return bad_request(format!("client: not an IP address: {c:?}")),
        },
    };
    let snap = api.handler.state().load_full();
    let asker = client.map(|ip| crate::check::client(&snap, ip));
    let verdict = crate::check::name(&snap, &name, asker.as_ref());
    Json(json!({ "client": asker, "name": verdict })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct HitsParams {
    list: Option<String>,
    /// At most this many rows (the most recent); all when absent.
    limit: Option<usize>,
}

/// The hit report as `embargo hits --json` prints it, but live from the
/// observer rather than from `hits.json` (saved every 5 s): per list, each
/// client that asked for its names, rows most recent first.
pub(super) async fn hits(
    State(api): State<Arc<Api>>,
    Query(params): Query<HitsParams>,
) -> Response {
    let list = params.list.filter(|l| !l.is_empty());
    if let Some(l) = &list
        && !api
            .handler
            .state()
            .load()
            .lists
            .iter()
            .any(|info| &info.spec.name == l)
    {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no list named {l:?}") })),
        )
            .into_response();
    }
    // Rows for every client of every list are built under the observer's
    // lock: off the runtime's threads.
    let report = tokio::task::spawn_blocking(move || {
        let mut report = api.handler.observer().hits(list.as_deref());
        if let Some(n) = params.limit {
            report.hits.truncate(n);
        }
        report
    })
    .await;
    match report {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LogParams {
    limit: Option<usize>,
    /// With any of these, the log's files are searched ([`super::search`]).
    #[serde(flatten)]
    filters: super::search::Filters,
}

/// Records `/api/log` gives when no `limit` is asked.
const LOG_DEFAULT: usize = 100;

/// The latest query-log records, newest first, in the log's JSON form:
/// the last [`LATEST`] the observer keeps in memory, whether or not the
/// log goes to a file. `logged` says which decisions `[log] queries`
/// records (none: the list is empty).
pub(super) async fn log(State(api): State<Arc<Api>>, Query(params): Query<LogParams>) -> Response {
    if params.filters.asked().any() {
        return super::search::log(api, params.filters, params.limit).await;
    }
    let limit = params.limit.unwrap_or(LOG_DEFAULT);
    if limit > LATEST {
        return bad_request(format!(
            "limit: at most {LATEST} records are kept, {limit} asked"
        ));
    }
    let observer = api.handler.observer();
    // Each record as the log writes it (its keys in the log's order), not
    // parsed and written again.
    let records: Vec<Box<serde_json::value::RawValue>> = observer
        .latest(limit)
        .into_iter()
        .filter_map(|r| serde_json::value::RawValue::from_string(r).ok())
        .collect();
    let logs = observer.logged();
    let logged: Vec<&str> = Decision::ALL
        .into_iter()
        .filter(|d| logs.contains(*d))
        .map(Decision::as_str)
        .collect();
    // Serialized as it is: `json!` would parse the raw records into maps.
    #[derive(serde::Serialize)]
    struct Latest<'a> {
        logged: Vec<&'a str>,
        records: Vec<Box<serde_json::value::RawValue>>,
    }
    Json(Latest { logged, records }).into_response()
}

pub(super) async fn reload(State(api): State<Arc<Api>>) -> Response {
    match api.reload.reload(RELOAD_WAIT).await {
        Some(Ok(())) => (StatusCode::OK, Json(json!({ "result": "ok" }))).into_response(),
        Some(Err(why)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "result": "failed", "error": why })),
        )
            .into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(json!({ "result": "started", "note": "still reloading; see the log or embargo_reloads_total" })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryParams {
    name: Option<String>,
    list: Option<String>,
}

/// `/api/history?name=NAME`: when the name (or the entry covering it)
/// entered and left each list, in which version; `?list=LIST`: the list's
/// changes (`observe::history`).
pub(super) async fn history(
    State(api): State<Arc<Api>>,
    Query(params): Query<HistoryParams>,
) -> Response {
    let Some(config) = api.reload.history() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not yet started").into_response();
    };
    let snap = api.handler.state().load_full();
    let lists: Vec<String> = snap.lists.iter().map(|l| l.spec.name.clone()).collect();
    let (name, list) = (
        params.name.filter(|n| !n.is_empty()),
        params.list.filter(|l| !l.is_empty()),
    );
    if name.is_none() && list.is_none() {
        return bad_request(
            "give a name or a list: /api/history?name=example.org or ?list=LIST".into(),
        );
    }
    if let Some(l) = &list
        && !lists.contains(l)
    {
        return (StatusCode::NOT_FOUND, format!("no list {l:?}")).into_response();
    }
    // The history files are read from disk: off the runtime's threads.
    let body = tokio::task::spawn_blocking(move || match (name, list) {
        (Some(name), only) => {
            let names: Vec<&str> = match &only {
                Some(l) => vec![l.as_str()],
                None => lists.iter().map(String::as_str).collect(),
            };
            crate::observe::history::search_name(&config, &names, &name)
                .map(|events| json!({ "name": name, "events": events }))
        }
        (None, Some(list)) => crate::observe::history::read(&config, &list)
            .map(|h| serde_json::to_value(h).unwrap_or_default()),
        (None, None) => Ok(Value::Null),
    })
    .await;
    match body {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
