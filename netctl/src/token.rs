//! `netctl token create`: an API token for automation (the Docker driver's
//! `--docker-token-file`, scripts), minted by an admin through
//! `POST /api/v1/auth_proxy/tokens/`. Not in Contiv's netctl: its auth_proxy had no API tokens.
//!
//! The token alone goes to stdout, so that it can be piped into a root-only file; what it is
//! and when it expires go to stderr.

use crate::error::{CtlError, Result};
use crate::out;
use clap::{Args, Subcommand, ValueEnum};
use model::Client;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Mint an API token (admin only): printed alone on stdout
    #[command(after_help = "Examples:\n  \
        netctl token create docker-node1 --role ops -t default -t blue --ttl 30d \\\n    \
        | sudo install -m 0600 /dev/stdin /etc/contiv/docker-token\n  \
        netctl token create ci --role ops -t '*' --ttl 12h")]
    Create(CreateArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything, users and credentials included
    Admin,
    /// The objects of the tenants given with -t
    Ops,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ops => "ops",
        }
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name for the token (who or what uses it: it is the subject netmaster logs and checks)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The token's role
    #[arg(long, value_enum, default_value = "ops")]
    pub role: Role,
    /// A tenant an ops token may act on (repeat for several; '*' for every tenant)
    #[arg(short, long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// How long the token lives: a number with s, m, h or d (tokens always expire)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
    pub ttl: u64,
}

/// `90s`, `15m`, `12h`, `30d` (or bare seconds) as seconds; more than zero.
pub fn parse_ttl(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err("give a number with s, m, h or d, such as 30d or 12h".into()),
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(per)) {
        Some(0) => Err("a token must live more than 0 seconds (tokens always expire)".into()),
        Some(n) => Ok(n),
        None => Err("give a number with s, m, h or d, such as 30d or 12h".into()),
    }
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            if a.role == Role::Ops && a.tenants.is_empty() {
                return Err(CtlError::Invalid(
                    "an ops token needs the tenants it may act on: -t TENANT (repeat it; '*' \
                     for every tenant), or --role admin"
                        .into(),
                ));
            }
            let (token, expires) = client
                .create_token(&a.name, a.role.as_str(), &a.tenants, a.ttl)
                .await?;
            let scope = match a.role {
                Role::Admin => "admin".to_string(),
                Role::Ops => format!("ops on {}", a.tenants.join(", ")),
            };
            eprintln!(
                "token {} ({scope}) expires in {} s (at {expires} seconds since the epoch)",
                a.name, a.ttl
            );
            out::print(&format!("{token}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_a_unit_and_never_zero() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("12h"), Ok(43200));
        assert_eq!(parse_ttl("30d"), Ok(2_592_000));
        for bad in [
            "0h",
            "0",
            "",
            "h",
            "3w",
            "1.5h",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
