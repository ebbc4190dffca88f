//! What users get for bad input and for a netmaster that is not there, and the ways of naming
//! the netmaster.

mod support;

use std::time::Duration;
use support::{Session, netctl, redact_port, words};

#[test]
fn bad_flags_and_arguments() {
    let mut s = Session::new();
    for line in [
        "net create --subnet 10.1.2.0/24 --bogus x contiv-net",
        "net ls extra",
        "frobnicate",
        "tenant create",
        "policy rule-add web 1 --priority high",
        "net create -s 10.1.2.0/24 -p x n",
        "net",
    ] {
        let r = s.run(line);
        assert_eq!(r.code, 1, "{line}: {r:?}");
        assert!(r.stdout.is_empty(), "{line}: {r:?}");
    }
    insta::assert_snapshot!(s.transcript());
}

#[test]
fn server_refusal_is_the_servers_message() {
    let mut s = Session::new();
    s.ok("net create -s 10.1.0.0/16 other");
    let r = s.run("net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net");
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr,
        "Error: subnet 10.1.2.0/24 overlaps network default:other (10.1.0.0/16)\n"
    );
}

#[test]
fn no_netmaster() {
    let mut s = Session::new();
    let dead = s.dead_url();
    for line in [
        "tenant ls",
        "net create -s 10.1.2.0/24 contiv-net",
        "global info",
    ] {
        let r = s.run_with(Some(&dead), line);
        assert_eq!(r.code, 2, "{line}: {r:?}");
        // Fails at once; the bound only catches a hang on a timeout.
        assert!(r.elapsed < Duration::from_secs(5), "{line}: {r:?}");
    }
    // `--netmaster` wins over NETMASTER.
    s.run_with(
        Some(&s.master.url.clone()),
        &format!("--netmaster {dead} tenant ls -q"),
    );
    insta::assert_snapshot!(s.transcript());
}

#[test]
fn several_netmasters_first_that_answers() {
    let mut s = Session::new();
    let dead = s.dead_url();
    let both = format!("{dead},{}", s.master.url);
    let r = s.run_with(Some(&both), "tenant ls -q");
    assert_eq!(r.code, 0, "{r:?}");
    let r = s.run_with(None, &format!("--netmaster {both} tenant create blue"));
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!(s.transcript());
}

#[test]
fn bad_netmaster_url_and_login() {
    let mut s = Session::new();
    s.run("--netmaster ftp://x tenant ls");
    s.run("login");
    insta::assert_snapshot!(s.transcript());
}

#[test]
fn go_style_flags_as_contiv_parsed_them() {
    let mut s = Session::new();
    for line in [
        "net create -subnet=10.1.2.0/24 -gateway 10.1.2.1 -tenant default go-net",
        "net create -s 10.1.3.0/24 -s6 2001:db8::/64 -g6 2001:db8::1 -tag v6-tag v6-net",
        "net ls --q",
        "net ls -all -json",
    ] {
        s.ok(line);
    }
    insta::assert_snapshot!(s.transcript());
}

#[test]
fn help_explains_flags_with_examples() {
    for line in [
        "--help",
        "net create --help",
        "policy rule-add --help",
        "group create --help",
        "global set --help",
    ] {
        let r = netctl(None, &words(line));
        assert_eq!(r.code, 0, "{line}: {r:?}");
        assert!(r.stdout.contains("Example"), "{line}: {}", r.stdout);
        let name = format!("help {}", line.trim_end_matches("--help"))
            .trim()
            .replace(' ', "_");
        insta::assert_snapshot!(name, r.stdout);
    }
}

#[test]
fn completion_scripts() {
    for (shell, marker) in [
        ("bash", "_netctl()"),
        ("zsh", "#compdef netctl"),
        ("fish", "complete -c netctl"),
    ] {
        let r = netctl(None, &words(&format!("completion {shell}")));
        assert_eq!(r.code, 0, "{shell}: {r:?}");
        assert!(r.stdout.contains(marker), "{shell}: no {marker}");
        for word in ["rule-add", "external-contracts", "subnetv6", "tenant"] {
            assert!(r.stdout.contains(word), "{shell}: no {word}");
        }
    }
    let r = netctl(None, &words("completion tcsh"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: invalid value 'tcsh'"), "{r:?}");
}

#[test]
fn ports_are_redacted() {
    assert_eq!(
        redact_port("at http://127.0.0.1:4123: x 127.0.0.1:41234", 4123, "PORT"),
        "at http://127.0.0.1:PORT: x 127.0.0.1:41234"
    );
}
