//! The report: a markdown table with a row per interval (the warm-up
//! apart, not in the total), what each class got over the whole run, RSS
//! at the start and the end, and, with `--json FILE`, the same rows with
//! every counter plus a per-second timeline. `benches/soak.sh` reads the
//! `Sent QPS:` line of the peak run and pastes the rest into its report.

use crate::malformed::KINDS;
use crate::mix::{BLOCKED, CACHED, CLASSES, FORWARDED, MALFORMED, TCP};
use crate::rcode::RCODES;
use crate::run::Finished;
use crate::sample::{Drops, Sample, cpu_between, cpu_pct};
use crate::stats::{ClassStats, Row};

/// The line on stderr as a row ends, to follow a long run.
pub(crate) fn progress(r: &Row, prev: &Sample) {
    let sent: u64 = r.classes.iter().map(|c| c.sent).sum();
    let answered: u64 = r.classes.iter().map(|c| c.answered).sum();
    let sf: u64 = r.classes.iter().map(|c| c.rcodes[2]).sum();
    eprintln!(
        "embargo-soak: interval {} done: {} sent ({:.0}/s), {} answered so far, {} SERVFAIL, server UDP drops {}, RSS {:.1} MiB, server CPU {:.0} %, load {:.2}",
        r.label,
        sent,
        sent as f64 / r.len,
        answered,
        sf,
        r.end.drops.server.saturating_sub(prev.drops.server),
        r.end.rss_kb as f64 / 1024.0,
        cpu_pct(r.end.server_ticks.saturating_sub(prev.server_ticks), r.len),
        r.end.load1
    );
}

/// A latency in ms, or "-" for none.
fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

/// The rcodes that occurred, by name.
fn rcode_map(rc: &[u64]) -> serde_json::Value {
    serde_json::Value::Object(
        rc.iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (RCODES[i].to_string(), (*n).into()))
            .collect(),
    )
}

/// The markdown table on stdout (a row per interval, a total, a line per
/// class) and, with `--json`, the same rows with every counter and a
/// per-second timeline.
pub(crate) fn report(f: &Finished) {
    let (o, first) = (&f.o, &f.first);
    let rows = &f.stats.rows;
    let owed_classes = [BLOCKED, CACHED, FORWARDED, TCP];
    println!(
        "| interval | sent/s | sent | answered | lost | SERVFAIL | malformed: answered / unanswered (FORMERR) | p50 ms | p99 ms | p99 blocked / cached / fwd / tcp ms | reload ms | stall: dropped upstream | UDP drops server / generator | RSS MiB | server CPU % | other CPU % | generator lag ms | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    let mut total = vec![ClassStats::new(); CLASSES.len()];
    let (mut skipped, mut conn_failures, mut closed, mut secs) = (0u64, 0u64, 0u64, 0.0f64);
    let mut drops = Drops::default();
    let mut prev = *first;
    for r in rows {
        let sent: u64 = r.classes.iter().map(|c| c.sent).sum();
        let mut owed = ClassStats::new();
        for c in owed_classes {
            owed.merge(&r.classes[c]);
        }
        let bad = &r.classes[MALFORMED];
        let cpu = cpu_between(&prev, &r.end, r.len);
        let d = Drops {
            server: r.end.drops.server.saturating_sub(prev.drops.server),
            generator: r.end.drops.generator.saturating_sub(prev.drops.generator),
            proxy: r.end.drops.proxy.saturating_sub(prev.drops.proxy),
        };
        let reload = r.reload.as_ref().map_or("-".to_string(), |x| {
            if x.ok {
                x.said.clone()
            } else {
                format!("FAILED: {}", x.said)
            }
        });
        let stall = r.stall.map_or("-".to_string(), |(a, b)| {
            format!("{:.0} s: {}", b - a, r.proxy_dropped)
        });
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} / {} ({}) | {} | {} | {} / {} / {} / {} | {} | {} | {} / {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.2} |",
            r.label,
            sent as f64 / r.len,
            sent,
            owed.answered,
            owed.lost,
            owed.rcodes[2],
            bad.answered,
            bad.unanswered,
            bad.rcodes[1],
            ms(owed.hist.quantile(0.5)),
            ms(owed.hist.quantile(0.99)),
            ms(r.classes[BLOCKED].hist.quantile(0.99)),
            ms(r.classes[CACHED].hist.quantile(0.99)),
            ms(r.classes[FORWARDED].hist.quantile(0.99)),
            ms(r.classes[TCP].hist.quantile(0.99)),
            reload,
            stall,
            d.server,
            d.generator,
            r.end.rss_kb as f64 / 1024.0,
            cpu.server,
            cpu.other,
            r.lag_max_us as f64 / 1000.0,
            r.end.load1,
        );
        if r.label != "warm-up" {
            for (t, c) in total.iter_mut().zip(&r.classes) {
                t.merge(c);
            }
            skipped += r.skipped;
            conn_failures += r.tcp_connect_failures;
            closed += r.tcp_closed;
            secs += r.len;
            drops.server += d.server;
            drops.generator += d.generator;
            drops.proxy += d.proxy;
        }
        let classes: serde_json::Map<String, serde_json::Value> = CLASSES
            .iter()
            .zip(&r.classes)
            .map(|(name, c)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "sent": c.sent, "answered": c.answered, "lost": c.lost,
                        "unanswered": c.unanswered, "truncated": c.truncated,
                        "rcodes": rcode_map(&c.rcodes),
                        "p50_ms": c.hist.quantile(0.5), "p99_ms": c.hist.quantile(0.99),
                        "p999_ms": c.hist.quantile(0.999),
                    }),
                )
            })
            .collect();
        let kinds: serde_json::Map<String, serde_json::Value> = KINDS
            .iter()
            .zip(&r.kinds)
            .map(|(name, k)| {
                (
                    name.to_string(),
                    serde_json::json!({"sent": k.0, "answered": k.1, "rcodes": rcode_map(&k.2)}),
                )
            })
            .collect();
        json_rows.push(serde_json::json!({
            "interval": r.label, "start_s": r.start, "seconds": r.len,
            "sent": sent, "sent_qps": sent as f64 / r.len,
            "answered": owed.answered, "lost": owed.lost, "servfail": owed.rcodes[2],
            "p50_ms": owed.hist.quantile(0.5), "p99_ms": owed.hist.quantile(0.99),
            "p999_ms": owed.hist.quantile(0.999),
            "classes": classes, "malformed_kinds": kinds,
            "skipped": r.skipped, "generator_lag_max_ms": r.lag_max_us as f64 / 1000.0,
            "tcp_connects": r.tcp_connects, "tcp_connect_failures": r.tcp_connect_failures,
            "tcp_closed_with_queries_in_flight": r.tcp_closed,
            "upstream_stall_s": r.stall.map(|(a, b)| serde_json::json!([a, b])),
            "proxy_forwarded": r.proxy_forwarded, "proxy_dropped": r.proxy_dropped,
            "udp_drops": {"server": d.server, "generator": d.generator, "proxy": d.proxy},
            "reload": r.reload.as_ref().map(|x| serde_json::json!({
                "at_s": x.at, "took_ms": x.took_ms, "ok": x.ok, "said": x.said})),
            "rss_kib": r.end.rss_kb, "hwm_kib": r.end.hwm_kb,
            "server_cpu_pct": cpu.server, "generator_cpu_pct": cpu.generator,
            "upstream_cpu_pct": cpu.watched, "other_cpu_pct": cpu.other, "load1": r.end.load1,
        }));
        prev = r.end;
    }
    let mut owed = ClassStats::new();
    for c in owed_classes {
        owed.merge(&total[c]);
    }
    let sent: u64 = total.iter().map(|c| c.sent).sum();
    let bad = &total[MALFORMED];
    println!(
        "| **total** | {:.0} | {} | {} | **{}** | {} | {} / {} ({}) | {} | **{}** | {} / {} / {} / {} | | | {} / {} | | | | | |",
        sent as f64 / secs.max(1e-9),
        sent,
        owed.answered,
        owed.lost,
        owed.rcodes[2],
        bad.answered,
        bad.unanswered,
        bad.rcodes[1],
        ms(owed.hist.quantile(0.5)),
        ms(owed.hist.quantile(0.99)),
        ms(total[BLOCKED].hist.quantile(0.99)),
        ms(total[CACHED].hist.quantile(0.99)),
        ms(total[FORWARDED].hist.quantile(0.99)),
        ms(total[TCP].hist.quantile(0.99)),
        drops.server,
        drops.generator,
    );
    println!();
    for (name, c) in CLASSES.iter().zip(&total) {
        let rc: Vec<String> = c
            .rcodes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| format!("{}={n}", RCODES[i]))
            .collect();
        let unanswered = if name == &CLASSES[MALFORMED] {
            format!(", unanswered {} (none is owed)", c.unanswered)
        } else {
            String::new()
        };
        println!(
            "- {name}: sent {}, answered {}, lost {}{unanswered}; rcodes {}; p50 {} ms, p99 {} ms, p99.9 {} ms",
            c.sent,
            c.answered,
            c.lost,
            rc.join(" "),
            ms(c.hist.quantile(0.5)),
            ms(c.hist.quantile(0.99)),
            ms(c.hist.quantile(0.999)),
        );
    }
    let warm = rows
        .iter()
        .find(|r| r.label == "warm-up")
        .map_or(*first, |r| r.end);
    let last = rows.last().map_or(*first, |r| r.end);
    let change = if warm.rss_kb > 0 {
        100.0 * (last.rss_kb as f64 - warm.rss_kb as f64) / warm.rss_kb as f64
    } else {
        f64::NAN
    };
    let flat = change.abs() <= 10.0;
    if o.pid.is_some() {
        println!(
            "- RSS: {:.1} MiB when the load began, {:.1} MiB at the start (after the warm-up), {:.1} MiB at the end: {:+.1} % ({}); peak (VmHWM) {:.1} MiB",
            first.rss_kb as f64 / 1024.0,
            warm.rss_kb as f64 / 1024.0,
            last.rss_kb as f64 / 1024.0,
            change,
            if flat {
                "flat within 10 %"
            } else {
                "NOT flat within 10 %"
            },
            last.hwm_kb as f64 / 1024.0
        );
    }
    let lag = rows
        .iter()
        .filter(|r| r.label != "warm-up")
        .map(|r| r.lag_max_us)
        .max()
        .unwrap_or(0);
    println!(
        "- UDP datagrams dropped by the kernel for full receive buffers: server {}, generator {}, proxy {}",
        drops.server, drops.generator, drops.proxy
    );
    println!(
        "- generator: {} queries due but not sent, worst lag behind schedule {:.1} ms; TCP: {} connect failures, {} connections closed with queries in flight",
        skipped,
        lag as f64 / 1000.0,
        conn_failures,
        closed
    );
    println!("Sent QPS: {:.0}", sent as f64 / secs.max(1e-9));
    let Some(path) = &o.json else { return };
    // The timeline: each second's queries (by the second they were sent)
    // and the machine over that second.
    let mut prev = *first;
    let timeline: Vec<serde_json::Value> = f
        .stats
        .secs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.end.busy_ticks > 0)
        .map(|(i, s)| {
            let cpu = cpu_between(&prev, &s.end, 1.0);
            let v = serde_json::json!({
                "t": i, "sent": s.sent, "answered": s.answered, "lost": s.lost,
                "servfail": s.servfail, "lag_max_ms": s.lag_max_us as f64 / 1000.0,
                "server_cpu_pct": cpu.server, "generator_cpu_pct": cpu.generator,
                "other_cpu_pct": cpu.other, "rss_kib": s.end.rss_kb,
                "udp_drops_server": s.end.drops.server.saturating_sub(prev.drops.server),
                "udp_drops_generator": s.end.drops.generator.saturating_sub(prev.drops.generator),
            });
            prev = s.end;
            v
        })
        .collect();
    let doc = serde_json::json!({
        "server": o.server.to_string(),
        "rate": o.rate, "seconds": o.secs, "warmup_s": o.warmup, "interval_s": o.interval,
        "mix": CLASSES.iter().zip(o.mix).map(|(c, w)| (c.to_string(), w.into())).collect::<serde_json::Map<_, _>>(),
        "timeout_s": o.timeout,
        "stall": {"at_s": o.stall_at, "for_s": o.stall_for},
        "reload_at_s": o.reload_at,
        "sent_qps": sent as f64 / secs.max(1e-9),
        "lost": owed.lost, "servfail": owed.rcodes[2],
        "p99_ms": owed.hist.quantile(0.99),
        "udp_drops": {"server": drops.server, "generator": drops.generator, "proxy": drops.proxy},
        "rss_kib": {"load_began": first.rss_kb, "start": warm.rss_kb, "end": last.rss_kb,
                    "change_pct": change, "flat_within_10pct": flat, "hwm": last.hwm_kb},
        "rows": json_rows,
        "timeline": timeline,
    });
    if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
        eprintln!("embargo-soak: writing {}: {e}", path.display());
    }
}
