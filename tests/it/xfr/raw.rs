//! A zone-transfer primary written by hand over TCP, for the replies that
//! hickory's primary will not send: a zone that never ends (a broken or
//! hostile primary), and one as big as the test wants without building it
//! in memory first.
//!
//! It answers an SOA query with the zone's SOA, and an AXFR or IXFR query
//! with the zone AXFR-style (SOA, records, SOA), in messages of
//! [`PER_MESSAGE`] records, one connection at a time, as embargo asks.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Records per reply message (about 12 KiB on the wire).
pub(crate) const PER_MESSAGE: usize = 500;

/// What the primary serves as `rpz.test.`.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    /// The zone at `serial` blocking `count` names (`n0.example`...), each
    /// with its wildcard.
    Names { serial: u32, count: usize },
    /// The zone at `serial` whose transfer never closes: the opening SOA,
    /// then the same message of records again and again, until `cap` bytes
    /// are sent or the secondary hangs up.
    Endless { serial: u32, cap: u64 },
}

impl Zone {
    fn serial(&self) -> u32 {
        match self {
            Self::Names { serial, .. } | Self::Endless { serial, .. } => *serial,
        }
    }
}

/// The primary, serving until dropped.
pub(crate) struct RawPrimary {
    pub(crate) addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    /// Bytes of zone transfers sent, all transfers together.
    sent: Arc<AtomicU64>,
    /// Zone transfers (AXFR or IXFR) begun, and ended by the secondary
    /// hanging up before the transfer was over.
    transfers: Arc<AtomicUsize>,
    hung_up: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawPrimary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("name")
}

fn soa(serial: u32) -> Record {
    let apex = name("rpz.test.");
    Record::from_rdata(
        apex.clone(),
        60,
        RData::SOA(SOA::new(
            name("ns.rpz.test."),
            name("hostmaster.rpz.test."),
            serial,
            3600,
            600,
            86400,
            60,
        )),
    )
}

/// `n{i}.example` and `*.n{i}.example` as RPZ NXDOMAIN records.
fn block(i: usize) -> [Record; 2] {
    let cname = || RData::CNAME(CNAME(Name::root()));
    [
        Record::from_rdata(name(&format!("n{i}.example.rpz.test.")), 60, cname()),
        Record::from_rdata(name(&format!("*.n{i}.example.rpz.test.")), 60, cname()),
    ]
}

fn reply(id: u16, query: &Message, answers: impl IntoIterator<Item = Record>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    if let Some(q) = query.queries.first() {
        m.add_query(q.clone());
    }
    for r in answers {
        m.add_answer(r);
    }
    let bytes = m.to_vec().expect("encode");
    let mut framed = u16::try_from(bytes.len())
        .expect("a message fits a TCP frame")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

impl RawPrimary {
    pub(crate) async fn start(zone: Zone) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(zone));
        let sent = Arc::new(AtomicU64::new(0));
        let transfers = Arc::new(AtomicUsize::new(0));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let (z, s, t, h) = (
            zone.clone(),
            sent.clone(),
            transfers.clone(),
            hung_up.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (z, s, t, h) = (z.clone(), s.clone(), t.clone(), h.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &z, &s, &t, &h).await;
                });
            }
        });
        Self {
            addr,
            zone,
            sent,
            transfers,
            hung_up,
            task,
        }
    }

    /// Serves `zone` from now on.
    pub(crate) fn publish(&self, zone: Zone) {
        if let Ok(mut z) = self.zone.lock() {
            *z = zone;
        }
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub(crate) fn transfers(&self) -> usize {
        self.transfers.load(Ordering::SeqCst)
    }

    pub(crate) fn hung_up(&self) -> usize {
        self.hung_up.load(Ordering::SeqCst)
    }
}

/// Answers the queries of one connection until it closes.
async fn serve(
    mut conn: TcpStream,
    zone: &Mutex<Zone>,
    sent: &AtomicU64,
    transfers: &AtomicUsize,
    hung_up: &AtomicUsize,
) -> std::io::Result<()> {
    loop {
        let len = conn.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        conn.read_exact(&mut buf).await?;
        let Ok(query) = Message::from_vec(&buf) else {
            return Ok(());
        };
        let id = query.metadata.id;
        let qtype = query
            .queries
            .first()
            .map_or(RecordType::SOA, |q| q.query_type());
        let zone = zone.lock().map(|z| z.clone()).expect("zone");
        if qtype == RecordType::SOA {
            conn.write_all(&reply(id, &query, [soa(zone.serial())]))
                .await?;
            continue;
        }
        transfers.fetch_add(1, Ordering::SeqCst);
        let result = transfer(&mut conn, id, &query, &zone, sent).await;
        if result.is_err() {
            hung_up.fetch_add(1, Ordering::SeqCst);
        }
        result?;
    }
}

async fn transfer(
    conn: &mut TcpStream,
    id: u16,
    query: &Message,
    zone: &Zone,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    // This transfer's bytes, also added to the primary's total.
    let mut this = 0u64;
    let mut send = async |bytes: &[u8]| {
        conn.write_all(bytes).await?;
        this += bytes.len() as u64;
        sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        std::io::Result::Ok(this)
    };
    // The opening SOA shares its message with records, as primaries send
    // it: an IXFR reply whose first message is a lone SOA means "up to date".
    match *zone {
        Zone::Names { serial, count } => {
            let records: Vec<Record> = std::iter::once(soa(serial))
                .chain((0..count).flat_map(block))
                .chain(std::iter::once(soa(serial)))
                .collect();
            for chunk in records.chunks(PER_MESSAGE) {
                send(&reply(id, query, chunk.iter().cloned())).await?;
            }
        }
        Zone::Endless { serial, cap } => {
            let first =
                std::iter::once(soa(serial)).chain((0..PER_MESSAGE / 2 - 1).flat_map(block));
            send(&reply(id, query, first)).await?;
            let again = reply(id, query, (0..PER_MESSAGE / 2).flat_map(block));
            while send(&again).await? < cap {}
        }
    }
    Ok(())
}
