//! The etcd StatefulSet's own arguments, run: three real etcd members started with them (the
//! pod DNS names and fixed ports mapped to loopback ports) form one cluster and pass the
//! StatefulSet's probes, and boifi-server started with the Deployment's settings
//! (`STORAGE_BACKEND=etcd`, `ETCD_ENDPOINTS` mapped the same way) becomes ready on it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boifi_deploy::consistency::CLUSTER_DOMAIN;
use boifi_testkit::etcd::etcd_binary;
use boifi_testkit::http;
use boifi_testkit::ports::free_ports;
use boifi_testkit::process::ChildGuard;
use serde_json::Value;

use crate::support::{base, find, server_binary};

/// Loopback ports standing in for member `i`'s client (2379) and peer (2380) ports.
struct Member {
    client: u16,
    peer: u16,
}

/// Rewrites an argument or URL list the way the cluster would resolve it, onto loopback.
fn localize(text: &str, pod: Option<&str>, members: &[Member], me: Option<&Member>) -> String {
    let mut out = match pod {
        Some(pod) => text.replace("$(POD_NAME)", pod),
        None => text.to_owned(),
    };
    for (i, member) in members.iter().enumerate() {
        let host = format!("etcd-{i}.etcd.boifi.{CLUSTER_DOMAIN}");
        out = out
            .replace(
                &format!("{host}:2379"),
                &format!("127.0.0.1:{}", member.client),
            )
            .replace(
                &format!("{host}:2380"),
                &format!("127.0.0.1:{}", member.peer),
            );
    }
    if let Some(me) = me {
        out = out
            .replace("0.0.0.0:2379", &format!("127.0.0.1:{}", me.client))
            .replace("0.0.0.0:2380", &format!("127.0.0.1:{}", me.peer));
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match ready() {
            Ok(()) => return,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what} not ready after {timeout:?}: {last}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn get_ok(addr: SocketAddr, path: &str) -> Result<String, String> {
    let response = http::get(addr, path, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    if response.status == 200 {
        Ok(response.text())
    } else {
        Err(format!("{path}: {} {}", response.status, response.text()))
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn statefulset_args_form_a_cluster_and_the_control_plane_becomes_ready_on_it() {
    let Some(etcd) = etcd_binary() else {
        panic!(
            "no etcd binary (env `BOIFI_ETCD`, `/usr/bin/etcd` or `etcd` on PATH): run `make deps`"
        );
    };
    let docs = base();
    let sts = find(&docs, "StatefulSet", "etcd");
    let replicas = sts.value["spec"]["replicas"].as_u64().unwrap() as usize;
    let container = &sts.value["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let probe_path = |probe: &str| {
        container[probe]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (readiness, liveness) = (probe_path("readinessProbe"), probe_path("livenessProbe"));

    let ports = free_ports(replicas * 2).unwrap();
    let members: Vec<Member> = ports
        .chunks(2)
        .map(|p| Member {
            client: p[0],
            peer: p[1],
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut guards = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let pod = format!("etcd-{i}");
        let data = dir.path().join(&pod);
        let log = std::fs::File::create(dir.path().join(format!("{pod}.log"))).unwrap();
        let member_args: Vec<String> = args
            .iter()
            .map(|arg| match arg.strip_prefix("--data-dir=") {
                Some(_) => format!("--data-dir={}", data.display()),
                None => localize(arg, Some(&pod), &members, Some(member)),
            })
            .collect();
        let child = Command::new(&etcd)
            .args(&member_args)
            .env("POD_NAME", &pod)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        guards.push(ChildGuard::new(pod, child));
    }
    for (i, member) in members.iter().enumerate() {
        let addr: SocketAddr = ([127, 0, 0, 1], member.client).into();
        let log = dir.path().join(format!("etcd-{i}.log"));
        wait_for(
            &format!("etcd-{i} ({readiness})"),
            Duration::from_secs(30),
            || {
                let body =
                    get_ok(addr, &readiness).map_err(|e| format!("{e}\n{}", log_tail(&log)))?;
                let health: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                (health["health"] == "true").then_some(()).ok_or(body)
            },
        );
        get_ok(addr, &liveness).unwrap();
    }

    let Some(server) = server_binary() else {
        eprintln!("boifi-server is not built next to this test: the control plane was not started on etcd");
        return;
    };
    let deployment = find(&docs, "Deployment", "boifi-control-plane");
    let server_container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
    let listen: SocketAddr = ([127, 0, 0, 1], free_ports(1).unwrap()[0]).into();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let mut command = Command::new(server);
    for var in server_container["env"].as_array().unwrap() {
        let value = localize(var["value"].as_str().unwrap(), None, &members, None);
        command.env(var["name"].as_str().unwrap(), value);
    }
    let log_path = dir.path().join("boifi-server.log");
    command
        .env("LISTEN_ADDR", listen.to_string())
        .arg(format!("--auth-token-file={}", token.display()))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let _server = ChildGuard::new("boifi-server", command.spawn().unwrap());
    let probe = |name: &str| {
        server_container[name]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    wait_for("boifi-server on etcd", Duration::from_secs(30), || {
        get_ok(listen, &probe("livenessProbe"))?;
        get_ok(listen, &probe("readinessProbe"))
            .map_err(|e| format!("{e}\n{}", log_tail(&log_path)))?;
        Ok(())
    });
    drop(guards);
}
