//! The counters and the text they become.

use super::*;

#[test]
fn type_index_names_every_listed_type() {
    for (i, (_, code)) in TYPES.iter().enumerate() {
        assert_eq!(type_index(*code), i);
    }
    assert_eq!(type_index(99), OTHER_TYPE);
}

#[test]
fn blocks_do_not_share_cache_lines() {
    assert_eq!(align_of::<WorkerStats>(), 128);
    assert_eq!(size_of::<WorkerStats>() % 128, 0);
}

#[test]
fn blocks_sum_at_scrape_time() {
    let stats = ServerStats::new(2);
    stats.udp[0].count_query(0, 1, Decision::Blocked);
    stats.udp[1].count_query(0, 1, Decision::Blocked);
    stats.tcp.count_query(1, 99, Decision::Cached);
    stats.udp[0].count_block(ListSlot(3));
    stats.tcp.count_block(ListSlot(3));
    stats.udp[1].count_block(ListSlot::NONE);
    stats.udp[1].count_block(ListSlot(MAX_LIST_SLOTS as u16));
    assert_eq!(stats.decided(Decision::Blocked), 2);
    assert_eq!(stats.decided(Decision::Cached), 1);
    assert_eq!(stats.blocked(ListSlot(3)), Some(2));
    assert_eq!(stats.blocked(ListSlot(4)), Some(0));
    assert_eq!(stats.blocked(ListSlot::NONE), None);
}

/// Issue 21: a block found in an answer counts with the list's other
/// blocks and by what matched; forwarded queries' own block (the
/// handler's) is summed with the serving threads'.
#[test]
fn answer_blocks_count_by_list_and_via() {
    let stats = ServerStats::new(1).with_answers(Arc::new(WorkerStats::new(true)));
    stats.udp[0].count_block(ListSlot(2));
    stats.udp[0].count_answer_block(ListSlot(2), Via::Cname);
    stats.answers.count_answer_block(ListSlot(2), Via::Ip);
    stats.answers.count_query(0, 1, Decision::Blocked);
    stats
        .answers
        .count_answer_block(ListSlot(MAX_LIST_SLOTS as u16), Via::Ip);
    assert_eq!(stats.blocked(ListSlot(2)), Some(3));
    assert_eq!(stats.answer_blocks(ListSlot(2), Via::Cname), Some(1));
    assert_eq!(stats.answer_blocks(ListSlot(2), Via::Ip), Some(1));
    assert_eq!(stats.answer_blocks(ListSlot(3), Via::Ip), Some(0));
    assert_eq!(stats.answer_blocks(ListSlot::NONE, Via::Ip), None);
    assert_eq!(stats.decided(Decision::Blocked), 1);
}

#[test]
fn latency_lands_in_its_bucket_and_the_text_is_cumulative() {
    let u = UpstreamStats::default();
    u.record_error();
    u.record_answer(Duration::from_micros(800));
    u.record_answer(Duration::from_millis(30));
    u.record_answer(Duration::from_secs(9));
    let snap = Snapshot::empty();
    let stats = ServerStats::new(1);
    let text = render(&Scrape {
        stats: &stats,
        snapshot: &snap,
        refresh: &[],
        cache: CacheUsage::default(),
        upstreams: &[UpstreamRow {
            name: "127.0.0.1:53",
            set: None,
            stats: &u,
            up: true,
            last_answer: None,
        }],
        reloads: ReloadCounts::default(),
        observer: ObserverCounts::default(),
        started: 0,
    });
    for line in [
        "embargo_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.001\"} 1\n",
        "embargo_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.025\"} 1\n",
        "embargo_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.05\"} 2\n",
        "embargo_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"5\"} 2\n",
        "embargo_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"+Inf\"} 3\n",
        "embargo_upstream_latency_seconds_count{upstream=\"127.0.0.1:53\"} 3\n",
        "embargo_upstream_latency_seconds_sum{upstream=\"127.0.0.1:53\"} 9.0308\n",
        "embargo_upstream_queries_total{upstream=\"127.0.0.1:53\"} 4\n",
        "embargo_upstream_errors_total{upstream=\"127.0.0.1:53\"} 1\n",
        "embargo_upstream_up{upstream=\"127.0.0.1:53\"} 1\n",
        "embargo_upstream_last_answer_timestamp_seconds{upstream=\"127.0.0.1:53\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[test]
fn label_values_are_escaped() {
    let mut t = Text::new();
    t.sample("m", &[("list", "a\"b\\c\nd")], 1);
    assert_eq!(t.out, "m{list=\"a\\\"b\\\\c\\nd\"} 1\n");
}
