//! A list's number for the life of the process ([`ListSlot`]), and the
//! table that gives them out ([`ListSlots`]). Query events, counters and
//! the hit report carry the number, not the name, and a reload never
//! gives a number to another list. The lowest room that knows a list by
//! name: `groups` (whose names take slots too), `state` and `observe` all
//! use it, and it uses nothing of theirs.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// A list's number for the life of the process: what a query event and
/// the per-worker block counters carry instead of the list's name or its
/// place in one snapshot, which a reload may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListSlot(pub u16);

impl ListSlot {
    /// No list (an event that is not a block).
    pub const NONE: Self = Self(u16::MAX);
}

/// Gives each list name a [`ListSlot`] the first time it is seen and the
/// same slot ever after, never reusing one while the process lives: a
/// reload keeps the slot of a list that stays and gives a new list a new
/// one, so an event recorded before a reload never names the wrong list
/// after it. Shared by every snapshot built from the first (see
/// `state::Snapshot::rebuild`).
#[derive(Debug, Default)]
pub struct ListSlots {
    inner: RwLock<SlotTable>,
}

#[derive(Debug, Default)]
struct SlotTable {
    by_name: HashMap<Arc<str>, ListSlot>,
    names: Vec<Arc<str>>,
}

impl ListSlots {
    /// The slot of `name`, assigned now if it has none. Past 65,535 names
    /// in one process every new name shares [`ListSlot::NONE`].
    pub fn slot(&self, name: &str) -> ListSlot {
        if let Some(s) = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_name
            .get(name)
        {
            return *s;
        }
        let mut t = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = t.by_name.get(name) {
            return *s;
        }
        let Some(slot) = u16::try_from(t.names.len())
            .ok()
            .filter(|n| *n != ListSlot::NONE.0)
            .map(ListSlot)
        else {
            return ListSlot::NONE;
        };
        let name: Arc<str> = Arc::from(name);
        t.names.push(name.clone());
        t.by_name.insert(name, slot);
        slot
    }

    /// The name a slot was given.
    pub fn name(&self, slot: ListSlot) -> Option<Arc<str>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .names
            .get(usize::from(slot.0))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_its_slot_and_a_slot_is_never_reused() {
        let slots = ListSlots::default();
        assert_eq!(slots.slot("a"), ListSlot(0));
        assert_eq!(slots.slot("b"), ListSlot(1));
        assert_eq!(slots.slot("a"), ListSlot(0));
        assert_eq!(slots.slot("c"), ListSlot(2));
        assert_eq!(slots.name(ListSlot(1)).as_deref(), Some("b"));
        assert_eq!(slots.name(ListSlot(3)), None);
        assert_eq!(slots.name(ListSlot::NONE), None);
    }
}
