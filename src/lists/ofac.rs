//! The US Treasury OFAC Specially Designated Nationals list, in either of
//! its published forms, reduced to the domains of its entities' websites.
//!
//! Fields used:
//! - `SDN.XML` (legacy XML, root `sdnList`): each `sdnEntry` gives `uid`,
//!   `lastName` (the entity or person name; `firstName` is prepended when
//!   present), `programList/program` (the sanctions programs), and
//!   `idList/id` whose `idType` is `Website` (case-insensitive), the
//!   address being its `idNumber`.
//! - `sdn.csv` (no header; 12 columns): `ent_num`, `SDN_Name`, `SDN_Type`,
//!   `Program` (several as `SDGT] [IRGC`), ..., `Remarks` (column 12),
//!   whose `;`-separated parts `Website X` or `alt. Website X` give the
//!   addresses. `-0-` means empty.
//!
//! An address becomes a domain by dropping the scheme, any user info, port,
//! path, query and fragment, a trailing dot, and a leading `www.`: the
//! entity's site and everything under its domain are blocked.

/// One sanctioned entity with a website.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub uid: String,
    pub name: String,
    pub programs: Vec<String>,
}

impl Entity {
    /// "NAME (SDN uid U, program P1, P2)": the per-entry provenance.
    pub fn describe(&self) -> String {
        let programs = if self.programs.is_empty() {
            String::from("no program given")
        } else {
            format!("program {}", self.programs.join(", "))
        };
        format!("OFAC SDN {} (uid {}, {programs})", self.name, self.uid)
    }
}

/// A website address found for an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Website {
    /// Index into the entity list.
    pub entity: usize,
    /// The address as published.
    pub address: String,
    /// 1-based line of the file where it was found.
    pub line: usize,
}

/// What a file holds: entities with websites, and their websites.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sdn {
    pub entities: Vec<Entity>,
    pub websites: Vec<Website>,
    /// Entries read (with or without a website).
    pub records: usize,
}

/// True when `sample` (the start of a file) is SDN XML or SDN CSV.
pub fn looks_like(sample: &str) -> bool {
    if sample.contains("<sdnList") {
        return true;
    }
    // CSV: `36,"AEROCARIBBEAN AIRLINES","-0- ","CUBA",...`
    sample.lines().take(3).any(|l| {
        let mut fields = l.splitn(3, ',');
        let num = fields.next().unwrap_or("");
        !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
            && fields.next().is_some_and(|f| f.starts_with('"'))
            && l.contains("\"-0-")
    })
}

/// Parses SDN.XML or sdn.csv.
pub fn parse(text: &str) -> Result<Sdn, String> {
    if text.contains("<sdnList") {
        parse_xml(text)
    } else {
        Ok(parse_csv(text))
    }
}

/// The domain of a published website address, or `None` if there is none.
pub fn website_domain(address: &str) -> Option<&str> {
    let mut s = address.trim().trim_end_matches(['.', ';', ',']);
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
    }
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    s = &s[..end];
    if let Some(at) = s.rfind('@') {
        s = &s[at + 1..];
    }
    if let Some(colon) = s.rfind(':')
        && s[colon + 1..].bytes().all(|b| b.is_ascii_digit())
    {
        s = &s[..colon];
    }
    let s = s.trim_end_matches('.');
    let s = match s.get(..4) {
        Some(w) if w.eq_ignore_ascii_case("www.") && s[4..].contains('.') => &s[4..],
        _ => s,
    };
    (!s.is_empty()).then_some(s)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The entity being read, its first name, and its websites with their lines.
type Reading = (Entity, String, Vec<(String, usize)>);

fn parse_xml(text: &str) -> Result<Sdn, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut sdn = Sdn::default();
    let mut path: Vec<String> = Vec::new();
    let mut entity: Option<Reading> = None;
    let mut id_type = String::new();
    let mut id_number = (String::new(), 0usize);
    // Text of the current element: quick-xml reports `&amp;` and the like as
    // separate events between text pieces.
    let mut value = String::new();
    let mut value_at = 0usize;
    loop {
        let at = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            format!(
                "XML error near line {}: {e}",
                line_of(text, reader.error_position() as usize)
            )
        })?;
        match event {
            Event::Start(e) => {
                let local = e.local_name();
                let name: &str = local.as_ref();
                match name {
                    "sdnEntry" => {
                        entity = Some((
                            Entity {
                                uid: String::new(),
                                name: String::new(),
                                programs: Vec::new(),
                            },
                            String::new(),
                            Vec::new(),
                        ))
                    }
                    "id" => {
                        // An id without an idNumber is an empty address
                        // reported at the id's own line (found by fuzzing:
                        // it was line 0).
                        id_type.clear();
                        id_number = (String::new(), line_of(text, at));
                    }
                    _ => {}
                }
                path.push(name.to_string());
                value.clear();
                value_at = at;
            }
            Event::Text(t) => value.push_str(&t.xml10_content()),
            Event::CData(t) => value.push_str(&t.into_inner()),
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => value.push(c),
                _ => value.push_str(match r.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                }),
            },
            Event::End(_) => {
                let parent = path
                    .len()
                    .checked_sub(2)
                    .and_then(|i| path.get(i))
                    .map(String::as_str);
                let current = path.last().map(String::as_str);
                let v = value.trim();
                if let Some((ent, first, sites)) = entity.as_mut() {
                    match (parent, current) {
                        (Some("sdnEntry"), Some("uid")) => ent.uid = v.to_string(),
                        (Some("sdnEntry"), Some("lastName")) => ent.name = v.to_string(),
                        (Some("sdnEntry"), Some("firstName")) => *first = v.to_string(),
                        (Some("programList"), Some("program")) => ent.programs.push(v.to_string()),
                        (Some("id"), Some("idType")) => id_type = v.to_string(),
                        (Some("id"), Some("idNumber")) => {
                            id_number = (v.to_string(), line_of(text, value_at))
                        }
                        (Some("idList"), Some("id")) if id_type.eq_ignore_ascii_case("website") => {
                            sites.push(std::mem::take(&mut id_number));
                        }
                        _ => {}
                    }
                }
                if current == Some("sdnEntry")
                    && let Some((mut ent, first, sites)) = entity.take()
                {
                    sdn.records += 1;
                    if !first.is_empty() {
                        ent.name = format!("{first} {}", ent.name);
                    }
                    if !sites.is_empty() {
                        let index = sdn.entities.len();
                        sdn.entities.push(ent);
                        for (address, line) in sites {
                            sdn.websites.push(Website {
                                entity: index,
                                address,
                                line,
                            });
                        }
                    }
                }
                path.pop();
                value.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(sdn)
}

/// Splits one CSV record (RFC 4180 quoting) into fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn empty(field: &str) -> bool {
    let f = field.trim();
    f.is_empty() || f == "-0-"
}

fn parse_csv(text: &str) -> Sdn {
    let mut sdn = Sdn::default();
    for (i, line) in text.lines().enumerate() {
        let fields = csv_fields(line.trim_end_matches('\r'));
        if fields.len() < 12 || !fields[0].trim().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        sdn.records += 1;
        let remarks = &fields[11];
        let sites: Vec<String> = remarks
            .split(';')
            .map(|p| p.trim())
            .map(|p| p.strip_prefix("alt. ").unwrap_or(p))
            .filter_map(|p| p.strip_prefix("Website "))
            .map(|w| w.trim().trim_end_matches('.').to_string())
            .collect();
        if sites.is_empty() {
            continue;
        }
        let programs = if empty(&fields[3]) {
            Vec::new()
        } else {
            fields[3]
                .split("] [")
                .map(|p| p.trim_matches(['[', ']', ' ']).to_string())
                .filter(|p| !p.is_empty())
                .collect()
        };
        let index = sdn.entities.len();
        sdn.entities.push(Entity {
            uid: fields[0].trim().to_string(),
            name: fields[1].trim().to_string(),
            programs,
        });
        for address in sites {
            sdn.websites.push(Website {
                entity: index,
                address,
                line: i + 1,
            });
        }
    }
    sdn
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" standalone="yes"?>
<sdnList xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://tempuri.org/sdnList.xsd">
  <publshInformation>
    <Publish_Date>11/20/2026</Publish_Date>
    <Record_Count>3</Record_Count>
  </publshInformation>
  <sdnEntry>
    <uid>90001</uid>
    <lastName>SILVERSTAR EXAMPLE NETWORK TECHNOLOGY CO. LTD.</lastName>
    <sdnType>Entity</sdnType>
    <programList>
      <program>DPRK3</program>
      <program>CYBER2</program>
    </programList>
    <idList>
      <id>
        <uid>1</uid>
        <idType>Website</idType>
        <idNumber>http://www.silverstar-example.net/about</idNumber>
      </id>
      <id>
        <uid>2</uid>
        <idType>Email Address</idType>
        <idNumber>sales@silverstar-example.net</idNumber>
      </id>
      <id>
        <uid>3</uid>
        <idType>Website</idType>
        <idNumber>volasys-example.ru</idNumber>
      </id>
    </idList>
  </sdnEntry>
  <sdnEntry>
    <uid>90002</uid>
    <firstName>Ivan</firstName>
    <lastName>EXAMPLEOV</lastName>
    <sdnType>Individual</sdnType>
    <programList><program>RUSSIA-EO14024</program></programList>
  </sdnEntry>
  <sdnEntry>
    <uid>90003</uid>
    <lastName>SANCTIONED &amp; CO</lastName>
    <sdnType>Entity</sdnType>
    <programList><program>SDGT</program></programList>
    <idList><id><uid>4</uid><idType>Website</idType><idNumber>https://Sanctioned-Example.org:8443/x?y</idNumber></id></idList>
  </sdnEntry>
</sdnList>
"#;

    const CSV: &str = "36,\"AEROCARIBBEAN AIRLINES\",\"-0- \",\"CUBA\",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"Havana, Cuba.\"\r\n\
90001,\"SILVERSTAR EXAMPLE, \"\"LTD\"\"\",\"-0- \",\"DPRK3] [CYBER2\",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"-0- \",\"Website www.silverstar-example.net; alt. Website http://volasys-example.ru/; Email Address x@y.example.\"\r\n";

    #[test]
    fn xml_websites_with_entity_and_programs() {
        assert!(looks_like(XML));
        let sdn = parse(XML).expect("parses");
        assert_eq!(sdn.records, 3);
        assert_eq!(sdn.entities.len(), 2, "only entities with a website");
        assert_eq!(sdn.entities[0].programs, ["DPRK3", "CYBER2"]);
        assert_eq!(sdn.entities[1].name, "SANCTIONED & CO");
        let domains: Vec<&str> = sdn
            .websites
            .iter()
            .filter_map(|w| website_domain(&w.address))
            .collect();
        assert_eq!(
            domains,
            [
                "silverstar-example.net",
                "volasys-example.ru",
                "Sanctioned-Example.org"
            ]
        );
        assert_eq!(sdn.websites[0].line, 19);
        assert!(
            sdn.entities[0]
                .describe()
                .contains("uid 90001, program DPRK3, CYBER2")
        );
    }

    /// Found by fuzzing (`fuzz/regressions/ofac/`): a Website id without an
    /// idNumber was a website on line 0.
    #[test]
    fn fuzz_website_id_without_number_is_reported_at_its_line() {
        let xml = "<sdnList>\n<sdnEntry><uid>1</uid><lastName>X</lastName>\n<idList>\n<id>\n<idType>Website</idType>\n</id>\n</idList></sdnEntry>\n</sdnList>\n";
        let sdn = parse(xml).expect("parses");
        assert_eq!(
            sdn.websites,
            [Website {
                entity: 0,
                address: String::new(),
                line: 4
            }]
        );
    }

    #[test]
    fn csv_websites_from_remarks() {
        assert!(looks_like(CSV));
        let sdn = parse(CSV).expect("parses");
        assert_eq!(sdn.records, 2);
        assert_eq!(sdn.entities.len(), 1);
        assert_eq!(sdn.entities[0].name, "SILVERSTAR EXAMPLE, \"LTD\"");
        assert_eq!(sdn.entities[0].programs, ["DPRK3", "CYBER2"]);
        let domains: Vec<&str> = sdn
            .websites
            .iter()
            .filter_map(|w| website_domain(&w.address))
            .collect();
        assert_eq!(domains, ["silverstar-example.net", "volasys-example.ru"]);
        assert_eq!(sdn.websites[1].line, 2);
    }

    #[test]
    fn website_addresses_reduce_to_domains() {
        for (a, d) in [
            ("www.example.com", Some("example.com")),
            ("https://user@www.example.com:443/path", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("www.com", Some("www.com")),
            ("  ", None),
        ] {
            assert_eq!(website_domain(a), d, "{a}");
        }
        assert!(!looks_like("example.com\nexample.org\n"));
        assert!(parse("<sdnList><sdnEntry><uid>1</uid></wrong></sdnList>").is_err());
    }
}
