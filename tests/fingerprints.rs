//! Exactness of the fingerprint matcher on the lab's own data: the
//! 1,000,000 listed names of `../shared/bench/gen/blocklist.py` (seed 1) all
//! get distinct fingerprints, every one of them is found, and none of the
//! 2,000,000 allowed query names (`q-allowed.txt`) is reported as blocked.
//!
//! The lists are generated once into `target/lab-lists` (about 20 s). If the
//! lab is not beside the checkout this test fails: it is part of CI, which
//! always has `../shared`. Set EMBARGO_LAB_LISTS to a directory that already
//! holds `domains.txt` and `q-allowed.txt` to skip generation.

use std::path::{Path, PathBuf};
use std::process::Command;

use embargo::matcher::{DomainSetBuilder, Lookup, NameKey, PolicyId};

fn lab_lists() -> PathBuf {
    if let Ok(dir) = std::env::var("EMBARGO_LAB_LISTS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/lab-lists/n1000000-s1");
    if out.join("q-allowed.txt").exists() && out.join("meta.txt").exists() {
        return out;
    }
    let generator = root.join("../shared/bench/gen/blocklist.py");
    assert!(
        generator.exists(),
        "the lab generator {} is missing",
        generator.display()
    );
    std::fs::create_dir_all(&out).expect("create target/lab-lists");
    let status = Command::new("python3")
        .arg(&generator)
        .args(["1000000", "1"])
        .arg(&out)
        .env("Q_HOT_REPEAT", "1")
        .status()
        .expect("run the generator");
    assert!(status.success(), "generator failed");
    out
}

#[test]
fn no_fingerprint_collisions_among_the_bench_names() {
    let dir = lab_lists();
    let listed = std::fs::read_to_string(dir.join("domains.txt")).expect("domains.txt");
    let mut b = DomainSetBuilder::with_seed(0x5eed);
    let mut keys = Vec::with_capacity(1_000_000);
    for line in listed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let k = NameKey::from_text(line, false).expect("listed names are valid");
        b.insert(&k, PolicyId(1));
        keys.push(k);
    }
    assert_eq!(keys.len(), 1_000_000);
    let (set, dups) = b.build();
    // Distinct names, distinct fingerprints: nothing was merged as a duplicate.
    assert_eq!(dups.iter().map(|d| u64::from(*d)).sum::<u64>(), 0);
    assert_eq!(set.len(), 1_000_000);
    for k in &keys {
        assert!(matches!(set.lookup(k), Lookup::Blocked(_)), "{k} not found");
    }
    drop(keys);

    let allowed = std::fs::read_to_string(dir.join("q-allowed.txt")).expect("q-allowed.txt");
    let mut checked = 0usize;
    for line in allowed.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Ok(k) = NameKey::from_text(name, true) else {
            continue;
        };
        checked += 1;
        // The generator made these names unlisted, suffixes included: any hit is a collision.
        if let Lookup::Blocked(hit) = set.lookup(&k) {
            panic!("false block: {name} matched {}", k.suffix(hit.suffix));
        }
    }
    assert_eq!(checked, 2_000_000);
}
