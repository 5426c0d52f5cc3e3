//! List expiry (issue 20): a list with `expires` stops blocking at that
//! moment, with no reload asked for, and is reported expired, not dropped
//! silently.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp, with_http};

async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

async fn list_json(http: SocketAddr, name: &str) -> serde_json::Value {
    let body = reqwest::get(format!("http://{http}/api/lists"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let lists: serde_json::Value = serde_json::from_str(&body).expect("json");
    lists["lists"]
        .as_array()
        .expect("lists")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_stops_blocking_when_it_expires_without_a_reload() {
    let up = Upstream::start().await;
    // Whole seconds: the config takes RFC 3339 to the second.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now + 4);
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let past =
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(now - 60))
            .to_string();
    let lists = format!(
        "[[lists]]\nname = \"order\"\nsource = \"order.txt\"\nexpires = \"{stamp}\"\n\
         [[lists]]\nname = \"old-order\"\nsource = \"old.txt\"\nexpires = \"{past}\"\n"
    );
    let e = Embargo::start(
        &with_http(&config(up.addr, &lists), "listen = [\"127.0.0.1:0\"]"),
        &[
            ("order.txt", "temporary.example\n"),
            ("old.txt", "lapsed.example\n"),
        ],
    )
    .await;
    assert!(
        blocked(&e, "temporary.example.").await,
        "in force until {stamp}"
    );
    // Expired before the start: not loaded, and said so.
    assert!(!blocked(&e, "lapsed.example.").await);
    let old = list_json(e.http[0], "old-order").await;
    assert_eq!(old["in_force"], false, "{old}");
    assert_eq!(old["expired"], true, "{old}");
    assert_eq!(old["expires"], past.as_str(), "{old}");
    let check = reqwest::get(format!(
        "http://{}/api/check?name=temporary.example",
        e.http[0]
    ))
    .await
    .expect("GET")
    .text()
    .await
    .expect("body");
    assert!(
        check.contains(&format!("\"expires\":\"{stamp}\"")),
        "{check}"
    );
    let order = list_json(e.http[0], "order").await;
    assert_eq!(order["expired"], false, "{order}");
    assert_eq!(order["expires"], stamp.as_str(), "{order}");

    // Nothing is edited, nothing asks for a reload: the expiry itself does.
    e.until_reloaded("order expired", async || {
        !blocked(&e, "temporary.example.").await
    })
    .await;
    assert!(SystemTime::now() >= at, "stopped blocking before {stamp}");
    assert!(blocked(&e, "seized.example.").await, "the other lists stay");
    let order = list_json(e.http[0], "order").await;
    assert_eq!(order["expired"], true, "{order}");
    assert_eq!(order["in_force"], false, "{order}");
    assert!(
        order["note"].as_str().expect("note").contains("expired"),
        "{order}"
    );
    e.stop().await;
}
