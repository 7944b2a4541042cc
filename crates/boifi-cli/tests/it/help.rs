//! `--help` of the binary and of every verb, as snapshots.

use crate::support::cli;

fn help(args: &[&str]) -> String {
    let output = cli().args(args).arg("--help").output().unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    assert!(output.stderr.is_empty());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn help_of_every_verb() {
    for args in [
        &[][..],
        &["policy"],
        &["policy", "apply"],
        &["policy", "get"],
        &["policy", "list"],
        &["policy", "describe"],
        &["policy", "delete"],
        &["halt"],
        &["audit"],
        &["status"],
        &["validate"],
        &["simulate"],
        &["completion"],
    ] {
        let name = if args.is_empty() {
            "help".to_owned()
        } else {
            format!("help_{}", args.join("_"))
        };
        insta::assert_snapshot!(name, help(args));
    }
}

#[test]
fn completion_scripts_name_the_verbs() {
    for shell in ["bash", "zsh", "fish"] {
        let output = cli().args(["completion", shell]).output().unwrap();
        assert!(output.status.success());
        let script = String::from_utf8(output.stdout).unwrap();
        for verb in ["policy", "simulate", "validate", "halt", "status"] {
            assert!(script.contains(verb), "{shell} completion lacks `{verb}`");
        }
    }
}
