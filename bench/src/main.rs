//! The benchmark harness: `cargo run --release -p trellis-bench -- [options] [workload...]`.
//!
//! Every measurement runs in its own child process, pinned to one CPU, in one of two
//! passes: the **timing** pass in the `trellis-bench-timing` binary (system allocator, no
//! syscall tracepoint: only clocks are read), the **counting** pass in this binary
//! (counting allocator, syscall tracepoint, RSS; its times are thrown away). The runtimes
//! of a workload are interleaved (trellis, tokio, smol, futures, flume, trellis, tokio, …)
//! for several rounds, and the medians are printed as a Markdown table with the ratios of
//! trellis to each peer (and of `trellis+noop`, trellis with a no-op instrument, to
//! trellis): times from the timing pass, counts from the counting pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use trellis_bench::measure::{self, Pass};
use trellis_bench::{Runtime, Workload, alloc, profile};

/// This binary counts: it runs the counting pass (and the harness).
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::COUNTING;

const TIMING_BIN: &str = "trellis-bench-timing";

const USAGE: &str = "\
usage: trellis-bench [options] [workload...]

A workload word selects every workload whose name starts with it (`idle_memory`,
`contextvar`, `wake_one`); none selects all.

options:
  --rounds N          timing rounds per workload (default 5)
  --count-rounds N    counting rounds per workload (default 3; counts barely vary)
  --pass P            timing, counting or both (default both)
  --scale F           multiply every workload's size by F (default 1)
  --cpu N             pin the child processes to CPU N (default: the last allowed CPU)
  --runtimes LIST     comma-separated subset of trellis,trellis+noop,tokio,smol,futures,
                      flume (flume runs the channel_* workloads only; trellis+noop is
                      trellis with a no-op instrument registered)
  --timing-exe WHICH  `timing` (default: the trellis-bench-timing binary) or `counting`
                      (time under the counting allocator, to measure what it costs)
  --tsv FILE          also write every sample (workload, runtime, metric, round, value)
  --compare EXE       interleave a second build's children (EXE: its trellis-bench, with
                      its trellis-bench-timing beside it) back to back with this build's,
                      and print both tables and the headline figures side by side
                      (bench/lto-abort.sh: fat LTO + panic=abort)
  --overhead          measure what the counters cost (allocation, syscall) and exit
  --list              list the workloads and exit
";

struct Options {
    rounds: usize,
    count_rounds: usize,
    passes: Vec<Pass>,
    scale: f64,
    cpu: usize,
    runtimes: Vec<Runtime>,
    workloads: Vec<Workload>,
    time_with_counters: bool,
    overhead: bool,
    tsv: Option<PathBuf>,
    compare: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        rounds: 5,
        count_rounds: 3,
        passes: Pass::ALL.to_vec(),
        scale: 1.0,
        cpu: *measure::allowed_cpus().last().unwrap_or(&0),
        runtimes: Runtime::ALL.to_vec(),
        workloads: Vec::new(),
        time_with_counters: false,
        overhead: false,
        tsv: None,
        compare: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?
            }
            "--count-rounds" => {
                o.count_rounds = value("--count-rounds")?
                    .parse()
                    .map_err(|e| format!("--count-rounds: {e}"))?
            }
            "--pass" => {
                o.passes = match value("--pass")?.as_str() {
                    "both" => Pass::ALL.to_vec(),
                    p => vec![Pass::from_name(p).ok_or(format!("unknown pass {p}"))?],
                }
            }
            "--scale" => {
                o.scale = value("--scale")?
                    .parse()
                    .map_err(|e| format!("--scale: {e}"))?
            }
            "--cpu" => o.cpu = value("--cpu")?.parse().map_err(|e| format!("--cpu: {e}"))?,
            "--runtimes" => {
                o.runtimes = value("--runtimes")?
                    .split(',')
                    .map(|r| Runtime::from_name(r).ok_or(format!("unknown runtime {r}")))
                    .collect::<Result<_, _>>()?
            }
            "--timing-exe" => {
                o.time_with_counters = match value("--timing-exe")?.as_str() {
                    "timing" => false,
                    "counting" => true,
                    other => return Err(format!("--timing-exe: unknown {other}")),
                }
            }
            "--overhead" => o.overhead = true,
            "--tsv" => o.tsv = Some(PathBuf::from(value("--tsv")?)),
            "--compare" => o.compare = Some(PathBuf::from(value("--compare")?)),
            "--list" => {
                for w in Workload::ALL {
                    println!("{:24} n = {:>9}  {}", w.name(), w.default_n(), w.describe());
                }
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(String::new()),
            word if word.starts_with('-') => return Err(format!("unknown option {word}")),
            word => {
                let found = Workload::select(word);
                if found.is_empty() {
                    return Err(format!("unknown workload {word} (see --list)"));
                }
                o.workloads.extend(found);
            }
        }
    }
    if o.workloads.is_empty() {
        o.workloads = Workload::ALL.to_vec();
    }
    Ok(o)
}

/// The two binaries: this one (counting) and the timing one beside it.
struct Exes {
    counting: PathBuf,
    timing: PathBuf,
    /// The `__build` description of the timing binary (its profile line).
    describe: String,
}

/// Asks `exe` for its build id and profile line.
fn build_of(exe: &Path, hint: &str) -> Result<(String, String), String> {
    let out = Command::new(exe)
        .arg("__build")
        .output()
        .map_err(|e| format!("{}: {e}; {hint}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let id = lines.next().unwrap_or_default().to_string();
    let describe = lines.next().unwrap_or_default().to_string();
    Ok((id, describe))
}

/// The two binaries of another build (`--compare`): `counting` and the timing binary
/// beside it, which must carry the same build id.
fn exes_at(counting: &Path) -> Result<Exes, String> {
    let timing = counting.with_file_name(format!("{TIMING_BIN}{}", std::env::consts::EXE_SUFFIX));
    let hint = "build it with `cargo build --release -p trellis-bench --bins` (and its \
                environment, e.g. bench/lto-abort.sh)";
    let (a, describe) = build_of(counting, hint)?;
    let (b, _) = build_of(&timing, hint)?;
    if a.is_empty() || a != b {
        return Err(format!(
            "{} and {} are not from the same build; {hint}",
            counting.display(),
            timing.display()
        ));
    }
    Ok(Exes {
        counting: counting.to_path_buf(),
        timing,
        describe,
    })
}

/// Finds the timing binary beside this one. Under `cargo run` (which builds only the binary
/// it runs) it is built first with the same profile, so it cannot be stale; either way its
/// build id must be this binary's (both link the same build of the library).
fn find_exes() -> Result<Exes, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let timing = me.with_file_name(format!("{TIMING_BIN}{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let target_dir = me
            .parent()
            .and_then(Path::parent)
            .ok_or("no target directory")?;
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", profile::PROFILE])
            .arg("--manifest-path")
            .arg(Path::new(&manifest).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .args(["-p", "trellis-bench", "--bin", TIMING_BIN])
            .status()
            .map_err(|e| format!("building {TIMING_BIN}: {e}"))?;
        if !status.success() {
            return Err(format!("building {TIMING_BIN} failed ({status})"));
        }
    }
    let hint = format!(
        "build both binaries with `cargo build --profile {} -p trellis-bench --bins`, \
         or run the harness with `cargo run`",
        profile::PROFILE
    );
    let (id, describe) = build_of(&timing, &hint)?;
    if id != profile::BUILD_ID {
        return Err(format!(
            "{} is not from the same build as {}; {hint}",
            timing.display(),
            me.display()
        ));
    }
    Ok(Exes {
        counting: me,
        timing,
        describe,
    })
}

/// The `order\tname\tvalue` lines of a child, or `None` for `n/a`.
type Lines = Option<Vec<(usize, String, f64)>>;

fn run_exe(exe: &Path, args: &[String], env: Option<(&str, &str)>) -> Result<String, String> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_child(
    exes: &Exes,
    o: &Options,
    w: Workload,
    r: Runtime,
    n: usize,
    pass: Pass,
) -> Result<Lines, String> {
    let (exe, env) = match pass {
        Pass::Counting => (&exes.counting, None),
        Pass::Timing if o.time_with_counters => (
            &exes.counting,
            Some(("TRELLIS_BENCH_TIME_WITH_COUNTERS", "1")),
        ),
        Pass::Timing => (&exes.timing, None),
    };
    let args = [
        "__child".to_string(),
        w.name().into(),
        r.name().into(),
        n.to_string(),
        o.cpu.to_string(),
        pass.name().into(),
    ];
    let text = run_exe(exe, &args, env)?;
    if text.trim() == "n/a" {
        return Ok(None);
    }
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(order), Some(name), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let order = order
            .parse()
            .map_err(|e| format!("bad line {line:?}: {e}"))?;
        let value = value
            .parse()
            .map_err(|e| format!("bad value {line:?}: {e}"))?;
        lines.push((order, name.to_string(), value));
    }
    Ok(Some(lines))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

fn fmt(v: f64) -> String {
    let a = v.abs();
    if a < 0.0005 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or(String::new(), |r| format!("{r:.2}×"))
}

/// Medians per (workload, runtime, metric), with the rows in the report's order.
struct Results {
    rows: Vec<(Workload, usize, String)>,
    /// The metrics the timing pass reported (the others are counts).
    timed: std::collections::HashSet<(Workload, String)>,
    samples: HashMap<(Workload, Runtime, String), Vec<f64>>,
    na: HashMap<(Workload, Runtime), bool>,
}

impl Results {
    fn median(&self, w: Workload, r: Runtime, metric: &str) -> Option<f64> {
        let mut v = self.samples.get(&(w, r, metric.to_string()))?.clone();
        if v.is_empty() {
            None
        } else {
            Some(median(&mut v))
        }
    }

    /// `num` ÷ `den` for `metric` (trellis ÷ a peer, or trellis+noop ÷ trellis): the
    /// median of the per-round ratios (the two ran back to back in each round, so load
    /// that drifts between rounds cancels out), or the ratio of the medians when the rounds
    /// do not pair up.
    fn ratio(&self, w: Workload, num: Runtime, den: Runtime, metric: &str) -> Option<f64> {
        let key = |r: Runtime| (w, r, metric.to_string());
        let t = self.samples.get(&key(num))?;
        let p = self.samples.get(&key(den))?;
        // A ratio of counts that round to zero (0.000 allocations per op) says nothing.
        if median(&mut p.clone()) < 0.0005 {
            return None;
        }
        if t.len() == p.len() && p.iter().all(|&v| v > 0.0) && t.iter().all(|&v| v >= 0.0) {
            let mut per_round: Vec<f64> = t.iter().zip(p).map(|(a, b)| a / b).collect();
            return Some(median(&mut per_round));
        }
        let (t, p) = (self.median(w, num, metric)?, self.median(w, den, metric)?);
        (p > 0.0 && t >= 0.0).then(|| t / p)
    }

    fn new() -> Results {
        Results {
            rows: Vec::new(),
            timed: Default::default(),
            samples: HashMap::new(),
            na: HashMap::new(),
        }
    }

    /// Files one child's output.
    fn add(&mut self, w: Workload, r: Runtime, pass: Pass, lines: Lines) {
        let Some(lines) = lines else {
            self.na.insert((w, r), true);
            return;
        };
        for (order, metric, value) in lines {
            if !self.rows.iter().any(|(rw, _, m)| *rw == w && *m == metric) {
                self.rows.push((w, order, metric.clone()));
            }
            if pass == Pass::Timing {
                self.timed.insert((w, metric.clone()));
            }
            self.samples.entry((w, r, metric)).or_default().push(value);
        }
    }

    /// The workload's headline time: its first metric from the timing pass.
    fn headline_time(&self, w: Workload) -> Option<&str> {
        self.rows
            .iter()
            .filter(|(rw, _, m)| *rw == w && self.timed.contains(&(w, m.clone())))
            .min_by_key(|(_, order, _)| *order)
            .map(|(_, _, m)| m.as_str())
    }

    /// Writes every sample to `path` as TSV.
    fn write_tsv(&self, path: &Path) -> std::io::Result<()> {
        let mut out = String::from("workload\truntime\tmetric\tround\tvalue\n");
        let mut keys: Vec<_> = self.samples.keys().collect();
        keys.sort_by_key(|(w, r, m)| {
            (
                Workload::ALL.iter().position(|x| x == w),
                Runtime::ALL.iter().position(|x| x == r),
                m.clone(),
            )
        });
        for key in keys {
            for (i, v) in self.samples[key].iter().enumerate() {
                out += &format!(
                    "{}\t{}\t{}\t{}\t{v}\n",
                    key.0.name(),
                    key.1.name(),
                    key.2,
                    i + 1
                );
            }
        }
        std::fs::write(path, out)
    }

    /// The runtimes of `runtimes` that ran at least one selected workload (flume runs the
    /// channels only: outside them it gets no column).
    fn shown(&self, runtimes: &[Runtime]) -> Vec<Runtime> {
        runtimes
            .iter()
            .copied()
            .filter(|&r| self.samples.keys().any(|(_, sr, _)| *sr == r))
            .collect()
    }

    /// The ratio columns: trellis ÷ each peer, and trellis+noop ÷ trellis (what a no-op
    /// instrument costs) when both trellis columns ran.
    fn ratio_columns(&self, runtimes: &[Runtime]) -> Vec<(Runtime, Runtime)> {
        let mut cols: Vec<(Runtime, Runtime)> = runtimes
            .iter()
            .copied()
            .filter(|&r| r != Runtime::Trellis && r != Runtime::TrellisNoop)
            .map(|r| (Runtime::Trellis, r))
            .collect();
        if runtimes.contains(&Runtime::Trellis) && runtimes.contains(&Runtime::TrellisNoop) {
            cols.insert(0, (Runtime::TrellisNoop, Runtime::Trellis));
        }
        cols
    }

    fn print(&self, runtimes: &[Runtime]) {
        let runtimes = &self.shown(runtimes)[..];
        let ratios = self.ratio_columns(runtimes);
        let mut header = String::from("| workload | metric |");
        let mut rule = String::from("|---|---|");
        for r in runtimes {
            header += &format!(" {} |", r.name());
            rule += "---:|";
        }
        for (num, den) in &ratios {
            header += &format!(" {}/{} |", num.name(), den.name());
            rule += "---:|";
        }
        println!("{header}\n{rule}");
        let mut rows = self.rows.clone();
        // Workloads in suite order, each one's metrics in its report's order.
        rows.sort_by_key(|(w, order, _)| (Workload::ALL.iter().position(|x| x == w), *order));
        for (w, _, metric) in &rows {
            let mut line = format!("| {} | {} |", w.name(), metric);
            for &r in runtimes {
                let cell = match self.median(*w, r, metric) {
                    Some(v) => fmt(v),
                    None if self.na.get(&(*w, r)).copied().unwrap_or(false) => "n/a".into(),
                    None => "".into(),
                };
                line += &format!(" {cell} |");
            }
            for &(num, den) in &ratios {
                line += &format!(" {} |", ratio(self.ratio(*w, num, den, metric)));
            }
            println!("{line}");
        }
    }
}

/// The headline time of every workload in two builds run back to back: `a → b` per
/// runtime with the median per-round ratio b ÷ a, and trellis ÷ tokio in each.
fn side_by_side(a: &Results, b: &Results, runtimes: &[Runtime]) {
    let runtimes = &a.shown(runtimes)[..];
    let mut header = String::from("| workload | metric |");
    let mut rule = String::from("|---|---|");
    for r in runtimes {
        header += &format!(" {} |", r.name());
        rule += "---:|";
    }
    header += " trellis/tokio |";
    rule += "---:|";
    println!("{header}\n{rule}");
    for &w in Workload::ALL {
        let Some(metric) = a.headline_time(w) else {
            continue;
        };
        let mut line = format!("| {} | {metric} |", w.name());
        for &r in runtimes {
            let key = (w, r, metric.to_string());
            let cell = match (a.median(w, r, metric), b.median(w, r, metric)) {
                (Some(x), Some(y)) => {
                    let per_round = match (a.samples.get(&key), b.samples.get(&key)) {
                        (Some(s), Some(t)) if s.len() == t.len() && s.iter().all(|&v| v > 0.0) => {
                            let mut q: Vec<f64> = t.iter().zip(s).map(|(t, s)| t / s).collect();
                            format!(" ({:.2}×)", median(&mut q))
                        }
                        _ => String::new(),
                    };
                    format!("{} → {}{per_round}", fmt(x), fmt(y))
                }
                _ if a.na.contains_key(&(w, r)) => "n/a".into(),
                _ => String::new(),
            };
            line += &format!(" {cell} |");
        }
        line += &format!(
            " {} → {} |",
            ratio(a.ratio(w, Runtime::Trellis, Runtime::Tokio, metric)),
            ratio(b.ratio(w, Runtime::Trellis, Runtime::Tokio, metric))
        );
        println!("{line}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `--overhead`: what the counters cost, each figure the median of `rounds` pinned
/// children.
fn overhead(exes: &Exes, o: &Options) -> ExitCode {
    let n = ((10_000_000.0 * o.scale).round() as usize).max(1);
    let cases = [
        (
            "alloc+free, system allocator (timing binary)",
            &exes.timing,
            "alloc",
        ),
        ("alloc+free, counting allocator", &exes.counting, "alloc"),
        ("getpid, tracepoint not open", &exes.counting, "syscall"),
        ("getpid, tracepoint open", &exes.counting, "syscall-traced"),
    ];
    let mut medians = Vec::new();
    for (label, exe, what) in cases {
        let mut v = Vec::new();
        for _ in 0..o.rounds {
            let args = [
                "__overhead".to_string(),
                what.to_string(),
                n.to_string(),
                o.cpu.to_string(),
            ];
            match run_exe(exe, &args, None) {
                Ok(text) => {
                    if let Ok(x) = text.trim().parse::<f64>() {
                        v.push(x);
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let m = (!v.is_empty()).then(|| median(&mut v));
        medians.push(m);
        println!(
            "| {label} | {} |",
            m.map_or("n/a (no tracepoint)".into(), |m| format!("{m:.1} ns"))
        );
    }
    if let (Some(a), Some(b)) = (medians[0], medians[1]) {
        println!(
            "| counting allocator, extra per alloc+free | {:.1} ns |",
            b - a
        );
    }
    if let (Some(a), Some(b)) = (medians[2], medians[3]) {
        println!("| tracepoint, extra per syscall | {:.1} ns |", b - a);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = trellis_bench::child::dispatch(&args) {
        return code;
    }
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let exes = match find_exes() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = loadavg();
    println!("build: {}", profile::describe());
    println!(
        "children pinned to CPU {}; load average (1, 5, 15 min) before: {load_before}",
        o.cpu
    );
    if o.overhead {
        println!("\n| what | median |\n|---|---:|");
        let code = overhead(&exes, &o);
        println!("\nload average after: {}", loadavg());
        return code;
    }
    let timing_exe = if o.time_with_counters {
        "the counting binary (counting allocator on the path: --timing-exe counting)"
    } else {
        "trellis-bench-timing (system allocator, no tracepoint)"
    };
    println!(
        "passes: {}; timing: {} rounds in {timing_exe}; counting: {} rounds in trellis-bench \
         (counting allocator, syscall tracepoint{})",
        o.passes
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        o.rounds,
        o.count_rounds,
        if measure::syscalls_available() {
            ""
        } else {
            " not available: no syscall counts"
        }
    );
    eprintln!(
        "trellis-bench: {} workloads × {} runtimes × ({} timing + {} counting) rounds, \
         children pinned to CPU {}",
        o.workloads.len(),
        o.runtimes.len(),
        if o.passes.contains(&Pass::Timing) {
            o.rounds
        } else {
            0
        },
        if o.passes.contains(&Pass::Counting) {
            o.count_rounds
        } else {
            0
        },
        o.cpu
    );
    let other = match o.compare.as_deref().map(exes_at).transpose() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: --compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(b) = &other {
        println!(
            "compared with (each child run back to back with this build's): {}",
            b.describe
        );
    }
    let builds: Vec<&Exes> = std::iter::once(&exes).chain(other.as_ref()).collect();
    let started = std::time::Instant::now();
    let mut res: Vec<Results> = builds.iter().map(|_| Results::new()).collect();
    let mut failed = false;
    for &w in &o.workloads {
        let n = ((w.default_n() as f64 * o.scale).round() as usize).max(1);
        eprint!("{} (n = {n}):", w.name());
        for round in 0..o.rounds.max(o.count_rounds) {
            eprint!(" {}", round + 1);
            for &pass in &o.passes {
                let rounds = match pass {
                    Pass::Timing => o.rounds,
                    Pass::Counting => o.count_rounds,
                };
                if round >= rounds {
                    continue;
                }
                for &r in &o.runtimes {
                    for (b, build) in builds.iter().enumerate() {
                        match run_child(build, &o, w, r, n, pass) {
                            Ok(lines) => res[b].add(w, r, pass, lines),
                            Err(e) => {
                                eprintln!("\nerror: {e}");
                                failed = true;
                            }
                        }
                    }
                }
            }
        }
        eprintln!();
    }
    eprintln!("done in {:.1} s\n", started.elapsed().as_secs_f64());
    println!(
        "done in {:.0} s; load average after: {}\n",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    if let [a, b] = &res[..] {
        println!("### This build\n\nbuild: {}\n", exes.describe);
        a.print(&o.runtimes);
        println!("\n### Compared build\n\nbuild: {}\n", builds[1].describe);
        b.print(&o.runtimes);
        println!("\n### Side by side (this build → compared build)\n");
        side_by_side(a, b, &o.runtimes);
    } else {
        res[0].print(&o.runtimes);
    }
    if let Some(path) = &o.tsv {
        for (k, r) in res.iter().enumerate() {
            let path = if k == 0 {
                path.clone()
            } else {
                let mut p = path.clone().into_os_string();
                p.push(".compared");
                PathBuf::from(p)
            };
            if let Err(e) = r.write_tsv(&path) {
                eprintln!("error: writing {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
