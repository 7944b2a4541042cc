//! `boifi-bench`: runs boifi's benchmarks and writes their sections of `docs/PERFORMANCE.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use boifi_bench::{dataplane, delaycap, footprint, propagation, report, scale, BenchError};
use clap::{Args, Parser, Subcommand};

/// Runs boifi's benchmarks (see docs/PERFORMANCE.md).
#[derive(Debug, Parser)]
#[command(name = "boifi-bench", version, about)]
struct Cli {
    /// The document whose generated sections are rewritten.
    #[arg(long, global = true)]
    doc: Option<PathBuf>,
    /// Print the sections only; leave the document alone.
    #[arg(long, global = true)]
    no_doc: bool,
    /// Envoy binary (default: BOIFI_ENVOY, else scripts/envoy-path.sh).
    #[arg(long, global = true)]
    envoy: Option<PathBuf>,
    /// The filter module (default: BOIFI_WASM, else where `make wasm` puts it).
    #[arg(long, global = true)]
    wasm: Option<PathBuf>,
    /// The native dynamic module `libboifi.so` (default: BOIFI_NATIVE, else
    /// target/release/libboifi.so when built); its rows are left out when there is none.
    #[arg(long, global = true)]
    native: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Envoy with no filter, the native fault filter and boifi under the same load.
    Dataplane(DataplaneArgs),
    /// Write acknowledged → every sidecar of a mesh applied it.
    Propagation(PropagationArgs),
    /// One control-plane replica holding many long-polls, then one write.
    Scale(ScaleArgs),
    /// Module size, memory per VM, Envoy start to first 200.
    Footprint(FootprintArgs),
    /// Many requests held by a 60 s delay: the delay cap and memory per held request.
    Delaycap(DelaycapArgs),
    /// Every benchmark above with its defaults.
    All,
}

#[derive(Debug, Clone, Args)]
struct DataplaneArgs {
    /// Rounds over every configuration.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Seconds of warm-up before each measured run.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Another build of the filter to compare in configuration (d), as `LABEL=PATH`
    /// (repeatable).
    #[arg(long, value_parser = parse_extra)]
    extra_wasm: Vec<(String, PathBuf)>,
    /// Only these configurations, by letter (e.g. `acd`).
    #[arg(long)]
    only: Option<String>,
    /// Record each configuration's Envoy with `perf record` (first round) into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Pin Envoy to CPU 1, the load generator and the upstream to CPU 0.
    #[arg(long)]
    pin: bool,
}

fn parse_extra(text: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not of the form LABEL=PATH"))?;
    Ok((label.to_owned(), PathBuf::from(path)))
}

#[derive(Debug, Clone, Args)]
struct PropagationArgs {
    /// Sidecars in the mesh.
    #[arg(long, default_value_t = 50)]
    sidecars: usize,
    /// Writes to time.
    #[arg(long, default_value_t = 20)]
    writes: usize,
}

#[derive(Debug, Clone, Args)]
struct ScaleArgs {
    /// Waiting long-polls.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
}

#[derive(Debug, Clone, Args)]
struct FootprintArgs {
    /// Starts per configuration.
    #[arg(long, default_value_t = 5)]
    starts: usize,
}

#[derive(Debug, Clone, Args)]
struct DelaycapArgs {
    /// Concurrent requests.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// HTTP/2 connections they are spread over.
    #[arg(long, default_value_t = 10)]
    connections: usize,
}

struct Run<'a> {
    cli: &'a Cli,
    dir: tempfile::TempDir,
}

impl Run<'_> {
    fn envoy(&self) -> Result<PathBuf, BenchError> {
        match &self.cli.envoy {
            Some(p) => Ok(p.clone()),
            None => Ok(boifi_mesh::envoy::envoy_binary(
                &boifi_mesh::topology::repo_root(),
            )?),
        }
    }

    fn wasm(&self) -> Result<PathBuf, BenchError> {
        match &self.cli.wasm {
            Some(p) => Ok(p.clone()),
            None => Ok(boifi_mesh::mesh::wasm_path()?),
        }
    }

    fn native(&self) -> Option<PathBuf> {
        self.cli
            .native
            .clone()
            .or_else(|| std::env::var_os("BOIFI_NATIVE").map(PathBuf::from))
            .or_else(|| {
                let p = boifi_mesh::topology::repo_root().join("target/release/libboifi.so");
                p.is_file().then_some(p)
            })
    }

    fn publish(&self, key: &str, title: &str, body: &str) -> Result<(), BenchError> {
        let stamp = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        // The machine's cores, not this process's: `dataplane --pin` confines it to one.
        let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |t| {
            t.lines().filter(|l| l.starts_with("processor")).count()
        });
        let body = format!("{body}\n_Measured {stamp} on {cores} cores._\n");
        println!("## {title}\n\n{body}");
        if self.cli.no_doc {
            return Ok(());
        }
        let doc = self.cli.doc.clone().unwrap_or_else(|| {
            boifi_mesh::topology::repo_root()
                .join("docs")
                .join("PERFORMANCE.md")
        });
        report::write_section(&doc, key, title, &body)
    }

    fn dataplane(&self, a: &DataplaneArgs) -> Result<(), BenchError> {
        let o = dataplane::Options {
            envoy: self.envoy()?,
            wasm: self.wasm()?,
            rounds: a.rounds.max(1),
            duration: Duration::from_secs(a.duration.max(1)),
            warmup: Duration::from_secs(a.warmup),
            connections: a.connections.max(1),
            extra_wasm: a.extra_wasm.clone(),
            only: a.only.clone(),
            perf_dir: a.perf_dir.clone(),
            pin: a.pin,
            native: self.native(),
        };
        let body = dataplane::run(&o, self.dir.path())?;
        self.publish("dataplane", "Data plane", &body)
    }

    fn propagation(&self, a: &PropagationArgs) -> Result<(), BenchError> {
        // The mesh finds the filter through BOIFI_WASM or its default path.
        let o = propagation::Options {
            sidecars: a.sidecars.max(1),
            writes: a.writes.max(1),
        };
        let body = propagation::run(&o)?;
        self.publish("propagation", "Propagation", &body)
    }

    fn scale(&self, a: &ScaleArgs) -> Result<(), BenchError> {
        let body = scale::run(
            &scale::Options {
                clients: a.clients.max(1),
            },
            self.dir.path(),
        )?;
        self.publish("scale", "Control-plane scale", &body)
    }

    fn footprint(&self, a: &FootprintArgs) -> Result<(), BenchError> {
        let o = footprint::Options {
            envoy: self.envoy()?,
            wasm: self.wasm()?,
            starts: a.starts.max(1),
            native: self.native(),
        };
        let body = footprint::run(&o, self.dir.path())?;
        self.publish("footprint", "Filter footprint", &body)
    }

    fn delaycap(&self, a: &DelaycapArgs) -> Result<(), BenchError> {
        let o = delaycap::Options {
            envoy: self.envoy()?,
            wasm: self.wasm()?,
            requests: a.requests.max(1),
            connections: a.connections.max(1),
        };
        let body = delaycap::run(&o, self.dir.path())?;
        self.publish("delaycap", "Delay cap", &body)
    }
}

fn run(cli: &Cli) -> Result<(), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("boifi-bench-")
        .tempdir()
        .map_err(|e| BenchError::io("creating a temporary directory", e))?;
    let r = Run { cli, dir };
    match &cli.command {
        Command::Dataplane(a) => r.dataplane(a),
        Command::Propagation(a) => r.propagation(a),
        Command::Scale(a) => r.scale(a),
        Command::Footprint(a) => r.footprint(a),
        Command::Delaycap(a) => r.delaycap(a),
        Command::All => {
            r.footprint(&FootprintArgs { starts: 5 })?;
            r.delaycap(&DelaycapArgs {
                requests: 10_000,
                connections: 10,
            })?;
            r.scale(&ScaleArgs { clients: 10_000 })?;
            // Issue 31's data-plane goals are medians over at least 7 alternating rounds.
            r.dataplane(&DataplaneArgs {
                rounds: 7,
                duration: 5,
                warmup: 1,
                connections: 32,
                extra_wasm: Vec::new(),
                only: None,
                perf_dir: None,
                pin: false,
            })?;
            r.propagation(&PropagationArgs {
                sidecars: 50,
                writes: 20,
            })
        }
    }
}

fn main() -> ExitCode {
    // Envoy logs in local time; the propagation benchmark reads those timestamps as UTC.
    if std::env::var_os("TZ").is_none() {
        std::env::set_var("TZ", "UTC");
    }
    let cli = Cli::parse();
    if let Some(w) = &cli.wasm {
        // The mesh (propagation) reads the module path from here.
        std::env::set_var("BOIFI_WASM", w);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boifi-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
