//! `[[groups]]`: which lists apply to which clients, as written, and their
//! conversion into [`GroupSpec`]s.
//!
//! ```toml
//! [[groups]]
//! name = "servers"
//! clients = ["10.1.0.0/16", "2001:db8:1::/48"]
//! lists = ["doj-dprk-it-workers-2023", "ofac-sdn"]
//! action = "refused"          # optional: replaces the lists' own
//!
//! [[groups]]
//! name = "default"            # clients in no other group; no `clients`
//! lists = ["doj-dprk-it-workers-2023"]
//!
//! [[groups]]
//! name = "roaming"
//! client_ids = ["laptop-7"]   # DoT/DoQ SNI laptop-7.dns.example.com, DoH /dns-query/laptop-7
//! ```
//!
//! A group without `lists` applies every list; `lists = []` applies none.
//! Without a group named `default`, clients in no group's networks get
//! every list. A network may belong to one group only (the most specific
//! network holding a client decides, so nesting is how exceptions are
//! written); list names must be those of `[[lists]]` tables. All of it
//! applies on reload.

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Container, Raw, Section, Shaped, Value};
use super::{Checker, ListSpec, Location, WANT_ACTION};
use crate::access::Cidr;
use crate::groups::DEFAULT;
use crate::policy::Action;

/// One `[[groups]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFileSpec {
    pub name: Option<Value>,
    pub clients: Option<Value>,
    pub client_ids: Option<Value>,
    pub lists: Option<Value>,
    pub action: Option<Value>,
}

impl Section for GroupFileSpec {
    const CONTAINER: Container = Container::Table;
}

/// The `[[groups]]` tables, each of which may turn out not to be a table.
pub(super) type GroupTables = Vec<Spanned<Shaped<GroupFileSpec>>>;

/// One configured group, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    /// Its clients' networks (none for the default group).
    pub clients: Vec<Cidr>,
    /// The client IDs it claims (lowercase), whatever their address.
    pub client_ids: Vec<String>,
    /// The lists it applies, as indices into `Config::lists`, in config
    /// order without repeats; `None` is every list.
    pub lists: Option<Vec<usize>>,
    /// Replaces the lists' own action for its clients.
    pub action: Option<Action>,
    /// Where the group is declared.
    pub location: Location,
}

/// More groups than this is a config error (a group index is 16 bits, and
/// each group holds a table per matcher id).
pub const MAX_GROUPS: usize = 1000;

impl Checker<'_> {
    /// Converts `[[groups]]`, checking list names against `lists`.
    pub(super) fn groups(
        &mut self,
        groups: Option<Spanned<Shaped<GroupTables>>>,
        lists: &[ListSpec],
    ) -> Vec<GroupSpec> {
        let tables = self.section("groups", groups);
        let mut out: Vec<GroupSpec> = Vec::new();
        // Every network once, with the group that has it.
        let mut seen: Vec<(Cidr, String)> = Vec::new();
        // Every client ID once, likewise.
        let mut seen_ids: Vec<(String, String)> = Vec::new();
        for (i, g) in tables.into_iter().enumerate() {
            let key = |field: &str| format!("groups[{}].{field}", i + 1);
            let span = g.span();
            let g = match g.into_inner() {
                Shaped::Right(g) => g,
                Shaped::Wrong(raw) => {
                    self.wrong(
                        &format!("groups[{}]", i + 1),
                        &Spanned::new(span, raw),
                        "a table of group settings ([[groups]])",
                    );
                    continue;
                }
            };
            let table: Value = Spanned::new(span, Raw::Table);
            let Some(name_value) = &g.name else {
                self.problem(
                    &table,
                    format!("groups[{}]: missing name: every group needs a name", i + 1),
                );
                continue;
            };
            let name = self
                .parse_with(
                    &key("name"),
                    name_value,
                    r#"a group name without spaces, such as "servers""#,
                    |s| {
                        let s = s.trim();
                        (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_owned())
                    },
                )
                .unwrap_or_default();
            if !name.is_empty() && out.iter().any(|o| o.name == name) {
                self.problem(
                    name_value,
                    format!("{}: duplicate group name {name:?}", key("name")),
                );
            }
            let is_default = name == DEFAULT;
            let mut client_ids = Vec::new();
            if let Some(v) = &g.client_ids {
                if is_default {
                    self.problem(
                        v,
                        format!(
                            "{}: the default group takes no client IDs",
                            key("client_ids")
                        ),
                    );
                }
                let ids = self.each(
                    &key("client_ids"),
                    v,
                    r#"a list of client IDs, such as ["laptop-7"]"#,
                    "a client ID of 1 to 64 letters, digits and hyphens",
                    |s| super::tls::is_client_id(s).then(|| s.to_ascii_lowercase()),
                );
                for (j, (id, at)) in ids.into_iter().enumerate() {
                    match seen_ids.iter().find(|(i, _)| *i == id) {
                        Some((_, other)) => self.problems.push(super::Problem {
                            location: at,
                            message: format!(
                                "groups[{}].client_ids[{}]: {id:?} is already a client ID of group {other:?}",
                                i + 1,
                                j + 1
                            ),
                        }),
                        None => {
                            seen_ids.push((id.clone(), name.clone()));
                            client_ids.push(id);
                        }
                    }
                }
            }
            let clients = match (&g.clients, is_default) {
                (Some(v), true) => {
                    self.problem(
                        v,
                        format!(
                            "{}: the default group is every client in no other group's networks; it takes no clients",
                            key("clients")
                        ),
                    );
                    Vec::new()
                }
                (Some(v), false) => {
                    let nets = self.networks(&key("clients"), v);
                    if matches!(v.get_ref(), Raw::Array(a) if a.is_empty()) {
                        self.wrong(&key("clients"), v, "at least one network");
                    }
                    if let Raw::Array(items) = v.get_ref() {
                        for (j, item) in items.iter().enumerate() {
                            let Raw::String(text) = item.get_ref() else {
                                continue;
                            };
                            let Ok(net) = text.parse::<Cidr>() else {
                                continue;
                            };
                            match seen.iter().find(|(c, _)| *c == net) {
                                Some((_, other)) => self.problem(
                                    item,
                                    format!(
                                        "groups[{}].clients[{}]: {net} is already a network of group {other:?}: a network belongs to one group (a narrower one can make an exception)",
                                        i + 1,
                                        j + 1
                                    ),
                                ),
                                None => seen.push((net, name.clone())),
                            }
                        }
                    }
                    nets
                }
                (None, false) if !name.is_empty() && g.client_ids.is_none() => {
                    self.problem(
                        &table,
                        format!(
                            "groups[{}]: missing clients: a group other than \"default\" needs the networks of its clients (or client_ids)",
                            i + 1
                        ),
                    );
                    Vec::new()
                }
                (None, _) => Vec::new(),
            };
            let group_lists = g.lists.as_ref().map(|v| {
                let names = self.each(
                    &key("lists"),
                    v,
                    r#"a list of list names, such as ["seized-domains"]"#,
                    "a list name",
                    |s| Some(s.to_owned()),
                );
                let mut indices = Vec::new();
                for (j, (list, _)) in names.iter().enumerate() {
                    match lists.iter().position(|l| l.name == *list) {
                        Some(at) => indices.push(at),
                        None => {
                            let item = match v.get_ref() {
                                Raw::Array(items) => items.get(j).unwrap_or(v),
                                _ => v,
                            };
                            let known: Vec<&str> = lists.iter().map(|l| l.name.as_str()).collect();
                            self.problem(
                                item,
                                format!(
                                    "{}[{}]: no list is named {list:?} (the lists: {})",
                                    key("lists"),
                                    j + 1,
                                    if known.is_empty() {
                                        "none".to_string()
                                    } else {
                                        known.join(", ")
                                    }
                                ),
                            );
                        }
                    }
                }
                indices.sort_unstable();
                indices.dedup();
                indices
            });
            let action = self.opt_parse(&key("action"), &g.action, WANT_ACTION, Action::parse);
            if name.is_empty() {
                continue;
            }
            out.push(GroupSpec {
                name,
                clients,
                client_ids,
                lists: group_lists,
                action,
                location: self.location(name_value),
            });
        }
        if out.len() > MAX_GROUPS {
            self.problems.push(super::Problem {
                location: Location::from_offset(self.path, self.source, 0),
                message: format!("more than {MAX_GROUPS} groups"),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Error};
    use crate::policy::Action;

    const LISTS: &str = "[[lists]]\nname = \"a\"\nsource = \"a.txt\"\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\n[[lists]]\nname = \"c\"\nsource = \"c.txt\"\n";

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("g.toml"), &format!("{LISTS}{text}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(Path::new("g.toml"), &format!("{LISTS}{text}")) {
            Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_name_their_clients_lists_and_action() {
        let c = parse(
            "[[groups]]\nname = \"servers\"\nclients = [\"10.1.0.0/16\", \"2001:db8:1::/48\"]\nlists = [\"c\", \"a\", \"c\"]\naction = \"refused\"\n[[groups]]\nname = \"default\"\nlists = [\"b\"]\n[[groups]]\nname = \"lab\"\nclients = [\"10.1.9.0/24\"]\n",
        );
        assert_eq!(c.groups.len(), 3);
        let s = &c.groups[0];
        assert_eq!(s.name, "servers");
        assert_eq!(s.clients.len(), 2);
        assert_eq!(s.lists, Some(vec![0, 2]), "config order, once each");
        assert_eq!(s.action, Some(Action::Refused));
        assert_eq!(s.location.line, 11);
        assert_eq!(c.groups[1].lists, Some(vec![1]));
        assert!(c.groups[1].clients.is_empty());
        assert_eq!(c.groups[2].lists, None, "every list");
        assert_eq!(c.groups[2].action, None);
        assert!(parse("").groups.is_empty());
    }

    #[test]
    fn client_ids_claim_a_group_once_each() {
        let c = parse(
            "[[groups]]\nname = \"roaming\"\nclient_ids = [\"Laptop-7\", \"phone-3\"]\nlists = [\"a\"]\n",
        );
        assert_eq!(c.groups[0].client_ids, ["laptop-7", "phone-3"]);
        assert!(c.groups[0].clients.is_empty(), "an ID is enough");
        let p = problems(
            "[[groups]]\nname = \"r\"\nclient_ids = [\"laptop-7\", \"bad id\"]\n[[groups]]\nname = \"s\"\nclient_ids = [\"LAPTOP-7\"]\n[[groups]]\nname = \"default\"\nclient_ids = [\"x\"]\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("groups[1].client_ids[2]: expected a client ID of 1 to 64 letters"),
            "{p:?}"
        );
        assert!(
            p[1].contains(
                "groups[2].client_ids[1]: \"laptop-7\" is already a client ID of group \"r\""
            ),
            "{p:?}"
        );
        assert!(
            p[2].contains("groups[3].client_ids: the default group takes no client IDs"),
            "{p:?}"
        );
    }

    #[test]
    fn bad_groups_say_what_and_where() {
        let p = problems(
            "[[groups]]\nname = \"servers\"\nclients = [\"10.1.0.0/16\"]\nlists = [\"a\", \"nope\"]\n[[groups]]\nname = \"servers\"\nclients = [\"10.2.0.0/16\", \"10.1.0.0/16\"]\n[[groups]]\nname = \"default\"\nclients = [\"10.3.0.0/16\"]\n[[groups]]\nname = \"empty\"\n[[groups]]\nclients = [\"10.4.0.0/16\"]\n[[groups]]\nname = \"none\"\nclients = []\naction = \"block\"\n",
        );
        assert_eq!(
            p,
            [
                "g.toml:13:15: groups[1].lists[2]: no list is named \"nope\" (the lists: a, b, c)",
                "g.toml:15:8: groups[2].name: duplicate group name \"servers\"",
                "g.toml:16:27: groups[2].clients[2]: 10.1.0.0/16 is already a network of group \"servers\": a network belongs to one group (a narrower one can make an exception)",
                "g.toml:19:11: groups[3].clients: the default group is every client in no other group's networks; it takes no clients",
                "g.toml:20:1: groups[4]: missing clients: a group other than \"default\" needs the networks of its clients (or client_ids)",
                "g.toml:22:1: groups[5]: missing name: every group needs a name",
                "g.toml:26:11: groups[6].clients: expected at least one network, got an empty array",
                "g.toml:27:10: groups[6].action: expected one of \"nxdomain\", \"nodata\", \"refused\" or \"sinkhole\", got the string \"block\"",
            ]
        );
    }
}
