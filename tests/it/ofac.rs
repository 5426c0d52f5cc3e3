//! The OFAC SDN importer end to end: the published XML and CSV forms
//! (small fixtures in the real formats), websites blocked with the entity
//! and its programs in the EDE, and `embargo check` naming them.

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/ofac/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn ofac_config(upstream: std::net::SocketAddr, file: &str, format: &str) -> String {
    config(
        upstream,
        &format!(
            "[[lists]]\nname = \"ofac-sdn\"\nsource = \"{file}\"\nformat = \"{format}\"\nauthority = \"US Treasury OFAC\"\nreason = \"Sanctioned entity\"\nede = \"censored\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sdn_xml_and_csv_websites_are_blocked_with_the_entity_named() {
    let up = Upstream::start().await;
    for (file, format) in [("SDN.XML", "ofac-sdn"), ("sdn.csv", "auto")] {
        let e = Embargo::start(
            &ofac_config(up.addr, file, format),
            &[(file, &fixture(file))],
        )
        .await;
        for name in [
            "silverstar-example.net.",
            "www.silverstar-example.net.",
            "shop.volasys-example.ru.",
        ] {
            let r = udp(e.addr, &query(name, RecordType::A, true)).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NXDomain,
                "{file} {name}"
            );
            let (code, text) = ede(&r).expect("EDE");
            assert_eq!(code, 16);
            assert!(
                text.contains("SILVERSTAR EXAMPLE") && text.contains("DPRK3"),
                "{text}"
            );
        }
        let snap = e.handler.state().load();
        let list = snap
            .lists
            .iter()
            .find(|l| l.spec.name == "ofac-sdn")
            .expect("list");
        assert_eq!(list.stats.format, Some(embargo::lists::Format::OfacSdn));
        e.stop().await;
    }
    // XML only: the third entity's site (with scheme, port and path).
    let e = Embargo::start(
        &ofac_config(up.addr, "SDN.XML", "auto"),
        &[("SDN.XML", &fixture("SDN.XML"))],
    )
    .await;
    let r = udp(
        e.addr,
        &query("sanctioned-example.org.", RecordType::AAAA, true),
    )
    .await;
    assert!(ede(&r).expect("EDE").1.contains("SANCTIONED & CO"));

    let out = Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(["check", "-c"])
        .arg(e.dir().join("embargo.toml"))
        .arg("www.volasys-example.ru")
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("list=ofac-sdn entry=volasys-example.ru"),
        "{out}"
    );
    assert!(
        out.contains(
            "why: blocked by ofac-sdn (US Treasury OFAC): Sanctioned entity: OFAC SDN SILVERSTAR"
        ),
        "{out}"
    );
    e.stop().await;
}
