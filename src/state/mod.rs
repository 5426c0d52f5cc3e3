//! Everything a query needs to be decided, frozen together: the matcher, the
//! policies its entries point at, the lists they came from, and the client
//! groups that say which lists apply to whom.
//!
//! A name listed by several lists is stored once. Without client groups
//! (and with every list inspecting CNAMEs) it keeps the first list's policy,
//! and a matcher id is a policy id. Otherwise the matcher stores, for such
//! a name, the id of its *policy set* (the lists' policies, in config
//! order; interned, so a thousand names shared by the same two lists are
//! one set), numbered after the policies; each group's table then says
//! which policy answers each id for its clients. See [`crate::groups`].
//!
//! An RPZ `rpz-passthru` is a policy of its own feed (never the allowlist):
//! the matcher stores it like a block, and the lookup, walking from the
//! most specific suffix up, remembers the feeds whose passthru it met and
//! from then on ignores their less specific triggers. Another list's block
//! still blocks, at any depth, so a vendor's passthru never unblocks a name
//! a sanctions list names. At one suffix a block beats a passthru. A client
//! group that does not apply the feed meets neither its triggers nor its
//! passthrus. The walk keeps the feeds it passed on the stack; a name whose
//! suffixes meet the passthrus of more than [`PassedLists::CAPACITY`] feeds
//! (none ever will) stays blocked by the rest.
//!
//! A `Snapshot` is built off the serving path from the config, then published
//! with one `ArcSwap::store`; each query loads it once and keeps it for its
//! whole life, so a reload never changes the rules under a query in flight.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::{Access, RateLimiter};
use crate::config::{Config, ListSpec, Location};
use crate::groups::{self, Group, Groups};
use crate::lists::{self, EntryKind, Format, ListStats, LoadError};
use crate::local::Local;
use crate::matcher::{
    DomainSet, DomainSetBuilder, Hit, Lookup, NameKey, NetSet, NetSetBuilder, PolicyId,
};
use crate::policy::{Action, Policy};
use crate::zones::ForwardZones;

pub use crate::lists::{ListSlot, ListSlots};
pub use nets::NetVerdict;

mod nets;

/// A loaded list: its configuration, what loading found, and its slot
/// (where its blocks are counted: `observe::metrics`).
#[derive(Debug)]
pub struct ListInfo {
    pub spec: ListSpec,
    /// The list's number for the life of the process.
    pub slot: ListSlot,
    pub stats: ListStats,
    /// Why the list is not (fully) in force, if it is not.
    pub note: Option<String>,
    /// Whether this copy's own entries cover the list's canary (false
    /// without one, or when the list was not loaded): `crate::canary`.
    pub canary_listed: bool,
}

/// An allowlist source (the inline `[allow] domains` or one allow file).
#[derive(Debug)]
pub struct AllowInfo {
    pub source: String,
    pub stats: ListStats,
}

/// The frozen rules.
#[derive(Debug)]
pub struct Snapshot {
    pub set: DomainSet,
    /// The listed networks (`ips` lists, RPZ `rpz-ip` triggers) that
    /// forwarded answers' addresses are checked against; their ids are
    /// policy ids. Empty when no list has any: see `nets.rs`.
    pub nets: NetSet,
    /// Indexed by `PolicyId`; index 0 is the allowlist and is never used to
    /// answer. After the policies the matcher's ids point at come the
    /// variants that client groups' own actions answer with.
    pub policies: Vec<Policy>,
    /// The policy sets: matcher id `policy_ids + i` stands for `sets[i]`.
    pub sets: Vec<Vec<PolicyId>>,
    /// The policies the matcher's ids can name (the rest are variants).
    pub policy_ids: usize,
    /// Which lists apply to which clients.
    pub groups: Groups,
    /// Bit `id` set when matcher id `id` is an RPZ passthru or a policy
    /// set holding one; empty when no list has a passthru.
    passthru: Box<[u64]>,
    /// No groups, no sets and no passthrus: a matcher id is the policy that
    /// answers, for every client (the hot path's one branch).
    plain: bool,
    pub lists: Vec<ListInfo>,
    pub allow: Vec<AllowInfo>,
    /// List name → slot, shared with the snapshots before and after this one.
    pub slots: Arc<ListSlots>,
    /// Who may ask (`[access]`).
    pub access: Access,
    /// The rate limiter, `None` when `[rate_limit]` is off. Shared by
    /// every worker; a reload that keeps its settings keeps its table.
    pub limiter: Option<Arc<RateLimiter>>,
    /// When this snapshot was built, seconds since the epoch: when its
    /// local lists were last read.
    pub loaded_at: u64,
    /// The names answered here (`[local_zones]`, `[[records]]`, hosts
    /// files), asked before the lists: the operator's own names.
    pub local: Local,
    /// Which `[[forward]]` set a name goes to (an index into
    /// `Config::forward`), asked when a query is forwarded.
    pub forward_zones: ForwardZones,
    /// This snapshot's number, different from every other one the process
    /// built: what the cache stamps an answer's CNAME inspection with, so
    /// that a hit inspected under older rules is inspected again.
    pub generation: u32,
}

/// The generation of the next snapshot built. Snapshots are built one at a
/// time (the reload loop), but a counter shared by all keeps two of them
/// from ever sharing a number; 4 billion reloads would wrap it.
static GENERATIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn next_generation() -> u32 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("list {list:?} (declared at {location}): {source}")]
    List {
        list: String,
        location: Location,
        source: LoadError,
    },
    #[error("allow file {0}")]
    Allow(LoadError),
    #[error("more than {} distinct list actions", PolicyId::MAX)]
    TooManyPolicies,
    #[error(transparent)]
    Local(#[from] crate::local::Error),
}

/// What the rules say about a name, for one client group.
#[derive(Debug, Clone, Copy)]
pub enum Verdict<'a> {
    /// Not listed by a list the group applies.
    Miss,
    /// Allowlisted (for everyone): the suffix that matched.
    Allowed { suffix: usize },
    /// Blocked: the policy that answers, and where the listed suffix starts.
    Blocked { policy: &'a Policy, suffix: usize },
}

impl Snapshot {
    /// An empty snapshot (blocks nothing): what a server starts from in tests.
    pub fn empty() -> Self {
        Self {
            set: DomainSet::default(),
            nets: NetSet::default(),
            policies: vec![allow_placeholder()],
            sets: Vec::new(),
            policy_ids: 1,
            groups: Groups::default(),
            passthru: Box::default(),
            plain: true,
            lists: Vec::new(),
            allow: Vec::new(),
            slots: Arc::default(),
            access: Access::default(),
            limiter: None,
            loaded_at: unix_now(),
            local: Local::default(),
            forward_zones: ForwardZones::default(),
            generation: next_generation(),
        }
    }

    /// Loads every list and allow source of `config` and freezes them.
    pub fn build(config: &Config) -> Result<Self, BuildError> {
        Self::build_with(config, Arc::default())
    }

    /// Builds the snapshot that replaces `previous`: lists keep their
    /// slots, and the rate limiter its table if its settings stay (see
    /// [`Snapshot::keep_limiter`]).
    pub fn rebuild(config: &Config, previous: &Self) -> Result<Self, BuildError> {
        let mut snap = Self::build_with(config, previous.slots.clone())?;
        snap.keep_limiter(previous);
        Ok(snap)
    }

    fn build_with(config: &Config, slots: Arc<ListSlots>) -> Result<Self, BuildError> {
        // Size the builder from the line count (one name per line in most
        // lists): a growing Vec would double past the need, and a reload's
        // peak memory is the old set plus this builder.
        let estimate: usize = config
            .lists
            .iter()
            .map(|l| l.path.as_path())
            .chain(config.allow_files.iter().map(|p| p.as_path()))
            .map(count_lines)
            .sum();
        let mut builder = DomainSetBuilder::new().with_capacity(estimate);
        let mut nets = NetSetBuilder::new();
        let mut policies = vec![allow_placeholder()];
        let mut lists = Vec::with_capacity(config.lists.len());
        // Each feed's passthru policy, in id order.
        let mut passthrus: Vec<PolicyId> = Vec::new();

        let now = std::time::SystemTime::now();
        for (index, spec) in config.lists.iter().enumerate() {
            // Each list's own action, plus RPZ per-record actions created on first use.
            let mut ids: HashMap<Action, PolicyId> = HashMap::new();
            let mut policy_for = |action: Action, policies: &mut Vec<Policy>| -> Option<PolicyId> {
                if let Some(id) = ids.get(&action) {
                    return Some(*id);
                }
                let id = push_policy(policies, index, spec, action, &spec.ede_text())?;
                ids.insert(action, id);
                Some(id)
            };
            let default =
                policy_for(spec.action, &mut policies).ok_or(BuildError::TooManyPolicies)?;
            let mut overflow = false;
            // An expired list blocks nothing, and says so (crate::expiry
            // pokes a reload at the moment it expires).
            crate::expiry::warn_at_load(spec, now);
            if let Some(at) = spec.expires.filter(|_| spec.expired(now)) {
                lists.push(ListInfo {
                    slot: slots.slot(&spec.name),
                    spec: spec.clone(),
                    stats: ListStats::default(),
                    note: Some(crate::expiry::note(at)),
                    canary_listed: false,
                });
                continue;
            }
            if spec.source.is_remote() && !spec.path.exists() {
                // Never fetched and no network yet: serve without it, say so.
                tracing::error!(list = %spec.name, source = %spec.source, "no downloaded copy yet: list not enforced until the first fetch succeeds");
                lists.push(ListInfo {
                    slot: slots.slot(&spec.name),
                    spec: spec.clone(),
                    stats: ListStats::default(),
                    note: Some("not downloaded yet".into()),
                    canary_listed: false,
                });
                continue;
            }
            // A list that must be signed is never loaded unsigned: the copy
            // is verified against the signature kept beside it, every load,
            // at start too (see `source::signature`).
            if let Err(e) = crate::source::signature::verify_copy(spec) {
                tracing::error!(list = %spec.name, error = %e, "the copy's signature does not verify: list not enforced until a download that does");
                lists.push(ListInfo {
                    slot: slots.slot(&spec.name),
                    spec: spec.clone(),
                    stats: ListStats::default(),
                    note: Some(format!("signature: {e}")),
                    canary_listed: false,
                });
                continue;
            }
            let list_err = |source| BuildError::List {
                list: spec.name.clone(),
                location: spec.location.clone(),
                source,
            };
            let format = lists::detect_file(&spec.path, spec.format).map_err(list_err)?;
            // Whether the list's own entries cover its canary: one
            // comparison per entry of a list that has one, at load time.
            let canary = spec
                .canary
                .as_deref()
                .and_then(|c| NameKey::from_text(c, true).ok());
            let mut canary_listed = false;
            let mut see = |key: &NameKey, scope, blocks: bool| {
                if let Some(c) = &canary {
                    canary_listed |= blocks && crate::matcher::Scope::covers(scope, key, c);
                }
            };
            if format == Format::OfacSdn {
                // One policy per sanctioned entity, so the EDE and `check`
                // name the entity and its programs; past the policy limit the
                // list's own policy (and its provenance) is used.
                let mut per_entity: HashMap<usize, PolicyId> = HashMap::new();
                let mut warned = false;
                let stats = lists::load_ofac(&spec.path, &mut |key, entity_index, entity| {
                    let id = *per_entity.entry(entity_index).or_insert_with(|| {
                        let text = format!("{}: {}", spec.ede_text(), entity.describe());
                        match push_policy(&mut policies, index, spec, spec.action, &text) {
                            Some(id) => id,
                            None => {
                                if !warned {
                                    tracing::warn!(list = %spec.name, "too many entities for one policy each: the rest share the list's");
                                    warned = true;
                                }
                                default
                            }
                        }
                    });
                    see(key, crate::matcher::Scope::Subtree, true);
                    builder.insert(key, id);
                })
                .map_err(list_err)?;
                lists.push(ListInfo {
                    slot: slots.slot(&spec.name),
                    spec: spec.clone(),
                    stats,
                    note: None,
                    canary_listed,
                });
                continue;
            }
            // The feed's passthru: a policy of this list that never answers.
            let mut passthru: Option<PolicyId> = None;
            let mut id_for = |kind: EntryKind, policies: &mut Vec<Policy>| match kind {
                EntryKind::Block => Some(default),
                EntryKind::Passthru => passthru.or_else(|| {
                    let id = push_policy(policies, index, spec, spec.action, "")?;
                    passthrus.push(id);
                    passthru = Some(id);
                    Some(id)
                }),
                EntryKind::Nxdomain => policy_for(Action::Nxdomain, policies),
                EntryKind::Nodata => policy_for(Action::Nodata, policies),
            };
            // Networks wait for the names: both need `id_for`.
            let mut list_nets = Vec::new();
            let stats = lists::load_file_with_nets(
                &spec.path,
                Some(format),
                &mut |key, rule| {
                    see(key, rule.scope, rule.kind != EntryKind::Passthru);
                    match id_for(rule.kind, &mut policies) {
                        Some(id) => builder.insert_scoped(key, id, rule.scope),
                        None => overflow = true,
                    }
                },
                &mut |net| list_nets.push(net),
            )
            .map_err(list_err)?;
            if spec.inspect_answers {
                for n in list_nets {
                    match id_for(n.kind, &mut policies) {
                        Some(id) => nets.insert(n.net, id),
                        None => overflow = true,
                    }
                }
            }
            if overflow {
                return Err(BuildError::TooManyPolicies);
            }
            lists.push(ListInfo {
                slot: slots.slot(&spec.name),
                spec: spec.clone(),
                stats,
                note: None,
                canary_listed,
            });
        }

        let mut allow = Vec::new();
        if !config.allow_domains.is_empty() {
            let mut stats = ListStats {
                format: Some(Format::Domains),
                ..ListStats::default()
            };
            for d in &config.allow_domains {
                stats.lines += 1;
                let (name, explicit) = match d.name.strip_prefix("*.") {
                    Some(rest) => (rest, true),
                    None => (d.name.as_str(), false),
                };
                match NameKey::from_text(name, explicit) {
                    Ok(key) => {
                        stats.names += 1;
                        builder.insert(&key, PolicyId::ALLOW);
                    }
                    Err(e) => {
                        stats.invalid += 1;
                        stats.warnings.push(lists::LineWarning {
                            line: d.location.line,
                            message: format!("{:?}: {e}", d.name),
                        });
                    }
                }
            }
            allow.push(AllowInfo {
                source: config.path.display().to_string(),
                stats,
            });
        }
        for path in &config.allow_files {
            // Every entry of an allow file allows, whatever its syntax says.
            let stats = lists::load_file(path, None, &mut |key, _| {
                builder.insert(key, PolicyId::ALLOW)
            })
            .map_err(BuildError::Allow)?;
            allow.push(AllowInfo {
                source: path.display().to_string(),
                stats,
            });
        }

        // Shared names become policy sets when a client group or a list
        // that does not inspect CNAMEs may need a list other than the first,
        // or a passthru at a name must not hide another list's block there.
        let needs_sets = !config.groups.is_empty()
            || config.lists.iter().any(|l| !l.inspect_cname)
            || !passthrus.is_empty();
        let policy_ids = policies.len();
        let mut sets: Vec<Vec<PolicyId>> = Vec::new();
        let (set, dups) = if needs_sets {
            let mut interned: HashMap<Vec<PolicyId>, PolicyId> = HashMap::new();
            let mut warned = false;
            builder.build_merging(|run| {
                if let Some(id) = interned.get(run) {
                    return *id;
                }
                let id = u16::try_from(policy_ids + sets.len()).ok();
                let Some(id) = id.map(PolicyId) else {
                    if !warned {
                        tracing::warn!("too many distinct sets of lists sharing names: the rest answer as their first list, for every group");
                        warned = true;
                    }
                    // Never a passthru, which would hide the blocks beside it.
                    return run
                        .iter()
                        .copied()
                        .find(|p| passthrus.binary_search(p).is_err())
                        .unwrap_or(run[0]);
                };
                sets.push(run.to_vec());
                interned.insert(run.to_vec(), id);
                id
            })
        } else {
            builder.build()
        };
        for (id, count) in dups.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            if let Some(p) = policies.get(id).filter(|_| id != 0) {
                lists[p.list].stats.duplicates += u64::from(*count);
            } else if let Some(a) = allow.first_mut() {
                a.stats.duplicates += u64::from(*count);
            }
        }
        // The local names and forwarded zones: from the config alone (the
        // hosts files were read with it), frozen like the lists.
        let local = Local::build(&config.local, &config.forward)?;
        let forward_zones = ForwardZones::new(&config.forward);
        let passthru = passthru_bits(&passthrus, policy_ids, &sets);
        let groups = build_groups(config, &mut policies, policy_ids, &sets, &passthrus, &slots);
        Ok(Self {
            set,
            nets: nets.build(),
            plain: !groups.configured() && sets.is_empty() && passthru.is_empty(),
            passthru,
            policies,
            sets,
            policy_ids,
            groups,
            lists,
            allow,
            slots,
            access: config.access.clone(),
            limiter: RateLimiter::new(&config.rate_limit).map(Arc::new),
            loaded_at: unix_now(),
            local,
            forward_zones,
            generation: next_generation(),
        })
    }

    /// What `name` gets from the lists `group` applies: the one matcher
    /// lookup of the query path. Without groups, policy sets or passthrus a
    /// matcher id is the answering policy; otherwise the group's table says
    /// which policy answers it, and ids it has none for are not seen at all
    /// (a less specific listed suffix may still block).
    #[inline]
    pub fn verdict(&self, name: &NameKey, group: &Group) -> Verdict<'_> {
        if self.plain {
            return match self.set.lookup(name) {
                Lookup::Miss => Verdict::Miss,
                Lookup::Allowed { suffix } => Verdict::Allowed { suffix },
                Lookup::Blocked(hit) => match self.policy(hit.policy) {
                    Some(policy) => Verdict::Blocked {
                        policy,
                        suffix: hit.suffix,
                    },
                    None => Verdict::Miss,
                },
            };
        }
        self.verdict_by(name, group, Group::answer)
    }

    /// [`Self::verdict`] for a name reached through a CNAME or DNAME: only
    /// the lists with `inspect_cname` are seen.
    pub fn verdict_through_cname(&self, name: &NameKey, group: &Group) -> Verdict<'_> {
        self.verdict_by(name, group, Group::cname_answer)
    }

    /// The lookup through one of `group`'s tables (`table`: the policy
    /// answering a matcher id for the group, if any).
    #[inline]
    fn verdict_by(
        &self,
        name: &NameKey,
        group: &Group,
        table: impl Fn(&Group, PolicyId) -> Option<u32>,
    ) -> Verdict<'_> {
        let lookup = if self.passthru.is_empty() {
            self.set
                .lookup_with(name, |id| table(group, id).map(|_| id))
        } else {
            let mut passed = PassedLists::default();
            self.set
                .lookup_with(name, |id| self.take(id, group, &table, &mut passed))
        };
        match lookup {
            Lookup::Miss => Verdict::Miss,
            Lookup::Allowed { suffix } => Verdict::Allowed { suffix },
            Lookup::Blocked(hit) => {
                match table(group, hit.policy).and_then(|i| self.policies.get(i as usize)) {
                    Some(policy) => Verdict::Blocked {
                        policy,
                        suffix: hit.suffix,
                    },
                    None => Verdict::Miss,
                }
            }
        }
    }

    /// Decides one matched entry for `group` when passthrus exist: the id
    /// whose table entry answers (the entry's own, or the member of its
    /// set that answers once the feeds already passed are left out), or
    /// `None` to look further up. A block at this suffix wins over a
    /// passthru at the same suffix; the passthrus here, of the feeds the
    /// group applies, then join `passed`.
    #[inline]
    fn take(
        &self,
        id: PolicyId,
        group: &Group,
        table: &impl Fn(&Group, PolicyId) -> Option<u32>,
        passed: &mut PassedLists,
    ) -> Option<PolicyId> {
        if passed.is_empty() && !self.is_passthru(id) {
            return table(group, id).map(|_| id);
        }
        let members = self.members(&id);
        let block = members.iter().copied().find(|&m| {
            !self.is_passthru(m)
                && self.policy(m).is_some_and(|p| !passed.contains(p.list))
                && table(group, m).is_some()
        });
        if block.is_some() {
            return block;
        }
        for &m in members {
            if self.is_passthru(m)
                && let Some(p) = self.policy(m)
                && group.applies(p.list)
            {
                passed.insert(p.list);
            }
        }
        None
    }

    /// Whether matcher id `id` is a passthru or a set holding one.
    #[inline]
    fn is_passthru(&self, id: PolicyId) -> bool {
        let i = usize::from(id.0);
        self.passthru
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// The policies a matcher id stands for: itself, or its set's members
    /// in config order.
    #[inline]
    fn members<'a>(&'a self, id: &'a PolicyId) -> &'a [PolicyId] {
        match usize::from(id.0).checked_sub(self.policy_ids) {
            Some(i) => self.sets.get(i).map_or(&[], Vec::as_slice),
            None => std::slice::from_ref(id),
        }
    }

    /// Whether some group blocks `name` when reached through a CNAME (so a
    /// cached answer through it must be looked at again per group).
    pub fn any_group_blocks_through_cname(&self, name: &NameKey) -> bool {
        if !self.passthru.is_empty() {
            // What a passthru hides depends on the group: ask each.
            return self
                .groups
                .iter()
                .any(|g| matches!(self.verdict_through_cname(name, g), Verdict::Blocked { .. }));
        }
        matches!(
            self.set.lookup_with(name, |id| self
                .groups
                .iter()
                .any(|g| g.cname_answer(id).is_some())
                .then_some(id)),
            Lookup::Blocked(_)
        )
    }

    /// The most specific entry covering `name` that lists `group` does not
    /// apply block with, and those lists in config order (for `check`:
    /// what the group leaves out).
    pub fn left_out(&self, name: &NameKey, group: &Group) -> Option<(Vec<&ListInfo>, Hit)> {
        let mut found = None;
        self.set.each_match(name, |hit| {
            if found.is_some() || hit.policy == PolicyId::ALLOW {
                return;
            }
            let mut lists: Vec<&ListInfo> = Vec::new();
            for m in self.members(&hit.policy) {
                let Some(index) = self.policy(*m).map(|p| p.list) else {
                    continue;
                };
                if self.is_passthru(*m) || group.applies(index) {
                    continue;
                }
                if let Some(l) = self.lists.get(index)
                    && !lists.iter().any(|o| std::ptr::eq(*o, l))
                {
                    lists.push(l);
                }
            }
            if !lists.is_empty() {
                found = Some((lists, hit));
            }
        });
        found
    }

    /// The most specific passthru covering `name` of a feed `group`
    /// applies, and that feed (for `check`: why a feed lets a name by).
    pub fn passthru_of(&self, name: &NameKey, group: &Group) -> Option<(&ListInfo, Hit)> {
        let mut found = None;
        self.set.each_match(name, |hit| {
            if found.is_some() {
                return;
            }
            found = self.members(&hit.policy).iter().find_map(|m| {
                let list = self.policy(*m).map(|p| p.list)?;
                (self.is_passthru(*m) && group.applies(list))
                    .then(|| self.lists.get(list))
                    .flatten()
                    .map(|l| (l, hit))
            });
        });
        found
    }

    /// Takes over `old`'s rate limiter when the settings are the same, so a
    /// reload does not hand every limited client a fresh allowance.
    pub fn keep_limiter(&mut self, old: &Self) {
        if let (Some(new), Some(old)) = (&self.limiter, &old.limiter)
            && new.settings() == old.settings()
        {
            self.limiter = Some(old.clone());
        }
    }

    /// The policy for an id from this snapshot's matcher.
    #[inline]
    pub fn policy(&self, id: PolicyId) -> Option<&Policy> {
        self.policies.get(usize::from(id.0))
    }

    /// The list a policy belongs to.
    #[inline]
    pub fn list_of(&self, policy: &Policy) -> Option<&ListInfo> {
        self.lists.get(policy.list)
    }

    /// Whether the list in `slot` is loaded in this snapshot.
    pub fn has_list(&self, slot: ListSlot) -> bool {
        self.lists.iter().any(|l| l.slot == slot)
    }
}

/// The configured groups (and the default group when none is configured or
/// none is named `default`), with their tables filled: for every matcher id,
/// the policy that answers it for the group (its first listed policy whose
/// list the group applies, in config order), as the group's own action
/// where it has one. The variants for those actions are added to `policies`.
fn build_groups(
    config: &Config,
    policies: &mut Vec<Policy>,
    policy_ids: usize,
    sets: &[Vec<PolicyId>],
    passthrus: &[PolicyId],
    slots: &ListSlots,
) -> Groups {
    let all: Vec<usize> = (0..config.lists.len()).collect();
    let mut list: Vec<Group> = config
        .groups
        .iter()
        .map(|g| {
            Group::new(
                g.name.clone(),
                g.clients.clone(),
                g.lists.clone().unwrap_or_else(|| all.clone()),
                g.action,
            )
            .with_client_ids(g.client_ids.clone())
        })
        .collect();
    let default = match list.iter().position(|g| g.name == groups::DEFAULT) {
        Some(i) => i,
        None => {
            list.push(Group::new(groups::DEFAULT.into(), Vec::new(), all, None));
            list.len() - 1
        }
    };
    let ids = policy_ids + sets.len();
    let mut variants: HashMap<(usize, Action), u32> = HashMap::new();
    let mut added: Vec<Policy> = Vec::new();
    for group in &mut list {
        let (lists, action) = (group.lists.clone(), group.action);
        group.set_answers(ids, |id, through_cname| {
            if id == 0 {
                return None;
            }
            let single = [PolicyId(u16::try_from(id).ok()?)];
            let members: &[PolicyId] = match id.checked_sub(policy_ids) {
                Some(i) => sets.get(i)?,
                None => &single,
            };
            // A passthru never answers (see `Snapshot::take`).
            let p = members
                .iter()
                .filter(|p| passthrus.binary_search(p).is_err())
                .map(|p| usize::from(p.0))
                .find(|&p| {
                    policies.get(p).is_some_and(|policy| {
                        lists.binary_search(&policy.list).is_ok()
                            && (!through_cname
                                || config
                                    .lists
                                    .get(policy.list)
                                    .is_some_and(|l| l.inspect_cname))
                    })
                })?;
            let policy = policies.get(p)?;
            match action {
                Some(a) if a != policy.action => {
                    let next = u32::try_from(policies.len() + added.len()).ok()?;
                    Some(*variants.entry((p, a)).or_insert_with(|| {
                        added.push(policy.with_action(a));
                        next
                    }))
                }
                _ => u32::try_from(p).ok(),
            }
        });
    }
    policies.extend(added);
    // Query-log records name the group through the same interner as the
    // lists (a name is a name), and only when groups are configured.
    if !config.groups.is_empty() {
        for group in &mut list {
            group.slot = slots.slot(&group.name);
        }
    }
    let default = u16::try_from(default).unwrap_or(0);
    Groups::new(list, default, !config.groups.is_empty())
}

/// The bitset of matcher ids that are a passthru (`passthrus`, sorted) or
/// a set holding one; empty without passthrus, so that the query path
/// tests one length.
fn passthru_bits(passthrus: &[PolicyId], policy_ids: usize, sets: &[Vec<PolicyId>]) -> Box<[u64]> {
    if passthrus.is_empty() {
        return Box::default();
    }
    let mut bits = vec![0u64; (policy_ids + sets.len()).div_ceil(64)];
    let mut mark = |id: usize| {
        if let Some(w) = bits.get_mut(id / 64) {
            *w |= 1 << (id % 64);
        }
    };
    for p in passthrus {
        mark(usize::from(p.0));
    }
    for (i, set) in sets.iter().enumerate() {
        if set.iter().any(|m| passthrus.binary_search(m).is_ok()) {
            mark(policy_ids + i);
        }
    }
    bits.into_boxed_slice()
}

/// The feeds whose passthru one lookup has met, on the stack: their less
/// specific triggers no longer count for the name (see the module doc).
#[derive(Debug, Default)]
struct PassedLists {
    lists: [u16; Self::CAPACITY],
    len: usize,
}

impl PassedLists {
    /// More feeds than any name's suffixes will pass; past it a feed's
    /// passthru is not remembered, so its block stays (the safe side).
    const CAPACITY: usize = 16;

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn contains(&self, list: usize) -> bool {
        self.lists[..self.len]
            .iter()
            .any(|l| usize::from(*l) == list)
    }

    fn insert(&mut self, list: usize) {
        if let Ok(l) = u16::try_from(list)
            && self.len < Self::CAPACITY
            && !self.contains(list)
        {
            self.lists[self.len] = l;
            self.len += 1;
        }
    }
}

/// Adds a policy for list `index` answering with `action` and the EDE text
/// `text`; `None` once the 16-bit policy ids are used up.
fn push_policy(
    policies: &mut Vec<Policy>,
    index: usize,
    spec: &ListSpec,
    action: Action,
    text: &str,
) -> Option<PolicyId> {
    let id = u16::try_from(policies.len()).ok()?;
    policies.push(Policy::new(
        index,
        action,
        spec.ttl,
        spec.sinkhole_ipv4,
        spec.sinkhole_ipv6,
        spec.ede,
        text,
    ));
    Some(PolicyId(id))
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lines in a file (0 if unreadable: loading reports that properly).
fn count_lines(path: &std::path::Path) -> usize {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut lines = 1;
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count();
    }
    lines
}

fn allow_placeholder() -> Policy {
    use crate::policy::EdeCode;
    Policy::new(
        usize::MAX,
        Action::Nodata,
        0,
        std::net::Ipv4Addr::UNSPECIFIED,
        std::net::Ipv6Addr::UNSPECIFIED,
        EdeCode::Blocked,
        "",
    )
}

#[cfg(test)]
mod tests;
