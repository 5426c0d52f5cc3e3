//! `embargo hits`: the hit report the server saved (`STATE/hits.json`),
//! printed as a table or as JSON. Part of the `embargo` binary; the report
//! itself is the library's (`observe::hits`). It reads the file, so it
//! works whether or not the server runs, and says when the pid that wrote
//! it is gone.

use std::process::ExitCode;

use embargo::config::Config;

/// Prints the hit report the server saved in the state directory.
pub(crate) fn hits(config: &Config, list: Option<&str>, json: bool) -> ExitCode {
    use embargo::observe::HitsFile;
    if let Some(name) = list
        && !config.lists.iter().any(|l| l.name == name)
    {
        eprintln!("{}", crate::no_such_list(config, name));
        return ExitCode::from(2);
    }
    let path = config.state_dir.join("hits.json");
    let file: HitsFile = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{}: not a hit report: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            eprintln!(
                "{}: {e}: the hit report is saved there by `embargo run -c {}` within 5 seconds of the first blocked query{}",
                path.display(),
                config.path.display(),
                if config.hits.max_clients == 0 {
                    " (it is off: [hits] max_clients = 0)"
                } else {
                    ""
                }
            );
            return ExitCode::from(1);
        }
    };
    let file = match list {
        Some(l) => file.only(l),
        None => file,
    };
    if json {
        match serde_json::to_string_pretty(&file) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("cannot print the report: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    let age = file.age().map_or("at an unknown time".to_string(), |d| {
        format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
        )
    });
    // The server saves the report when it changed, so a quiet server's
    // report is old: its age says nothing of whether it runs. Its pid
    // does (when it cannot be told, as for another user's server whose
    // /proc/PID/exe is closed to us, nothing is said).
    let stopped = match i32::try_from(file.pid) {
        Ok(pid) => matches!(
            crate::is_embargo(pid),
            Err(crate::NotSignalled::NoProcess | crate::NotSignalled::Other(_))
        ),
        Err(_) => true,
    };
    let stale = if stopped {
        format!(
            " (pid {} is not running: this is the report it saved last)",
            file.pid
        )
    } else {
        String::new()
    };
    println!(
        "hit report of pid {}, written {age}{stale}; query log: {} records written, {} dropped",
        file.pid, file.log_written, file.log_dropped
    );
    if file.rate_limited_dropped > 0 || file.rate_limited_truncated > 0 {
        println!(
            "rate limiter: {} answers dropped, {} sent truncated (not in the query log)",
            file.rate_limited_dropped, file.rate_limited_truncated
        );
    }
    // Seconds are enough to read; the JSON keeps the milliseconds.
    let short = |t: &str| match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t.to_string(),
    };
    let rows: Vec<[String; 7]> = file
        .hits
        .iter()
        .map(|h| {
            [
                h.list.clone(),
                h.client.clone(),
                h.count.to_string(),
                short(&h.first_seen),
                short(&h.last_seen),
                h.last_name.clone(),
                h.last_type.clone(),
            ]
        })
        .collect();
    let header = [
        "list",
        "client",
        "count",
        "first seen",
        "last seen",
        "last name",
        "type",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 2 {
                text.push_str(&format!("{cell:>w$}  "));
            } else if i == 6 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text
    };
    println!("{}", line(header));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    for l in file.lists.iter().filter(|l| l.evicted > 0) {
        println!(
            "{}: {} clients kept, {} evicted (least recently seen; [hits] max_clients = {})",
            l.list, l.clients, l.evicted, file.max_clients
        );
    }
    if rows.is_empty() {
        println!(
            "(no blocked queries{})",
            list.map_or(String::new(), |l| format!(" for list {l}"))
        );
    }
    ExitCode::SUCCESS
}
