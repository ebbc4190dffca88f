//! Contiv's netctl parsed flags with Go's `flag` package, where `-subnet=x`, `--subnet=x`,
//! `-t x` and `--t x` all mean the same, and where flags had multi-letter short names such as
//! `-s6`, `-g6`, `-tag` and `-ip`. Clap would read `-s6` as `-s 6`, silently, so the command
//! line is first rewritten to clap's spelling: a single-dash word that names a long flag (or
//! one of its aliases) of the command being parsed gets a second dash, and `--x` for a
//! one-letter short flag loses one.

use clap::{Arg, Command};
use std::ffi::OsString;

/// The rewritten command line, and the names of the subcommands it selects (`["network",
/// "create"]`), to print their usage with an error.
pub fn normalize(root: &Command, argv: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let mut out = Vec::with_capacity(argv.len());
    let mut path = Vec::new();
    let mut it = argv.into_iter();
    if let Some(bin) = it.next() {
        out.push(bin);
    }
    let globals: Vec<&Arg> = root.get_arguments().filter(|a| a.is_global_set()).collect();
    let mut cmd = root;
    let mut positional_seen = false;
    while let Some(tok) = it.next() {
        let Some(s) = tok.to_str() else {
            out.push(tok);
            continue;
        };
        if s == "--" {
            out.push(tok);
            out.extend(it.by_ref());
            break;
        }
        let find = |pred: &dyn Fn(&Arg) -> bool| -> Option<&Arg> {
            cmd.get_arguments()
                .find(|a| pred(a))
                .or_else(|| globals.iter().copied().find(|a| pred(a)))
        };
        let by_long = |name: &str| {
            find(&|a: &Arg| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            })
        };
        let by_short = |c: char| {
            find(&|a: &Arg| {
                a.get_short() == Some(c)
                    || a.get_all_short_aliases().is_some_and(|al| al.contains(&c))
            })
        };
        let takes_value = |a: &Arg| a.get_action().takes_values();
        if let Some(body) = s.strip_prefix("--").filter(|b| !b.is_empty()) {
            let (name, has_value) = split_value(body);
            let mut chars = name.chars();
            let single = match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            };
            if let Some(a) = by_long(name) {
                out.push(tok.clone());
                if takes_value(a) && !has_value {
                    out.extend(it.next());
                }
            } else if let Some(a) = single.and_then(by_short) {
                out.push(format!("-{body}").into());
                if takes_value(a) && !has_value {
                    out.extend(it.next());
                }
            } else {
                out.push(tok.clone());
            }
        } else if let Some(body) = s.strip_prefix('-').filter(|b| !b.is_empty()) {
            let (name, has_value) = split_value(body);
            let first = body.chars().next().and_then(by_short);
            if name.chars().count() >= 2
                && let Some(a) = by_long(name)
            {
                out.push(format!("--{body}").into());
                if takes_value(a) && !has_value {
                    out.extend(it.next());
                }
            } else {
                out.push(tok.clone());
                // `-t blue`: the next word is the value.
                if body.chars().count() == 1 && first.is_some_and(takes_value) {
                    out.extend(it.next());
                }
            }
        } else {
            match cmd.find_subcommand(s) {
                Some(sub) if !positional_seen => {
                    path.push(sub.get_name().to_string());
                    cmd = sub;
                }
                _ => positional_seen = true,
            }
            out.push(tok);
        }
    }
    (out, path)
}

fn split_value(body: &str) -> (&str, bool) {
    match body.split_once('=') {
        Some((name, _)) => (name, true),
        None => (body, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn norm(args: &str) -> String {
        let argv = args.split(' ').map(OsString::from).collect();
        normalize(&Cli::command(), argv)
            .0
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn go_style_long_flags_get_two_dashes() {
        assert_eq!(
            norm("netctl net create -s6 2001::/64 -g6 2001::1 -tag x -subnet=10.1.2.0/24 n"),
            "netctl net create --s6 2001::/64 --g6 2001::1 --tag x --subnet=10.1.2.0/24 n"
        );
        assert_eq!(
            norm("netctl service create -ip 10.1.1.1 -network n s"),
            "netctl service create --ip 10.1.1.1 --network n s"
        );
        assert_eq!(
            norm("netctl -netmaster http://h:1 tenant ls"),
            "netctl --netmaster http://h:1 tenant ls"
        );
    }

    #[test]
    fn go_style_double_dash_short_flags_get_one() {
        assert_eq!(norm("netctl net ls --t blue"), "netctl net ls -t blue");
        assert_eq!(
            norm("netctl policy rule-add web 1 --P 80"),
            "netctl policy rule-add web 1 -P 80"
        );
    }

    #[test]
    fn clap_spellings_and_values_are_left_alone() {
        for args in [
            "netctl net create -t blue --subnet=10.1.2.0/24 -g 10.1.2.1 contiv-net",
            "netctl net ls -aj",
            "netctl tenant ls -q",
            // A value that looks like a flag belongs to the flag before it.
            "netctl net create -t -subnet n",
            "netctl netprofile create -b 10mbps -s 100 -d 6 slow",
            "netctl net create -s 10.1.2.0/24 -- -weird",
            "netctl group create -tblue n g",
        ] {
            assert_eq!(norm(args), args);
        }
    }

    #[test]
    fn finds_the_command_path() {
        let argv = [
            "netctl",
            "--netmaster",
            "http://h:1",
            "net",
            "create",
            "-t",
            "x",
            "ls",
        ];
        let (_, path) = normalize(&Cli::command(), argv.map(OsString::from).to_vec());
        assert_eq!(path, ["network", "create"]);
    }

    #[test]
    fn positional_words_named_like_commands_stay_positional() {
        // `ls` here is a tenant name, not a command.
        assert_eq!(norm("netctl tenant create ls"), "netctl tenant create ls");
    }
}
