//! The binary's printed documentation: man pages and shell completions,
//! rendered from the same clap definitions that parse the command line, so
//! that neither can drift from the program. Part of the `embargo` binary,
//! not of the library (it takes the `clap::Command` from `main.rs`).
//!
//! ```text
//!   Cli (main.rs) ──Command──> man_pages()   embargo.8, embargo-<command>.8, embargo.toml.5
//!                         └──> completions() bash, zsh, fish (any clap_complete shell)
//! ```
//!
//! What the packages ship is committed under `dist/` (the test's `shipped`
//! names every file): the Debian package and a reader on the web take them from
//! there without building anything. The test below fails when one is out
//! of date and rewrites them all with `EMBARGO_BLESS=1`.

use clap::Command;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// The annotated default configuration, the reference that embargo.toml(5)
/// prints: every key, its default and what it does, kept current by the
/// config tests (every key in it parses).
const REFERENCE: &str = include_str!("../config/embargo.toml");

/// What `embargo man` could not print.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No page has this name.
    #[error("no man page {name:?}; there are: {known}")]
    UnknownPage { name: String, known: String },
}

/// Every man page as (file name, roff): embargo(8), one page per command
/// (embargo-check(8)...), as clap_mangen lays them out and cargo and git
/// do, and embargo.toml(5). The date is left out, so that the same program
/// renders the same bytes and the committed pages can be compared.
pub(crate) fn man_pages(cmd: Command) -> Vec<(String, Vec<u8>)> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let source = format!("embargo {}", cmd.get_version().unwrap_or_default());
    command_pages(&cmd, &source, &mut pages);
    pages.push(("embargo.toml.5".to_owned(), config_page(&source)));
    pages
}

/// `cmd`'s page and its subcommands', section 8: embargo is run by an
/// administrator (a system daemon and its tools).
fn command_pages(cmd: &Command, source: &str, pages: &mut Vec<(String, Vec<u8>)>) {
    let man = Man::new(cmd.clone()).section("8").source(source);
    let mut roff = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut roff);
    pages.push((man.get_filename(), roff));
    // The page of `embargo check` is embargo-check(8): `build` gave each
    // subcommand that display name, as clap_mangen's own generate_to uses.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, source, pages);
    }
}

/// embargo.toml(5): what the file is, then the annotated default
/// configuration itself, which documents every key with its default.
fn config_page(source: &str) -> Vec<u8> {
    let mut page = Roff::new();
    page.control("TH", ["EMBARGO.TOML", "5", "", source, ""])
        .control("SH", ["NAME"])
        .text([roman("embargo.toml - configuration file of embargo(8)")])
        .control("SH", ["SYNOPSIS"])
        .text([bold("/etc/embargo/embargo.toml")])
        .control("SH", ["DESCRIPTION"])
        .text([
            bold("embargo"),
            roman(
                " reads one TOML file, named by -c or EMBARGO_CONFIG. Unknown keys are \
                 errors (file:line:col: key), so a typo fails at start rather than being \
                 ignored. Paths in it (lists, allow files, the state directory, the query \
                 log) are relative to the directory of the file. ",
            ),
            bold("embargo validate"),
            roman(
                " reads it and every list it names and reports every problem; a running \
                 server rereads it on SIGHUP (",
            ),
            bold("embargo reload"),
            roman(")."),
        ])
        .control("PP", [])
        .text([roman(
            "Every section and key except [[lists]] name and source is optional. The \
             annotated default configuration follows: each key with its default value, \
             and a comment that says what it does.",
        )])
        .control("SH", ["THE DEFAULT CONFIGURATION"])
        .control("nf", [])
        .control("ft", ["CR"]);
    for line in REFERENCE.lines() {
        page.text([roman(line)]);
    }
    page.control("ft", ["R"])
        .control("fi", [])
        .control("SH", ["FILES"])
        .control("TP", [])
        .text([bold("/etc/embargo/embargo.toml")])
        .text([roman(
            "The Debian package's configuration, set for the system service: it listens \
             on port 53 of every address and keeps its state in /var/lib/embargo.",
        )])
        .control("TP", [])
        .text([bold("/etc/embargo/blocklists/")])
        .text([roman("The lists that configuration names.")])
        .control("TP", [])
        .text([bold("/var/lib/embargo/")])
        .text([roman(
            "The state directory: downloaded lists, the pid file, the query log and the \
             hit report.",
        )])
        .control("SH", ["SEE ALSO"])
        .text([
            italic("embargo"),
            roman("(8), "),
            italic("embargo-validate"),
            roman("(8), "),
            italic("embargo-check"),
            roman("(8)"),
        ]);
    page.render().into_bytes()
}

/// The completion script for `shell`.
pub(crate) fn completions(mut cmd: Command, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// One page of `embargo man`: `name` with or without its section
/// ("embargo-check" or "embargo-check.8").
pub(crate) fn man_page(cmd: Command, name: &str) -> Result<Vec<u8>, Error> {
    let pages = man_pages(cmd);
    let known = pages
        .iter()
        .map(|(file, _)| file.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    pages
        .into_iter()
        .find(|(file, _)| {
            file == name || file.rsplit_once('.').is_some_and(|(stem, _)| stem == name)
        })
        .map(|(_, roff)| roff)
        .ok_or_else(|| Error::UnknownPage {
            name: name.to_owned(),
            known,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory;

    use std::path::PathBuf;

    use super::*;
    use crate::Cli;

    /// The shells whose completions the packages ship (the others are one
    /// `embargo completions SHELL` away).
    const SHIPPED_SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    /// The file a completion script is shipped as, named as each shell looks
    /// for it: bash-completion by command name, zsh by `_command` in $fpath,
    /// fish by `command.fish`.
    fn completion_file(shell: Shell) -> String {
        match shell {
            Shell::Zsh => "_embargo".to_owned(),
            Shell::Bash => "embargo".to_owned(),
            _ => format!("embargo.{shell}"),
        }
    }

    /// Every file under `dist/` this module renders, by its path there.
    fn shipped(cmd: &Command) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = man_pages(cmd.clone())
            .into_iter()
            .map(|(file, roff)| (PathBuf::from("dist/man").join(file), roff))
            .collect();
        for shell in SHIPPED_SHELLS {
            let dir = PathBuf::from("dist/completions").join(shell.to_string());
            files.push((
                dir.join(completion_file(shell)),
                completions(cmd.clone(), shell),
            ));
        }
        files
    }

    /// The man pages and completions in dist/ are what this program
    /// renders: a changed flag, help text or version must come with the
    /// files the packages ship. `EMBARGO_BLESS=1` rewrites them.
    #[test]
    fn dist_files_are_current() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let bless = std::env::var_os("EMBARGO_BLESS").is_some();
        let mut stale = Vec::new();
        for (path, want) in shipped(&Cli::command()) {
            let full = root.join(&path);
            if bless {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, &want).unwrap();
            } else if std::fs::read(&full).ok().as_deref() != Some(want.as_slice()) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "out of date: {}; rewrite them with \
             `EMBARGO_BLESS=1 cargo test --bin embargo dist_files_are_current`",
            stale.join(", ")
        );
    }

    #[test]
    fn every_command_has_a_page_and_the_config_page_holds_every_line() {
        let pages = man_pages(Cli::command());
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "embargo.8",
            "embargo-run.8",
            "embargo-check.8",
            "embargo.toml.5",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let toml = String::from_utf8(man_page(Cli::command(), "embargo.toml").unwrap()).unwrap();
        assert!(toml.contains("tcp_idle_timeout = \"10s\""));
        assert!(toml.lines().count() > REFERENCE.lines().count());
        let err = man_page(Cli::command(), "embargo-nope").unwrap_err();
        assert!(err.to_string().contains("embargo-check.8"), "{err}");
    }

    #[test]
    fn completions_name_every_command() {
        let bash = String::from_utf8(completions(Cli::command(), Shell::Bash)).unwrap();
        for sub in [
            "run",
            "check",
            "validate",
            "fetch",
            "hits",
            "completions",
            "man",
        ] {
            assert!(bash.contains(sub), "bash completions lack {sub}");
        }
        let fish = String::from_utf8(completions(Cli::command(), Shell::Fish)).unwrap();
        assert!(
            fish.contains("-l client"),
            "fish completions lack check --client"
        );
    }
}
