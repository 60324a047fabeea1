//! The [`CheckpointStore`] conformance suite.
//!
//! # Rules
//!
//! A conforming store keeps these rules; the suite names the one broken.
//!
//! 1. **`calls-succeed`**: loading, and saving positions that move forward,
//!    succeed.
//! 2. **`unknown-stream-empty`**: a stream never saved loads as an empty
//!    map.
//! 3. **`round-trip`**: what is saved loads back exactly: sequence numbers,
//!    sub-sequences and `SHARD_END`, per shard.
//! 4. **`forward-only`**: a save that would move a shard back is refused
//!    with a permanent error (retrying cannot help: two workers are
//!    checkpointing one shard) that names the shard and both positions;
//!    saving the stored position again is accepted. Checkpoints never move
//!    backwards, so a restart never re-reads what was done twice over, and
//!    a stale worker cannot undo a newer one.
//! 5. **`numeric-order`**: sequence numbers compare as unbounded decimal
//!    integers, never as text: `10` is after `9`, and AWS's 56-digit numbers
//!    compare correctly with short ones.
//! 6. **`sub-sequence-order`**: the user records of an aggregate order by
//!    sub-sequence, and the plain sequence number (the whole aggregate)
//!    comes after all of them.
//! 7. **`shard-end-final`**: after `SHARD_END`, no sequence number is
//!    accepted; `SHARD_END` again is.
//! 8. **`batch-all-or-nothing`**: a save with one backwards checkpoint
//!    (against the store, or within the batch itself) stores none of the
//!    batch.
//! 9. **`empty-sequence-refused`**: an empty sequence number is refused,
//!    permanently.
//! 10. **`streams-isolated`**: streams do not see each other's checkpoints,
//!     including names that an encoding could confuse (`a/b`, `a%2Fb`,
//!     `a:b`, ARNs).
//! 11. **`concurrent-saves`**: concurrent saves of one shard leave its
//!     highest position stored, whatever the interleaving; each other save
//!     either lands (and is overtaken) or is refused as backwards.
//!
//! Lineage, stream meta and `reset` are optional parts of the trait and are
//! not checked here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ensure;
use crate::checkpoint::CheckpointStore;
use crate::error::CheckpointError;
use crate::record::{Checkpoint, Position, Sequence, ShardId};

const SUITE: &str = "checkpoint store";

/// A 56-digit sequence number as AWS gives them.
const AWS_SEQ: &str = "49590338271490256608559692538361571095921575989136588898";
const AWS_SEQ_NEXT: &str = "49590338271490256608559692538361571095921575989136588899";

fn seq(n: &str) -> Position {
    Position::Sequence(Sequence::new(n))
}

fn sub(n: &str, s: u64) -> Position {
    Position::Sequence(Sequence::with_sub_sequence(n, s))
}

fn cp(shard: &str, position: Position) -> Checkpoint {
    Checkpoint {
        shard: ShardId::new(shard),
        position,
    }
}

fn shard(id: &str) -> ShardId {
    ShardId::new(id)
}

/// The parts of a position a refusal must name: its sequence number and
/// sub-sequence, or `SHARD_END`.
fn parts(position: &Position) -> Vec<String> {
    match position {
        Position::ShardEnd => vec!["SHARD_END".to_string()],
        Position::Sequence(s) => {
            let mut v = vec![s.number.clone()];
            v.extend(s.sub_sequence.map(|n| n.to_string()));
            v
        }
    }
}

/// Checks a refused backwards save: an error, permanent, naming the shard
/// and both positions.
#[track_caller]
fn assert_refused(
    rule: &str,
    result: Result<(), CheckpointError>,
    shard: &str,
    stored: &Position,
    attempted: &Position,
) {
    let err = match result {
        Ok(()) => super::broken(
            SUITE,
            rule,
            format_args!(
                "a save moving {shard} back from {stored:?} to {attempted:?} was accepted"
            ),
        ),
        Err(e) => e,
    };
    ensure!(
        SUITE,
        "forward-only",
        !err.is_retryable(),
        "a backwards save of {shard} must fail permanently (retrying cannot help), \
         it failed as {}: {err}",
        err.class()
    );
    let text = err.to_string();
    // SHARD_END may be spelled ShardEnd or "shard end".
    let squeezed: String = text
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect();
    let mut named = vec![shard.to_string()];
    named.extend(parts(stored));
    named.extend(parts(attempted));
    for part in named {
        let found = if part == "SHARD_END" {
            squeezed.contains("shardend")
        } else {
            text.contains(&part)
        };
        ensure!(
            SUITE,
            "forward-only",
            found,
            "the refusal of {shard} ({stored:?} -> {attempted:?}) must name the shard and \
             both positions; {part:?} is missing from: {text}"
        );
    }
}

#[track_caller]
fn refused_permanently(rule: &str, result: Result<(), CheckpointError>, what: &str) {
    match result {
        Ok(()) => super::broken(SUITE, rule, format_args!("{what} was accepted")),
        Err(e) => ensure!(
            SUITE,
            rule,
            !e.is_retryable(),
            "{what} must fail permanently, it failed as {}: {e}",
            e.class()
        ),
    }
}

async fn load(store: &impl CheckpointStore, stream: &str) -> BTreeMap<ShardId, Position> {
    match store.load(stream).await {
        Ok(map) => map,
        Err(e) => super::broken(
            SUITE,
            "calls-succeed",
            format_args!("loading stream {stream:?} failed: {e}"),
        ),
    }
}

async fn save(store: &impl CheckpointStore, stream: &str, checkpoints: &[Checkpoint]) {
    save_as("calls-succeed", store, stream, checkpoints).await;
}

/// A save that moves forward and must succeed; a failure breaks `rule`.
async fn save_as(
    rule: &str,
    store: &impl CheckpointStore,
    stream: &str,
    checkpoints: &[Checkpoint],
) {
    if let Err(e) = store.save(stream, checkpoints).await {
        super::broken(
            SUITE,
            rule,
            format_args!("saving {checkpoints:?} to stream {stream:?} failed: {e}"),
        )
    }
}

async fn expect_stored(
    rule: &str,
    store: &impl CheckpointStore,
    stream: &str,
    shard_id: &str,
    expected: Option<&Position>,
) {
    let loaded = load(store, stream).await;
    let got = loaded.get(&shard(shard_id));
    ensure!(
        SUITE,
        rule,
        got == expected,
        "stream {stream:?} shard {shard_id}: loaded {got:?}, expected {expected:?}"
    );
}

/// Runs every rule on `store`, which must hold nothing yet (the suite uses
/// streams named `never-seen`, `round-trip`, `forward-only`, `concurrent`,
/// `tweets` and a few more). It needs a Tokio runtime: the concurrency rule
/// spawns tasks, so a multi-thread runtime tests it best.
///
/// ```
/// use std::sync::Arc;
/// use streamsift::checkpoint::MemoryCheckpointStore;
/// use streamsift::testing::checkpoint;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// checkpoint::conformance(Arc::new(MemoryCheckpointStore::new())).await;
/// # });
/// ```
///
/// # Panics
/// At the first broken rule, naming it (see the [module docs](self)).
pub async fn conformance<S: CheckpointStore + 'static>(store: Arc<S>) {
    let s = &*store;

    let never = load(s, "never-seen").await;
    ensure!(
        SUITE,
        "unknown-stream-empty",
        never.is_empty(),
        "stream \"never-seen\" was never saved but loads {never:?}"
    );

    // Round trip, with a sub-sequence and SHARD_END.
    let trip = "round-trip";
    let saved = [
        cp("shardId-000000000000", seq("5")),
        cp("shardId-000000000001", sub("7", 2)),
        cp("shardId-000000000002", Position::ShardEnd),
    ];
    save(s, trip, &saved).await;
    let expected: BTreeMap<ShardId, Position> = saved
        .iter()
        .map(|c| (c.shard.clone(), c.position.clone()))
        .collect();
    let loaded = load(s, trip).await;
    ensure!(
        SUITE,
        "round-trip",
        loaded == expected,
        "saved {expected:?}, loaded {loaded:?}"
    );

    // Forward only, comparing sequence numbers as integers.
    let fwd = "forward-only";
    save(s, fwd, &[cp("s0", seq("9"))]).await;
    save_as("numeric-order", s, fwd, &[cp("s0", seq("10"))]).await;
    assert_refused(
        "numeric-order",
        s.save(fwd, &[cp("s0", seq("9"))]).await,
        "s0",
        &seq("10"),
        &seq("9"),
    );
    if let Err(e) = s.save(fwd, &[cp("s0", seq("10"))]).await {
        super::broken(
            SUITE,
            "forward-only",
            format_args!("saving the stored position (s0 at 10) again failed: {e}"),
        )
    }
    save_as("numeric-order", s, fwd, &[cp("s0", seq(AWS_SEQ))]).await;
    assert_refused(
        "numeric-order",
        s.save(fwd, &[cp("s0", seq("9"))]).await,
        "s0",
        &seq(AWS_SEQ),
        &seq("9"),
    );
    let shorter = "99999999999999999999999999999999999999999999999999999";
    assert_refused(
        "numeric-order",
        s.save(fwd, &[cp("s0", seq(shorter))]).await,
        "s0",
        &seq(AWS_SEQ),
        &seq(shorter),
    );
    save_as("numeric-order", s, fwd, &[cp("s0", seq(AWS_SEQ_NEXT))]).await;
    expect_stored("numeric-order", s, fwd, "s0", Some(&seq(AWS_SEQ_NEXT))).await;

    // Sub-sequences: user records of an aggregate, then the whole aggregate.
    save(s, fwd, &[cp("s1", sub("7", 2))]).await;
    assert_refused(
        "sub-sequence-order",
        s.save(fwd, &[cp("s1", sub("7", 1))]).await,
        "s1",
        &sub("7", 2),
        &sub("7", 1),
    );
    save_as("sub-sequence-order", s, fwd, &[cp("s1", seq("7"))]).await;
    assert_refused(
        "sub-sequence-order",
        s.save(fwd, &[cp("s1", sub("7", 3))]).await,
        "s1",
        &seq("7"),
        &sub("7", 3),
    );
    save_as("sub-sequence-order", s, fwd, &[cp("s1", sub("8", 0))]).await;
    expect_stored("sub-sequence-order", s, fwd, "s1", Some(&sub("8", 0))).await;

    // SHARD_END is final.
    save(s, fwd, &[cp("s2", seq("1"))]).await;
    save_as("shard-end-final", s, fwd, &[cp("s2", Position::ShardEnd)]).await;
    assert_refused(
        "shard-end-final",
        s.save(fwd, &[cp("s2", seq("1000"))]).await,
        "s2",
        &Position::ShardEnd,
        &seq("1000"),
    );
    if let Err(e) = s.save(fwd, &[cp("s2", Position::ShardEnd)]).await {
        super::broken(
            SUITE,
            "shard-end-final",
            format_args!("saving SHARD_END again for s2 failed: {e}"),
        )
    }
    expect_stored("shard-end-final", s, fwd, "s2", Some(&Position::ShardEnd)).await;

    // A batch with a backwards checkpoint stores none of it.
    refused_permanently(
        "batch-all-or-nothing",
        s.save(fwd, &[cp("s4", seq("50")), cp("s0", seq("1"))])
            .await,
        "a batch moving s0 back (with s4 at 50)",
    );
    expect_stored("batch-all-or-nothing", s, fwd, "s4", None).await;
    // So does a batch that goes backwards within itself.
    refused_permanently(
        "batch-all-or-nothing",
        s.save(fwd, &[cp("s5", seq("3")), cp("s5", seq("2"))]).await,
        "a batch moving s5 from 3 back to 2 within itself",
    );
    expect_stored("batch-all-or-nothing", s, fwd, "s5", None).await;
    refused_permanently(
        "empty-sequence-refused",
        s.save(fwd, &[cp("s6", seq(""))]).await,
        "an empty sequence number",
    );

    // Streams are isolated, including names that escape alike.
    let streams = [
        "tweets",
        "tweets-2",
        "arn:aws:kinesis:us-east-1:123456789012:stream/tweets",
        "a/b",
        "a%2Fb",
        "a:b",
    ];
    for (i, stream) in streams.iter().enumerate() {
        save(
            s,
            stream,
            &[cp("shardId-000000000000", seq(&(i * 10 + 1).to_string()))],
        )
        .await;
    }
    for (i, stream) in streams.iter().enumerate() {
        let expected: BTreeMap<ShardId, Position> = [(
            shard("shardId-000000000000"),
            seq(&(i * 10 + 1).to_string()),
        )]
        .into_iter()
        .collect();
        let loaded = load(s, stream).await;
        ensure!(
            SUITE,
            "streams-isolated",
            loaded == expected,
            "stream {stream:?} loads {loaded:?}, expected {expected:?}"
        );
    }

    // Concurrent saves: each shard ends at its highest position, whatever the
    // interleaving; the others are either stored and overtaken or refused.
    let conc = "concurrent";
    let mut tasks = Vec::new();
    for n in [3u64, 8, 1, 6, 2, 7, 5, 4] {
        for shard_no in 0..4 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let shard = format!("shardId-00000000000{shard_no}");
                store
                    .save(conc, &[cp(&shard, seq(&n.to_string()))])
                    .await
                    .map_err(|e| (shard, n, e))
            }));
        }
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err((shard, n, e))) => ensure!(
                SUITE,
                "concurrent-saves",
                !e.is_retryable(),
                "a concurrent save of {shard} to {n} failed for another reason than a \
                 backwards refusal ({}): {e}",
                e.class()
            ),
            Err(join) => super::broken(
                SUITE,
                "concurrent-saves",
                format_args!("a concurrent save panicked or was cancelled: {join}"),
            ),
        }
    }
    let expected: BTreeMap<ShardId, Position> = (0..4)
        .map(|i| (shard(&format!("shardId-00000000000{i}")), seq("8")))
        .collect();
    let loaded = load(s, conc).await;
    ensure!(
        SUITE,
        "concurrent-saves",
        loaded == expected,
        "after concurrent saves of 1..=8 to four shards, loaded {loaded:?}; each shard \
         must end at 8"
    );
}
