//! Ordered checkpoints over out-of-order completion: one [`ShardTrack`] per
//! open shard moves that shard's watermark over its done prefix, and the
//! [`Tracker`] holds them, releasing a shard once its `SHARD_END` is
//! committed so memory does not grow with the stream's history of shards.

use std::collections::{HashMap, VecDeque};

use super::report::ShardStats;
use crate::record::{Checkpoint, Position, Record, Sequence, ShardId};

/// The most released per-record shards whose counts the report keeps one
/// by one; the counts of further ones are added into one entry
/// ([`OTHER_SHARDS`]), so a queue with unboundedly many FIFO message groups
/// does not grow the report.
const MAX_RELEASED_SHARD_STATS: usize = 1_000;
/// The report entry counting released shards past [`MAX_RELEASED_SHARD_STATS`].
pub(crate) const OTHER_SHARDS: &str = "(other shards)";

/// Per-shard bookkeeping for ordered checkpoints.
pub(crate) struct ShardTrack {
    pub(crate) shard: ShardId,
    /// Absolute index of `slots[0]`.
    base: u64,
    /// One slot per dispatched record not yet behind the watermark: `None`
    /// while in flight, its sequence once done.
    slots: VecDeque<Option<Sequence>>,
    /// The last record of the contiguous done prefix.
    watermark: Option<Sequence>,
    /// The last position committed.
    committed: Option<Position>,
    /// Absolute index one past the last record of the checkpoint being
    /// committed (the value of `base` when it was taken).
    sent_base: u64,
    /// Absolute index one past the last committed record: records from
    /// here on count as unacked, done or not, until a commit covers them.
    committed_base: u64,
    /// The source said the shard is closed, and its last batch is dispatched.
    pub(crate) ended: bool,
    pub(crate) stats: ShardStats,
    /// Per-record mode: records of this shard read and not yet acked or
    /// let go (waiting, parked, in flight, or done awaiting their ack). The
    /// shard is released when it falls to 0.
    pub(crate) held: usize,
    /// Ordered per-record mode: a record of this shard is in flight.
    pub(crate) busy: bool,
    /// Ordered per-record mode: records waiting for the one in flight.
    pub(crate) parked: VecDeque<Record>,
}

impl ShardTrack {
    fn new(shard: ShardId) -> Self {
        ShardTrack {
            shard,
            base: 0,
            slots: VecDeque::new(),
            watermark: None,
            committed: None,
            sent_base: 0,
            committed_base: 0,
            ended: false,
            stats: ShardStats::default(),
            held: 0,
            busy: false,
            parked: VecDeque::new(),
        }
    }

    /// Per-record mode: a record starts; returns its index (a counter, for
    /// the retry jitter; no watermark slot is kept).
    pub(crate) fn start_unordered(&mut self) -> u64 {
        let index = self.base;
        self.base += 1;
        self.stats.records_in += 1;
        index
    }

    /// Takes a slot for a record being dispatched; returns its index.
    pub(crate) fn dispatch(&mut self) -> u64 {
        let index = self.base + self.slots.len() as u64;
        self.slots.push_back(None);
        self.stats.records_in += 1;
        index
    }

    /// Marks a record done and advances the watermark over the done prefix.
    pub(crate) fn complete(&mut self, index: u64, sequence: Sequence) {
        let Some(pos) = index.checked_sub(self.base) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(pos as usize) {
            *slot = Some(sequence);
        }
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(seq)) = self.slots.pop_front() {
                self.watermark = Some(seq);
            }
            self.base += 1;
        }
    }

    /// Every dispatched record is behind the watermark.
    pub(crate) fn drained(&self) -> bool {
        self.slots.is_empty()
    }

    /// The position to commit, if it moved since the last commit.
    pub(crate) fn pending_position(&self) -> Option<Position> {
        let pos = if self.ended && self.slots.is_empty() {
            Position::ShardEnd
        } else {
            Position::Sequence(self.watermark.clone()?)
        };
        (self.committed.as_ref() != Some(&pos)).then_some(pos)
    }

    /// `SHARD_END` is committed: nothing more will happen on this shard.
    fn closed(&self) -> bool {
        self.committed == Some(Position::ShardEnd)
    }
}

/// The open shards, by slot. Slots of closed shards are reused.
#[derive(Default)]
pub(crate) struct Tracker {
    tracks: Vec<Option<ShardTrack>>,
    free: Vec<usize>,
    index: HashMap<ShardId, usize>,
    /// Records dispatched but not yet covered by a commit, over all shards.
    pub(crate) unacked: usize,
    /// Counts of the shards released (closed), kept for the report.
    pub(crate) closed_stats: Vec<(ShardId, ShardStats)>,
}

impl Tracker {
    /// The slot of `shard`, opening it if new.
    pub(crate) fn slot(&mut self, shard: &ShardId) -> usize {
        if let Some(&i) = self.index.get(shard) {
            return i;
        }
        let track = Some(ShardTrack::new(shard.clone()));
        let i = match self.free.pop() {
            Some(i) => {
                self.tracks[i] = track;
                i
            }
            None => {
                self.tracks.push(track);
                self.tracks.len() - 1
            }
        };
        self.index.insert(shard.clone(), i);
        i
    }

    /// The open track in `slot`. Records in flight keep their shard open,
    /// so a slot handed out for a record is always open.
    pub(crate) fn get(&mut self, slot: usize) -> Option<&mut ShardTrack> {
        self.tracks.get_mut(slot).and_then(Option::as_mut)
    }

    /// How many shards are tracked (open).
    pub(crate) fn open(&self) -> usize {
        self.index.len()
    }

    /// Whether some shard has a position to commit.
    pub(crate) fn has_pending(&self) -> bool {
        self.tracks
            .iter()
            .flatten()
            .any(|t| t.pending_position().is_some())
    }

    /// The checkpoints to commit now; remembers how far each one reaches.
    pub(crate) fn take_pending(&mut self) -> Vec<Checkpoint> {
        self.tracks
            .iter_mut()
            .flatten()
            .filter_map(|t| {
                let position = t.pending_position()?;
                t.sent_base = t.base;
                Some(Checkpoint {
                    shard: t.shard.clone(),
                    position,
                })
            })
            .collect()
    }

    /// `checkpoints` are durable: the records they cover stop counting as
    /// unacked, and shards whose `SHARD_END` is committed are released.
    pub(crate) fn committed(&mut self, checkpoints: &[Checkpoint]) {
        for cp in checkpoints {
            let Some(&i) = self.index.get(&cp.shard) else {
                continue;
            };
            let Some(track) = self.tracks[i].as_mut() else {
                continue;
            };
            track.committed = Some(cp.position.clone());
            // Only now are these records safe from redelivery.
            let covered = track.sent_base.saturating_sub(track.committed_base);
            track.committed_base = track.committed_base.max(track.sent_base);
            self.unacked = self.unacked.saturating_sub(covered as usize);
            if track.closed()
                && track.drained()
                && let Some(track) = self.tracks[i].take()
            {
                self.index.remove(&track.shard);
                self.free.push(i);
                self.closed_stats.push((track.shard, track.stats));
            }
        }
    }

    /// Per-record mode: `n` records of the shard in `slot` are let go
    /// (acked, or dropped unprocessed at a stop); the shard is released
    /// once it holds none.
    pub(crate) fn release_held(&mut self, slot: usize, n: usize) {
        let Some(track) = self.tracks.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        track.held = track.held.saturating_sub(n);
        if track.held > 0 || track.busy || !track.parked.is_empty() {
            return;
        }
        if let Some(track) = self.tracks[slot].take() {
            self.index.remove(&track.shard);
            self.free.push(slot);
            let known = self
                .closed_stats
                .iter()
                .position(|(s, _)| *s == track.shard);
            match known {
                Some(i) => self.closed_stats[i].1.add(&track.stats),
                None if self.closed_stats.len() < MAX_RELEASED_SHARD_STATS => {
                    self.closed_stats.push((track.shard, track.stats));
                }
                None => {
                    let other = ShardId::new(OTHER_SHARDS);
                    match self.closed_stats.iter_mut().find(|(s, _)| *s == other) {
                        Some((_, stats)) => stats.add(&track.stats),
                        None => {
                            // Fold the last one in too, so the list stays at the cap.
                            let mut last = self
                                .closed_stats
                                .pop()
                                .map(|(_, stats)| stats)
                                .unwrap_or_default();
                            last.add(&track.stats);
                            self.closed_stats.push((other, last));
                        }
                    }
                }
            }
        }
    }

    /// The slot of an open shard, without opening it.
    pub(crate) fn find(&self, shard: &ShardId) -> Option<usize> {
        self.index.get(shard).copied()
    }

    /// Slots of every open shard.
    pub(crate) fn slots(&self) -> Vec<usize> {
        self.index.values().copied().collect()
    }

    /// Per-shard counts, open and closed.
    pub(crate) fn shard_stats(&self) -> impl Iterator<Item = (ShardId, ShardStats)> + '_ {
        self.closed_stats.iter().cloned().chain(
            self.tracks
                .iter()
                .flatten()
                .map(|t| (t.shard.clone(), t.stats.clone())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_advances_over_the_done_prefix_only() {
        let mut t = ShardTrack::new(ShardId::new("s"));
        for _ in 0..4 {
            t.dispatch();
        }
        t.complete(2, Sequence::from_offset(2));
        assert_eq!(t.pending_position(), None);
        t.complete(0, Sequence::from_offset(0));
        assert_eq!(
            t.pending_position(),
            Some(Position::Sequence(Sequence::from_offset(0)))
        );
        t.complete(1, Sequence::from_offset(1));
        assert_eq!(t.watermark, Some(Sequence::from_offset(2)));
        t.committed = Some(Position::Sequence(Sequence::from_offset(2)));
        assert_eq!(t.pending_position(), None);
        t.ended = true;
        assert_eq!(t.pending_position(), None, "slot 3 still in flight");
        t.complete(3, Sequence::from_offset(3));
        assert_eq!(t.pending_position(), Some(Position::ShardEnd));
    }

    #[test]
    fn bounded_memory_a_closed_shard_is_released_once_shard_end_is_committed() {
        let mut tracker = Tracker::default();
        for n in 0..1000 {
            let shard = ShardId::new(format!("shard-{n}"));
            let slot = tracker.slot(&shard);
            let track = tracker.get(slot).unwrap();
            let i = track.dispatch();
            tracker.unacked += 1;
            let track = tracker.get(slot).unwrap();
            track.complete(i, Sequence::from_offset(i));
            track.ended = true;
            let pending = tracker.take_pending();
            assert_eq!(pending.last().unwrap().position, Position::ShardEnd);
            tracker.committed(&pending);
        }
        assert_eq!(tracker.open(), 0);
        assert_eq!(tracker.tracks.len(), 1, "the one slot is reused");
        assert_eq!(tracker.unacked, 0);
        assert_eq!(tracker.shard_stats().count(), 1000);
    }

    #[test]
    fn bounded_memory_per_record_shards_are_released_when_nothing_is_outstanding() {
        let mut tracker = Tracker::default();
        let groups = MAX_RELEASED_SHARD_STATS + 500;
        for n in 0..groups {
            let shard = ShardId::new(format!("group-{n}"));
            let slot = tracker.slot(&shard);
            let track = tracker.get(slot).unwrap();
            track.held += 2;
            track.start_unordered();
            track.start_unordered();
            tracker.release_held(slot, 1);
            assert_eq!(tracker.open(), 1, "one record of the group is still held");
            tracker.release_held(slot, 1);
        }
        assert_eq!(tracker.open(), 0);
        assert_eq!(tracker.tracks.len(), 1, "the one slot is reused");
        assert_eq!(tracker.closed_stats.len(), MAX_RELEASED_SHARD_STATS);
        let total: u64 = tracker.shard_stats().map(|(_, s)| s.records_in).sum();
        assert_eq!(total, 2 * groups as u64, "no count is lost in the fold");
    }
}
