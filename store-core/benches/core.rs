//! Benchmarks of the core against baselines measured in the same run.
//!
//! Run: `cargo bench -p store-core --bench core` (≈ 1.5 minutes on 2 cores);
//! `-- --quick` for a shorter, noisier run; `-- --test` to run every
//! benchmark once (a smoke test: the summary is printed, marked not
//! meaningful). See `docs/benchmarks.md` for what each benchmark measures.
//!
//! After criterion's own report, every measured case is timed again in a
//! *paired* re-measurement — the cases of one goal interleaved round by round
//! (ABBA order, each timed part after an untimed warm-up), so drift on a
//! shared machine hits both sides alike — and a summary prints each goal's
//! ratio with "met" / "not met". Those verdicts use the median over rounds of
//! the per-round figure.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store_core::{DEFAULT_RETENTION, MemStore, SetOptions, StoreOptions, StoreValue, Watch, WatchOptions};

/// Keys per kind in every store and baseline map.
const KEYS: usize = 10_000;
/// Keys of the diagnostic `get` whose data stays in cache.
const HOT_KEYS: usize = 100;
const KIND: &str = "task";
/// Watchers of the fan-out benchmark.
const FANOUT_WATCHERS: usize = 1_000;
/// Sets timed between two (untimed) drains of the watchers.
const FANOUT_CHUNK: u64 = 100;
const HUB_CHUNK: u64 = 1_000;

// Goals (from the design).
const GET_MIN_SHARE: f64 = 0.50;
const HUB_MAX_OVERHEAD: f64 = 0.10;
const FANOUT_MAX_NS: f64 = 200.0;

/// A small typed value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
    n: u64,
}

/// A value type the benchmarks can make: `make(i, alt)` is the value of key
/// `i`; `alt` gives a different value, so alternating sets are real changes.
trait Sample: StoreValue + std::fmt::Debug {
    fn make(i: usize, alt: bool) -> Self;
}

impl Sample for Task {
    fn make(i: usize, alt: bool) -> Self {
        Task {
            title: format!("task number {i}"),
            done: alt,
            n: i as u64,
        }
    }
}

impl Sample for Value {
    fn make(i: usize, alt: bool) -> Self {
        json!({"title": format!("task number {i}"), "done": alt, "n": i})
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("task-{i:05}")).collect()
}

/// Per key, its two alternating values.
fn values<T: Sample>(n: usize) -> Vec<[T; 2]> {
    (0..n).map(|i| [T::make(i, false), T::make(i, true)]).collect()
}

/// Runs `iters` operations, returns the time they took (only the timed part).
type Runner = Box<dyn FnMut(u64) -> Duration>;

fn filled<T: Sample>(options: StoreOptions<T>, keys: &[String], values: &[[T; 2]]) -> MemStore<T> {
    let store = MemStore::new(options);
    for (k, v) in keys.iter().zip(values) {
        store.set(KIND, k, v[0].clone(), SetOptions::default()).unwrap();
    }
    store
}

/// The baseline, filled the way a store is: one insert per key.
fn raw_map<T: Sample>(keys: &[String], values: &[[T; 2]]) -> RwLock<HashMap<String, T>> {
    let map = RwLock::new(HashMap::new());
    for (k, v) in keys.iter().zip(values) {
        map.write().unwrap().insert(k.clone(), v[0].clone());
    }
    map
}

// ---- 1. get ----

fn get_core<T: Sample>(n: usize) -> Runner {
    let keys = keys(n);
    let store = filled(StoreOptions::new(), &keys, &values::<T>(n));
    let mut i = 0;
    Box::new(move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let key = &keys[i];
            i = if i + 1 == n { 0 } else { i + 1 };
            black_box(store.get(black_box(KIND), black_box(key)).unwrap());
        }
        start.elapsed()
    })
}

fn get_raw<T: Sample>(n: usize) -> Runner {
    let keys = keys(n);
    let map = raw_map(&keys, &values::<T>(n));
    let mut i = 0;
    Box::new(move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let key = &keys[i];
            i = if i + 1 == n { 0 } else { i + 1 };
            black_box(map.read().unwrap().get(black_box(key.as_str())).cloned());
        }
        start.elapsed()
    })
}

// ---- 2. set (and 3./4., which are sets with watchers) ----

/// `set` of real changes (each key alternates between its two values) on a
/// store with `retention` and `watchers` watchers of the kind. Sets are timed
/// in chunks of `chunk`; after each chunk, untimed, every watcher is drained
/// (and checked to have received exactly that chunk, so none overflowed).
fn set_core<T: Sample>(retention: usize, watchers: usize, chunk: u64) -> Runner {
    let keys = keys(KEYS);
    let values = values::<T>(KEYS);
    let store = filled(StoreOptions::new().retention(retention), &keys, &values);
    let buffer = usize::try_from(chunk).unwrap_or(usize::MAX).saturating_mul(2);
    let mut watches: Vec<Watch<T>> = (0..watchers)
        .map(|_| {
            store
                .watch(KIND, WatchOptions::new().buffer_size(buffer))
                .unwrap()
        })
        .collect();
    assert_eq!(store.watcher_count(), watchers);
    // Visit v of key k sets values[k][(v + 1) % 2]: always a change.
    let mut i = 0usize;
    Box::new(move |iters| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(chunk);
            left -= n;
            let start = Instant::now();
            for _ in 0..n {
                let (k, alt) = (i % KEYS, (i / KEYS).is_multiple_of(2));
                i = i.wrapping_add(1);
                let w = store
                    .set(
                        KIND,
                        &keys[k],
                        values[k][usize::from(alt)].clone(),
                        SetOptions::default(),
                    )
                    .unwrap();
                assert!(w.changed());
                black_box(w);
            }
            total += start.elapsed();
            for w in &mut watches {
                drain(w, n);
            }
        }
        total
    })
}

fn drain<T: std::fmt::Debug>(w: &mut Watch<T>, expect: u64) {
    let mut got = 0;
    while w.ready() > 0 {
        match w.next().now_or_never() {
            Some(Some(Ok(event))) => {
                black_box(event);
                got += 1;
            }
            other => panic!("watch ended or failed: {other:?}"),
        }
    }
    assert_eq!(got, expect, "a watcher missed events");
}

fn set_raw<T: Sample>() -> Runner {
    let keys = keys(KEYS);
    let values = values::<T>(KEYS);
    let map = raw_map(&keys, &values);
    let mut i = 0usize;
    Box::new(move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let (k, alt) = (i % KEYS, (i / KEYS).is_multiple_of(2));
            i = i.wrapping_add(1);
            let old = map
                .write()
                .unwrap()
                .insert(keys[k].clone(), values[k][usize::from(alt)].clone());
            black_box(old);
        }
        start.elapsed()
    })
}

// ---- cases ----

/// One measured case: built on first use, run by criterion, then again by
/// the summary if criterion ran it. Cases are kept (not freed and rebuilt)
/// so the summary times the very structures criterion timed: the 10,000-key
/// figures depend on heap layout.
struct Case {
    group: &'static str,
    name: &'static str,
    make: fn() -> Runner,
    runner: Option<Runner>,
    ran: bool,
}

impl Case {
    fn new(group: &'static str, name: &'static str, make: fn() -> Runner) -> Self {
        Case {
            group,
            name,
            make,
            runner: None,
            ran: false,
        }
    }

    fn run(&mut self, iters: u64) -> Duration {
        self.ran = true;
        (self.runner.get_or_insert_with(self.make))(iters)
    }
}

struct Cases {
    get_task: [Case; 2],
    get_json: [Case; 2],
    get_task_hot: [Case; 2],
    set_task: [Case; 2],
    set_json: [Case; 2],
    hub: [Case; 4],
    fanout: [Case; 2],
}

impl Cases {
    fn new() -> Self {
        Cases {
            get_task: [
                Case::new("get_task", "core", || get_core::<Task>(KEYS)),
                Case::new("get_task", "raw_rwlock_hashmap", || get_raw::<Task>(KEYS)),
            ],
            get_json: [
                Case::new("get_json", "core", || get_core::<Value>(KEYS)),
                Case::new("get_json", "raw_rwlock_hashmap", || get_raw::<Value>(KEYS)),
            ],
            get_task_hot: [
                Case::new("get_task_100_keys", "core", || get_core::<Task>(HOT_KEYS)),
                Case::new("get_task_100_keys", "raw_rwlock_hashmap", || {
                    get_raw::<Task>(HOT_KEYS)
                }),
            ],
            set_task: [
                Case::new("set_task", "core", || {
                    set_core::<Task>(DEFAULT_RETENTION, 0, u64::MAX)
                }),
                Case::new("set_task", "raw_rwlock_hashmap", set_raw::<Task>),
            ],
            set_json: [
                Case::new("set_json", "core", || {
                    set_core::<Value>(DEFAULT_RETENTION, 0, u64::MAX)
                }),
                Case::new("set_json", "raw_rwlock_hashmap", set_raw::<Value>),
            ],
            hub: [
                Case::new("hub", "set_retention0_no_watchers", || {
                    set_core::<Task>(0, 0, HUB_CHUNK)
                }),
                Case::new("hub", "set_retention1_no_watchers", || {
                    set_core::<Task>(1, 0, HUB_CHUNK)
                }),
                Case::new("hub", "set_retention10000_no_watchers", || {
                    set_core::<Task>(DEFAULT_RETENTION, 0, HUB_CHUNK)
                }),
                Case::new("hub", "set_retention10000_1_watcher", || {
                    set_core::<Task>(DEFAULT_RETENTION, 1, HUB_CHUNK)
                }),
            ],
            fanout: [
                Case::new("fanout", "set_0_watchers", || {
                    set_core::<Task>(DEFAULT_RETENTION, 0, FANOUT_CHUNK)
                }),
                Case::new("fanout", "set_1000_watchers", || {
                    set_core::<Task>(DEFAULT_RETENTION, FANOUT_WATCHERS, FANOUT_CHUNK)
                }),
            ],
        }
    }

    fn groups(&mut self) -> [&mut [Case]; 7] {
        [
            &mut self.get_task,
            &mut self.get_json,
            &mut self.get_task_hot,
            &mut self.set_task,
            &mut self.set_json,
            &mut self.hub,
            &mut self.fanout,
        ]
    }
}

fn bench_case(g: &mut BenchmarkGroup<'_, WallTime>, case: &mut Case) {
    g.bench_function(case.name, |b| b.iter_custom(|iters| case.run(iters)));
}

// ---- the summary ----

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `cargo bench`: full criterion run, full re-measurement.
    Bench,
    /// `-- --quick`: shorter re-measurement.
    Quick,
    /// `-- --test` or `cargo test --benches`: everything once; figures meaningless.
    Test,
    /// `--list`, `--profile-time`: no summary.
    None,
}

impl Mode {
    /// Mirrors criterion 0.5's reading of the same arguments.
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| {
            args.iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if has("--list") || has("--profile-time") {
            Mode::None
        } else if has("--test") || !has("--bench") {
            Mode::Test
        } else if has("--quick") {
            Mode::Quick
        } else {
            Mode::Bench
        }
    }

    /// (rounds, target timed duration of one case in one round)
    fn plan(self) -> (usize, Duration) {
        match self {
            Mode::Bench => (21, Duration::from_millis(40)),
            Mode::Quick => (5, Duration::from_millis(10)),
            Mode::Test | Mode::None => (1, Duration::ZERO),
        }
    }
}

/// Times `cases` in `rounds` interleaved rounds; returns, per round, each
/// case's time per operation in ns. Iteration counts are calibrated so one
/// case's timed part takes about `target` per round; each timed part follows
/// an untimed warm-up (a quarter of its length, and at least two passes over
/// the keys or as long as the timed part).
fn paired(cases: &mut [Case], mode: Mode) -> Vec<Vec<f64>> {
    let (rounds, target) = mode.plan();
    let iters: Vec<u64> = cases
        .iter_mut()
        .map(|case| {
            if mode == Mode::Test {
                return 1;
            }
            let fit = |n: u64, t: Duration| {
                let per = t.as_secs_f64() / n as f64;
                ((target.as_secs_f64() / per.max(1e-12)) as u64).max(1)
            };
            let mut n = 1u64;
            while case.run(n) < target / 4 && n < 1 << 40 {
                n *= 2;
            }
            // Once more at about the target length: the short runs above
            // are dominated by cold caches.
            let n = fit(n, case.run(n));
            fit(n, case.run(n))
        })
        .collect();
    (0..rounds)
        .map(|r| {
            let mut row = vec![0.0; cases.len()];
            let order: Vec<usize> = if r % 2 == 0 {
                (0..cases.len()).collect()
            } else {
                (0..cases.len()).rev().collect()
            };
            for c in order {
                // Untimed warm-up first: switching cases evicts the previous
                // one's data from cache; measure steady state, as criterion does.
                if mode != Mode::Test {
                    cases[c].run((iters[c] / 4).max(iters[c].min(2 * KEYS as u64)));
                }
                row[c] = cases[c].run(iters[c]).as_nanos() as f64 / iters[c] as f64;
            }
            if std::env::var_os("CORE_BENCH_VERBOSE").is_some() {
                let names: Vec<String> = cases.iter().map(|c| format!("{}/{}", c.group, c.name)).collect();
                println!("round {r}: {names:?} = {row:.1?} ns/op ({iters:?} iters)");
            }
            row
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and range over rounds of `f(row)`.
fn stat(rows: &[Vec<f64>], f: impl Fn(&[f64]) -> f64) -> (f64, f64, f64) {
    let v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), lo, hi)
}

fn col(rows: &[Vec<f64>], c: usize) -> f64 {
    median(rows.iter().map(|r| r[c]).collect())
}

struct Line {
    goal: String,
    measured: String,
    target: String,
    verdict: String,
    /// The row of the results file (see `bench/RESULTS-FORMAT.md`).
    row: Value,
}

/// A results-file row: zestor's figure against its same-run baseline.
#[allow(clippy::too_many_arguments)]
fn row(
    section: &str,
    case: String,
    value: f64,
    unit: &str,
    baseline: Option<(f64, &str)>,
    ratio: Option<(f64, &str)>,
    goal: Option<(&str, String, bool)>,
) -> Value {
    let mut r =
        json!({"section": section, "case": case, "value": value, "unit": unit, "verdict": "recorded"});
    if let Some((b, label)) = baseline {
        r["baseline"] = json!(b);
        r["baseline_label"] = json!(label);
    }
    if let Some((x, u)) = ratio {
        r["ratio"] = json!(x);
        r["ratio_unit"] = json!(u);
    }
    if let Some((id, text, met)) = goal {
        r["goal_id"] = json!(id);
        r["goal"] = json!(text);
        r["verdict"] = json!(if met { "met" } else { "not met" });
    }
    r
}

fn verdict(mode: Mode, met: Option<bool>) -> String {
    match (mode, met) {
        (Mode::Test, _) => "n/a (--test)".into(),
        (_, None) => "(no goal)".into(),
        (_, Some(true)) => "met".into(),
        (_, Some(false)) => "NOT MET".into(),
    }
}

fn summary(cases: &mut Cases, mode: Mode) {
    if mode == Mode::None {
        return;
    }
    let (rounds, target) = mode.plan();
    println!();
    println!("==== store-core benchmark summary ====");
    match mode {
        Mode::Test => println!("(--test mode: every case ran once; the figures below are NOT meaningful)"),
        _ => println!(
            "paired re-measurement: {rounds} interleaved rounds, ~{} ms timed per case per round; \
             median over rounds [min..max]",
            target.as_millis()
        ),
    }
    let mut lines = Vec::new();

    for (label, goal, pair) in [
        ("task", true, &mut cases.get_task),
        ("json", true, &mut cases.get_json),
        ("task, 100 keys (in cache)", false, &mut cases.get_task_hot),
    ] {
        if !pair.iter().all(|c| c.ran) {
            continue;
        }
        let rows = paired(pair, mode);
        let (share, lo, hi) = stat(&rows, |r| r[1] / r[0]);
        lines.push(Line {
            goal: format!(
                "1{}. get/{label}: core vs raw RwLock<HashMap> get+clone",
                if goal { "" } else { "'" }
            ),
            measured: format!(
                "core {:.1} ns, raw {:.1} ns: core at {:.0}% of raw throughput [{:.0}..{:.0}%]",
                col(&rows, 0),
                col(&rows, 1),
                share * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            target: if goal {
                format!(">= {:.0}%", GET_MIN_SHARE * 100.0)
            } else {
                "diagnostic".into()
            },
            verdict: verdict(mode, goal.then_some(share >= GET_MIN_SHARE)),
            row: row(
                "get",
                format!("`get`, {label}"),
                col(&rows, 0),
                "ns",
                Some((col(&rows, 1), "`RwLock<HashMap>` get + clone")),
                Some((share * 100.0, "%")),
                goal.then(|| {
                    let text = format!(">= {:.0} % of raw throughput", GET_MIN_SHARE * 100.0);
                    ("core-get", text, share >= GET_MIN_SHARE)
                }),
            ),
        });
    }

    for (label, pair) in [("task", &mut cases.set_task), ("json", &mut cases.set_json)] {
        if !pair.iter().all(|c| c.ran) {
            continue;
        }
        let rows = paired(pair, mode);
        let (share, lo, hi) = stat(&rows, |r| r[1] / r[0]);
        lines.push(Line {
            goal: format!("2. set/{label}: core vs raw RwLock<HashMap> insert"),
            measured: format!(
                "core {:.1} ns, raw {:.1} ns: core at {:.0}% of raw throughput [{:.0}..{:.0}%]",
                col(&rows, 0),
                col(&rows, 1),
                share * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            target: "record only".into(),
            verdict: verdict(mode, None),
            row: row(
                "set",
                format!("`set`, {label}"),
                col(&rows, 0),
                "ns",
                Some((col(&rows, 1), "`RwLock<HashMap>` insert")),
                Some((share * 100.0, "%")),
                None,
            ),
        });
    }

    if cases.hub.iter().all(|c| c.ran) {
        let rows = paired(&mut cases.hub, mode);
        let (over, lo, hi) = stat(&rows, |r| r[2] / r[0] - 1.0);
        let (loss, _, _) = stat(&rows, |r| 1.0 - r[0] / r[2]);
        lines.push(Line {
            goal: "3. hub, no watchers: set retention 10000 vs retention 0".into(),
            measured: format!(
                "{:.1} ns vs {:.1} ns: {:+.1}% cost [{:+.1}..{:+.1}%] (= {:.1}% throughput loss)",
                col(&rows, 2),
                col(&rows, 0),
                over * 100.0,
                lo * 100.0,
                hi * 100.0,
                loss * 100.0
            ),
            target: format!("<= {:.0}%", HUB_MAX_OVERHEAD * 100.0),
            verdict: verdict(mode, Some(over <= HUB_MAX_OVERHEAD)),
            row: row(
                "hub",
                "`set`, no watchers, retention 10,000".into(),
                col(&rows, 2),
                "ns",
                Some((col(&rows, 0), "the same with retention 0 (no hub work)")),
                Some((100.0 + over * 100.0, "%")),
                Some((
                    "core-hub",
                    format!(
                        "time per `set` <= {:.0} % of retention 0",
                        100.0 + HUB_MAX_OVERHEAD * 100.0
                    ),
                    over <= HUB_MAX_OVERHEAD,
                )),
            ),
        });
        let (code, lo, hi) = stat(&rows, |r| r[1] / r[0] - 1.0);
        lines.push(Line {
            goal: "3a. hub code path, no watchers: retention 1 vs 0".into(),
            measured: format!(
                "{:.1} ns vs {:.1} ns: {:+.1}% cost [{:+.1}..{:+.1}%]",
                col(&rows, 1),
                col(&rows, 0),
                code * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            target: "diagnostic".into(),
            verdict: verdict(mode, None),
            row: row(
                "hub",
                "`set`, no watchers, retention 1 (the hub's code path alone)".into(),
                col(&rows, 1),
                "ns",
                Some((col(&rows, 0), "retention 0")),
                Some((100.0 + code * 100.0, "%")),
                None,
            ),
        });
        let (one, lo, hi) = stat(&rows, |r| r[3] / r[0] - 1.0);
        lines.push(Line {
            goal: "3b. hub, 1 drained watcher: vs retention 0, none".into(),
            measured: format!(
                "{:.1} ns vs {:.1} ns: {:+.1}% cost [{:+.1}..{:+.1}%]",
                col(&rows, 3),
                col(&rows, 0),
                one * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            target: "record only".into(),
            verdict: verdict(mode, None),
            row: row(
                "hub",
                "`set`, 1 watcher drained every 1,000 sets".into(),
                col(&rows, 3),
                "ns",
                Some((col(&rows, 0), "retention 0, no watchers")),
                Some((100.0 + one * 100.0, "%")),
                None,
            ),
        });
    }

    if cases.fanout.iter().all(|c| c.ran) {
        let rows = paired(&mut cases.fanout, mode);
        let w = FANOUT_WATCHERS as f64;
        let (per, lo, hi) = stat(&rows, |r| (r[1] - r[0]) / w);
        lines.push(Line {
            goal: format!("4. fan-out: per watcher per event, {FANOUT_WATCHERS} watchers"),
            measured: format!(
                "set {:.0} ns with, {:.0} ns without: {:.1} ns [{:.1}..{:.1}]",
                col(&rows, 1),
                col(&rows, 0),
                per,
                lo,
                hi
            ),
            target: format!("<= {FANOUT_MAX_NS:.0} ns"),
            verdict: verdict(mode, Some(per <= FANOUT_MAX_NS)),
            row: row(
                "fan-out",
                format!("per watcher per event, {FANOUT_WATCHERS} watchers"),
                per,
                "ns",
                None,
                None,
                Some((
                    "core-fanout",
                    format!("<= {FANOUT_MAX_NS:.0} ns"),
                    per <= FANOUT_MAX_NS,
                )),
            ),
        });
    }

    if lines.is_empty() {
        println!("(no goal had all its cases run: nothing to compare)");
        return;
    }
    let w0 = lines.iter().map(|l| l.goal.chars().count()).max().unwrap_or(0);
    let w1 = lines
        .iter()
        .map(|l| l.measured.chars().count())
        .max()
        .unwrap_or(0);
    let w2 = lines.iter().map(|l| l.target.chars().count()).max().unwrap_or(0);
    println!("{:w0$} | {:w1$} | {:w2$} | verdict", "goal", "measured", "target");
    println!("{}", "-".repeat(w0 + w1 + w2 + 18));
    for l in &lines {
        println!(
            "{:w0$} | {:w1$} | {:w2$} | {}",
            l.goal, l.measured, l.target, l.verdict
        );
    }
    write_results(mode, rounds, target, lines.into_iter().map(|l| l.row).collect());
}

/// Writes `core.json` into `$ZESTOR_BENCH_OUT` when it is set.
fn write_results(mode: Mode, rounds: usize, target: Duration, rows: Vec<Value>) {
    let Some(dir) = std::env::var_os("ZESTOR_BENCH_OUT") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("core.json");
    let conditions = vec![
        format!("{KEYS} keys of one kind; values `Task {{title, done, n}}` (typed) or a JSON object"),
        format!(
            "paired re-measurement after criterion: {rounds} interleaved rounds (ABBA), ~{} ms timed per case per round; median over rounds",
            target.as_millis()
        ),
        format!(
            "fan-out: {FANOUT_WATCHERS} watchers of the kind, buffer 200, drained between chunks of {FANOUT_CHUNK} sets"
        ),
        "build: the bench profile (release, no LTO)".into(),
    ];
    let results = json!({
        "suite": "core",
        "title": "Core (store-core)",
        "source": "store-core/benches/core.rs",
        "command": "cargo bench -p store-core --bench core",
        "quick": mode != Mode::Bench,
        "written": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "conditions": conditions,
        "rows": rows,
    });
    let text = serde_json::to_string_pretty(&results).expect("results are JSON");
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("results written to {}", path.display());
}

fn main() {
    let mode = Mode::from_args();
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    let mut cases = Cases::new();
    for group in cases.groups() {
        let mut g = c.benchmark_group(group[0].group);
        for case in group.iter_mut() {
            bench_case(&mut g, case);
        }
        g.finish();
    }
    c.final_summary();
    summary(&mut cases, mode);
}
