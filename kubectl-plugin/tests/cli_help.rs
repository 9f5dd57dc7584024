//! The command line: clap's own consistency checks, the documented example
//! lines parse, and `--help` names the three commands.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use clap::{CommandFactory, Parser};
use kubectl_podmirror::cli::{Cli, Command};

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn documented_examples_parse() {
    let lines = [
        "explain ecs-source --in --proto tcp --src 192.168.0.161:40000 --dst 192.168.0.230:1234",
        "explain ecs-source -f examples/seed-scenario/ --in --proto tcp --src 192.168.0.161:40000 --dst 192.168.0.230:1234",
        "status -A",
        "status mirror-session-a -n default -o yaml",
        "capture my-pod --proto tcp --port 8080 -w my-pod.pcap --duration 2m",
        "capture -l app=shop -w -",
        "--context kind-podmirror capture my-pod --in",
    ];
    for line in lines {
        let args = std::iter::once("kubectl-podmirror").chain(line.split_whitespace());
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let cli = Cli::try_parse_from(["kubectl-podmirror", "capture", "p", "-n", "shop"]).unwrap();
    assert_eq!(cli.kube.namespace.as_deref(), Some("shop"), "-n after the subcommand");
    match cli.command {
        Command::Capture(c) => assert_eq!((c.write.as_str(), c.duration.as_str()), ("-", "5m")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mistakes_are_refused_by_the_parser() {
    for line in [
        "explain p --proto tcp --src 1.1.1.1:1 --dst 2.2.2.2:2", // no direction
        "explain p --in --out --proto tcp --src 1.1.1.1:1 --dst 2.2.2.2:2", // both
        "capture",                                               // no pod, no selector
        "capture p -l app=x",                                    // both
        "status s -A",                                           // one session, all namespaces
        "status -o wide",
    ] {
        let args = std::iter::once("kubectl-podmirror").chain(line.split_whitespace());
        assert!(Cli::try_parse_from(args).is_err(), "{line}");
    }
}

#[test]
fn help_names_the_three_commands() {
    let help = Cli::command().render_long_help().to_string();
    for needle in ["explain", "status", "capture", "Examples:", "docs/kubectl-plugin.md"] {
        assert!(help.contains(needle), "{needle} in\n{help}");
    }
}
