//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) and every
//! reproducer of a fixed crash (`fuzz/regressions/TARGET/`) through the same
//! code and invariants as the fuzz targets (`embargo::fuzzing`), on the
//! stable toolchain with no fuzzing engine: what the fuzzer once found stays
//! fixed, and what it reached stays reachable without panicking.

use std::path::{Path, PathBuf};

/// The files of `fuzz/DIR/TARGET`, sorted (an absent directory has none).
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs every input of `target`, naming the file that failed.
fn replay(target: &str) {
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty: run fuzz/run.sh {target} SECONDS (the manual, \"Fuzzing\")"
    );
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).expect("read an input");
        let replayed = std::panic::catch_unwind(|| embargo::fuzzing::run(target, &data));
        assert!(replayed.is_ok(), "{} fails its invariants", path.display());
    }
}

#[test]
fn every_target_has_a_test_here() {
    let source = include_str!("corpus.rs");
    for target in embargo::fuzzing::TARGETS {
        assert!(
            source.contains(&format!("fn {target}() {{\n    replay(\"{target}\")")),
            "no replay test for target {target}"
        );
    }
}

#[test]
fn request() {
    replay("request")
}

#[test]
fn response() {
    replay("response")
}

#[test]
fn domains() {
    replay("domains")
}

#[test]
fn hosts() {
    replay("hosts")
}

#[test]
fn adblock() {
    replay("adblock")
}

#[test]
fn rpz() {
    replay("rpz")
}

#[test]
fn config() {
    replay("config")
}

#[test]
fn xfr() {
    replay("xfr")
}

#[test]
fn ofac() {
    replay("ofac")
}
