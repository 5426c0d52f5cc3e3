//! The manual's examples against the program (issue 17, "What the README
//! says and the program does"): a newcomer who follows README.md or
//! docs/src/ must see what the text shows. Each test reads the example
//! from the Markdown itself, runs it, and compares, so that a change to
//! either side that makes them differ fails here.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, query, udp};

const BIN: &str = env!("CARGO_BIN_EXE_embargo");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SDN_XML: &str = "tests/fixtures/ofac/SDN.XML";

/// A file of the repository, as text.
fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The bodies of the fenced blocks of `md` whose info string is `lang`.
fn fenced(md: &str, lang: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    // Inside a block: whether it is one of ours, and its lines so far.
    let mut open: Option<(bool, Vec<String>)> = None;
    for line in md.lines() {
        if let Some(info) = line.strip_prefix("```") {
            match open.take() {
                Some((true, body)) => blocks.push(body),
                Some((false, _)) => {}
                None => open = Some((info.trim() == lang, Vec::new())),
            }
            continue;
        }
        if let Some((_, body)) = open.as_mut() {
            body.push(line.to_owned());
        }
    }
    blocks
}

/// In the `console` blocks of `md`, the command line that starts with
/// `command` (after `$ `) and the output the text shows under it: the
/// lines up to the next command or the end of the block.
fn console_example(md: &str, command: &str) -> (Vec<String>, String) {
    for block in fenced(md, "console") {
        let Some(at) = block
            .iter()
            .position(|l| l.strip_prefix("$ ").is_some_and(|c| c.starts_with(command)))
        else {
            continue;
        };
        // The command without a trailing shell comment.
        let line = &block[at][2..];
        let line = line.split("  #").next().unwrap_or(line);
        let args: Vec<String> = line.split_whitespace().skip(1).map(str::to_owned).collect();
        let output: String = block[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("$ "))
            .map(|l| format!("{l}\n"))
            .collect();
        return (args, output);
    }
    panic!("no console example starting `$ {command}`")
}

/// Runs `embargo ARGS` in `dir`; its exit code and standard output.
fn embargo_in(dir: &Path, args: &[String]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run embargo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// README's first session: `embargo check` on the shipped config prints
/// what the README shows (on a01f7ba it lacked the `why:` line).
#[test]
fn first_session_check_output_is_the_readmes() {
    let (args, shown) = console_example(
        &read("README.md"),
        "embargo check -c config/embargo.toml www.seized.example",
    );
    let (code, printed) = embargo_in(Path::new(ROOT), &args);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(
        printed, shown,
        "README.md's first session shows another `check`"
    );
}

/// The OFAC chapter's example: its `[[lists]]` table, with the fixture as
/// the source it names, and `check`'s output under it.
#[test]
fn ofac_check_output_is_the_manuals() {
    let md = read("docs/src/ofac.md");
    let table = fenced(&md, "toml")
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains("format = \"ofac-sdn\"")))
        .expect("the OFAC chapter's [[lists]] table");
    let config: String = table
        .iter()
        .map(|l| {
            if l.starts_with("source = ") {
                "source = \"SDN.XML\"\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("embargo.toml"), config).expect("config");
    std::fs::copy(Path::new(ROOT).join(SDN_XML), dir.path().join("SDN.XML")).expect("fixture");
    let (args, shown) = console_example(&md, "embargo check -c embargo.toml");
    let (code, printed) = embargo_in(dir.path(), &args);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(printed, shown, "docs/src/ofac.md shows another `check`");
}

/// The keys of a query-log JSON record, and its values but the ones that
/// change from run to run.
fn record_shape(line: &str) -> (Vec<String>, Vec<(String, serde_json::Value)>) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let map = v.as_object().expect("a JSON object");
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    let mut stable: Vec<(String, serde_json::Value)> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "time" | "port" | "latency_us"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    stable.sort_by(|a, b| a.0.cmp(&b.0));
    (keys, stable)
}

/// The security team's worked example, run as written (on a port of its
/// own): `check` prints what the guide shows, and a blocked query leaves
/// the query-log record the guide shows, every key included (on a01f7ba
/// the guide's record had no `"stale"`). README's first-session record
/// must have the same keys.
#[tokio::test(flavor = "multi_thread")]
async fn worked_example_check_and_log_record_are_the_guides() {
    let md = read("docs/src/security-team.md");
    let config = fenced(&md, "toml")
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains("name = \"ofac-sdn\"")))
        .expect("the worked example's config");
    let mut in_http = false;
    let config: String = config
        .iter()
        .map(|l| {
            if l.starts_with('[') {
                in_http = l == "[http]";
            }
            if l.starts_with("listen = ") {
                // Ports of the test's own: the server's, and no HTTP.
                return if in_http {
                    "listen = []\n"
                } else {
                    "listen = [\"127.0.0.1:0\"]\n"
                }
                .to_owned();
            }
            format!("{l}\n")
        })
        .collect();
    let sdn = std::fs::read_to_string(Path::new(ROOT).join(SDN_XML)).expect("fixture");
    let emb = Embargo::start(
        &config,
        &[("doj.txt", "seized-dprk-demo.example\n"), ("SDN.XML", &sdn)],
    )
    .await;

    let (args, shown) = console_example(
        &md,
        "embargo check -c embargo.toml seized-dprk-demo.example",
    );
    let (code, printed) = embargo_in(emb.dir(), &args);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(
        printed, shown,
        "docs/src/security-team.md shows another `check`"
    );

    let resp = udp(
        emb.addr,
        &query("seized-dprk-demo.example", RecordType::A, true),
    )
    .await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
    let log = emb.dir().join("embargo-state").join("queries.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        if let Some(line) = std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| t.lines().last().map(str::to_owned))
        {
            break line;
        }
        assert!(Instant::now() < deadline, "no record in {}", log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    emb.stop().await;

    let shown = fenced(&md, "console")
        .into_iter()
        .flatten()
        .find(|l| l.starts_with("{\"time\"") && l.contains("seized-dprk-demo.example"))
        .expect("the guide's query-log record");
    let (shown_keys, shown_values) = record_shape(&shown);
    let (keys, values) = record_shape(&written);
    assert_eq!(
        shown_keys, keys,
        "the guide's record has other keys than the program writes"
    );
    assert_eq!(
        shown_values, values,
        "the guide's record says other things than the program"
    );

    let readme = fenced(&read("README.md"), "json")
        .into_iter()
        .flatten()
        .find(|l| l.starts_with("{\"time\""))
        .expect("README's query-log record");
    assert_eq!(
        record_shape(&readme).0,
        keys,
        "README's record has other keys than the program writes"
    );
}

/// The systemd install steps (in the manual and in the unit's own
/// comment) copy the shipped config so that its lists are found: the
/// copied config validates (on a01f7ba the unit's comment copied it
/// without rewriting its list paths, and the copy failed on them).
#[test]
fn systemd_install_steps_make_a_config_that_validates() {
    let md = read("docs/src/installing.md");
    let step = fenced(&md, "sh")
        .into_iter()
        .flatten()
        .find(|l| l.contains("> /etc/embargo/embargo.toml"))
        .expect("the installing chapter's step that writes /etc/embargo/embargo.toml");
    assert!(
        read("dist/embargo.service").contains(&format!("#   {step}\n")),
        "dist/embargo.service's install comment does not write the config as the manual does: {step}"
    );
    // sh dist/service-config.sh config/embargo.toml > /etc/embargo/embargo.toml
    let command = step.split(" > ").next().expect("a redirected command");
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(ROOT)
        .output()
        .expect("run the step");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let etc = tempfile::tempdir().expect("tempdir");
    // The service's state directory is the system's; a test keeps its own.
    let state = etc.path().join("state");
    let written = String::from_utf8(out.stdout).expect("utf-8").replace(
        "\"/var/lib/embargo\"",
        &format!("{:?}", state.display().to_string()),
    );
    std::fs::write(etc.path().join("embargo.toml"), written).expect("config");
    // install -d /etc/embargo && cp -r blocklists /etc/embargo/
    let lists = etc.path().join("blocklists");
    std::fs::create_dir(&lists).expect("mkdir");
    for entry in std::fs::read_dir(Path::new(ROOT).join("blocklists")).expect("blocklists/") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), lists.join(entry.file_name())).expect("copy a list");
    }
    let (code, printed) = embargo_in(
        etc.path(),
        &["validate".into(), "-c".into(), "embargo.toml".into()],
    );
    assert_eq!(code, 0, "the copied config does not validate: {printed}");
}

/// The Commands chapter has a row for every subcommand `--help` lists,
/// and no other.
#[test]
fn commands_chapter_names_every_subcommand() {
    let (code, help) = embargo_in(Path::new(ROOT), &["--help".into()]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(listed.len() >= 7, "{help}");
    let md = read("docs/src/commands.md");
    let rows: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("| `embargo "))
        .filter_map(|l| l.split([' ', '`']).next())
        .collect();
    for c in &listed {
        assert!(
            rows.contains(c),
            "docs/src/commands.md has no row for `embargo {c}`"
        );
    }
    for r in &rows {
        assert!(
            listed.contains(r),
            "docs/src/commands.md has a row for `embargo {r}`, which --help does not list"
        );
    }
}

/// The configuration chapter's example of a bad file: `validate` prints,
/// on standard error, exactly the lines the chapter shows under it (on
/// a01f7ba an unknown key was reported as serde's "unknown field ...,
/// expected one of ...", without the key's path).
#[test]
fn configuration_error_example_is_what_validate_prints() {
    let md = read("docs/src/configuration.md");
    let config = fenced(&md, "toml")
        .into_iter()
        .find(|b| b.iter().any(|l| l.starts_with("max_client = ")))
        .expect("the chapter's example of a bad file");
    let shown: String = fenced(&md, "text")
        .into_iter()
        .find(|b| b.iter().any(|l| l.starts_with("embargo.toml:")))
        .expect("the chapter's errors")
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = config.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("embargo.toml"), text).expect("config");
    std::fs::write(dir.path().join("seized.txt"), "seized.example\n").expect("list");
    let out = Command::new(BIN)
        .args(["validate", "-c", "embargo.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run embargo");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        shown,
        "docs/src/configuration.md shows other errors than validate prints"
    );
}
