//! A signed zone, signed here with hickory's ring keys, served by a small
//! authoritative upstream on loopback: DNSSEC validation tested with Rust
//! alone. Each name is one outcome:
//!
//! ```text
//! signed.test.             SOA NS DNSKEY (key K, anchored by its DS)
//! www.signed.test.         A 192.0.2.1   signed: secure
//! broken.signed.test.      A 192.0.2.2   its signature's bytes flipped: bogus (6)
//! expired.signed.test.     A 192.0.2.3   signed for a window that ended yesterday (7)
//! nosig.signed.test.       A 192.0.2.4   no RRSIG (10)
//! blocked.signed.test.     A 192.0.2.6   signed, but listed: blocked
//! soon.signed.test.        A 192.0.2.8   TTL 300, signatures that end in 100 s
//! plain.signed.test.       NS, no DS, a signed NSEC saying so: an insecure delegation
//! www.plain.signed.test.   A 192.0.2.5   unsigned: insecure
//! nokey.test.              (key K2, anchored by its DS) no DNSKEY published
//! www.nokey.test.          A 192.0.2.7   signed by K2: DNSKEY missing (9)
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, DigestType, SigningKey, TBS};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TTL: u32 = 300;
const DAY: u32 = 86_400;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as u32
}

/// A zone key: its private half, its DNSKEY (SEP flag: 257).
struct Key {
    zone: Name,
    signing: EcdsaSigningKey,
    dnskey: DNSKEY,
}

impl Key {
    fn new(zone: &str) -> Self {
        let alg = Algorithm::ECDSAP256SHA256;
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(alg).expect("key");
        let signing = EcdsaSigningKey::from_pkcs8(&pkcs8, alg).expect("key");
        let dnskey = DNSKEY::with_flags(257, signing.to_public_key().expect("public key"));
        Self {
            zone: name(zone),
            signing,
            dnskey,
        }
    }

    /// The DS of this key, as a parent (or a trust anchor file) holds it.
    fn ds(&self) -> DS {
        let digest = self
            .dnskey
            .to_digest(&self.zone, DigestType::SHA256)
            .expect("digest");
        DS::new(
            self.dnskey.calculate_key_tag().expect("key tag"),
            Algorithm::ECDSAP256SHA256,
            DigestType::SHA256,
            digest.as_ref().to_owned(),
        )
    }

    /// The RRSIG over `records` (one RRset), valid from `inception` to
    /// `expiration` (seconds since the epoch).
    fn sign(&self, records: &[Record], inception: u32, expiration: u32) -> Record {
        let first = &records[0];
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: first.name.num_labels(),
            original_ttl: first.ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: self.dnskey.calculate_key_tag().expect("key tag"),
            signer_name: self.zone.clone(),
        };
        let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, records.iter()).expect("tbs");
        let sig = self.signing.sign(&tbs).expect("sign");
        Record::from_rdata(
            first.name.clone(),
            first.ttl,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        )
    }

    /// `records` and their RRSIG, valid from yesterday to a day from now.
    fn signed(&self, records: Vec<Record>) -> Vec<Record> {
        let sig = self.sign(&records, now() - DAY, now() + DAY);
        records.into_iter().chain([sig]).collect()
    }
}

fn a(owner: &str, last: u8) -> Record {
    Record::from_rdata(
        name(owner),
        TTL,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    )
}

fn soa(zone: &str) -> Record {
    Record::from_rdata(
        name(zone),
        TTL,
        RData::SOA(SOA::new(
            name(&format!("ns.{zone}")),
            name(&format!("hostmaster.{zone}")),
            1,
            3600,
            600,
            86400,
            TTL,
        )),
    )
}

fn ns(zone: &str) -> Record {
    Record::from_rdata(name(zone), TTL, RData::NS(NS(name(&format!("ns.{zone}")))))
}

/// What the upstream answers: (name, type) → answer records; a name
/// without the type asked gets NODATA with the authority of its zone.
struct Zones {
    answers: HashMap<(Name, RecordType), Vec<Record>>,
    /// NODATA authority for (name, type), when it is not the zone's SOA alone.
    denials: HashMap<(Name, RecordType), Vec<Record>>,
    /// The SOA (signed where the zone is) of each zone, longest first.
    soas: Vec<(Name, Vec<Record>)>,
}

impl Zones {
    fn build(k: &Key, k2: &Key) -> Self {
        let mut answers = HashMap::new();
        let mut put = |records: Vec<Record>| {
            let first = &records[0];
            answers.insert((first.name.clone(), first.record_type()), records);
        };
        let dnskey = Record::from_rdata(
            name("signed.test."),
            TTL,
            RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
        );
        put(k.signed(vec![dnskey]));
        put(k.signed(vec![ns("signed.test.")]));
        put(k.signed(vec![soa("signed.test.")]));
        put(k.signed(vec![a("www.signed.test.", 1)]));
        put(k.signed(vec![a("blocked.signed.test.", 6)]));
        let soon = vec![a("soon.signed.test.", 8)];
        let sig = k.sign(&soon, now() - DAY, now() + 100);
        put(soon.into_iter().chain([sig]).collect());
        let mut broken = k.signed(vec![a("broken.signed.test.", 2)]);
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &broken[1].data {
            let mut bytes = sig.sig().to_vec();
            bytes[10] ^= 0xff;
            let input = sig.input().clone();
            broken[1].data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, bytes)));
        }
        put(broken);
        let expired = vec![a("expired.signed.test.", 3)];
        let sig = k.sign(&expired, now() - 3 * DAY, now() - DAY);
        put(expired.into_iter().chain([sig]).collect());
        put(vec![a("nosig.signed.test.", 4)]);
        // The insecure delegation: the child's NS (unsigned, as the child
        // serves it) and its unsigned records.
        put(vec![ns("plain.signed.test.")]);
        put(vec![soa("plain.signed.test.")]);
        put(vec![a("www.plain.signed.test.", 5)]);
        // nokey.test: signed by K2, whose DNSKEY is not published.
        put(k2.signed(vec![soa("nokey.test.")]));
        put(k2.signed(vec![a("www.nokey.test.", 7)]));

        // No DS at plain.signed.test: the parent's signed NSEC says so.
        let nsec = Record::from_rdata(
            name("plain.signed.test."),
            TTL,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
                name("www.signed.test."),
                [RecordType::NS, RecordType::RRSIG, RecordType::NSEC],
            ))),
        );
        let mut denials = HashMap::new();
        let mut authority = k.signed(vec![soa("signed.test.")]);
        authority.extend(k.signed(vec![nsec]));
        denials.insert((name("plain.signed.test."), RecordType::DS), authority);

        Self {
            answers,
            denials,
            soas: vec![
                (name("plain.signed.test."), vec![soa("plain.signed.test.")]),
                (name("signed.test."), k.signed(vec![soa("signed.test.")])),
                (name("nokey.test."), k2.signed(vec![soa("nokey.test.")])),
            ],
        }
    }

    fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let question = q.queries.first()?.clone();
        let key = (question.name().to_lowercase(), question.query_type());
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.authoritative = true;
        m.add_query(question.clone());
        let dnssec_ok = q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let keep = |r: &Record| dnssec_ok || r.record_type() != RecordType::RRSIG;
        if let Some(records) = self.answers.get(&key) {
            m.answers
                .extend(records.iter().filter(|r| keep(r)).cloned());
        } else if let Some(records) = self.denials.get(&key) {
            m.authorities
                .extend(records.iter().filter(|r| keep(r)).cloned());
        } else if let Some((_, soa)) = self.soas.iter().find(|(z, _)| z.zone_of(&key.0)) {
            m.authorities
                .extend(soa.iter().filter(|r| keep(r)).cloned());
        } else {
            m.metadata.response_code = ResponseCode::Refused;
        }
        if let Some(e) = &q.edns {
            let mut mine = Edns::new();
            mine.set_max_payload(1232);
            mine.set_dnssec_ok(e.flags().dnssec_ok);
            m.set_edns(mine);
        }
        m.to_vec().ok()
    }
}

/// The upstream: UDP and TCP on one port, counting the queries per name.
pub(crate) struct SignedUpstream {
    pub(crate) addr: SocketAddr,
    /// DS records for a trust anchor file: signed.test's and nokey.test's.
    pub(crate) anchors: String,
    asked: Arc<Mutex<HashMap<String, usize>>>,
    received: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SignedUpstream {
    pub(crate) async fn start() -> Self {
        let (k, k2) = (Key::new("signed.test."), Key::new("nokey.test."));
        let mut anchors = String::from("; the test zones' DS records\n");
        for key in [&k, &k2] {
            let ds = key.ds();
            anchors.push_str(&format!(
                "{} IN DS {} 13 2 {}\n",
                key.zone,
                ds.key_tag(),
                data_encoding::HEXUPPER.encode(ds.digest())
            ));
        }
        let zones = Arc::new(Zones::build(&k, &k2));
        let (udp, tcp) = crate::harness::bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let received = Arc::new(AtomicUsize::new(0));
        let count = {
            let (asked, received) = (asked.clone(), received.clone());
            move |query: &[u8]| {
                received.fetch_add(1, Ordering::SeqCst);
                if let Ok(q) = Message::from_vec(query)
                    && let Some(question) = q.queries.first()
                {
                    let key = format!(
                        "{} {}",
                        question.name().to_lowercase(),
                        question.query_type()
                    );
                    *asked.lock().expect("lock").entry(key).or_insert(0) += 1;
                }
            }
        };
        let (z, c) = (zones.clone(), count.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buf).await {
                c(&buf[..len]);
                if let Some(answer) = z.answer(&buf[..len]) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = tcp.accept().await {
                let (z, c) = (zones.clone(), count.clone());
                tokio::spawn(async move {
                    while let Ok(len) = conn.read_u16().await {
                        let mut query = vec![0u8; usize::from(len)];
                        if conn.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        c(&query);
                        let Some(answer) = z.answer(&query) else {
                            return;
                        };
                        let mut frame = (answer.len() as u16).to_be_bytes().to_vec();
                        frame.extend_from_slice(&answer);
                        if conn.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            anchors,
            asked,
            received,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// How often `name` (`"www.signed.test. A"`) was asked.
    pub(crate) fn asked(&self, question: &str) -> usize {
        self.asked
            .lock()
            .expect("lock")
            .get(question)
            .copied()
            .unwrap_or(0)
    }

    /// Queries received, of any name.
    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for SignedUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
