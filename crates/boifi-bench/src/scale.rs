//! Control-plane scale: one `boifi-server` holding many waiting long-polls from a load tool
//! of our own (tokio, loopback), then one write: memory, CPU, and the time until every
//! long-poll is answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::BenchError;
use crate::policies;
use crate::report::{self, Table};
use crate::server::{self, Server};
use crate::stats;
use boifi_mesh::stats::quantile;

/// How to run the control-plane scale benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Waiting long-polls.
    pub clients: usize,
}

/// Raises the soft open-files limit to the hard one (the server, started after, inherits it).
pub fn raise_nofile(want: u64) -> Result<u64, BenchError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| BenchError::io("reading RLIMIT_NOFILE", e.into()))?;
    let target = want.min(hard).max(soft);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)
            .map_err(|e| BenchError::io("raising RLIMIT_NOFILE", e.into()))?;
    }
    Ok(target)
}

/// One long-poll: connect, ask with the current `version`, wait for the answer. Returns the
/// status and when the whole answer was in.
async fn long_poll(
    addr: SocketAddr,
    i: usize,
    version: u64,
    connecting: Arc<Semaphore>,
) -> Result<(u16, Instant), String> {
    let permit = connecting
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /v1/config?service=scale-{}&namespace={}&pod=scale-{i}&version={version}&wait=120s HTTP/1.1\r\n\
         Host: {addr}\r\nUser-Agent: boifi-bench\r\nConnection: close\r\n\r\n",
        i % 100,
        policies::NAMESPACE,
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    drop(permit);
    let mut answer = Vec::with_capacity(512);
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let at = Instant::now();
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, at))
}

fn waiting(server: &Server) -> Result<u64, BenchError> {
    Ok(
        boifi_mesh::stats::metric_sum(&server.metrics()?, "boifi_config_waiting_requests")
            .unwrap_or(0),
    )
}

fn cpu_ms(pid: u32, ticks: u64) -> Result<f64, BenchError> {
    let t = stats::cpu_ticks(pid)
        .ok_or_else(|| BenchError::Unexpected("boifi-server is gone".to_owned()))?;
    #[expect(clippy::cast_precision_loss, reason = "tick counts are far below 2^52")]
    Ok(t as f64 * 1000.0 / ticks as f64)
}

/// Runs the benchmark; returns the Markdown section.
pub fn run(o: &Options, dir: &std::path::Path) -> Result<String, BenchError> {
    let nofile = raise_nofile(
        u64::try_from(o.clients)
            .unwrap_or(u64::MAX)
            .saturating_mul(2)
            .saturating_add(1024),
    )?;
    let server = Server::start(dir)?;
    let pid = server.pid();
    let ticks = stats::clock_ticks_per_second();
    let rss_idle = stats::status_kib(pid, "VmRSS").unwrap_or(0);
    let version = server.version()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the load tool's runtime", e))?;
    let addr = server.addr;
    let clients = o.clients;
    let connecting = Arc::new(Semaphore::new(256));
    let opening = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| runtime.spawn(long_poll(addr, i, version, Arc::clone(&connecting))))
        .collect();
    // Let the tasks run while waiting until the server holds every one of them.
    let held = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(100);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = waiting(&server)?;
            if n >= u64::try_from(clients).unwrap_or(u64::MAX) {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Unexpected(format!(
                    "only {n} of {clients} long-polls held after 100 s"
                )));
            }
        }
    })?;
    let open_s = opening.elapsed().as_secs_f64();
    let rss_held = stats::status_kib(pid, "VmRSS").unwrap_or(0);
    let cpu0 = cpu_ms(pid, ticks)?;
    runtime.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    let cpu_idle_pct = (cpu_ms(pid, ticks)? - cpu0) / 2000.0 * 100.0;
    let cpu_before = cpu_ms(pid, ticks)?;
    let sent = Instant::now();
    // The write runs on its own thread: the runtime keeps reading answers meanwhile.
    let writer = std::thread::spawn(move || {
        let r = server::put(addr, &policies::abort("scale-probe", "scale-0", 10));
        (r, Instant::now())
    });
    let results = runtime.block_on(async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    });
    let (written, acked) = writer
        .join()
        .map_err(|_| BenchError::Unexpected("the writer thread panicked".to_owned()))?;
    written?;
    let cpu_fanout_ms = cpu_ms(pid, ticks)? - cpu_before;
    let rss_peak = stats::status_kib(pid, "VmHWM").unwrap_or(0);
    let mut answered = Vec::new();
    let mut errors = 0usize;
    let mut not_200 = 0usize;
    for r in &results {
        match r {
            Ok((200, at)) => answered.push(at.saturating_duration_since(sent)),
            Ok(_) => not_200 += 1,
            Err(_) => errors += 1,
        }
    }
    answered.sort();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("scale: {errors} long-polls failed, e.g. {e}");
    }
    let last = answered.last().copied().unwrap_or_default();
    let ack_after = acked.saturating_duration_since(sent);
    let fanout_after_ack = last.saturating_sub(ack_after);
    let q =
        |p: f64| quantile(&answered, p).map_or_else(String::new, |d| report::millis(stats::ms(d)));
    eprintln!(
        "scale: {held} held; write acked after {} ms; last of {} answers after {} ms",
        ack_after.as_millis(),
        answered.len(),
        last.as_millis()
    );
    let mut t = Table::new(&["measure", "value"]);
    let mib = |k: u64| format!("{:.1} MB", k as f64 / 1024.0);
    t.row(vec![
        "long-polls held (server's `boifi_config_waiting_requests`)".to_owned(),
        held.to_string(),
    ]);
    t.row(vec![
        "time to open and park them all".to_owned(),
        format!("{open_s:.1} s"),
    ]);
    t.row(vec![
        "server RSS idle, before the long-polls".to_owned(),
        mib(rss_idle),
    ]);
    t.row(vec![
        format!("server RSS holding {clients} long-polls"),
        mib(rss_held),
    ]);
    t.row(vec![
        "server peak RSS (VmHWM, through the fan-out)".to_owned(),
        mib(rss_peak),
    ]);
    t.row(vec![
        "server CPU while holding them (2 s)".to_owned(),
        format!("{cpu_idle_pct:.1} % of a core"),
    ]);
    t.row(vec![
        "server CPU for the whole fan-out".to_owned(),
        format!("{cpu_fanout_ms:.0} ms"),
    ]);
    t.row(vec![
        "write sent → write acknowledged".to_owned(),
        report::millis(stats::ms(ack_after)),
    ]);
    t.row(vec![
        "write sent → first long-poll answered".to_owned(),
        q(0.0),
    ]);
    t.row(vec!["write sent → half answered (p50)".to_owned(), q(0.5)]);
    t.row(vec!["write sent → p99 answered".to_owned(), q(0.99)]);
    t.row(vec![
        format!("write sent → all {} answered", answered.len()),
        report::millis(stats::ms(last)),
    ]);
    t.row(vec![
        "write acknowledged → all answered".to_owned(),
        report::millis(stats::ms(fanout_after_ack)),
    ]);
    t.row(vec![
        "answers not 200 / failed".to_owned(),
        format!("{not_200} / {errors}"),
    ]);
    #[expect(clippy::cast_precision_loss, reason = "KiB counts are far below 2^52")]
    let rss_ok = (rss_peak as f64) / 1024.0 <= 256.0;
    let fan_ok = stats::ms(last) <= 1000.0 && errors == 0 && not_200 == 0;
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    Ok(format!(
        "`boifi-bench scale`: one `boifi-server --storage memory` (release build); the load tool \
         (one tokio thread, loopback, open-files limit raised to {nofile}) opens {clients} \
         long-polls `GET /v1/config?...&version=N&wait=120s`, each a distinct sidecar \
         (pod `scale-<i>`, 100 services), waits until the server reports all of them waiting, \
         then writes one policy and times every answer.\n\n{table}\n\
         Goals (issue 9): ≤ 256 MB RSS — {rss}; ≤ 1 s fan-out — {fan}.\n",
        table = t.to_markdown(),
        rss = verdict(rss_ok),
        fan = verdict(fan_ok),
    ))
}
