//! The parent side of `trellis-bench-echo`: starts each server and the client as child
//! processes of this same binary, interleaves the servers over rounds (trellis, tokio,
//! smol, trellis, …), and prints the medians as Markdown tables with the ratios of trellis
//! to each peer (the median of the per-round ratios: trellis and the peer ran back to back
//! in each round, so load that drifts between rounds cancels out).
//!
//! Every child has a deadline: a server that does not say `ready`, a client that does not
//! finish, or a server that does not exit when its standard input closes is killed, and the
//! run fails with a message instead of hanging.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::echo::{Server, nofile_hard_limit, raise_nofile};
use crate::measure::allowed_cpus;

const USAGE: &str = "\
usage: trellis-bench-echo [options]

options:
  --mode M          echo (default), idle, multicore, syscalls or callgrind
  --rounds N        rounds, the servers interleaved in each (default 5; 3 for idle)
  --secs S          measured window per run, after the warm-up (default 2)
  --warmup S        warm-up before the window (default 0.5)
  --conns N         connections (default 100; 10000 in idle mode, fewer if RLIMIT_NOFILE's
                    hard limit is below 20000)
  --runtimes LIST   comma-separated servers: trellis, trellis-oneshot, trellis-soon, tokio,
                    smol, trellis-alt (echo, idle, syscalls, callgrind); trellis-mc, tokio-mc
                    (multicore)
  --alt-exe PATH    the trellis-bench-echo of another build: `trellis-alt` runs its trellis
                    server, interleaved with this build's (to compare two runtimes)
";

/// A benchmark mode (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Closed-loop echo, each server pinned to one CPU and the client to the other.
    Echo,
    /// Thousands of idle connections: the server's RSS per connection.
    Idle,
    /// The multi-core servers, unpinned, with a two-worker client sharing the cores.
    Multicore,
    /// The echo run with `perf stat` counting the server's syscalls (never timed).
    Syscalls,
    /// A fixed number of round trips against a server under callgrind.
    Callgrind,
}

impl Mode {
    fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "echo" => Mode::Echo,
            "idle" => Mode::Idle,
            "multicore" => Mode::Multicore,
            "syscalls" => Mode::Syscalls,
            "callgrind" => Mode::Callgrind,
            _ => return None,
        })
    }

    fn default_servers(self) -> Vec<Server> {
        match self {
            Mode::Echo | Mode::Syscalls => vec![
                Server::Trellis,
                Server::Tokio,
                Server::Smol,
                Server::TrellisOneshot,
            ],
            Mode::Idle => vec![Server::Trellis, Server::Tokio, Server::Smol],
            Mode::Multicore => vec![Server::TrellisMulticore, Server::TokioMulticore],
            Mode::Callgrind => vec![Server::Trellis, Server::Tokio],
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Options {
    mode: Mode,
    rounds: Option<usize>,
    secs: f64,
    warmup: f64,
    conns: Option<usize>,
    servers: Option<Vec<Server>>,
    alt_exe: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        mode: Mode::Echo,
        rounds: None,
        secs: 2.0,
        warmup: 0.5,
        conns: None,
        servers: None,
        alt_exe: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--mode" => {
                let m = value("--mode")?;
                o.mode = Mode::from_name(&m).ok_or(format!("unknown mode {m}"))?;
            }
            "--rounds" => {
                o.rounds = Some(
                    value("--rounds")?
                        .parse()
                        .map_err(|e| format!("--rounds: {e}"))?,
                )
            }
            "--secs" => {
                o.secs = value("--secs")?
                    .parse()
                    .map_err(|e| format!("--secs: {e}"))?
            }
            "--warmup" => {
                o.warmup = value("--warmup")?
                    .parse()
                    .map_err(|e| format!("--warmup: {e}"))?
            }
            "--conns" => {
                o.conns = Some(
                    value("--conns")?
                        .parse()
                        .map_err(|e| format!("--conns: {e}"))?,
                )
            }
            "--runtimes" => {
                o.servers = Some(
                    value("--runtimes")?
                        .split(',')
                        .map(|r| Server::from_name(r).ok_or(format!("unknown runtime {r}")))
                        .collect::<Result<_, _>>()?,
                )
            }
            "--alt-exe" => o.alt_exe = Some(PathBuf::from(value("--alt-exe")?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !(o.secs > 0.0 && o.warmup >= 0.0) {
        return Err("--secs must be positive and --warmup not negative".into());
    }
    let servers = o
        .servers
        .clone()
        .unwrap_or_else(|| o.mode.default_servers());
    for s in &servers {
        if *s == Server::TrellisAlt && o.alt_exe.is_none() {
            return Err("trellis-alt needs --alt-exe".into());
        }
        if s.multicore() != (o.mode == Mode::Multicore) {
            return Err(format!(
                "runtime {} does not run in mode {:?} (multicore takes trellis-mc and tokio-mc only)",
                s.name(),
                o.mode
            ));
        }
    }
    Ok(o)
}

/// Runs the harness with the command line `args` (without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    raise_nofile();
    let h = Harness::new(exe, o);
    println!("{}", crate::profile::describe());
    println!("load average before: {}", loadavg());
    let done = match h.o.mode {
        Mode::Echo | Mode::Multicore => h.echo(),
        Mode::Syscalls => h.syscalls(),
        Mode::Idle => h.idle(),
        Mode::Callgrind => h.callgrind(),
    };
    println!("\nload average after: {}", loadavg());
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `key value` lines.
fn parse_lines(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn get(map: &HashMap<String, String>, key: &str) -> io::Result<f64> {
    map.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other(format!("the client did not report {key}: {map:?}")))
}

/// Waits for `child` until `limit`, then kills it.
fn wait_deadline(child: &mut Child, limit: Duration, what: &str) -> io::Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} did not finish within {limit:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running server child.
struct ServerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    port: u16,
    name: &'static str,
}

impl ServerProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its standard input (the server then exits) and returns its last report
    /// (`accepted a,b`).
    fn stop(mut self, limit: Duration) -> io::Result<String> {
        drop(self.stdin.take());
        let status = wait_deadline(&mut self.child, limit, self.name)?;
        let mut accepted = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            if let Some(rest) = line.strip_prefix("accepted ") {
                accepted = rest.to_string();
            }
        }
        if !status.success() {
            return Err(io::Error::other(format!(
                "server {} exited with {status}",
                self.name
            )));
        }
        Ok(accepted)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // On an error path: never leave a server behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one echo run measured.
#[derive(Debug, Clone, Default)]
struct EchoSample {
    rps: f64,
    cpu_ns_per_req: f64,
    /// The user-mode share of the server's CPU time (`utime / (utime + stime)`).
    user_share: f64,
    server_util: f64,
    /// The share of the window the server spent runnable but off its CPU.
    server_wait: f64,
    client_util: f64,
    total: f64,
    accepted: String,
    /// `perf stat` counts (the syscalls mode): event name → count.
    counts: HashMap<String, f64>,
}

struct Harness {
    exe: PathBuf,
    o: Options,
    servers: Vec<Server>,
    server_cpu: Option<usize>,
    client_cpu: Option<usize>,
}

impl Harness {
    fn new(exe: PathBuf, o: Options) -> Harness {
        let cpus = allowed_cpus();
        let servers = o
            .servers
            .clone()
            .unwrap_or_else(|| o.mode.default_servers());
        let (server_cpu, client_cpu) = if o.mode == Mode::Multicore {
            (None, None)
        } else {
            let first = cpus.first().copied().unwrap_or(0);
            (Some(first), Some(cpus.get(1).copied().unwrap_or(first)))
        };
        Harness {
            exe,
            o,
            servers,
            server_cpu,
            client_cpu,
        }
    }

    fn rounds(&self, default: usize) -> usize {
        self.o.rounds.unwrap_or(default).max(1)
    }

    fn conns(&self, default: usize) -> usize {
        self.o.conns.unwrap_or(default).max(1)
    }

    fn cpu_arg(cpu: Option<usize>) -> String {
        cpu.map_or("-".into(), |c| c.to_string())
    }

    /// Starts `server` (under `wrapper`, e.g. valgrind, if given) and waits for its port.
    fn start_server(&self, server: Server, wrapper: &[String]) -> io::Result<ServerProc> {
        let exe = match (server, &self.o.alt_exe) {
            (Server::TrellisAlt, Some(alt)) => alt,
            _ => &self.exe,
        };
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.arg("__server")
            .arg(server.name())
            .arg(Self::cpu_arg(self.server_cpu))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if server.oneshot() {
            cmd.env("TRELLIS_REACTOR_ONESHOT", "1");
        } else {
            cmd.env_remove("TRELLIS_REACTOR_ONESHOT");
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let limit = if wrapper.is_empty() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(120)
        };
        let mut proc = ServerProc {
            child,
            stdin,
            lines,
            port: 0,
            name: server.name(),
        };
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match proc.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.strip_prefix("ready ") {
                        proc.port = port
                            .trim()
                            .parse()
                            .map_err(|_| io::Error::other(format!("bad ready line {line:?}")))?;
                        return Ok(proc);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("server {} did not start within {limit:?}", server.name()),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!(
                        "server {} exited before it was ready",
                        server.name()
                    )));
                }
            }
        }
    }

    /// Runs the client with `args` after `__client`, until `limit`; its `key value` lines.
    fn client(&self, args: &[String], limit: Duration) -> io::Result<HashMap<String, String>> {
        let mut child = Command::new(&self.exe)
            .arg("__client")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .env_remove("TRELLIS_REACTOR_ONESHOT")
            .spawn()?;
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let status = wait_deadline(&mut child, limit, "the client")?;
        let text = reader.join().unwrap_or_default();
        if !status.success() {
            return Err(io::Error::other(format!("the client exited with {status}")));
        }
        Ok(parse_lines(&text))
    }

    fn client_threads(&self) -> usize {
        if self.o.mode == Mode::Multicore { 2 } else { 1 }
    }

    /// One echo run of `server`; with `perf`, the server's syscalls are counted.
    fn echo_once(
        &self,
        server: Server,
        perf: Option<(&[String], Duration)>,
    ) -> io::Result<EchoSample> {
        let proc = self.start_server(server, &[])?;
        let counter = match perf {
            Some((events, settle)) => Some(PerfStat::attach(proc.pid(), events, settle)?),
            None => None,
        };
        let conns = self.conns(100);
        let warm_ms = (self.o.warmup * 1000.0).round() as u64;
        let window_ms = ((self.o.secs * 1000.0).round() as u64).max(1);
        let args = [
            "echo".to_string(),
            proc.port.to_string(),
            proc.pid().to_string(),
            Self::cpu_arg(self.client_cpu),
            conns.to_string(),
            warm_ms.to_string(),
            window_ms.to_string(),
            self.client_threads().to_string(),
        ];
        let limit = Duration::from_millis(warm_ms + window_ms) + Duration::from_secs(20);
        let out = self.client(&args, limit);
        let accepted = proc.stop(Duration::from_secs(10))?;
        let out = out?;
        let requests = get(&out, "requests")?;
        let secs = get(&out, "secs")?;
        let server_ns = get(&out, "server_cpu_ns")?;
        let client_ns = get(&out, "client_cpu_ns")?;
        let counts = match counter {
            Some(c) => c.finish()?,
            None => HashMap::new(),
        };
        Ok(EchoSample {
            rps: requests / secs,
            cpu_ns_per_req: server_ns / requests.max(1.0),
            user_share: {
                let (user, system) = (get(&out, "server_user_ns")?, get(&out, "server_sys_ns")?);
                user / (user + system).max(1.0)
            },
            server_util: server_ns / (secs * 1e9),
            server_wait: get(&out, "server_wait_ns")? / (secs * 1e9),
            client_util: client_ns / (secs * 1e9),
            total: get(&out, "total")?,
            accepted,
            counts,
        })
    }

    fn print_setup(&self, rounds: usize, conns: usize) {
        let place = |cpu: Option<usize>| cpu.map_or("unpinned".to_string(), |c| format!("CPU {c}"));
        let window = if self.o.mode == Mode::Idle {
            String::new()
        } else {
            format!(", {} s warm-up + {} s window", self.o.warmup, self.o.secs)
        };
        println!(
            "mode {:?}: {} rounds, {conns} connections{window}; server {}, client {} ({} thread{}); allowed CPUs {:?}",
            self.o.mode,
            rounds,
            place(self.server_cpu),
            place(self.client_cpu),
            self.client_threads(),
            if self.client_threads() == 1 { "" } else { "s" },
            allowed_cpus(),
        );
    }

    fn echo(&self) -> io::Result<()> {
        let rounds = self.rounds(5);
        self.print_setup(rounds, self.conns(100));
        let mut samples: HashMap<Server, Vec<EchoSample>> = HashMap::new();
        for round in 0..rounds {
            for &s in &self.servers {
                let sample = self.echo_once(s, None)?;
                eprintln!(
                    "round {} {:16} {:>10.0} req/s {:>7.2} µs CPU/req server {:>4.0}% (waiting {:>3.0}%) client {:>4.0}% accepted {}",
                    round + 1,
                    s.name(),
                    sample.rps,
                    sample.cpu_ns_per_req / 1e3,
                    sample.server_util * 100.0,
                    sample.server_wait * 100.0,
                    sample.client_util * 100.0,
                    sample.accepted
                );
                samples.entry(s).or_default().push(sample);
            }
        }
        println!();
        let multicore = self.o.mode == Mode::Multicore;
        let (extra_head, extra_rule) = if multicore {
            (" connections per trellis runtime (last round) |", "---|")
        } else {
            ("", "")
        };
        println!(
            "| runtime | req/s | server CPU µs/req | of which user mode % | server CPU % | server waiting for a CPU % | client CPU % |{extra_head}"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|{extra_rule}");
        for &s in &self.servers {
            let v = &samples[&s];
            let col = |f: fn(&EchoSample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
            let extra = match (multicore, v.last()) {
                (true, Some(x)) if s == Server::TrellisMulticore => format!(" {} |", x.accepted),
                (true, _) => " |".to_string(),
                _ => String::new(),
            };
            println!(
                "| {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |{extra}",
                s.name(),
                col(|x| x.rps),
                col(|x| x.cpu_ns_per_req / 1e3),
                col(|x| x.user_share * 100.0),
                col(|x| x.server_util * 100.0),
                col(|x| x.server_wait * 100.0),
                col(|x| x.client_util * 100.0),
            );
        }
        println!(
            "\n(CPU % of one core, over the window, every thread of the process: the multi-core servers can reach 200 %. \"Waiting for a CPU\": the server's threads were runnable but another process had the CPU, from schedstat. User mode %: utime / (utime + stime), 10 ms ticks.)"
        );
        let first = self.servers[0];
        if self.servers.len() > 1 {
            println!();
            println!("| ratio (median of per-round ratios) | req/s | server CPU/req |");
            println!("|---|---:|---:|");
            for &peer in &self.servers[1..] {
                let pairs = samples[&first].iter().zip(&samples[&peer]);
                let rps: Vec<f64> = pairs.clone().map(|(a, b)| a.rps / b.rps).collect();
                let cpu: Vec<f64> = pairs
                    .map(|(a, b)| a.cpu_ns_per_req / b.cpu_ns_per_req)
                    .collect();
                println!(
                    "| {} ÷ {} | {:.2}× | {:.2}× |",
                    first.name(),
                    peer.name(),
                    median(&rps),
                    median(&cpu)
                );
            }
        }
        Ok(())
    }

    fn syscalls(&self) -> io::Result<()> {
        let events = PerfStat::events()?;
        let rounds = self.rounds(3);
        self.print_setup(rounds, self.conns(100));
        println!(
            "counted with `perf stat -p <server> -e syscalls:sys_enter_*` from before the first connect to the server's exit, divided by every round trip the client made (warm-up included); connection set-up is counted too (about 6 syscalls per connection)"
        );
        let mut samples: HashMap<Server, Vec<EchoSample>> = HashMap::new();
        for round in 0..rounds {
            for &s in &self.servers {
                let sample = self.counted_echo(s, &events)?;
                eprintln!(
                    "round {} {:16} {:.0} round trips, {:.2} syscalls/req (req/s under the counter: {:.0})",
                    round + 1,
                    s.name(),
                    sample.total,
                    sample.counts.get("all").copied().unwrap_or(f64::NAN) / sample.total,
                    sample.rps
                );
                samples.entry(s).or_default().push(sample);
            }
        }
        // std's sockets read with recv and write with send (recvfrom / sendto here), so on
        // these servers a plain read or write is on another descriptor: the poller's
        // eventfd (polling clears it after every wait; a notify writes it).
        let groups: [(&str, &[&str]); 9] = [
            (
                "epoll_wait / epoll_pwait",
                &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
            ),
            ("epoll_ctl", &["epoll_ctl"]),
            ("recvfrom (socket reads)", &["recvfrom", "recvmsg", "readv"]),
            ("sendto (socket writes)", &["sendto", "sendmsg", "writev"]),
            ("read (not a socket: the poller's eventfd)", &["read"]),
            ("write (not a socket: the poller's eventfd)", &["write"]),
            ("timerfd_settime", &["timerfd_settime"]),
            ("accept4", &["accept4", "accept"]),
            ("all syscalls", &["all"]),
        ];
        println!();
        print!("| per request |");
        for &s in &self.servers {
            print!(" {} |", s.name());
        }
        println!();
        print!("|---|");
        for _ in &self.servers {
            print!("---:|");
        }
        println!();
        for (label, names) in groups {
            print!("| {label} |");
            for &s in &self.servers {
                let per: Vec<f64> = samples[&s]
                    .iter()
                    .map(|x| {
                        names
                            .iter()
                            .map(|n| x.counts.get(*n).copied().unwrap_or(0.0))
                            .sum::<f64>()
                            / x.total
                    })
                    .collect();
                print!(" {:.3} |", median(&per));
            }
            println!();
        }
        println!();
        println!("every counted syscall (median count per request), by server:");
        for &s in &self.servers {
            let mut names: Vec<&String> = samples[&s][0].counts.keys().collect();
            names.sort();
            let parts: Vec<String> = names
                .into_iter()
                .filter_map(|n| {
                    let per: Vec<f64> = samples[&s]
                        .iter()
                        .map(|x| x.counts.get(n).copied().unwrap_or(0.0) / x.total)
                        .collect();
                    let m = median(&per);
                    (m > 0.0).then(|| format!("{n} {m:.4}"))
                })
                .collect();
            println!("- {}: {}", s.name(), parts.join(", "));
        }
        Ok(())
    }

    /// One echo run under `perf stat`, again (up to 3 tries, giving perf longer to attach)
    /// if perf missed any accept: then it attached after the first connections.
    fn counted_echo(&self, s: Server, events: &[String]) -> io::Result<EchoSample> {
        let conns = self.conns(100) as f64;
        for attempt in 1..=3 {
            let sample = self.echo_once(s, Some((events, Duration::from_millis(500 * attempt))))?;
            let accepts = sample.counts.get("accept4").copied().unwrap_or(0.0)
                + sample.counts.get("accept").copied().unwrap_or(0.0);
            if accepts >= conns {
                return Ok(sample);
            }
            eprintln!(
                "perf saw {accepts} accepts for {conns} connections: it attached late; again"
            );
        }
        Err(io::Error::other("perf never attached in time (3 tries)"))
    }

    fn idle(&self) -> io::Result<()> {
        let hard = nofile_hard_limit();
        let wanted = self.conns(10_000);
        // Each process holds one descriptor per connection plus a few of its own.
        let fits = (hard.saturating_sub(64)) as usize;
        let conns = wanted.min(fits);
        if conns < wanted {
            println!(
                "RLIMIT_NOFILE's hard limit is {hard}: {conns} connections instead of {wanted}"
            );
        } else {
            println!("RLIMIT_NOFILE hard limit {hard}: {conns} connections fit");
        }
        let rounds = self.rounds(3);
        self.print_setup(rounds, conns);
        let mut per_conn: HashMap<Server, Vec<f64>> = HashMap::new();
        let mut rss: HashMap<Server, Vec<(f64, f64)>> = HashMap::new();
        for round in 0..rounds {
            for &s in &self.servers {
                let proc = self.start_server(s, &[])?;
                let args = [
                    "idle".to_string(),
                    proc.port.to_string(),
                    proc.pid().to_string(),
                    Self::cpu_arg(self.client_cpu),
                    conns.to_string(),
                    "-".into(),
                    "-".into(),
                    "1".into(),
                ];
                let out = self.client(&args, Duration::from_secs(120));
                proc.stop(Duration::from_secs(20))?;
                let out = out?;
                let held = get(&out, "conns")?;
                let before = get(&out, "rss_before")?;
                let after = get(&out, "rss_after")?;
                let b = (after - before) / held;
                eprintln!(
                    "round {} {:16} {held} connections in {:.2} s: RSS {:.1} → {:.1} MiB, {b:.0} B/conn",
                    round + 1,
                    s.name(),
                    get(&out, "connect_secs")?,
                    before / 1048576.0,
                    after / 1048576.0
                );
                per_conn.entry(s).or_default().push(b);
                rss.entry(s).or_default().push((before, after));
            }
        }
        println!();
        println!(
            "| runtime | connections | RSS before MiB | RSS after MiB | RSS per connection (B) |"
        );
        println!("|---|---:|---:|---:|---:|");
        for &s in &self.servers {
            let v = &rss[&s];
            println!(
                "| {} | {conns} | {:.1} | {:.1} | {:.0} |",
                s.name(),
                median(&v.iter().map(|x| x.0).collect::<Vec<_>>()) / 1048576.0,
                median(&v.iter().map(|x| x.1).collect::<Vec<_>>()) / 1048576.0,
                median(&per_conn[&s]),
            );
        }
        let first = self.servers[0];
        if self.servers.len() > 1 {
            println!();
            println!("| ratio (median of per-round ratios) | RSS per connection |");
            println!("|---|---:|");
            for &peer in &self.servers[1..] {
                let r: Vec<f64> = per_conn[&first]
                    .iter()
                    .zip(&per_conn[&peer])
                    .map(|(a, b)| a / b)
                    .collect();
                println!(
                    "| {} ÷ {} | {:.2}× |",
                    first.name(),
                    peer.name(),
                    median(&r)
                );
            }
        }
        Ok(())
    }

    /// Instructions per request in the server: callgrind runs at n and 2n round trips per
    /// connection, the difference divided by the extra requests (set-up and tear-down
    /// cancel), and the top functions of the 2n run.
    fn callgrind(&self) -> io::Result<()> {
        let conns = self.conns(100);
        let per_conn = 50u64;
        let dir = std::env::temp_dir().join(format!("trellis-echo-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        println!(
            "callgrind: {conns} connections × {per_conn} and × {} round trips; files in {}",
            2 * per_conn,
            dir.display()
        );
        println!();
        println!("| runtime | Ir per request (2n − n) |");
        println!("|---|---:|");
        let mut tops = Vec::new();
        for &s in &self.servers {
            let mut ir = Vec::new();
            for rounds in [per_conn, 2 * per_conn] {
                let out = dir.join(format!("cg.{}.{rounds}", s.name()));
                let wrapper = [
                    "valgrind".to_string(),
                    "-q".into(),
                    "--tool=callgrind".into(),
                    format!("--callgrind-out-file={}", out.display()),
                ];
                let proc = self.start_server(s, &wrapper)?;
                let args = [
                    "count".to_string(),
                    proc.port.to_string(),
                    proc.pid().to_string(),
                    Self::cpu_arg(self.client_cpu),
                    conns.to_string(),
                    rounds.to_string(),
                    "-".into(),
                    "1".into(),
                ];
                let got = self.client(&args, Duration::from_secs(300));
                proc.stop(Duration::from_secs(120))?;
                let total = get(&got?, "total")?;
                ir.push((total, summary_ir(&out)?));
                if rounds == 2 * per_conn {
                    tops.push((s, out, total));
                }
            }
            let per = (ir[1].1 - ir[0].1) / (ir[1].0 - ir[0].0);
            println!("| {} | {per:.0} |", s.name());
        }
        for (s, out, requests) in tops {
            for inclusive in ["no", "yes"] {
                println!(
                    "\n{} (the 2n run, {requests} requests, set-up included), `callgrind_annotate --inclusive={inclusive}`, Ir per request:",
                    s.name()
                );
                println!();
                println!("| Ir/req | function |");
                println!("|---:|---|");
                let rows = annotate(&out, inclusive)?
                    .into_iter()
                    .filter(|(_, f)| !is_start_up(f))
                    .take(25);
                for (ir, function) in rows {
                    println!("| {:.0} | `{function}` |", ir / requests);
                }
            }
        }
        Ok(())
    }
}

/// The frames every inclusive profile starts with (the process's start, `main`, the
/// server's dispatch): the same for every server, and all of the program's cost.
fn is_start_up(function: &str) -> bool {
    function.starts_with("0x")
        || function.contains("(below main)")
        || function.contains("csu/")
        || function == "main"
        || function.starts_with("std::rt::")
        || function.starts_with("std::sys::backtrace::")
        || function == "trellis_bench_echo::main"
        || function == "trellis_bench::echo::server::main"
}

/// The functions of a callgrind output file with their cost, most costly first.
fn annotate(path: &Path, inclusive: &str) -> io::Result<Vec<(f64, String)>> {
    let text = Command::new("callgrind_annotate")
        .arg(format!("--inclusive={inclusive}"))
        .arg(path)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run callgrind_annotate: {e}")))?;
    let text = String::from_utf8_lossy(&text.stdout);
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((number, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(ir) = number.replace(',', "").parse::<f64>() else {
            continue;
        };
        // `(12.34%)  file:function [object]`
        let Some(rest) = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
        else {
            continue;
        };
        let function = rest.1.trim();
        if function == "PROGRAM TOTALS" {
            continue;
        }
        let function = function.split(" [").next().unwrap_or(function);
        let function = function.strip_prefix("???:").unwrap_or(function);
        rows.push((ir, function.to_string()));
    }
    Ok(rows)
}

/// The `summary:` (total Ir) of a callgrind output file.
fn summary_ir(path: &Path) -> io::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no summary in {}", path.display())))
}

/// `perf stat` attached to a server for its whole life, counting syscall tracepoints.
struct PerfStat {
    child: Child,
    out: PathBuf,
}

/// The syscalls counted one by one (those this kernel has a tracepoint for), plus every
/// syscall (`raw_syscalls:sys_enter`, reported as `all`).
const SYSCALLS: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "accept4",
    "accept",
    "setsockopt",
    "close",
    "futex",
    "timerfd_settime",
    "clock_nanosleep",
    "sched_yield",
    "ioctl",
    "fcntl",
];

impl PerfStat {
    /// The `-e` events: the tracepoints that exist here, or an error saying what is missing.
    fn events() -> io::Result<Vec<String>> {
        let root = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(Path::new)
            .find(|r| r.join("events/syscalls").is_dir())
            .ok_or_else(|| {
                io::Error::other(
                    "no syscall tracepoints: mount tracefs (`mount -t tracefs nodev /sys/kernel/tracing`, as root)",
                )
            })?;
        let mut events: Vec<String> = SYSCALLS
            .iter()
            .filter(|s| root.join(format!("events/syscalls/sys_enter_{s}")).is_dir())
            .map(|s| format!("syscalls:sys_enter_{s}"))
            .collect();
        events.push("raw_syscalls:sys_enter".into());
        Ok(events)
    }

    fn attach(pid: u32, events: &[String], settle: Duration) -> io::Result<PerfStat> {
        let out = std::env::temp_dir().join(format!("trellis-echo-perf-{pid}.csv"));
        let child = Command::new("perf")
            .args(["stat", "-x,", "-o"])
            .arg(&out)
            .arg("-e")
            .arg(events.join(","))
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run perf: {e}")))?;
        // perf prints nothing when it has attached; give it time (checked afterwards: it
        // must have seen every accept).
        std::thread::sleep(settle);
        Ok(PerfStat { child, out })
    }

    /// Waits for perf to end (it does when the server exits) and reads its counts.
    fn finish(mut self) -> io::Result<HashMap<String, f64>> {
        let status = wait_deadline(&mut self.child, Duration::from_secs(10), "perf stat")?;
        let text = std::fs::read_to_string(&self.out)?;
        let _ = std::fs::remove_file(&self.out);
        if !status.success() {
            return Err(io::Error::other(format!(
                "perf stat exited with {status}: {text}"
            )));
        }
        let mut counts = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() < 3 {
                continue;
            }
            let Ok(value) = fields[0].parse::<f64>() else {
                continue;
            };
            let name = fields[2];
            let name = if name == "raw_syscalls:sys_enter" {
                "all"
            } else {
                name.trim_start_matches("syscalls:sys_enter_")
            };
            counts.insert(name.to_string(), value);
        }
        if !counts.contains_key("all") {
            return Err(io::Error::other(format!(
                "perf stat counted nothing: {text}"
            )));
        }
        Ok(counts)
    }
}
