//! Notification hygiene through a real Pipeline with fakes: `Dedup` (never
//! the same key twice within a window, durably across restarts) and
//! `Digest` (at most N per route per window, the rest in one digest whose
//! records are done only when it is accepted).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::router::dedup::{
    Dedup, DedupKey, DedupStore, DedupStoreError, FileDedupStore, MemoryDedupStore, repost_key,
};
use streamsift::router::digest::{DIGEST_SHARD, Digest, DigestBatch};
use streamsift::testing::router::{Case, conformance};
use streamsift::{
    Batch, BoxRouter, Checkpoint, ClassifyError, ConfigError, Delivery, MemoryDeadLetter, Pipeline,
    PipelineError, Policy, Position, Prediction, Receipt, RetryPolicy, RouteError, Router,
    RunReport, Source, SourceError, Stage, Utf8,
};

fn yes(_: &String) -> std::future::Ready<Result<Prediction, ClassifyError>> {
    std::future::ready(Ok(Prediction::binary("yes", "no", 1.0)))
}

fn payloads(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("problem report {i}")).collect()
}

/// Runs `source` through a pipeline with `router` (every record on route
/// "all") and a memory dead letter.
async fn run<R>(source: impl Source + 'static, router: R, dead: &MemoryDeadLetter) -> RunReport
where
    R: Router<String> + 'static,
{
    Pipeline::new(source)
        .decode(Utf8)
        .classify(yes)
        .policy(Policy::binary(0.0, "all"))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("pipeline runs")
}

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- Dedup

#[tokio::test(start_paused = true)]
async fn dedup_suppresses_redelivery_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dedup.log");
    let inner = RecordingRouter::<String>::new();
    let dead = MemoryDeadLetter::new();

    let store = FileDedupStore::open(&path, HOUR).unwrap();
    let first = run(
        MemorySource::from_payloads(1, payloads(10)),
        Dedup::new(inner.clone(), store),
        &dead,
    )
    .await;
    assert_eq!(first.stats.routed, 10);
    assert_eq!(inner.len(), 10);

    // A crash before any checkpoint: the source delivers every record again,
    // to a new Dedup over the same file (the old one is dropped: a restart).
    let reopened = FileDedupStore::open(&path, HOUR).unwrap();
    assert_eq!(reopened.len(), 10, "the keys reload from the file");
    let second = run(
        MemorySource::from_payloads(1, payloads(10)),
        Dedup::new(inner.clone(), reopened),
        &dead,
    )
    .await;
    assert_eq!(second.stats.skipped, 10, "{:?}", second.stats);
    assert_eq!(
        inner.len(),
        10,
        "no record notified twice across the restart"
    );
    assert!(dead.entries().is_empty());

    // What the file holds: a header and one hashed key per line, no text.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 11);
    assert!(
        !text.contains("problem") && !text.contains("shard-0"),
        "{text}"
    );

    // The control: a store that forgets on restart notifies them again.
    let forgetful = run(
        MemorySource::from_payloads(1, payloads(10)),
        Dedup::new(inner.clone(), MemoryDedupStore::new(HOUR)),
        &dead,
    )
    .await;
    assert_eq!(forgetful.stats.routed, 10);
    assert_eq!(inner.len(), 20);
}

#[tokio::test(start_paused = true)]
async fn dedup_window_expiry_allows_the_key_again() {
    let dir = tempfile::tempdir().unwrap();
    let inner = RecordingRouter::<String>::new();
    let dead = MemoryDeadLetter::new();
    let window = Duration::from_secs(60);
    let router = Arc::new(Dedup::new(
        inner.clone(),
        FileDedupStore::open(dir.path().join("d.log"), window).unwrap(),
    ));
    let source = || MemorySource::from_payloads(1, payloads(5));

    assert_eq!(run(source(), router.clone(), &dead).await.stats.routed, 5);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(run(source(), router.clone(), &dead).await.stats.skipped, 5);
    assert_eq!(inner.len(), 5);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(run(source(), router.clone(), &dead).await.stats.routed, 5);
    assert_eq!(
        inner.len(),
        10,
        "after the window the same keys notify again"
    );
}

#[tokio::test(start_paused = true)]
async fn dedup_does_not_mark_a_failed_send() {
    let inner = RecordingRouter::<String>::new();
    let dead = MemoryDeadLetter::new();
    let failing = Arc::new(Mutex::new(true));
    let (rec, fail) = (inner.clone(), failing.clone());
    let flaky = move |d: &Delivery<'_, String>| {
        let refuse = *fail.lock().unwrap() && d.item.ends_with(" 2");
        let result = if refuse {
            Err(RouteError::permanent("refused by the test"))
        } else {
            Ok(())
        };
        let rec = rec.clone();
        let (item, record, prediction, route) = (
            d.item.clone(),
            d.record.clone(),
            d.prediction.clone(),
            d.route.clone(),
        );
        async move {
            result?;
            let d = Delivery {
                item: &item,
                record: &record,
                prediction: &prediction,
                route: &route,
            };
            rec.route(&d).await
        }
    };
    let router = Arc::new(Dedup::new(flaky, MemoryDedupStore::new(HOUR)));
    let first = run(
        MemorySource::from_payloads(1, payloads(4)),
        router.clone(),
        &dead,
    )
    .await;
    assert_eq!((first.stats.routed, first.stats.dead_lettered), (3, 1));
    assert_eq!(dead.entries()[0].stage, Stage::Route);

    // Replayed once the receiver is fixed: only the failed one is sent.
    *failing.lock().unwrap() = false;
    let again = run(
        MemorySource::from_payloads(1, payloads(4)),
        router.clone(),
        &dead,
    )
    .await;
    assert_eq!((again.stats.routed, again.stats.skipped), (1, 3));
    let items: Vec<String> = inner.deliveries().into_iter().map(|d| d.item).collect();
    assert_eq!(items.iter().filter(|i| i.ends_with(" 2")).count(), 1);
    assert_eq!(items.len(), 4);
}

/// Eight reposts of one text in flight at once: exactly one notification;
/// when that one fails, a waiting one sends instead.
#[tokio::test(start_paused = true)]
async fn dedup_same_key_in_flight_sends_once() {
    let sent = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, c) = (sent.clone(), calls.clone());
    let slow = move |d: &Delivery<'_, String>| {
        let (s, c, route) = (s.clone(), c.clone(), d.route.clone());
        async move {
            let call = c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if call == 0 {
                return Err(RouteError::unavailable("first call fails"));
            }
            s.fetch_add(1, Ordering::SeqCst);
            Ok(Receipt::new(route))
        }
    };
    let router = Dedup::new(slow, MemoryDedupStore::new(HOUR))
        .key(|d: &Delivery<'_, String>| repost_key("@ana", d.item));
    let texts: Vec<String> = (0..8)
        .map(|i| format!("Checkout is BROKEN  https://t.co/{i}"))
        .collect();
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(1, texts))
        .decode(Utf8)
        .classify(yes)
        .policy(Policy::binary(0.0, "all"))
        .route(router)
        .dead_letter(dead.clone())
        .retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .max_in_flight(16)
        .run()
        .await
        .unwrap();
    assert_eq!(
        sent.load(Ordering::SeqCst),
        1,
        "one notification for 8 reposts"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the failure, then one waiter"
    );
    assert_eq!(report.stats.routed, 1);
    assert_eq!(report.stats.skipped, 6);
    assert_eq!(report.stats.dead_lettered, 1, "the failed first call");
}

/// A delivery whose future is dropped (a call timeout) while another of
/// the same key waits: the waiter is woken and sends itself, once.
#[tokio::test(start_paused = true)]
async fn dedup_waiter_sends_when_the_owner_is_dropped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let slow = move |d: &Delivery<'_, String>| {
        let (c, route) = (c.clone(), d.route.clone());
        async move {
            let call = c.fetch_add(1, Ordering::SeqCst);
            if call == 0 {
                tokio::time::sleep(HOUR).await; // the owner hangs
            }
            Ok(Receipt::new(route))
        }
    };
    let router = Dedup::new(slow, MemoryDedupStore::new(HOUR));
    let case = Case::new("same record".to_string(), "oncall");
    let delivery = Delivery {
        item: &case.item,
        record: &case.record,
        prediction: &case.prediction,
        route: &case.route,
    };
    let owner = tokio::time::timeout(Duration::from_secs(1), router.route(&delivery));
    let waiter = async {
        tokio::task::yield_now().await; // after the owner took the key
        tokio::time::timeout(Duration::from_secs(10), router.route(&delivery)).await
    };
    let (owner, waiter) = tokio::join!(owner, waiter);
    assert!(owner.is_err(), "the owner timed out");
    let receipt = waiter
        .expect("the waiter is woken when the owner is dropped")
        .expect("the waiter sends");
    assert!(
        !receipt.skipped,
        "the owner never delivered, so the waiter sends"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        router.route(&delivery).await.unwrap().skipped,
        "then the key is recorded"
    );
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn file_store_tolerates_a_torn_last_line_and_rejects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.log");
    let (a, b) = (DedupKey::record_id("a"), DedupKey::record_id("b"));
    {
        let store = FileDedupStore::open(&path, HOUR).unwrap();
        store.insert(a).await.unwrap();
    }
    // A crash mid-write: half a line, no newline.
    append(&path, b"0123456789abcdef01");
    let store = FileDedupStore::open(&path, HOUR).unwrap();
    assert!(store.contains(&a));
    store.insert(b).await.unwrap();
    drop(store);
    let store = FileDedupStore::open(&path, HOUR).unwrap();
    assert!(store.contains(&a) && store.contains(&b));
    assert_eq!(store.file_lines(), 2);
    drop(store);

    // A zero-filled tail (some file systems after a crash) is torn too.
    append(&path, &[0u8; 40]);
    assert!(FileDedupStore::open(&path, HOUR).unwrap().contains(&b));

    // A bad line that is not the last is corruption, not a torn write.
    append(&path, b"not a key\n");
    append(&path, format!("{} 1\n", "ab".repeat(16)).as_bytes());
    let err = FileDedupStore::open(&path, HOUR).unwrap_err();
    assert!(
        matches!(err, DedupStoreError::Corrupt { line: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("move "), "hint first: {err}");

    let other = dir.path().join("other.txt");
    std::fs::write(&other, "hello\nworld\n").unwrap();
    assert!(matches!(
        FileDedupStore::open(&other, HOUR),
        Err(DedupStoreError::NotAStore { .. })
    ));
}

/// The file grows by a zero tail written ahead of the lines (so most
/// fsyncs write no inode). A crash can leave that tail, and behind a run of
/// zeros the remains of a write that never finished: open keeps every line
/// before the first zero byte, drops the rest, and writes on from there.
/// Before the tail existed, such a file was refused as corrupt.
#[tokio::test]
async fn file_store_reopens_after_a_crash_that_left_its_zero_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.log");
    let (a, b, c) = (
        DedupKey::record_id("a"),
        DedupKey::record_id("b"),
        DedupKey::record_id("c"),
    );
    let store = FileDedupStore::open(&path, HOUR).unwrap();
    store.insert(a).await.unwrap();
    let clean = std::fs::read(&path).unwrap();
    let lines_end = clean.iter().position(|&x| x == 0).unwrap_or(clean.len());
    assert_eq!(clean[lines_end - 1], b'\n');
    // What a crash leaves: the lines, a gap of zeros, then half of a later
    // write (never fsynced, so never acknowledged), then zeros again.
    let mut crashed = clean[..lines_end].to_vec();
    crashed.extend_from_slice(&[0u8; 512]);
    crashed.extend_from_slice(format!("{} 1\n{}", "ab".repeat(16), "cd".repeat(5)).as_bytes());
    crashed.extend_from_slice(&[0u8; 4096]);
    std::mem::forget(store); // the crash: no clean close
    std::fs::write(&path, &crashed).unwrap();

    let store = FileDedupStore::open(&path, HOUR).unwrap();
    assert!(store.contains(&a));
    assert_eq!(store.file_lines(), 1, "nothing after the first zero byte");
    store.insert(b).await.unwrap();
    store.insert(c).await.unwrap();
    drop(store);
    let closed = std::fs::read(&path).unwrap();
    assert!(!closed.contains(&0), "a clean close cuts the zero tail");
    assert_eq!(
        closed.iter().filter(|&&x| x == b'\n').count(),
        4,
        "header and three keys"
    );
    let store = FileDedupStore::open(&path, HOUR).unwrap();
    assert!(store.contains(&a) && store.contains(&b) && store.contains(&c));
    assert_eq!(store.file_lines(), 3);
    store.insert(DedupKey::record_id("d")).await.unwrap();
    let open = std::fs::read(&path).unwrap();
    let lines_end = open
        .iter()
        .position(|&x| x == 0)
        .expect("a zero tail while open");
    assert_eq!(open[lines_end - 1], b'\n');
    assert!(open[lines_end..].iter().all(|&x| x == 0));
}

/// Memory and file are bounded by the window, not the stream: 20,000 keys
/// through a window that holds 5,000.
#[tokio::test(start_paused = true)]
async fn file_store_memory_and_file_are_bounded_by_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.log");
    let store = FileDedupStore::open(&path, Duration::from_millis(5_000)).unwrap();
    let mut max_len = 0;
    let mut max_lines = 0;
    // 50 concurrent inserts share one fsync (group commit), 50 ms apart.
    for chunk in 0..400u64 {
        let keys: Vec<DedupKey> = (0..50)
            .map(|i| DedupKey::record_id(&(chunk * 50 + i).to_string()))
            .collect();
        futures::future::try_join_all(keys.into_iter().map(|k| store.insert(k)))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(50)).await;
        max_len = max_len.max(store.len());
        max_lines = max_lines.max(store.file_lines());
    }
    assert!(max_len <= 5_001, "memory holds {max_len} keys");
    assert!(
        max_lines <= 2 * 5_001 + 4_096 + 1,
        "file held {max_lines} lines"
    );
    assert!(!store.contains(&DedupKey::record_id("0")));
    assert!(store.contains(&DedupKey::record_id("19999")));
    drop(store);
    // Reopened, memory holds at most the file's lines (the paused clock ran
    // ahead of the wall clock the reopened store starts from, so no key
    // has expired yet by its clock).
    let reopened = FileDedupStore::open(&path, Duration::from_millis(5_000)).unwrap();
    assert!(reopened.len() as u64 <= max_lines, "{}", reopened.len());
}

#[tokio::test(start_paused = true)]
async fn dedup_passes_the_router_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Case<String>> = (0..20)
        .map(|i| Case::new(format!("item {i}"), "oncall"))
        .collect();
    let inner = RecordingRouter::<String>::new();
    let file = Dedup::new(
        inner.clone(),
        FileDedupStore::open(dir.path().join("d.log"), HOUR).unwrap(),
    );
    let receipts = conformance(&file, &cases).await;
    assert!(receipts.iter().all(|r| !r.skipped));
    assert_eq!(inner.len(), 20, "the redelivery was skipped");
    let memory = Dedup::new(
        RecordingRouter::<String>::new(),
        MemoryDedupStore::new(HOUR),
    );
    conformance(&memory, &cases).await;
}

// ---------------------------------------------------------------- Digest

fn digest_text(batch: &DigestBatch<'_, String>) -> String {
    let mut text = format!("and {} more problem reports:", batch.total());
    for entry in batch.entries {
        text.push('\n');
        text.push_str(&entry.record_id);
    }
    text
}

/// Commits are checked against the records known done: a checkpoint never
/// passes a record that is not.
struct CheckingSource {
    inner: MemorySource,
    done: Arc<Mutex<HashSet<String>>>,
    commits: Arc<Mutex<Vec<u64>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Source for CheckingSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.inner.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        {
            let done = self.done.lock().unwrap();
            for cp in &checkpoints {
                if let Position::Sequence(seq) = &cp.position {
                    let upto: u64 = seq.number.parse().unwrap();
                    self.commits.lock().unwrap().push(upto);
                    for offset in 0..=upto {
                        let id = format!("{}:{offset}", cp.shard);
                        if !done.contains(&id) {
                            self.violations
                                .lock()
                                .unwrap()
                                .push(format!("commit at {upto} passes {id}, not done"));
                        }
                    }
                }
            }
        }
        self.inner.commit(checkpoints).await
    }
}

/// The inner router of the digest tests: records what it accepts (direct
/// records, and the ids a digest lists), fails the first `fail_digests`
/// digests retryably.
#[derive(Clone)]
struct Receiver {
    done: Arc<Mutex<HashSet<String>>>,
    messages: Arc<Mutex<Vec<String>>>,
    fail_digests: Arc<AtomicUsize>,
}

impl Receiver {
    fn new(fail_digests: usize) -> Self {
        Receiver {
            done: Arc::default(),
            messages: Arc::default(),
            fail_digests: Arc::new(AtomicUsize::new(fail_digests)),
        }
    }
}

impl Router<String> for Receiver {
    async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
        if d.record.shard.as_str() == DIGEST_SHARD {
            let left = self.fail_digests.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_digests.store(left - 1, Ordering::SeqCst);
                self.messages.lock().unwrap().push("FAILED".into());
                return Err(RouteError::unavailable("webhook answered 503"));
            }
            let mut done = self.done.lock().unwrap();
            done.extend(d.item.lines().skip(1).map(str::to_owned));
        } else {
            self.done.lock().unwrap().insert(d.record.id.clone());
        }
        self.messages.lock().unwrap().push(d.item.clone());
        Ok(Receipt::new(d.route.clone()).with_message_id(d.record.id.clone()))
    }
}

async fn digest_run(receiver: &Receiver, records: usize) -> (RunReport, CheckingSource) {
    let commits = Arc::new(Mutex::new(Vec::new()));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let source = CheckingSource {
        inner: MemorySource::from_payloads(1, payloads(records)),
        done: receiver.done.clone(),
        commits: commits.clone(),
        violations: violations.clone(),
    };
    let router =
        Digest::new(receiver.clone(), 3, Duration::from_secs(10), digest_text).max_entries(100);
    let report = Pipeline::new(source)
        .decode(Utf8)
        .classify(yes)
        .policy(Policy::binary(0.0, "all"))
        .route(router)
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(64)
        .commit_every(1, Duration::from_millis(100))
        .call_timeout(Duration::from_secs(30))
        .record_timeout(Duration::from_secs(120))
        .run()
        .await
        .unwrap();
    let checked = CheckingSource {
        inner: MemorySource::from_payloads(1, Vec::<String>::new()),
        done: receiver.done.clone(),
        commits,
        violations,
    };
    (report, checked)
}

#[tokio::test(start_paused = true)]
async fn digest_sends_three_then_one_digest_naming_37_more() {
    let receiver = Receiver::new(0);
    let started = tokio::time::Instant::now();
    let (report, checked) = digest_run(&receiver, 40).await;
    let messages = receiver.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        messages[..3]
            .iter()
            .all(|m| m.starts_with("problem report"))
    );
    assert!(
        messages[3].starts_with("and 37 more problem reports:"),
        "{}",
        messages[3]
    );
    assert_eq!(messages[3].lines().count(), 38);
    assert_eq!(report.stats.routed, 40);
    assert_eq!(receiver.done.lock().unwrap().len(), 40);
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "sent at the window's end"
    );
    assert!(checked.violations.lock().unwrap().is_empty());
}

/// The first digest fails: its 37 records are not done (no checkpoint
/// passes them) until the second digest, in the next window, is accepted.
#[tokio::test(start_paused = true)]
async fn digest_failure_is_retried_and_records_wait_for_acceptance() {
    let receiver = Receiver::new(1);
    let (report, checked) = digest_run(&receiver, 40).await;
    let violations = checked.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");
    let messages = receiver.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 5, "{messages:?}");
    assert_eq!(messages[3], "FAILED");
    assert!(
        messages[4].starts_with("and 37 more problem reports:"),
        "retried records fold again, without taking direct slots: {}",
        messages[4]
    );
    assert_eq!(report.stats.routed, 40);
    assert_eq!(report.stats.dead_lettered, 0);
    assert!(report.stats.retries >= 37, "{:?}", report.stats);
    let commits = checked.commits.lock().unwrap().clone();
    assert!(
        commits.iter().any(|&c| c < 39),
        "commits happened while the digest was pending: {commits:?}"
    );
    assert_eq!(commits.last(), Some(&39));
}

/// A window longer than the call timeout: each folded call times out,
/// leaves the digest, folds in again, until record time runs out; the
/// records are dead-lettered as timeouts and the digest is never sent.
#[tokio::test(start_paused = true)]
async fn digest_window_longer_than_call_timeout() {
    let receiver = Receiver::new(0);
    let dead = MemoryDeadLetter::new();
    let window = Duration::from_secs(30);
    let pipeline = |router| {
        Pipeline::new(MemorySource::from_payloads(1, payloads(10)))
            .decode(Utf8)
            .classify(yes)
            .policy(Policy::binary(0.0, "all"))
            .route(router)
            .dead_letter(dead.clone())
            .call_timeout(Duration::from_secs(10))
            .record_timeout(Duration::from_secs(25))
    };
    // Refused at start-up: the Digest (even behind Dedup and a BoxRouter)
    // says it holds calls for its window.
    let digest = Digest::new(receiver.clone(), 3, window, digest_text);
    let boxed = BoxRouter::new(Dedup::new(digest, MemoryDedupStore::new(HOUR)));
    let err = pipeline(boxed).run().await.unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Config(ConfigError::TimeoutWithinHold { hold, .. }) if hold == window
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("set `.call_timeout(..)` and `.record_timeout(..)` above 30s"),
        "hint first: {err}"
    );
    assert!(receiver.messages.lock().unwrap().is_empty());

    // A closure around the Digest hides its window: then every folded call
    // times out and its record is dead-lettered, never listed in a digest.
    let digest = Arc::new(Digest::new(receiver.clone(), 3, window, digest_text));
    let hidden = move |d: &Delivery<'_, String>| {
        let (digest, item, record, prediction, route) = (
            digest.clone(),
            d.item.clone(),
            d.record.clone(),
            d.prediction.clone(),
            d.route.clone(),
        );
        async move {
            let d = Delivery {
                item: &item,
                record: &record,
                prediction: &prediction,
                route: &route,
            };
            digest.route(&d).await
        }
    };
    let report = pipeline(BoxRouter::new(hidden)).run().await.unwrap();
    assert_eq!(report.stats.routed, 3);
    assert_eq!(report.stats.dead_lettered, 7);
    let entries = dead.entries();
    assert!(
        entries
            .iter()
            .all(|d| d.stage == Stage::Route && d.kind == "timeout"),
        "{:?}",
        entries
            .iter()
            .map(|d| (&d.stage, &d.kind))
            .collect::<Vec<_>>()
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(receiver.messages.lock().unwrap().len(), 3, "no digest sent");
}

#[tokio::test(start_paused = true)]
async fn digest_caps_entries_and_counts_the_rest() {
    let inner = RecordingRouter::<String>::new();
    let router = Digest::new(
        inner.clone(),
        1,
        Duration::from_secs(5),
        |b: &DigestBatch<'_, String>| format!("{} listed, {} omitted", b.entries.len(), b.omitted),
    )
    .max_entries(4);
    let report = run(
        MemorySource::from_payloads(1, payloads(11)),
        router,
        &MemoryDeadLetter::new(),
    )
    .await;
    assert_eq!(report.stats.routed, 11);
    let items: Vec<String> = inner.deliveries().into_iter().map(|d| d.item).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], "4 listed, 6 omitted");
}

/// Two routes have windows of their own; a new window after the end.
#[tokio::test(start_paused = true)]
async fn digest_limits_per_route_and_window() {
    let inner = RecordingRouter::<String>::new();
    let router = Arc::new(Digest::new(
        inner.clone(),
        2,
        Duration::from_secs(5),
        digest_text,
    ));
    let case = |route: &'static str| Case::new("x".to_string(), route);
    let cases: Vec<Case<String>> = (0..5)
        .map(|_| case("a"))
        .chain((0..3).map(|_| case("b")))
        .collect();
    conformance(&router, &cases).await;
    let by_route: HashMap<String, usize> =
        inner
            .deliveries()
            .into_iter()
            .fold(HashMap::new(), |mut m, d| {
                *m.entry(d.route.as_str().to_owned()).or_default() += 1;
                m
            });
    // a: 2 direct + 1 digest (3 folded); b: 2 direct + 1 digest (1 folded);
    // the suite's redelivery of a's first case lands in a's next window.
    assert_eq!(by_route["a"], 4, "{by_route:?}");
    assert_eq!(by_route["b"], 3, "{by_route:?}");
}

/// Folded records hold `max_in_flight` slots until their digest is sent:
/// a burst of 40 at `max_in_flight` 8 is not lost, it spreads over several
/// windows, each digest folding at most 8 records.
#[tokio::test(start_paused = true)]
async fn digest_burst_larger_than_max_in_flight_spreads_over_windows() {
    let receiver = Receiver::new(0);
    let router =
        Digest::new(receiver.clone(), 3, Duration::from_secs(10), digest_text).max_entries(100);
    let started = tokio::time::Instant::now();
    let report = Pipeline::new(MemorySource::from_payloads(1, payloads(40)))
        .decode(Utf8)
        .classify(yes)
        .policy(Policy::binary(0.0, "all"))
        .route(router)
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(8)
        .call_timeout(Duration::from_secs(30))
        .record_timeout(Duration::from_secs(600))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.routed, 40);
    assert_eq!(report.stats.dead_lettered, 0);
    assert_eq!(receiver.done.lock().unwrap().len(), 40);
    let messages = receiver.messages.lock().unwrap().clone();
    let digests: Vec<usize> = messages
        .iter()
        .filter(|m| m.starts_with("and "))
        .map(|m| m.lines().count() - 1)
        .collect();
    assert!(digests.len() >= 2, "{messages:?}");
    assert!(digests.iter().all(|&n| n <= 8), "{digests:?}");
    let windows = digests.len() as u32;
    assert!(
        started.elapsed() >= Duration::from_secs(10) * windows,
        "one digest per window: {:?} for {windows}",
        started.elapsed()
    );
}

/// A failed direct send gives its slot back: its retry is sent directly,
/// not folded into the digest.
#[tokio::test(start_paused = true)]
async fn digest_failed_direct_send_frees_its_slot() {
    let calls = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), sent.clone());
    let flaky = move |d: &Delivery<'_, String>| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        let (s, item, route) = (s.clone(), d.item.clone(), d.route.clone());
        async move {
            if first {
                return Err(RouteError::unavailable("503"));
            }
            s.lock().unwrap().push(item);
            Ok(Receipt::new(route))
        }
    };
    let router = Digest::new(flaky, 1, Duration::from_secs(10), digest_text);
    let (a, b) = (
        Case::new("a".to_string(), "oncall"),
        Case::new("b".to_string(), "oncall"),
    );
    fn delivery(c: &Case<String>) -> Delivery<'_, String> {
        Delivery {
            item: &c.item,
            record: &c.record,
            prediction: &c.prediction,
            route: &c.route,
        }
    }
    assert!(router.route(&delivery(&a)).await.is_err());
    router.route(&delivery(&a)).await.unwrap();
    router.route(&delivery(&b)).await.unwrap();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent[0], "a", "the retry went directly: {sent:?}");
    assert!(sent[1].starts_with("and 1 more"), "{sent:?}");
}
