//! Crash-restart: a real process runs the pipeline over a file-backed
//! stream with the file checkpoint store; this test SIGKILLs it at random
//! moments, 20 times under a seed, restarting it each time, then lets a last
//! run finish. It checks that nothing is lost, that each restart redelivers
//! no more than the uncommitted window, and that the checkpoint file is
//! never corrupt, including when the kill lands inside a checkpoint write.
//!
//! This file has its own `main` (`harness = false`): run with
//! `STREAMSIFT_CRASH_WORKER=<dir>` it is the worker; otherwise it is the
//! test, and starts itself as the worker.
//!
//! `STREAMSIFT_CRASH_SEED` picks the seed (default below);
//! `STREAMSIFT_CRASH_KILLS` the number of kills (default 20).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::reconcile::{Coverage, check_report};
use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore};
use streamsift::{
    ClassifyError, Delivery, FileSource, JsonLinesDeadLetter, Pipeline, Policy, Position,
    Prediction, Receipt, RouteError, Router, RunReport,
};

const ROLE_ENV: &str = "STREAMSIFT_CRASH_WORKER";
const RUN_ENV: &str = "STREAMSIFT_CRASH_RUN";
const STREAM: &str = "crash-stream";
const RECORDS: usize = 20_000;
/// The stream is this many files, `stream-0.jsonl`, `stream-1.jsonl`...:
/// one shard each, record `i` in file `i % SHARDS`.
const SHARDS: usize = 2;
/// Every `POISON_EVERY`th line is not JSON: it must be dead-lettered, once
/// per run that reaches it, never lost.
const POISON_EVERY: usize = 97;
const MAX_IN_FLIGHT: usize = 8;
const MAX_UNACKED: usize = 64;
const COMMIT_EVERY: u64 = 16;
const BATCH: usize = 10;

fn main() {
    if let Ok(dir) = std::env::var(ROLE_ENV) {
        let run: u32 = std::env::var(RUN_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if let Err(e) = worker(Path::new(&dir), run) {
            eprintln!("crash worker failed: {e}");
            std::process::exit(2);
        }
        return;
    }
    crash_restart();
    println!("test crash_restart ... ok");
}

// ---------------------------------------------------------------- worker --

#[derive(Debug, serde::Deserialize)]
struct Msg {
    id: u64,
    text: String,
}

/// Appends `run \t shard \t record id` per delivery, with one `write` call
/// each, before acknowledging: once `route` returns, the line is in the
/// kernel and survives a SIGKILL of this process.
struct DurableRouter {
    file: Mutex<std::fs::File>,
    run: u32,
}

impl Router<Msg> for DurableRouter {
    async fn route(&self, d: &Delivery<'_, Msg>) -> Result<Receipt, RouteError> {
        // A little latency, varying by record, so that records finish out of
        // order and runs last long enough to be killed in the middle.
        let micros = (d.item.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) * 2;
        tokio::time::sleep(Duration::from_micros(200 + micros)).await;
        let line = format!("{}\t{}\t{}\n", self.run, d.record.shard, d.record.id);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
            .map_err(|e| RouteError::unavailable("delivery log write failed").with_source(e))?;
        Ok(Receipt::new(d.route.clone()))
    }
}

fn worker(dir: &Path, run: u32) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = FileCheckpointStore::new(dir.join("checkpoints"));
        let source = (0..SHARDS)
            .fold(FileSource::builder(store), |b, f| {
                b.file(dir.join(format!("stream-{f}.jsonl")))
            })
            .stream(STREAM)
            .batch_size(BATCH)
            .open()
            .await?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("deliveries.log"))?;
        let report =
            Pipeline::new(source)
                .json::<Msg>()
                .classify(|m: &Msg| {
                    let score = if m.text.is_empty() { 0.0 } else { 0.9 };
                    async move {
                        Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score))
                    }
                })
                .policy(Policy::binary(0.5, "oncall"))
                .route(DurableRouter {
                    file: Mutex::new(file),
                    run,
                })
                .dead_letter(JsonLinesDeadLetter::create(dir.join("dead.jsonl")).unwrap())
                .max_in_flight(MAX_IN_FLIGHT)
                .max_unacked(MAX_UNACKED)
                .commit_every(COMMIT_EVERY, Duration::from_millis(5))
                .run()
                .await?;
        std::fs::write(
            dir.join(format!("report-{run}.json")),
            serde_json::to_vec(&report)?,
        )?;
        Ok(())
    })
}

// ------------------------------------------------------------------ test --

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spawn(dir: &Path, run: u32) -> Child {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    Command::new(exe)
        .env(ROLE_ENV, dir)
        .env(RUN_ENV, run.to_string())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("start the crash worker")
}

fn temp_files(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Offsets stored per shard (ShardEnd as usize::MAX), after checking that
/// the checkpoint file loads.
fn load_positions(
    store: &FileCheckpointStore,
    rt: &tokio::runtime::Runtime,
) -> BTreeMap<String, usize> {
    let positions = rt
        .block_on(store.load(STREAM))
        .unwrap_or_else(|e| panic!("the checkpoint file is corrupt after a kill: {e}"));
    positions
        .into_iter()
        .map(|(shard, p)| {
            let at = match p {
                Position::ShardEnd => usize::MAX,
                Position::Sequence(s) => s.number.parse().expect("offsets are numbers"),
            };
            (shard.as_str().to_string(), at)
        })
        .collect()
}

fn crash_restart() {
    let seed: u64 = std::env::var("STREAMSIFT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5);
    let kills: u32 = std::env::var("STREAMSIFT_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng(seed);
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crash-restart-{}-{seed:x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoint_dir = dir.join("checkpoints");
    let store = FileCheckpointStore::new(&checkpoint_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Record i is line i / SHARDS + 1 of file i % SHARDS: its id is
    // "stream-{file}.jsonl:{line}".
    let mut files = vec![String::new(); SHARDS];
    let mut all_ids: Vec<String> = Vec::with_capacity(RECORDS);
    let mut poison: HashSet<String> = HashSet::new();
    for i in 0..RECORDS {
        let (file, line) = (i % SHARDS, i / SHARDS + 1);
        let id = format!("stream-{file}.jsonl:{line}");
        if i % POISON_EVERY == POISON_EVERY - 1 {
            files[file].push_str(&format!("not json, line {i}\n"));
            poison.insert(id.clone());
        } else {
            files[file].push_str(&format!("{{\"id\":{i},\"text\":\"tweet number {i}\"}}\n"));
        }
        all_ids.push(id);
    }
    for (f, text) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("stream-{f}.jsonl")), text).unwrap();
    }
    assert_eq!(poison.len(), RECORDS / POISON_EVERY);
    assert_eq!(all_ids.len(), RECORDS);

    let started = Instant::now();
    let mut previous: BTreeMap<String, usize> = BTreeMap::new();
    let mut killed_in_write = 0;
    let mut finished_early = 0;
    let mut temps_seen: HashSet<String> = HashSet::new();
    let mut commits_between_kills = Vec::new();
    // If no kill landed inside a write in the 20 (a very fast disk), up to
    // 20 more write-timed kills are made before giving up.
    let mut run = 0;
    while run < kills || (killed_in_write == 0 && run < kills + 20) {
        let mut child = spawn(&dir, run);
        let t0 = Instant::now();
        // Even runs: killed at a random moment. Odd runs: killed the moment
        // a checkpoint temp file appears, that is inside the write window
        // (create temp, write, fsync, rename, fsync dir), after a random
        // number of such writes.
        let mut exited = None;
        if run % 2 == 0 && run < kills {
            let at = Duration::from_millis(20 + rng.below(200));
            while t0.elapsed() < at {
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            let skip = rng.below(4);
            let mut seen = 0;
            let mut last: HashSet<String> = temp_files(&checkpoint_dir);
            'watch: while t0.elapsed() < Duration::from_secs(10) {
                let now = temp_files(&checkpoint_dir);
                if now.difference(&last).next().is_some() {
                    if seen >= skip {
                        break 'watch;
                    }
                    seen += 1;
                }
                last = now;
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    break;
                }
                std::hint::spin_loop();
            }
        }
        if exited.is_none() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
        } else {
            finished_early += 1;
        }
        // Reaps the child (already exited, or just killed).
        let status = child.wait().unwrap();
        if exited.is_none() && status.success() {
            finished_early += 1;
        }
        // A temp file left behind means the process died between creating
        // it and renaming it: the kill landed inside the write.
        let now = temp_files(&checkpoint_dir);
        let new_temps = now.difference(&temps_seen).count();
        if new_temps > 0 {
            killed_in_write += 1;
        }
        temps_seen = now;
        let positions = load_positions(&store, &rt);
        for (shard, at) in &previous {
            let now_at = positions.get(shard).copied().unwrap_or(0);
            assert!(
                now_at >= *at,
                "run {run}: shard {shard} checkpoint moved back from {at} to {now_at}"
            );
        }
        commits_between_kills.push(
            positions
                .values()
                .filter(|&&v| v != usize::MAX)
                .sum::<usize>(),
        );
        previous = positions;
        run += 1;
    }
    let kills = run;

    // The last run finishes.
    let last = kills;
    let status = spawn(&dir, last).wait().unwrap();
    assert!(status.success(), "the final run failed: {status}");
    let report: RunReport =
        serde_json::from_slice(&std::fs::read(dir.join(format!("report-{last}.json"))).unwrap())
            .unwrap();
    check_report(&report).unwrap();
    load_positions(&store, &rt);

    // Every record handled at least once: delivered, or dead-lettered.
    let log = std::fs::read_to_string(dir.join("deliveries.log")).unwrap();
    let mut coverage = Coverage::new(all_ids.iter().cloned());
    let mut by_run: Vec<(u32, String)> = Vec::new();
    for line in log.lines() {
        let mut parts = line.split('\t');
        let (Some(run), Some(_shard), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("torn delivery log line {line:?}");
        };
        let run: u32 = run.parse().unwrap();
        coverage.handled(id);
        by_run.push((run, id.to_string()));
    }
    let dead = JsonLinesDeadLetter::read_entries(dir.join("dead.jsonl")).unwrap();
    for entry in &dead {
        assert!(
            poison.contains(&entry.record_id),
            "a valid record was dead-lettered: {entry:?}"
        );
        assert_eq!(entry.kind, "invalid_json", "{entry:?}");
        coverage.handled(&entry.record_id);
    }
    for (_, id) in &by_run {
        assert!(!poison.contains(id), "a poison record was delivered: {id}");
    }
    let figures = coverage.check().unwrap();

    // Duplicates per restart: records handled in run k that some earlier
    // run had handled already. Dead letters carry no run number, so only
    // deliveries count here (the poison records are 1% of the stream).
    let mut handled_before: HashSet<&str> = HashSet::new();
    let mut per_run: BTreeMap<u32, usize> = BTreeMap::new();
    let mut this_run: HashMap<u32, Vec<&str>> = HashMap::new();
    for (run, id) in &by_run {
        this_run.entry(*run).or_default().push(id);
    }
    for run in 0..=last {
        let ids = this_run.get(&run).cloned().unwrap_or_default();
        let dups = ids.iter().filter(|id| handled_before.contains(*id)).count();
        per_run.insert(run, dups);
        handled_before.extend(ids);
    }
    let max_dups = per_run.values().copied().max().unwrap_or(0);
    println!(
        "crash_restart: seed {seed:#x}, {kills} kills ({killed_in_write} inside a checkpoint \
         write, {finished_early} runs finished before their kill), {} records, {} dead-lettered \
         entries, {} deliveries; duplicates: {} in all, {} records redelivered, most handlings of \
         one record {}, most redeliveries in one restart {max_dups} (max_unacked {MAX_UNACKED}, \
         commit_every {COMMIT_EVERY}); final run {:?}; {:.1} s",
        figures.records,
        dead.len(),
        by_run.len(),
        figures.duplicates,
        figures.records_with_duplicates,
        figures.max_handled,
        report.stats,
        started.elapsed().as_secs_f64(),
    );
    println!("crash_restart: redeliveries per run {per_run:?}");
    assert!(
        max_dups <= MAX_UNACKED,
        "a restart redelivered {max_dups} records, more than max_unacked = {MAX_UNACKED}: {per_run:?}"
    );
    assert!(
        finished_early * 2 < kills,
        "{finished_early} of {kills} runs finished before their kill: the stream is too short \
         for the kills to land in the middle of it"
    );
    assert!(
        kills < 4 || killed_in_write > 0,
        "no kill landed inside a checkpoint write; the write-window check did not run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
