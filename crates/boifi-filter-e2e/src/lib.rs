//! The end-to-end tests both builds of boifi's filter share: the filter (the proxy-wasm module
//! or the native dynamic module) in a real Envoy configured like an Istio sidecar, talking to a
//! real boifi-server or to a scripted control plane. Every process is started by the test and
//! killed on drop.
//!
//! - [`harness`]: Envoy (bootstrap, start, log, metrics), boifi-server, the upstream app, relays,
//!   the filter build under test ([`harness::FilterKind`]) and its prerequisites.
//! - [`scenarios`]: one `pub fn name(filter: FilterKind)` per scenario; [`scenario_tests!`]
//!   turns every one of them into a `#[test]` of the calling test binary, so the two builds run
//!   the same list and cannot drift apart. What only one build has stays in its crate's tests.
//!
//! Prerequisites: the built filter (env BOIFI_WASM or BOIFI_NATIVE, else where `make wasm` /
//! `make native` puts it), Envoy (env BOIFI_ENVOY or scripts/envoy-path.sh) and
//! target/debug/boifi-server (or env BOIFI_SERVER). A missing one fails the test with its name
//! and how to get it; no test passes by skipping.
// Test code: a failed setup step or a broken expectation must fail the test loudly, so the
// helpers unwrap and panic as `#[test]` functions do (clippy.toml allows that only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod harness;
pub mod scenarios;

/// One `#[test]` per shared scenario, each running it with the filter build `$kind` (`Wasm` or
/// `Native`), in a module named as the scenario's (`answers::every_control_plane_answer_...`).
/// A new scenario is listed here once and runs in both filters' test binaries.
#[macro_export]
macro_rules! scenario_tests {
    ($kind:ident) => {
        $crate::scenario_tests!(@modules $kind;
            answers {
                every_control_plane_answer_installs_counts_and_reports_the_same_in_both_filters,
            }
            bytes {
                requests_that_are_not_utf8_pass_or_get_their_fault_and_never_switch_the_filter_off,
            }
            config {
                bad_plugin_configuration_logs_and_passes_traffic_through,
                identity_overrides_serve_a_plain_envoy_without_istio_metadata,
            }
            corpus { scenario_corpus_holds_in_envoy }
            enabled {
                a_disabled_policy_never_fires_and_enabling_it_fires_within_the_budget,
            }
            faults {
                delays_are_accurate_delay_then_abort_works_and_grpc_gets_a_grpc_status,
            }
            poller { one_poller_per_envoy_with_two_workers }
            propagation { policy_changes_reach_the_filter_in_under_a_second }
            rates { abort_rates_hold_in_envoy_and_metrics_count_them }
            read_credential {
                sidecars_read_with_their_credential_and_one_without_keeps_its_set_on_401,
            }
            reliability_control_plane {
                filter_keeps_its_last_good_set_and_backs_off_while_the_control_plane_misbehaves,
            }
            resilience {
                control_plane_down_at_start_passes_traffic_and_policies_apply_once_it_appears,
                faults_continue_from_the_cache_when_the_control_plane_dies_and_still_expire,
                a_heartbeat_bound_stops_its_policy_when_the_control_plane_dies_and_only_it,
            }
            response { the_app_does_the_work_and_the_caller_gets_the_fault }
            startup { the_filter_adds_at_most_twice_todays_cpu_to_envoys_start }
            targeting { policies_reach_only_the_sidecars_they_select }
            waypoint {
                a_waypoint_faults_the_service_a_policy_selects_and_a_wildcard_every_service,
            }
        );
    };
    (@modules $kind:ident; $($module:ident { $($test:ident),* $(,)? })*) => {
        $(
            mod $module {
                $(
                    #[test]
                    fn $test() {
                        $crate::scenarios::$module::$test($crate::harness::FilterKind::$kind)
                    }
                )*
            }
        )*
    };
}
