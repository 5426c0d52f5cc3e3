//! Exactness of the fingerprint matcher at bench scale: 1,000,000 distinct
//! listed names all get distinct fingerprints and are all found, and none of
//! 2,000,000 allowed query names (unlisted, and no suffix of them listed) is
//! reported as blocked.
//!
//! The names are generated here, from fixed seeds, in the shapes of the
//! team's bench lab generator (`bench/gen/blocklist.py` in the shared
//! workbench): com-heavy TLDs including two-label ones, labels of 4-20
//! characters made of syllables or words, sometimes hyphenated or numbered,
//! and a share of `www.`/`cdn.`/random subdomains one or two labels deep.
//! The test needs nothing beside the repository. Set EMBARGO_LAB_LISTS to a
//! directory holding the lab's `domains.txt` and `q-allowed.txt` to run the
//! same checks on those files instead (any size).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use embargo::matcher::{DomainSetBuilder, Lookup, NameKey, PolicyId};

const LISTED: usize = 1_000_000;
const ALLOWED: usize = 2_000_000;

/// (TLD, weight), roughly like seized, malware and ad lists: com-heavy.
const TLDS: &[(&str, usize)] = &[
    ("com", 38),
    ("net", 8),
    ("org", 6),
    ("ru", 8),
    ("cn", 4),
    ("io", 3),
    ("xyz", 6),
    ("top", 6),
    ("info", 4),
    ("co.uk", 3),
    ("com.cn", 2),
    ("de", 3),
    ("site", 2),
    ("online", 2),
    ("shop", 2),
    ("biz", 1),
    ("su", 1),
    ("cc", 1),
    ("tk", 1),
    ("pw", 1),
];
/// (subdomain, weight); `None` is a random label.
const SUBS: &[(Option<&str>, usize)] = &[
    (Some("www"), 40),
    (Some("cdn"), 8),
    (Some("api"), 6),
    (Some("mail"), 6),
    (Some("m"), 5),
    (Some("static"), 4),
    (Some("img"), 3),
    (Some("login"), 3),
    (Some("secure"), 3),
    (Some("app"), 3),
    (None, 19),
];
const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "cr", "dr", "fl", "gr", "pl", "pr", "st", "tr", "sh", "ch", "th", "sk", "sp", "bl", "kr", "x",
    "y", "qu",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "a", "e", "o", "ia", "ea", "ou", "y",
];
const CODAS: &[&str] = &[
    "", "", "", "n", "r", "s", "t", "x", "m", "l", "ck", "ng", "st",
];
const WORDS: &[&str] = &[
    "shop", "bet", "coin", "crypto", "pay", "bank", "secure", "login", "free", "win", "casino",
    "pharma", "loan", "trade", "market", "cloud", "track", "ads", "click", "stream", "movie",
    "news", "mail", "verify", "wallet", "token", "store", "deal", "vpn", "proxy", "host", "file",
    "silver", "star", "gold", "global", "online", "best", "top", "link",
];
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// (label length, weight): 4-20, peaking around 7-11 like real lists.
const LENS: &[(usize, usize)] = &[
    (4, 3),
    (5, 5),
    (6, 7),
    (7, 9),
    (8, 10),
    (9, 10),
    (10, 9),
    (11, 8),
    (12, 7),
    (13, 6),
    (14, 5),
    (15, 4),
    (16, 3),
    (17, 3),
    (18, 2),
    (19, 2),
    (20, 2),
];

/// Each value repeated by its weight, so that a uniform pick is a weighted one.
fn expand<T: Copy>(pairs: &[(T, usize)]) -> Vec<T> {
    pairs
        .iter()
        .flat_map(|&(v, w)| std::iter::repeat_n(v, w))
        .collect()
}

/// A seeded generator of plausible blocklist names.
struct Names {
    rng: fastrand::Rng,
    tlds: Vec<&'static str>,
    subs: Vec<Option<&'static str>>,
    lens: Vec<usize>,
    syllables: Vec<String>,
}

impl Names {
    fn new(seed: u64) -> Self {
        let mut syllables = Vec::new();
        for o in ONSETS {
            for v in VOWELS {
                for c in CODAS {
                    syllables.push(format!("{o}{v}{c}"));
                }
            }
        }
        Self {
            rng: fastrand::Rng::with_seed(seed),
            tlds: expand(TLDS),
            subs: expand(SUBS),
            lens: expand(LENS),
            syllables,
        }
    }

    /// Two decimal digits, 10-99.
    fn two_digits(&mut self, out: &mut String) {
        let n = self.rng.u8(10..100);
        out.push(char::from(b'0' + n / 10));
        out.push(char::from(b'0' + n % 10));
    }

    /// Appends one label of about `length` characters: syllables
    /// ("brousk") or words ("cryptowallet"), sometimes hyphenated, numbered
    /// or random. Written in place: debug builds pay for every allocation.
    fn label(&mut self, length: usize, out: &mut String) {
        let start = out.len();
        let words = self.rng.f32() < 0.35;
        let hyphens = self.rng.f32() < 0.25;
        while out.len() - start < length {
            if hyphens && out.len() > start {
                out.push('-');
            }
            if words {
                out.push_str(WORDS[self.rng.usize(..WORDS.len())]);
            } else {
                out.push_str(&self.syllables[self.rng.usize(..self.syllables.len())]);
            }
        }
        out.truncate(start + length);
        // Words hold no hyphen, so only the cut can leave one, at the end.
        if out.ends_with('-') {
            out.pop();
        }
        let r = self.rng.f32();
        if r < 0.15 {
            out.truncate(start + length.saturating_sub(2).max(2));
            self.two_digits(out);
        } else if r < 0.20 {
            out.push(char::from(b'0' + self.rng.u8(..10)));
        } else if r < 0.23 {
            out.truncate(start);
            for _ in 0..length {
                out.push(char::from(ALNUM[self.rng.usize(..ALNUM.len())]));
            }
        }
        if out.len() - start < 2 {
            out.push('x');
            self.two_digits(out);
        }
    }

    /// `label.tld`, and with probability `sub_rate` one or two labels in
    /// front: `www.`, `cdn.`, a random label, or `cdn.x7.`.
    fn domain(&mut self, sub_rate: f32) -> String {
        let mut name = String::with_capacity(48);
        if self.rng.f32() < sub_rate {
            match self.subs[self.rng.usize(..self.subs.len())] {
                Some(s) => name.push_str(s),
                None => {
                    let length = self.rng.usize(2..8);
                    self.label(length, &mut name);
                }
            }
            if self.rng.f32() < 0.3 {
                name.push('.');
                let length = self.rng.usize(2..6);
                self.label(length, &mut name);
            }
            name.push('.');
        }
        let length = self.lens[self.rng.usize(..self.lens.len())];
        self.label(length, &mut name);
        name.push('.');
        name.push_str(self.tlds[self.rng.usize(..self.tlds.len())]);
        name
    }
}

/// Every suffix of `name` with at least two labels, `name` itself first.
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(name)
        .chain(name.match_indices('.').map(|(i, _)| &name[i + 1..]))
        .filter(|s| s.contains('.'))
}

/// A set of names held as 64-bit xxh3 hashes, seeded apart from the
/// matcher's fingerprints. A clash between two names can only make
/// [`generated`] discard a good candidate, never keep a listed one or a
/// duplicate; and it keeps this test quick in debug builds, where SipHash
/// over millions of strings took most of its time.
struct Seen(HashSet<u64, BuildHasherDefault<Prehashed>>);

impl Seen {
    fn with_capacity(n: usize) -> Self {
        Self(HashSet::with_capacity_and_hasher(
            n,
            BuildHasherDefault::default(),
        ))
    }

    fn hash(name: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), 0x6e61_6d65)
    }

    /// True when `name` was not in the set.
    fn insert(&mut self, name: &str) -> bool {
        self.0.insert(Self::hash(name))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains(&Self::hash(name))
    }
}

/// The hasher of [`Seen`]: its keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// 1,000,000 distinct listed names, and 2,000,000 distinct allowed names
/// none of whose suffixes is listed (more often subdomains, like the names
/// real clients ask for).
fn generated() -> (Vec<String>, Vec<String>) {
    let mut names = Names::new(1);
    let mut seen = Seen::with_capacity(LISTED);
    let mut listed = Vec::with_capacity(LISTED);
    while listed.len() < LISTED {
        let d = names.domain(0.2);
        if d.len() <= 200 && seen.insert(&d) {
            listed.push(d);
        }
    }
    let mut names = Names::new(7919 + 17);
    let mut asked = Seen::with_capacity(ALLOWED);
    let mut allowed = Vec::with_capacity(ALLOWED);
    while allowed.len() < ALLOWED {
        let d = names.domain(0.5);
        if !suffixes(&d).any(|s| seen.contains(s)) && asked.insert(&d) {
            allowed.push(d);
        }
    }
    (listed, allowed)
}

/// The lab's `domains.txt` and the names of its `q-allowed.txt` (`NAME TYPE` lines).
fn from_lab(dir: &Path) -> (Vec<String>, Vec<String>) {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
    };
    let listed = read("domains.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let allowed = read("q-allowed.txt")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    (listed, allowed)
}

#[test]
fn no_fingerprint_collisions_among_a_million_listed_names() {
    let started = std::time::Instant::now();
    let lab = std::env::var_os("EMBARGO_LAB_LISTS");
    let (listed, allowed) = match &lab {
        Some(dir) => from_lab(Path::new(dir)),
        None => generated(),
    };
    if lab.is_none() {
        assert_eq!((listed.len(), allowed.len()), (LISTED, ALLOWED));
    }
    assert!(!listed.is_empty() && !allowed.is_empty());
    eprintln!(
        "{} listed, {} allowed names in {:?}",
        listed.len(),
        allowed.len(),
        started.elapsed()
    );

    let mut b = DomainSetBuilder::with_seed(0x5eed).with_capacity(listed.len());
    for name in &listed {
        let k = NameKey::from_text(name, false)
            .unwrap_or_else(|e| panic!("listed name {name:?} is invalid: {e}"));
        b.insert(&k, PolicyId(1));
    }
    let (set, dups) = b.build();
    // Distinct names, distinct fingerprints: nothing was merged as a duplicate.
    assert_eq!(dups.iter().map(|d| u64::from(*d)).sum::<u64>(), 0);
    assert_eq!(set.len(), listed.len());
    // Issue 16: the scope bits cost a plain list nothing (12 bytes an
    // entry and a directory of at most 2 more).
    let per_name = set.heap_bytes() as f64 / set.len() as f64;
    eprintln!("{per_name:.2} bytes per listed name");
    assert!(per_name <= 14.0, "{per_name} bytes per name");
    if lab.is_none() {
        assert!(per_name < 13.1, "{per_name} bytes per name at 1M");
    }
    for name in &listed {
        let k = NameKey::from_text(name, false).expect("valid above");
        assert!(
            matches!(set.lookup(&k), Lookup::Blocked(_)),
            "{name} not found"
        );
    }

    for name in &allowed {
        let k = NameKey::from_text(name, true)
            .unwrap_or_else(|e| panic!("allowed name {name:?} is invalid: {e}"));
        // No suffix of these names is listed: any hit is a collision.
        if let Lookup::Blocked(hit) = set.lookup(&k) {
            panic!("false block: {name} matched {}", k.suffix(hit.suffix));
        }
    }
    eprintln!("checked in {:?}", started.elapsed());
}
