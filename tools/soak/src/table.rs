//! The queries in flight on one socket or connection, by ID: when each was
//! sent, to which row and class it is charged, and the order they were
//! sent in, so that those older than the timeout are found without a scan.

use std::collections::VecDeque;

/// The IDs in flight on one socket or connection.
pub(crate) struct Table {
    /// IDs to use, oldest freed first: an ID comes back only after every
    /// other one, so a very late answer is unlikely to meet a new query.
    pub(crate) free: VecDeque<u16>,
    pub(crate) slots: Vec<Slot>,
    order: VecDeque<(u16, u32)>,
    pub(crate) inflight: usize,
}

/// One query in flight.
#[derive(Clone, Copy, Default)]
pub(crate) struct Slot {
    /// ns since the run's start.
    pub(crate) sent_ns: u64,
    seq: u32,
    pub(crate) row: u16,
    pub(crate) class: u8,
    /// The malformed kind, for that class.
    pub(crate) kind: u8,
    live: bool,
}

impl Table {
    /// A table of `size` IDs (at most 65,536).
    pub(crate) fn new(size: usize) -> Self {
        Self {
            free: (0..size.min(65536) as u32).map(|i| i as u16).collect(),
            slots: vec![Slot::default(); size.min(65536)],
            order: VecDeque::new(),
            inflight: 0,
        }
    }

    /// An ID for a query sent at `now`, or None when all are in flight.
    pub(crate) fn take(&mut self, now: u64, row: usize, class: usize, kind: usize) -> Option<u16> {
        let id = self.free.pop_front()?;
        let s = &mut self.slots[usize::from(id)];
        s.sent_ns = now;
        s.seq = s.seq.wrapping_add(1);
        s.row = row as u16;
        s.class = class as u8;
        s.kind = kind as u8;
        s.live = true;
        self.order.push_back((id, s.seq));
        self.inflight += 1;
        Some(id)
    }

    /// Gives back an ID whose query was not sent after all.
    pub(crate) fn untake(&mut self, id: u16) {
        if let Some(s) = self.slots.get_mut(usize::from(id))
            && s.live
        {
            s.live = false;
            self.free.push_back(id);
            self.inflight -= 1;
        }
    }

    /// The query an answer with `id` belongs to, if it is still waited for.
    pub(crate) fn finish(&mut self, id: u16) -> Option<Slot> {
        let s = self.slots.get_mut(usize::from(id))?;
        if !s.live {
            return None;
        }
        s.live = false;
        self.free.push_back(id);
        self.inflight -= 1;
        Some(*s)
    }

    /// Every query sent before `cutoff` and still waited for.
    pub(crate) fn expire(&mut self, cutoff: u64, mut f: impl FnMut(Slot)) {
        while let Some(&(id, seq)) = self.order.front() {
            let s = self.slots[usize::from(id)];
            if s.live && s.seq == seq {
                if s.sent_ns >= cutoff {
                    break;
                }
                self.slots[usize::from(id)].live = false;
                self.free.push_back(id);
                self.inflight -= 1;
                f(s);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_finishes_its_query_once() {
        let mut t = Table::new(4);
        let id = t.take(100, 2, 1, 0).unwrap();
        assert_eq!(t.inflight, 1);
        let s = t.finish(id).unwrap();
        assert_eq!((s.sent_ns, s.row, s.class), (100, 2, 1));
        assert!(t.finish(id).is_none(), "a duplicate answer");
        assert_eq!(t.inflight, 0);
    }

    #[test]
    fn ids_come_back_oldest_freed_first_and_run_out() {
        let mut t = Table::new(3);
        let ids: Vec<u16> = (0..3).map(|_| t.take(0, 0, 0, 0).unwrap()).collect();
        assert!(t.take(0, 0, 0, 0).is_none());
        t.finish(ids[1]);
        t.untake(ids[0]);
        assert_eq!(t.take(0, 0, 0, 0), Some(ids[1]));
        assert_eq!(t.take(0, 0, 0, 0), Some(ids[0]));
    }

    #[test]
    fn expire_takes_only_what_is_older_than_the_cutoff() {
        let mut t = Table::new(8);
        let a = t.take(10, 0, 0, 0).unwrap();
        let b = t.take(20, 0, 0, 0).unwrap();
        let _c = t.take(30, 0, 0, 0).unwrap();
        t.finish(a);
        let mut gone = Vec::new();
        t.expire(25, |s| gone.push(s.sent_ns));
        assert_eq!(gone, [20]);
        assert!(t.finish(b).is_none(), "an answer after the timeout");
        assert_eq!(t.inflight, 1);
        t.expire(u64::MAX, |s| gone.push(s.sent_ns));
        assert_eq!((gone.as_slice(), t.inflight), ([20, 30].as_slice(), 0));
    }
}
