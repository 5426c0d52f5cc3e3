//! Whom embargo serves as: bind with the privileges it was started with,
//! then keep none.
//!
//! ```text
//!  start (root, or a user with CAP_NET_BIND_SERVICE)
//!    │  resolve [server] user/group      (unknown name: error, before anything is bound)
//!    │  bind every listen address        (port 53 needs the privilege)
//!    │  root and user set: state dir made, chowned if new · bounding set cleared
//!    │                     setgroups([gid]) · setresgid · setresuid
//!    │  not root: every capability cleared (ambient, inheritable, permitted, effective)
//!    │  no_new_privs                     (nothing exec'd later can gain privileges)
//!    ▼  checked: ids, groups, capabilities; state dir writable, config readable
//!  serve: lists loaded, pid file written, reloads, downloads: all as the user
//! ```
//!
//! Linux keeps credentials, capabilities and `no_new_privs` per thread:
//! glibc's `setresuid` reaches every thread, but a capability cleared or
//! `no_new_privs` set reaches only the calling thread and the threads it
//! starts afterwards. So [`drop`] runs while the process has one thread (the
//! binary calls it before it starts the logging thread and the runtime), and
//! refuses to change anything per thread when more are running. Every
//! thread that serves is then started by an unprivileged thread and inherits
//! exactly its state, which the integration test reads back from
//! `/proc/PID/task/*/status`.
//!
//! After binding nothing needs a privilege: reloads read the config and the
//! lists, downloads and the pid file write into the state directory, and
//! both are checked here as the user, so a file the user cannot read stops
//! the start instead of the first reload.

use std::io;
use std::path::PathBuf;

use caps::CapSet;
use nix::unistd::{self, AccessFlags, Gid, Group, Uid, User};

use crate::config::{Config, Location, RunAs};

/// The user and group `[server] user` and `group` name, looked up here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: Uid,
    pub group: String,
    pub gid: Gid,
}

/// What [`drop`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Started as root, now serves as this user and group.
    Switched(Identity),
    /// Started as the configured user already (systemd `User=`, a container's `USER`).
    AlreadyUser(Identity),
    /// No user configured, not root: same ids, no capability kept.
    Unchanged { uid: Uid, gid: Gid },
    /// No user configured, started as root: serves as root (and says so).
    Root,
}

/// Why embargo will not serve with the identity it has.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{location}: server.user: no such user {name:?} on this system")]
    NoSuchUser { name: String, location: Location },
    #[error("{location}: server.group: no such group {name:?} on this system")]
    NoSuchGroup { name: String, location: Location },
    #[error("{location}: server.{key}: cannot look up {name:?}: {source}")]
    Lookup {
        key: &'static str,
        name: String,
        location: Location,
        source: nix::Error,
    },
    #[error(
        "{location}: server.user = {user:?}: embargo runs as uid {uid} gid {gid}, not as {user} (uid {want_uid}) and group {group} (gid {want_gid}), and only root can change user: start it as root (it binds, then becomes {user}), start it as {user}, or remove server.user"
    )]
    NotRoot {
        user: String,
        group: String,
        location: Location,
        uid: Uid,
        gid: Gid,
        want_uid: Uid,
        want_gid: Gid,
    },
    #[error(
        "cannot drop privileges: {0} threads are running, and capabilities and no_new_privs are per thread; drop them before starting any thread (as `embargo run` does)"
    )]
    Threads(usize),
    #[error("state directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: io::Error },
    #[error(
        "state directory {} is not writable by {user}: {source}; give it to {user} (chown {user}:{group} {}) or set [state] dir to a directory {user} can write",
        path.display(), path.display()
    )]
    StateDirNotWritable {
        path: PathBuf,
        user: String,
        group: String,
        source: nix::Error,
    },
    #[error(
        "state directory {} cannot be created by {user}: {}: {source}; create it and give it to {user} (mkdir -p {} && chown {user}:{group} {}) or set [state] dir to a directory {user} can write",
        path.display(), parent.display(), path.display(), path.display()
    )]
    StateDirNotCreatable {
        path: PathBuf,
        /// The nearest directory above it that exists, which `user`
        /// cannot write.
        parent: PathBuf,
        user: String,
        group: String,
        source: nix::Error,
    },
    #[error(
        "{} is not readable by {user}: {source}; reloads run as {user} and would fail: make it readable by {user} (owner, group {group} or others)",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        user: String,
        group: String,
        source: nix::Error,
    },
    #[error("cannot {step}: {source}")]
    Step {
        step: &'static str,
        source: nix::Error,
    },
    #[error("cannot clear the {set} capability set: {source}")]
    Capabilities {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("privileges remain after dropping them: {0}")]
    Remain(String),
}

/// Looks `[server] user` and `group` up on this system (the group defaults
/// to the user's primary group). `None` when no user is configured.
/// `embargo validate` calls this too, so a name that does not exist here is
/// found before a restart.
pub fn resolve(run_as: &RunAs) -> Result<Option<Identity>, Error> {
    let Some(user) = &run_as.user else {
        return Ok(None);
    };
    let pw = User::from_name(&user.name)
        .map_err(|source| Error::Lookup {
            key: "user",
            name: user.name.clone(),
            location: user.location.clone(),
            source,
        })?
        .ok_or_else(|| Error::NoSuchUser {
            name: user.name.clone(),
            location: user.location.clone(),
        })?;
    let (group, gid) = match &run_as.group {
        Some(g) => {
            let gr = Group::from_name(&g.name)
                .map_err(|source| Error::Lookup {
                    key: "group",
                    name: g.name.clone(),
                    location: g.location.clone(),
                    source,
                })?
                .ok_or_else(|| Error::NoSuchGroup {
                    name: g.name.clone(),
                    location: g.location.clone(),
                })?;
            (gr.name, gr.gid)
        }
        // A primary group without a name in /etc/group still has its number.
        None => match Group::from_gid(pw.gid) {
            Ok(Some(gr)) => (gr.name, gr.gid),
            _ => (pw.gid.to_string(), pw.gid),
        },
    };
    Ok(Some(Identity {
        user: pw.name,
        uid: pw.uid,
        group,
        gid,
    }))
}

/// After every socket is bound and before serving: become `identity` (when
/// started as root), keep no capability (unless serving as root, which is
/// warned about), set `no_new_privs`, and check that the result is what it
/// should be and that the state directory and the config work for the
/// user. Run it while the process has one thread (see the module doc).
pub fn drop(config: &Config, identity: Option<&Identity>) -> Result<Outcome, Error> {
    let euid = unistd::geteuid();
    let outcome = match identity {
        Some(id) if euid.is_root() => {
            single_threaded()?;
            make_state_dir(config, Some(id))?;
            become_user(id)?;
            Outcome::Switched(id.clone())
        }
        Some(id) => {
            if unistd::getuid() != id.uid
                || euid != id.uid
                || unistd::getgid() != id.gid
                || unistd::getegid() != id.gid
            {
                let location = config.run_as.user.as_ref().map(|a| a.location.clone());
                return Err(Error::NotRoot {
                    user: id.user.clone(),
                    group: id.group.clone(),
                    location: location.unwrap_or_else(|| Location {
                        file: config.path.clone(),
                        line: 0,
                        col: 0,
                    }),
                    uid: euid,
                    gid: unistd::getegid(),
                    want_uid: id.uid,
                    want_gid: id.gid,
                });
            }
            check_state_dir(config, Some(id))?;
            make_state_dir(config, None)?;
            Outcome::AlreadyUser(id.clone())
        }
        None if euid.is_root() => Outcome::Root,
        None => {
            // The state directory is made now, as the user that serves,
            // so that a directory it cannot make is named with what to do
            // rather than found by the query log (issue 21).
            check_state_dir(config, None)?;
            make_state_dir(config, None)?;
            Outcome::Unchanged {
                uid: euid,
                gid: unistd::getegid(),
            }
        }
    };
    if outcome != Outcome::Root {
        clear_capabilities()?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|source| Error::Step {
        step: "set no_new_privs",
        source,
    })?;
    if let Some(id) = identity {
        check(config, id, matches!(outcome, Outcome::Switched(_)))?;
    }
    match &outcome {
        Outcome::Switched(id) | Outcome::AlreadyUser(id) => tracing::info!(
            user = %id.user,
            uid = %id.uid,
            group = %id.group,
            gid = %id.gid,
            "serving as an unprivileged user, no capability kept"
        ),
        Outcome::Unchanged { uid, gid } => {
            tracing::info!(%uid, %gid, "serving as the user that started embargo, no capability kept");
        }
        Outcome::Root => tracing::warn!(
            "serving as root: set [server] user to the user embargo should become once its sockets are bound"
        ),
    }
    Ok(outcome)
}

/// Whether the user running now, when it is the one that will serve
/// (`identity`, or anyone when no `[server] user` is set), can use the
/// state directory: write it when it exists, create it when it does not
/// (the nearest directory above it that exists is writable). Creates
/// nothing, so that `embargo validate` may call it. Root can, and a user
/// other than the serving one cannot tell: both pass (root's start makes
/// the directory and [`drop`] checks it as the user).
pub fn check_state_dir(config: &Config, identity: Option<&Identity>) -> Result<(), Error> {
    let euid = unistd::geteuid();
    if euid.is_root() || identity.is_some_and(|id| id.uid != euid) {
        return Ok(());
    }
    let (user, group) = match identity {
        Some(id) => (id.user.clone(), id.group.clone()),
        None => {
            let gid = unistd::getegid();
            let user = User::from_uid(euid).ok().flatten();
            let group = Group::from_gid(gid).ok().flatten();
            (
                user.map_or_else(|| format!("uid {euid}"), |u| u.name),
                group.map_or_else(|| gid.to_string(), |g| g.name),
            )
        }
    };
    let path = &config.state_dir;
    let writable =
        |dir: &std::path::Path| unistd::access(dir, AccessFlags::W_OK | AccessFlags::X_OK);
    if path.exists() {
        return writable(path).map_err(|source| Error::StateDirNotWritable {
            path: path.clone(),
            user,
            group,
            source,
        });
    }
    let Some(parent) = path.ancestors().skip(1).find(|p| p.exists()) else {
        return Ok(());
    };
    writable(parent).map_err(|source| Error::StateDirNotCreatable {
        path: path.clone(),
        parent: parent.to_path_buf(),
        user,
        group,
        source,
    })
}

/// Errors when more than one thread runs. Where `/proc` cannot tell,
/// the caller's word is taken.
fn single_threaded() -> Result<(), Error> {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
    match threads {
        Ok(n) if n > 1 => Err(Error::Threads(n)),
        _ => Ok(()),
    }
}

/// Creates the state directory when it is missing; created by root for
/// another user, it is given to that user. An existing directory is left
/// as it is: whether the user can write it is checked after the switch.
fn make_state_dir(config: &Config, give_to: Option<&Identity>) -> Result<(), Error> {
    let path = &config.state_dir;
    if path.is_dir() {
        return Ok(());
    }
    let state_dir = |source| Error::StateDir {
        path: path.clone(),
        source,
    };
    crate::source::store::create_dir(path).map_err(state_dir)?;
    if let Some(id) = give_to {
        std::os::unix::fs::chown(path, Some(id.uid.as_raw()), Some(id.gid.as_raw()))
            .map_err(state_dir)?;
    }
    Ok(())
}

/// Root to `id`: no capability can come back through an exec (bounding set
/// cleared while root still may), no supplementary group, then gid and uid
/// (real, effective and saved; the fs ids follow the effective ones).
fn become_user(id: &Identity) -> Result<(), Error> {
    caps::clear(None, CapSet::Bounding).map_err(|source| Error::Capabilities {
        set: "bounding",
        source,
    })?;
    let step = |step| move |source| Error::Step { step, source };
    unistd::setgroups(&[id.gid]).map_err(step("set the supplementary groups"))?;
    unistd::setresgid(id.gid, id.gid, id.gid).map_err(step("set the group id"))?;
    unistd::setresuid(id.uid, id.uid, id.uid).map_err(step("set the user id"))?;
    Ok(())
}

/// Leaving root clears the permitted, effective and ambient sets unless a
/// securebit says otherwise; started unprivileged with a capability
/// (systemd's `AmbientCapabilities=`, a file capability), nothing clears
/// them. Either way, clear them all: after binding, nothing needs one.
fn clear_capabilities() -> Result<(), Error> {
    let held = [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ]
    .into_iter()
    .any(|set| caps::read(None, set).is_ok_and(|c| !c.is_empty()));
    if held {
        single_threaded()?;
    }
    // Ambient first (it must stay within permitted and inheritable), and
    // effective before permitted (it must stay within permitted).
    for (set, name) in [
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::clear(None, set).map_err(|source| Error::Capabilities { set: name, source })?;
    }
    Ok(())
}

/// That the ids (and, when embargo set them, the groups) are the user's and
/// no capability is left; then what the user will need while serving,
/// checked as that user now rather than found missing at the first reload
/// or download.
fn check(config: &Config, id: &Identity, set_groups: bool) -> Result<(), Error> {
    let mut remain = Vec::new();
    match unistd::getresuid() {
        Ok(u) if [u.real, u.effective, u.saved] == [id.uid; 3] => {}
        Ok(u) => remain.push(format!(
            "uid real {} effective {} saved {}",
            u.real, u.effective, u.saved
        )),
        Err(e) => remain.push(format!("uid unknown ({e})")),
    }
    match unistd::getresgid() {
        Ok(g) if [g.real, g.effective, g.saved] == [id.gid; 3] => {}
        Ok(g) => remain.push(format!(
            "gid real {} effective {} saved {}",
            g.real, g.effective, g.saved
        )),
        Err(e) => remain.push(format!("gid unknown ({e})")),
    }
    // Started as the user, the groups are whatever the starter gave it.
    match unistd::getgroups() {
        Ok(groups) if !set_groups || groups.iter().all(|g| *g == id.gid) => {}
        Ok(groups) => remain.push(format!("supplementary groups {groups:?}")),
        Err(e) => remain.push(format!("groups unknown ({e})")),
    }
    for (set, name) in [
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Ambient, "ambient"),
    ] {
        match caps::read(None, set) {
            Ok(c) if c.is_empty() => {}
            Ok(c) => {
                let mut c: Vec<String> = c.iter().map(ToString::to_string).collect();
                c.sort();
                remain.push(format!("{name} capabilities {}", c.join(",")));
            }
            Err(e) => remain.push(format!("{name} capabilities unknown ({e})")),
        }
    }
    if !remain.is_empty() {
        return Err(Error::Remain(remain.join("; ")));
    }
    unistd::access(&config.state_dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|source| {
        Error::StateDirNotWritable {
            path: config.state_dir.clone(),
            user: id.user.clone(),
            group: id.group.clone(),
            source,
        }
    })?;
    unistd::access(&config.path, AccessFlags::R_OK).map_err(|source| Error::Unreadable {
        path: config.path.clone(),
        user: id.user.clone(),
        group: id.group.clone(),
        source,
    })?;
    // The encrypted listeners' certificate and key were read before the
    // drop (a key often only root may read); reloading a renewed pair
    // reads them as the user. Not fatal: the pair in force keeps serving.
    if config.tls.enabled() {
        for path in [&config.tls.certificate, &config.tls.private_key]
            .into_iter()
            .flatten()
        {
            if let Err(e) = unistd::access(path, AccessFlags::R_OK) {
                tracing::warn!(
                    path = %path.display(),
                    user = %id.user,
                    error = %e,
                    "read at start, but not readable by the serving user: a renewed certificate is served only after a restart (give the user read access, e.g. group ssl-cert)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn run_as(text: &str) -> RunAs {
        Config::parse(Path::new("/etc/embargo/embargo.toml"), text)
            .expect("valid")
            .run_as
    }

    #[test]
    fn no_user_is_nothing_to_look_up() {
        assert_eq!(resolve(&run_as("")).expect("resolve"), None);
    }

    #[test]
    fn a_user_resolves_with_its_primary_group_or_the_one_named() {
        // root is uid 0 with primary group 0 on every Linux system.
        let id = resolve(&run_as("[server]\nuser = \"root\"\n"))
            .expect("resolve")
            .expect("root");
        assert_eq!(
            (id.user.as_str(), id.uid, id.gid),
            ("root", Uid::from_raw(0), Gid::from_raw(0))
        );
        let gid = Group::from_name("root")
            .expect("getgrnam")
            .expect("group root")
            .gid;
        let id = resolve(&run_as("[server]\nuser = \"root\"\ngroup = \"root\"\n"))
            .expect("resolve")
            .expect("root");
        assert_eq!((id.group.as_str(), id.gid), ("root", gid));
    }

    #[test]
    fn an_unknown_name_points_at_its_line() {
        let err = resolve(&run_as("[server]\nuser = \"embargo-no-such-user\"\n"))
            .expect_err("unknown user");
        assert_eq!(
            err.to_string(),
            "/etc/embargo/embargo.toml:2:8: server.user: no such user \"embargo-no-such-user\" on this system"
        );
        let err = resolve(&run_as(
            "[server]\nuser = \"root\"\ngroup = \"embargo-no-such-group\"\n",
        ))
        .expect_err("unknown group");
        assert_eq!(
            err.to_string(),
            "/etc/embargo/embargo.toml:3:9: server.group: no such group \"embargo-no-such-group\" on this system"
        );
    }
}
