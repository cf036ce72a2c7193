//! The sending side of messages between regions: numbered, kept until the transport confirms them, sent again
//! until it does.
//!
//! A region sends a message (a player handed over to another region, a reducer call for another region or for all
//! of them) by committing it: in the same transaction as what it stands for (the player's rows deleted), the shell
//! writes the message into a system table with the number [`Outbox::push`] gave it. After a crash, recovery finds
//! the table's rows and [`Outbox::restore`] takes them back. The shell publishes what [`Outbox::poll_transmit`]
//! hands out, with the id [`message_id`] (the transport drops a second copy of an id it has seen, within its
//! de-duplication window), and once the transport confirms a message (JetStream's publish acknowledgement: the
//! message is stored) calls [`Outbox::handle_confirmed`] and deletes the row. A message the transport did not
//! confirm within `retry` ticks of sending is handed out again. The receiver applies each number once
//! ([`crate::Applied`]), so a message sent twice (a lost confirmation, a crash between publishing and deleting the
//! row) is applied once.
//!
//! # Invariants
//!
//! 1. Numbers start at 1 and increase by one per [`Outbox::push`]; [`Outbox::restore`] continues after the
//!    highest restored number, so a number is never given to two messages.
//! 2. Every message is handed out by [`Outbox::poll_transmit`] at the first poll after it is pushed (or restored),
//!    and again at the first poll `retry` or more ticks after it was last handed out, until it is confirmed; never
//!    after [`Outbox::handle_confirmed`]. Messages are handed out in number order.

use std::collections::BTreeMap;

use crate::layout::RegionId;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// One region.
    Region(RegionId),
    /// Every region (a world-wide broadcast: global chat).
    All,
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Its number.
    pub seq: u64,
    /// Where it goes.
    pub to: Destination,
    /// What it carries (its encoding is the shell's).
    pub payload: Box<[u8]>,
}

#[derive(Debug)]
struct Entry {
    to: Destination,
    payload: Box<[u8]>,
    /// The tick it was last handed out at.
    sent: Option<u64>,
}

/// The messages a region sent that the transport has not confirmed: see the [module docs](self).
#[derive(Debug)]
pub struct Outbox {
    next: u64,
    retry: u64,
    unconfirmed: BTreeMap<u64, Entry>,
}

/// The transport's id of message `seq` of `region` of `world`: the key it de-duplicates on.
#[must_use]
pub fn message_id(world: &str, region: &str, seq: u64) -> String {
    format!("{world}.{region}.{seq}")
}

impl Outbox {
    /// An empty outbox that sends a message again `retry` ticks after it was last sent unconfirmed (at least 1).
    #[must_use]
    pub fn new(retry: u64) -> Outbox {
        Outbox {
            next: 1,
            retry: retry.max(1),
            unconfirmed: BTreeMap::new(),
        }
    }

    /// An outbox recovered from the stored messages (`(seq, to, payload)`: the system table's rows) and the
    /// highest number ever given (the table's sequence: rows of confirmed messages are gone, their numbers are
    /// not free).
    #[must_use]
    pub fn restore(
        retry: u64,
        highest: u64,
        stored: impl IntoIterator<Item = (u64, Destination, Box<[u8]>)>,
    ) -> Outbox {
        let mut outbox = Outbox::new(retry);
        for (seq, to, payload) in stored {
            outbox.next = outbox.next.max(seq + 1);
            outbox.unconfirmed.insert(
                seq,
                Entry {
                    to,
                    payload,
                    sent: None,
                },
            );
        }
        outbox.next = outbox.next.max(highest + 1);
        outbox
    }

    /// Number a new message to `to`; the shell stores it with that number in the transaction that sends it.
    pub fn push(&mut self, to: Destination, payload: Box<[u8]>) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.unconfirmed.insert(
            seq,
            Entry {
                to,
                payload,
                sent: None,
            },
        );
        seq
    }

    /// Take a message the shell numbered itself (the outbox table's sequence gave `seq`, in a committed
    /// transaction): as [`Outbox::push`], with that number. A number already taken is ignored (`false`).
    pub fn track(&mut self, seq: u64, to: Destination, payload: Box<[u8]>) -> bool {
        if seq == 0 || seq < self.next && !self.unconfirmed.contains_key(&seq) {
            return false;
        }
        if self.unconfirmed.contains_key(&seq) {
            return false;
        }
        self.next = self.next.max(seq + 1);
        self.unconfirmed.insert(
            seq,
            Entry {
                to,
                payload,
                sent: None,
            },
        );
        true
    }

    /// Forget a message pushed in a transaction that then rolled back (nothing of it was stored). Its number stays
    /// used.
    pub fn cancel(&mut self, seq: u64) {
        self.unconfirmed.remove(&seq);
    }

    /// The messages to publish at tick `now`: new ones, and those unconfirmed `retry` ticks after they were last
    /// handed out.
    pub fn poll_transmit(&mut self, now: u64) -> Vec<Transmit> {
        let retry = self.retry;
        self.unconfirmed
            .iter_mut()
            .filter(|(_, e)| e.sent.is_none_or(|t| now.saturating_sub(t) >= retry))
            .map(|(&seq, e)| {
                e.sent = Some(now);
                Transmit {
                    seq,
                    to: e.to,
                    payload: e.payload.clone(),
                }
            })
            .collect()
    }

    /// The transport confirmed message `seq`: it is not sent again (the shell deletes its row). `false` if it was
    /// not waiting (confirmed before: a duplicate confirmation).
    pub fn handle_confirmed(&mut self, seq: u64) -> bool {
        self.unconfirmed.remove(&seq).is_some()
    }

    /// How many messages wait for confirmation.
    #[must_use]
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap as Map, BTreeSet};

    #[derive(Clone, Debug)]
    enum Op {
        Push,
        Poll(u64),
        Confirm(u64),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            3 => (0u64..5).prop_map(Op::Poll),
            2 => (1u64..20).prop_map(Op::Confirm),
            1 => Just(Op::Restart),
        ]
    }

    #[test]
    fn restore_continues_the_numbers() {
        let to = Destination::Region(RegionId(1));
        let o = Outbox::restore(5, 9, [(4, to, Box::from(&b"x"[..]))]);
        assert_eq!(o.unconfirmed(), 1);
        let mut o = o;
        assert_eq!(o.push(Destination::All, Box::default()), 10);
        assert_eq!(message_id("demo", "west", 10), "demo.west.10");
    }

    proptest! {
        /// Invariants 1 and 2 against a model: the stored rows (what survives a restart), the highest number, and
        /// when each message was last handed out.
        #[test]
        fn messages_go_out_until_confirmed_and_never_after(ops in proptest::collection::vec(op(), 1..80)) {
            let retry = 3;
            let mut outbox = Outbox::new(retry);
            let mut stored: Map<u64, Box<[u8]>> = Map::new();
            let mut highest = 0u64;
            let mut last_sent: Map<u64, Option<u64>> = Map::new();
            let mut confirmed = BTreeSet::new();
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Push => {
                        let payload: Box<[u8]> = highest.to_be_bytes().into();
                        let seq = outbox.push(Destination::All, payload.clone());
                        prop_assert_eq!(seq, highest + 1, "numbers increase by one");
                        highest = seq;
                        stored.insert(seq, payload);
                        last_sent.insert(seq, None);
                    }
                    Op::Poll(dt) => {
                        now += dt;
                        let out = outbox.poll_transmit(now);
                        let seqs: Vec<u64> = out.iter().map(|t| t.seq).collect();
                        let want: Vec<u64> = last_sent.iter()
                            .filter(|(_, s)| s.is_none_or(|t| now - t >= retry))
                            .map(|(&k, _)| k)
                            .collect();
                        prop_assert_eq!(&seqs, &want);
                        for t in out {
                            prop_assert!(!confirmed.contains(&t.seq), "confirmed {} sent again", t.seq);
                            prop_assert_eq!(&t.payload, &stored[&t.seq]);
                            last_sent.insert(t.seq, Some(now));
                        }
                    }
                    Op::Confirm(seq) => {
                        let waiting = last_sent.remove(&seq).is_some();
                        prop_assert_eq!(outbox.handle_confirmed(seq), waiting);
                        if waiting {
                            stored.remove(&seq);
                            confirmed.insert(seq);
                        }
                    }
                    Op::Restart => {
                        outbox = Outbox::restore(
                            retry,
                            highest,
                            stored.iter().map(|(&s, p)| (s, Destination::All, p.clone())),
                        );
                        for s in last_sent.values_mut() {
                            *s = None;
                        }
                    }
                }
                prop_assert_eq!(outbox.unconfirmed(), stored.len());
            }
        }
    }
}
