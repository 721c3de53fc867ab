//! The benchmark harness: `cargo run --release -p trellis-bench -- [options] [workload...]`.
//!
//! Every measurement runs in its own child process (this binary re-executed with a hidden
//! `__child` argument), pinned to one CPU; the runtimes of a workload are interleaved
//! (trellis, tokio, smol, futures, trellis, tokio, …) for several rounds, and the medians
//! are printed as a Markdown table with the ratios of trellis to tokio and to smol.

use std::collections::HashMap;
use std::process::{Command, ExitCode};

use trellis_bench::measure;
use trellis_bench::{Report, Runtime, Workload};

const USAGE: &str = "\
usage: trellis-bench [options] [workload...]

A workload word selects every workload whose name starts with it (`idle_memory`,
`contextvar`, `wake_one`); none selects all.

options:
  --rounds N        rounds per workload (default 5)
  --scale F         multiply every workload's size by F (default 1)
  --cpu N           pin the child processes to CPU N (default: the last allowed CPU)
  --runtimes LIST   comma-separated subset of trellis,tokio,smol,futures
  --list            list the workloads and exit
";

struct Options {
    rounds: usize,
    scale: f64,
    cpu: usize,
    runtimes: Vec<Runtime>,
    workloads: Vec<Workload>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        rounds: 5,
        scale: 1.0,
        cpu: *measure::allowed_cpus().last().unwrap_or(&0),
        runtimes: Runtime::ALL.to_vec(),
        workloads: Vec::new(),
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
            "--list" => {
                for w in Workload::ALL {
                    println!("{:22} n = {:>9}  {}", w.name(), w.default_n(), w.describe());
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

/// The child: pin, run one workload on one runtime, print `name\tvalue` lines.
fn child(args: &[String]) -> ExitCode {
    let [w, r, n, cpu] = args else {
        eprintln!("__child needs: workload runtime n cpu");
        return ExitCode::FAILURE;
    };
    let (Some(w), Some(r), Ok(n), Ok(cpu)) = (
        Workload::from_name(w),
        Runtime::from_name(r),
        n.parse::<usize>(),
        cpu.parse::<usize>(),
    ) else {
        eprintln!("__child: bad arguments {args:?}");
        return ExitCode::FAILURE;
    };
    if let Err(e) = measure::pin_to_cpu(cpu) {
        eprintln!("warning: cannot pin to CPU {cpu}: {e}");
    }
    match trellis_bench::run(w, r, n) {
        None => println!("n/a"),
        Some(report) => {
            for (name, value) in &report.metrics {
                println!("{name}\t{value}");
            }
            println!(
                "peak RSS MB\t{}",
                measure::peak_rss_bytes() as f64 / (1024.0 * 1024.0)
            );
        }
    }
    ExitCode::SUCCESS
}

fn run_child(w: Workload, r: Runtime, n: usize, cpu: usize) -> Result<Option<Report>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([
            "__child",
            w.name(),
            r.name(),
            &n.to_string(),
            &cpu.to_string(),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{} on {} failed ({}): {}",
            w.name(),
            r.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim() == "n/a" {
        return Ok(None);
    }
    let mut report = Report::default();
    for line in text.lines() {
        if let Some((name, value)) = line.split_once('\t') {
            report.push(
                name,
                value
                    .parse()
                    .map_err(|e| format!("bad value {line:?}: {e}"))?,
            );
        }
    }
    Ok(Some(report))
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

/// Medians per (workload, runtime, metric), with the metric order of first appearance.
struct Results {
    rows: Vec<(Workload, String)>,
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

    /// trellis ÷ `peer` for `metric`: the median of the per-round ratios (the two ran
    /// back to back in each round, so load that drifts between rounds cancels out), or the
    /// ratio of the medians when the rounds do not pair up.
    fn ratio(&self, w: Workload, peer: Runtime, metric: &str) -> Option<f64> {
        let key = |r: Runtime| (w, r, metric.to_string());
        let t = self.samples.get(&key(Runtime::Trellis))?;
        let p = self.samples.get(&key(peer))?;
        // A ratio of counts that round to zero (0.000 allocations per op) says nothing.
        if median(&mut p.clone()) < 0.0005 {
            return None;
        }
        if t.len() == p.len() && p.iter().all(|&v| v > 0.0) && t.iter().all(|&v| v >= 0.0) {
            let mut per_round: Vec<f64> = t.iter().zip(p).map(|(a, b)| a / b).collect();
            return Some(median(&mut per_round));
        }
        let (t, p) = (
            self.median(w, Runtime::Trellis, metric)?,
            self.median(w, peer, metric)?,
        );
        (p > 0.0 && t >= 0.0).then(|| t / p)
    }

    fn print(&self, runtimes: &[Runtime], only: Option<Workload>) {
        let mut header = String::from("| workload | metric |");
        let mut rule = String::from("|---|---|");
        for r in runtimes {
            header += &format!(" {} |", r.name());
            rule += "---:|";
        }
        header += " trellis/tokio | trellis/smol |";
        rule += "---:|---:|";
        println!("{header}\n{rule}");
        for (w, metric) in &self.rows {
            if only.is_some_and(|o| o != *w) {
                continue;
            }
            let mut line = format!("| {} | {} |", w.name(), metric);
            for &r in runtimes {
                let cell = match self.median(*w, r, metric) {
                    Some(v) => fmt(v),
                    None if self.na.get(&(*w, r)).copied().unwrap_or(false) => "n/a".into(),
                    None => "".into(),
                };
                line += &format!(" {cell} |");
            }
            line += &format!(
                " {} | {} |",
                ratio(self.ratio(*w, Runtime::Tokio, metric)),
                ratio(self.ratio(*w, Runtime::Smol, metric))
            );
            println!("{line}");
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__child") {
        return child(&args[1..]);
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
    eprintln!(
        "trellis-bench: {} workloads × {} runtimes × {} rounds, children pinned to CPU {}",
        o.workloads.len(),
        o.runtimes.len(),
        o.rounds,
        o.cpu
    );
    let started = std::time::Instant::now();
    let mut res = Results {
        rows: Vec::new(),
        samples: HashMap::new(),
        na: HashMap::new(),
    };
    let mut failed = false;
    for &w in &o.workloads {
        let n = ((w.default_n() as f64 * o.scale).round() as usize).max(1);
        eprint!("{} (n = {n}):", w.name());
        for round in 0..o.rounds {
            eprint!(" {}", round + 1);
            for &r in &o.runtimes {
                match run_child(w, r, n, o.cpu) {
                    Ok(None) => {
                        res.na.insert((w, r), true);
                    }
                    Ok(Some(report)) => {
                        for (metric, value) in report.metrics {
                            if !res.rows.iter().any(|(rw, m)| *rw == w && *m == metric) {
                                res.rows.push((w, metric.clone()));
                            }
                            res.samples.entry((w, r, metric)).or_default().push(value);
                        }
                    }
                    Err(e) => {
                        eprintln!("\nerror: {e}");
                        failed = true;
                    }
                }
            }
        }
        eprintln!();
    }
    eprintln!("done in {:.1} s\n", started.elapsed().as_secs_f64());
    res.print(&o.runtimes, None);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
