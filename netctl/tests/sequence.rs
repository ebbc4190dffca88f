//! The sequence from a Contiv user's notes (issue 3): it must print what it printed on Contiv.

mod support;

use support::Session;

#[test]
fn contiv_user_notes() {
    let mut s = Session::new();
    for line in [
        "global info",
        "net ls -a",
        "net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net",
        "net ls",
        "tenant create blue",
        "net create -t blue --subnet=10.1.2.0/24 -g 10.1.2.1 contiv-net",
        "net ls -t blue",
        "global set --fwd-mode bridge",
        "policy create -t blue web",
        "policy rule-add -t blue web 1 --direction in --protocol tcp --action deny --priority 1",
        "policy rule-add -t blue web 2 --direction in --protocol tcp --port 8000 --action allow --priority 100",
        "policy rule-ls -t blue web",
        "netprofile create -t blue -b 10mbps -s 100 -d 6 slow",
        "group create -t blue -p web -n slow contiv-net webgroup",
        "group ls -t blue",
    ] {
        s.ok(line);
    }
    insta::assert_snapshot!(s.transcript());
}
