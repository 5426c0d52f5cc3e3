//! Unknown keys as problems among the others (issue 21, item 2). serde
//! stops at the first unknown key (`deny_unknown_fields`), which would hide
//! every other problem in the file behind it. So the file is read as a
//! TOML tree first; each unknown key serde names is noted with its place,
//! taken out of the tree, and the tree read again, until it reads. The
//! checker then reports the values, and the operator sees it all in one
//! run of `validate`.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::{Location, Problem};

/// Reads `T` from `root`, taking out each unknown key serde names and
/// noting it in `problems`. Any other error (or an unknown key this cannot
/// find in the tree, such as one nested deeper than a section) is returned
/// as serde gave it, for the caller to report.
pub(super) fn read<'a, T: Deserialize<'a>>(
    root: &mut Spanned<DeTable<'a>>,
    path: &Path,
    source: &str,
    problems: &mut Vec<Problem>,
) -> Result<T, toml::de::Error> {
    loop {
        match T::deserialize(Deserializer::from(root.clone())) {
            Ok(spec) => return Ok(spec),
            Err(e) => {
                let taken = if e.message().starts_with("unknown field") {
                    e.span().and_then(|at| take_unknown(root.get_mut(), at))
                } else {
                    None
                };
                let Some((key, at)) = taken else {
                    return Err(e);
                };
                problems.push(Problem {
                    location: Location::from_offset(path, source, at.start),
                    message: unknown_key(&key, e.message()),
                });
            }
        }
    }
}

/// Removes the key whose span is `at` from the file's top level or from a
/// section (a table, or a table in an array of tables: sections hold no
/// deeper tables of keys); returns its path as the operator looks for it
/// (`block.acton`, `lists[2].sorce`) and its span. `None` when no key has
/// that span, so that the caller cannot loop on an error it cannot remove.
fn take_unknown(root: &mut DeTable<'_>, at: Range<usize>) -> Option<(String, Range<usize>)> {
    /// Takes the key spanning `at` out of `table`: its name.
    fn take(table: &mut DeTable<'_>, at: &Range<usize>) -> Option<String> {
        let key = table
            .keys()
            .find(|k| k.span() == *at)?
            .get_ref()
            .to_string();
        table.remove(key.as_str());
        Some(key)
    }
    if let Some(key) = take(root, &at) {
        return Some((key, at));
    }
    for (name, value) in root.iter_mut() {
        match value.get_mut() {
            DeValue::Table(t) => {
                if let Some(key) = take(t, &at) {
                    return Some((format!("{}.{key}", name.get_ref()), at));
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut()
                        && let Some(key) = take(t, &at)
                    {
                        return Some((format!("{}[{}].{key}", name.get_ref(), i + 1), at));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The message for the unknown key at `path`, from serde's `unknown field
/// `x`, expected one of `a`, `b`` (`message`): the keys the section has,
/// and the nearest of them when it looks like a slip of the fingers.
fn unknown_key(path: &str, message: &str) -> String {
    let known: Vec<&str> = message
        .split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let typed = path.rsplit('.').next().unwrap_or(path);
    let near = known
        .iter()
        .map(|k| (edit_distance(typed, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map_or(String::new(), |(_, k)| format!(" (did you mean {k}?)"));
    // `lists[2].sorce` is in `[[lists]]`, `block.acton` in `[block]`, and
    // a name at the top is a section of its own.
    let (what, section) = match path.split_once('.') {
        None => ("section", String::new()),
        Some((section, _)) => match section.split_once('[') {
            Some((array, _)) => ("key", format!("[[{array}]]")),
            None => ("key", format!("[{section}]")),
        },
    };
    let has = if section.is_empty() {
        format!("the sections are {}", known.join(", "))
    } else {
        format!("{section} has {}", known.join(", "))
    };
    format!("{path}: unknown {what}{near}; {has}")
}

/// Levenshtein distance: how many letters to add, drop or change to turn
/// `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_letters() {
        assert_eq!(edit_distance("acton", "action"), 1);
        assert_eq!(edit_distance("sorce", "source"), 1);
        assert_eq!(edit_distance("", "ttl"), 3);
        assert_eq!(edit_distance("ttl", "ttl"), 0);
    }
}
