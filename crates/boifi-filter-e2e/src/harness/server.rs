//! boifi-server as a child process of the test.

use super::http::{self, Response};
use super::net::loopback;
use super::TempDir;
use boifi_testkit::process::spawn_logged;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// Env BOIFI_SERVER, else `<target>/debug/boifi-server` beside this test binary.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOIFI_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // The test binary is <target>/debug/deps/it-<hash>.
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("boifi-server");
    candidate.is_file().then_some(candidate)
}

/// A running boifi-server, SIGKILLed on drop.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    /// The token its writes (and, with `--auth-reads`, its reads) require.
    token: Option<String>,
    _dir: TempDir,
}

/// A server's bearer token that may do everything (`--auth-token-file`), a read-only token
/// for sidecars (`--credentials`, named `sidecars`), and whether reads require a token
/// (`--auth-reads`).
#[derive(Debug, Clone)]
pub struct ServerAuth {
    pub token: String,
    pub sidecar_token: Option<String>,
    pub reads: bool,
}

impl Server {
    /// Starts `--storage memory` on `port` and waits until `/v1/health` answers.
    pub fn start(binary: &std::path::Path, port: u16) -> Server {
        Server::start_with_auth(binary, port, None)
    }

    /// [`Server::start`] requiring `auth`'s token; this handle sends it on its own calls.
    pub fn start_with_auth(
        binary: &std::path::Path,
        port: u16,
        auth: Option<&ServerAuth>,
    ) -> Server {
        let dir = TempDir::new("boifi-server");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage")
            .arg("memory")
            .arg("--data-dir")
            .arg(dir.path());
        if let Some(auth) = auth {
            let token_file = dir.path().join("token");
            std::fs::write(&token_file, &auth.token).unwrap();
            command.arg("--auth-token-file").arg(token_file);
            if let Some(sidecars) = &auth.sidecar_token {
                let credentials = dir.path().join("credentials.yaml");
                let yaml = format!(
                    "tokens:\n  - name: sidecars\n    token: \"{sidecars}\"\n    may: [read]\n"
                );
                std::fs::write(&credentials, yaml).unwrap();
                command.arg("--credentials").arg(credentials);
            }
            if auth.reads {
                command.arg("--auth-reads");
            }
        }
        let child = spawn_logged(&mut command, log).unwrap();
        let mut server = Server {
            port,
            child: Some(child),
            token: auth.map(|a| a.token.clone()),
            _dir: dir,
        };
        let ready = super::wait_for(Duration::from_secs(10), || {
            http::Client::new(loopback(port))
                .get("/v1/health")
                .ok()
                .filter(|r| r.status == 200)
        });
        if ready.is_none() {
            let log = std::fs::read_to_string(server._dir.path().join("server.log"));
            server.kill();
            panic!("boifi-server did not become healthy on port {port}: {log:?}");
        }
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// `authorization` when the server has a token.
    fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Creates or replaces a policy (JSON body).
    pub fn put_policy(&self, policy: &serde_json::Value) -> Response {
        let body = serde_json::to_vec(policy).unwrap();
        let authorization = self.authorization();
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &authorization {
            headers.push(("authorization", a.as_str()));
        }
        let r = http::Client::new(loopback(self.port))
            .request("POST", "/v1/policies", &headers, &body)
            .unwrap();
        assert!(
            r.status == 200 || r.status == 201,
            "POST /v1/policies answered {}: {}",
            r.status,
            r.text()
        );
        r
    }

    /// Deletes one policy.
    pub fn delete_policy(&self, name: &str) {
        let authorization = self.authorization();
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let r = http::Client::new(loopback(self.port))
            .request("DELETE", &format!("/v1/policies/{name}"), &headers, &[])
            .unwrap();
        assert!(
            r.status < 300,
            "DELETE /v1/policies/{name} answered {}: {}",
            r.status,
            r.text()
        );
    }

    /// Waits (up to `timeout`) until a long-poll is waiting at the server
    /// (`boifi_config_waiting_requests` ≥ 1): the poller got its last answer and asked again,
    /// so the next write is answered at once instead of after a poll's round trip.
    pub fn wait_for_a_waiting_poll(&self, timeout: Duration) -> bool {
        super::wait_for(timeout, || {
            let text = http::Client::new(loopback(self.port))
                .get("/metrics")
                .ok()?
                .text();
            let waiting = super::envoy::parse_prometheus(&text, "boifi_config_waiting_requests")?;
            (waiting >= 1.0).then_some(())
        })
        .is_some()
    }

    /// SIGKILL (the control plane "dies").
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
