//! What ships in `blocklists/` says where it comes from: every file opens
//! with comments giving its source, authority, date and reason (issue 9,
//! item 7), and loads without a bad line.

use std::path::Path;

/// The provenance fields of a file's opening comment block, in order of
/// appearance, each with its value (continuation lines joined).
fn header_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            break; // the opening comment block ends at the first other line
        };
        let comment = comment.trim_start();
        match comment.split_once(':') {
            Some((key, value))
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                fields.push((key.to_string(), value.trim().to_string()));
            }
            _ if line.starts_with("#   ") => {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(comment.trim());
                }
            }
            _ => {}
        }
    }
    fields
}

#[test]
fn r9_every_shipped_list_opens_with_its_provenance() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("blocklists/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let fields = header_fields(&text);
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{}: no `# {key}:` line in its header", path.display()))
        };
        for key in ["Source", "Authority", "Date", "Reason"] {
            assert!(
                get(key).len() >= 4,
                "{}: `# {key}:` says too little",
                path.display()
            );
        }
        let date = get("Date");
        let ymd: Vec<&str> = date.get(..10).unwrap_or("").split('-').collect();
        assert!(
            ymd.len() == 3 && ymd[0].len() == 4 && ymd.iter().all(|p| p.parse::<u32>().is_ok()),
            "{}: Date {date:?} does not start with YYYY-MM-DD",
            path.display()
        );
        let stats = embargo::lists::load_file(&path, None, &mut |_, _| {}).expect("loads");
        assert_eq!(
            stats.invalid + stats.unsupported,
            0,
            "{}: {:?}",
            path.display(),
            stats.warnings
        );
        seen += 1;
    }
    assert!(seen >= 3, "the shipped lists are in {}", dir.display());
}

#[test]
fn the_header_reader_sees_fields_and_continuations() {
    let fields = header_fields(
        "# title\n#\n# Source:    a\n#            b\n# Date: 2024-01-02\nname.example\n# Reason: too late\n",
    );
    assert_eq!(
        fields,
        [
            ("Source".to_string(), "a b".to_string()),
            ("Date".to_string(), "2024-01-02".to_string())
        ]
    );
}
