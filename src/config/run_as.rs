//! `[server] user` and `group`: whom embargo serves as once its sockets are
//! bound. Only the names are checked here (a name, not a number or a
//! table); whether they exist on this system is asked at start by
//! [`crate::privileges`], so that parsing a config never depends on the
//! machine it is parsed on.

use super::raw::Value;
use super::{Checker, Location};

/// A user or group name as written, and where, so that "no such user"
/// can point at the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub location: Location,
}

/// Whom to serve as. Both absent: embargo keeps the identity it was started
/// with (and warns when that is root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAs {
    /// `[server] user`: started as root, embargo binds, then becomes this user.
    pub user: Option<Account>,
    /// `[server] group`: the group to become; default the user's primary group.
    pub group: Option<Account>,
}

impl RunAs {
    /// The names alone, for comparing two configs whatever line they sit on.
    pub fn names(&self) -> (Option<&str>, Option<&str>) {
        (
            self.user.as_ref().map(|a| a.name.as_str()),
            self.group.as_ref().map(|a| a.name.as_str()),
        )
    }
}

/// A name as `/etc/passwd` and `/etc/group` write them: no space, no colon
/// (the field separator), nothing empty.
fn account_name(s: &str) -> Option<String> {
    let ok = !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == ':' || c == '\0');
    ok.then(|| s.to_owned())
}

impl Checker<'_> {
    /// `[server] user` and `group`.
    pub(super) fn run_as(&mut self, user: &Option<Value>, group: &Option<Value>) -> RunAs {
        let mut account = |key: &str, value: &Option<Value>, want: &str| {
            let value = value.as_ref()?;
            let name = self.parse_with(key, value, want, account_name)?;
            Some(Account {
                name,
                location: self.location(value),
            })
        };
        let user = account(
            "server.user",
            user,
            r#"a user name such as "embargo" (the user to serve as after binding)"#,
        );
        let group_account = account(
            "server.group",
            group,
            r#"a group name such as "embargo" (default: the user's primary group)"#,
        );
        if let (Some(value), Some(_), None) = (group, &group_account, &user) {
            self.problem(
                value,
                "server.group: needs server.user (embargo changes group only when it changes user)",
            );
        }
        RunAs {
            user,
            group: group_account,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Error};

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("/etc/embargo/embargo.toml"), text)
    }

    #[test]
    fn user_and_group_are_names_with_their_place() {
        let c = parse("[server]\nuser = \"nobody\"\ngroup = \"nogroup\"\n").expect("valid");
        assert_eq!(c.run_as.names(), (Some("nobody"), Some("nogroup")));
        let user = c.run_as.user.expect("user");
        assert_eq!((user.location.line, user.location.col), (2, 8));
        let c = parse("[server]\nuser = \"embargo\"\n").expect("valid");
        assert_eq!(c.run_as.names(), (Some("embargo"), None));
        let c = parse("").expect("valid");
        assert_eq!(c.run_as.names(), (None, None));
    }

    #[test]
    fn a_name_that_cannot_be_one_is_refused() {
        for bad in ["\"\"", "\"em bargo\"", "\"a:b\""] {
            let err = parse(&format!("[server]\nuser = {bad}\n")).expect_err(bad);
            assert!(
                err.to_string().starts_with(
                    "/etc/embargo/embargo.toml:2:8: server.user: expected a user name"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn a_group_without_a_user_is_refused() {
        let err = parse("[server]\ngroup = \"nogroup\"\n").expect_err("group alone");
        assert_eq!(
            err.to_string(),
            "/etc/embargo/embargo.toml:2:9: server.group: needs server.user (embargo changes group only when it changes user)"
        );
    }
}
