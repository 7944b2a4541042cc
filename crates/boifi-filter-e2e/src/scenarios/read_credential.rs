//! Authenticated reads (issue 30): with `--auth-reads`, a sidecar presents a read credential
//! on its long-poll (the Wasm filter from `control_plane_token`, the native module from the
//! file `control_plane_token_file`) and gets its policies as before; one without it is
//! answered 401, keeps the set it holds and counts the failure; the native module follows a
//! rewritten credential file without a restart. The sidecars' tokens are read-only named
//! credentials (`--credentials`, `may: [read]`). No token appears in a log or in `/metrics`.

use super::*;
use crate::harness::server::ServerAuth;
use crate::harness::TempDir;

/// The plugin configuration of a sidecar that presents `token` (none: presents nothing).
fn with_credential(filter: FilterKind, token: Option<&std::path::Path>, wasm_token: &str) -> Value {
    let mut config = plugin_config();
    match (filter, token) {
        (FilterKind::Wasm, Some(_)) => config["control_plane_token"] = json!(wasm_token),
        (FilterKind::Native, Some(file)) => {
            config["control_plane_token_file"] = json!(file.to_str().unwrap());
        }
        (_, None) => {}
    }
    config
}

/// Waits until `envoy`'s config poll failures exceed `above`; returns the count.
fn failures_above(envoy: &Envoy, above: f64) -> Option<f64> {
    crate::harness::wait_for(Duration::from_secs(5), || {
        envoy
            .prometheus_value("hfi_config_poll_failures_total")
            .filter(|n| *n > above)
    })
}

pub fn sidecars_read_with_their_credential_and_one_without_keeps_its_set_on_401(
    filter: FilterKind,
) {
    let p = Prereqs::find(filter);
    let _serial = serial();
    let upstream = Upstream::start();
    let port = free_port().unwrap();
    let pid = std::process::id();
    // The sidecars' tokens are read-only credentials (`may: [read]`); the harness writes with
    // a token that may do everything.
    let admin = format!("e2e-admin-token-{pid}");
    let first = format!("sidecar-read-first-{pid}");
    let rotated = format!("sidecar-read-rotated-{pid}");
    let auth = |sidecars: &str, reads| ServerAuth {
        token: admin.clone(),
        sidecar_token: Some(sidecars.to_owned()),
        reads,
    };
    // Reads open at first, so the sidecar without a credential gets a set to keep.
    let mut server = Server::start_with_auth(&p.server, port, Some(&auth(&first, false)));
    let dir = TempDir::new("boifi-read-credential");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{first}\n")).unwrap();
    let start = |config: Value| {
        let mut o = p.envoy_options(Workload::new("frontend", "demo"), port, upstream.port);
        o.plugin_config = config;
        Envoy::start(&p.envoy, &o)
    };
    let with = start(with_credential(filter, Some(&token_file), &first));
    let without = start(with_credential(filter, None, ""));
    let (mut c_with, mut c_without) = (with.client(), without.client());
    let one = policy(
        "one",
        json!({"service": "frontend"}),
        "/one",
        abort(100, 503),
    );
    let two = policy(
        "two",
        json!({"service": "frontend"}),
        "/two",
        abort(100, 500),
    );
    server.put_policy(&one);
    for (c, who) in [(&mut c_with, "with"), (&mut c_without, "without")] {
        let got = wait_for_status(c, "/one", 503, Duration::from_secs(5));
        assert!(
            got.is_some(),
            "{who} a credential: no set with reads open\n{}",
            with.log()
        );
    }

    // Reads now require the credential. The restarted server keeps nothing (`--storage
    // memory`) and counts versions from 0 again: the earlier policies go in again first, so
    // the new set's version is above the one the sidecars hold.
    server.kill();
    server = Server::start_with_auth(&p.server, port, Some(&auth(&first, true)));
    server.put_policy(&one);
    server.put_policy(&two);
    let got = wait_for_status(&mut c_with, "/two", 500, Duration::from_secs(5));
    assert!(
        got.is_some(),
        "the sidecar with its credential never got `two`\n{}",
        with.log()
    );
    assert_eq!(
        c_with.get("/one").unwrap().status,
        503,
        "the set after the restart lost `one`?"
    );
    // The sidecar without one is refused (401), says so, counts it, and keeps its set.
    assert!(
        without.wait_for_log("requires a read credential (status `401`) and none is configured"),
        "{}",
        without.log()
    );
    let counted = without
        .prometheus_value("hfi_config_poll_failures_total")
        .unwrap_or(0.0);
    assert!(
        failures_above(&without, counted).is_some(),
        "401 answers are not counted\n{}",
        without.prometheus()
    );
    assert!(
        burst(&mut c_without, "/one", 10)
            .iter()
            .all(|r| r.status == 503),
        "cached set lost"
    );
    assert_eq!(
        c_without.get("/two").unwrap().status,
        200,
        "a refused read delivered `two`"
    );

    if filter == FilterKind::Native {
        // The credential is rotated at the control plane: the old one is refused (401), the
        // set stays; the file is rewritten (as the kubelet updates a Secret) and is used
        // without a restart.
        server.kill();
        server = Server::start_with_auth(&p.server, port, Some(&auth(&rotated, true)));
        server.put_policy(&one);
        server.put_policy(&two);
        server.put_policy(&policy(
            "three",
            json!({"service": "frontend"}),
            "/three",
            abort(100, 502),
        ));
        assert!(
            with.wait_for_log("refused this sidecar's read credential (status `401`)"),
            "{}",
            with.log()
        );
        assert_eq!(
            c_with.get("/two").unwrap().status,
            500,
            "cached set lost on 401"
        );
        let replaced = dir.path().join("token.new");
        std::fs::write(&replaced, &rotated).unwrap();
        std::fs::rename(&replaced, &token_file).unwrap();
        let got = wait_for_status(&mut c_with, "/three", 502, Duration::from_secs(5));
        assert!(
            got.is_some(),
            "the rewritten credential file was not used\n{}",
            with.log()
        );
        assert!(
            with.wait_for_log("changed; sending the new one"),
            "{}",
            with.log()
        );
    }

    // No token in any log or in the sidecars' metrics.
    let texts = [
        ("the server's log", server.log()),
        ("the sidecar's log", with.log()),
        ("the other sidecar's log", without.log()),
        ("the sidecar's metrics", with.prometheus()),
        ("the other sidecar's metrics", without.prometheus()),
    ];
    for (what, text) in texts {
        for token in [&admin, &first, &rotated] {
            assert!(
                !text.contains(token.as_str()),
                "{what} shows a token:\n{text}"
            );
        }
    }
}
