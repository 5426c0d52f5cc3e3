//! The checks across local records, once all are read: a CNAME alone at
//! its name (RFC 1034 3.6.2) and not at a zone's apex, no CNAME loop, and
//! one PTR target per address.

use super::*;

impl Checker<'_> {
    /// The checks across records: a CNAME alone at its name and not at a
    /// zone's apex, no CNAME loop, one PTR target per address.
    pub(super) fn check_records(&mut self, records: &[Record], zones: &[LocalZone]) {
        let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_name.entry(r.name.as_str()).or_default().push(r);
        }
        let apexes: HashMap<&str, &LocalZone> =
            zones.iter().map(|z| (z.name.as_str(), z)).collect();
        let mut cnames: HashMap<&str, &str> = HashMap::new();
        // In the order written, so that a problem is reported at the later
        // of the two records (the one that broke the rule).
        let mut problems: Vec<(&Origin, String)> = Vec::new();
        for (name, rs) in &by_name {
            let first_cname = rs.iter().find(|r| matches!(r.data, RecordData::Cname(_)));
            if let Some(c) = first_cname {
                let RecordData::Cname(target) = &c.data else {
                    continue;
                };
                cnames.insert(name, target);
                if let Some(other) = rs.iter().find(|r| r.data != c.data) {
                    let (later, earlier) = later_of(c, other);
                    let what = if matches!(other.data, RecordData::Cname(_)) {
                        "a second CNAME".to_string()
                    } else {
                        format!("other records ({})", other.data.type_name())
                    };
                    problems.push((
                        &later.origin,
                        format!(
                            "{}: {name} has a CNAME and {what} (at {}, {}): a CNAME stands alone at its name (RFC 1034 3.6.2)",
                            later.origin.key, earlier.origin.location, earlier.origin.key
                        ),
                    ));
                }
                if let Some(zone) = apexes.get(name) {
                    let why = match &zone.origin {
                        ZoneOrigin::Default(rfc) => format!("a zone served by default ({rfc})"),
                        ZoneOrigin::Configured(at) => format!("a local zone (at {at})"),
                    };
                    problems.push((
                        &c.origin,
                        format!(
                            "{}: {name} is {why}: its apex has an SOA, and a CNAME stands alone at its name",
                            c.origin.key
                        ),
                    ));
                }
            }
            let ptrs: Vec<&&Record> = rs
                .iter()
                .filter(|r| matches!(r.data, RecordData::Ptr(_)))
                .collect();
            if let Some(first) = ptrs.first()
                && let Some(other) = ptrs
                    .iter()
                    .find(|r| r.data != first.data && r.origin.source != first.origin.source)
            {
                let (later, earlier) = later_of(first, other);
                let (RecordData::Ptr(a), RecordData::Ptr(b)) = (&earlier.data, &later.data) else {
                    continue;
                };
                let address =
                    address_of(name).map_or_else(|| (*name).to_string(), |a| a.to_string());
                problems.push((
                    &later.origin,
                    format!(
                        "{}: {address} would have a PTR to {b} and one to {a} (at {}, {}): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)",
                        later.origin.key, earlier.origin.location, earlier.origin.key
                    ),
                ));
            }
        }
        // CNAME loops, each reported once, at its first CNAME in the file.
        let mut in_loop: HashSet<&str> = HashSet::new();
        for r in records {
            let RecordData::Cname(_) = r.data else {
                continue;
            };
            if in_loop.contains(r.name.as_str()) {
                continue;
            }
            let mut seen: Vec<&str> = vec![r.name.as_str()];
            let mut at = r.name.as_str();
            while let Some(next) = cnames.get(at) {
                if let Some(i) = seen.iter().position(|s| s == next) {
                    let chain = &seen[i..];
                    if chain.contains(&r.name.as_str()) {
                        in_loop.extend(chain.iter().copied());
                        let mut shown = chain.join(" -> ");
                        shown.push_str(" -> ");
                        shown.push_str(next);
                        problems.push((
                            &r.origin,
                            format!("{}: a CNAME loop: {shown}", r.origin.key),
                        ));
                    }
                    break;
                }
                seen.push(next);
                at = next;
            }
        }
        // In the order written: config tables, then hosts lines.
        problems.sort_by_key(|(o, _)| (o.source, o.location.line, o.location.col));
        for (origin, message) in problems {
            self.problem_at(&origin.location, message);
        }
    }
}

/// The one of two records written later (config order, then hosts files).
fn later_of<'r>(a: &'r Record, b: &'r Record) -> (&'r Record, &'r Record) {
    if a.origin.source > b.origin.source
        || (a.origin.source == b.origin.source && a.origin.location.line > b.origin.location.line)
    {
        (a, b)
    } else {
        (b, a)
    }
}
