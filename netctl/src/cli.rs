//! The command tree: global options, the command families, and the options they share.

use crate::error::Result;
use crate::{
    aci_gw, app_profile, bgp, completion, endpoint, ext_contracts, global, group, login,
    netprofile, network, policy, service, tenant, token, version,
};
use clap::{Args, Parser, Subcommand};
use model::{Client, ClientOptions};

/// A netmaster on this machine, so a single-host user needs no flag: https, netmaster's default
/// (its CA is trusted from [`model::DEFAULT_NETMASTER_CA`] when no --cacert is given).
pub const DEFAULT_NETMASTER: &str = "https://127.0.0.1:9999";

const EXAMPLES: &str = "\
Examples:
  netctl tenant create blue
  netctl net create -t blue --subnet=10.1.2.0/24 -g 10.1.2.1 contiv-net
  netctl net ls -a
  netctl policy create -t blue web
  netctl policy rule-add -t blue web 1 --direction in --protocol tcp --port 80 --action allow
  netctl group create -t blue -p web contiv-net webgroup
  netctl --netmaster https://10.0.0.1:9999,https://10.0.0.2:9999 --cacert ca.pem global info

Exit codes: 0 success, 1 usage, 2 request error (netmaster unreachable), 3 refused by the
netmaster, 4 local I/O error.";

/// Contiv's command line: manage tenants, networks, endpoint groups, policies and the other
/// objects of a netmaster.
#[derive(Parser, Debug)]
#[command(name = "netctl", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The netmaster's URL; several, comma-separated, are tried in order [env: NETMASTER]
    /// [default: https://127.0.0.1:9999]
    // NETMASTER is read by `netmaster_urls`, not by clap: clap would count a variable set in
    // the environment as a flag given, and print it in the usage of every error.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub netmaster: Option<String>,
    /// Skip TLS certificate checks of an https netmaster or auth_proxy [env: INSECURE]
    // INSECURE is read by `insecure`, for the same reason as NETMASTER.
    #[arg(long, global = true, help_heading = "Global options")]
    pub insecure: bool,
    /// A PEM file of CA certificates to trust for https, besides the system's: netmaster's CA,
    /// tls/ca.pem under its data dir [env: NETCTL_CACERT] [default:
    /// /var/lib/contiv/tls/ca.pem when it exists]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub cacert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Family,
}

#[derive(Subcommand, Debug)]
pub enum Family {
    /// ACI gateway information
    #[command(subcommand, name = "aci-gw")]
    AciGw(aci_gw::Cmd),
    /// Application profile manipulation tools
    #[command(subcommand, name = "app-profile")]
    AppProfile(app_profile::Cmd),
    /// Router capability (BGP) configuration
    #[command(subcommand)]
    Bgp(bgp::Cmd),
    /// Print a shell completion script
    Completion(completion::Args),
    /// Endpoint inspection
    #[command(subcommand, visible_alias = "ep")]
    Endpoint(endpoint::Cmd),
    /// External contracts (ACI)
    #[command(subcommand, name = "external-contracts")]
    ExternalContracts(ext_contracts::Cmd),
    /// Global information and settings
    #[command(subcommand)]
    Global(global::Cmd),
    /// Endpoint group manipulation tools
    #[command(subcommand)]
    Group(group::Cmd),
    /// Log in to netmaster or Contiv's auth_proxy (https or unix:// in --netmaster) and keep the
    /// token for later commands
    Login,
    /// Network profile manipulation tools
    #[command(subcommand)]
    Netprofile(netprofile::Cmd),
    /// Network manipulation tools
    #[command(subcommand, visible_alias = "net")]
    Network(network::Cmd),
    /// Policy manipulation tools
    #[command(subcommand)]
    Policy(policy::Cmd),
    /// Service load balancer objects
    #[command(subcommand)]
    Service(service::Cmd),
    /// Tenant manipulation tools
    #[command(subcommand)]
    Tenant(tenant::Cmd),
    /// API tokens for automation (the Docker driver, scripts); admin only
    #[command(subcommand)]
    Token(token::Cmd),
    /// Version information of netctl and of the netmaster
    Version,
}

/// `-t/--tenant`.
#[derive(Args, Debug, Clone)]
pub struct TenantOpt {
    /// Name of the tenant
    #[arg(short, long, default_value = "default")]
    pub tenant: String,
}

/// The options of the tenant-scoped list commands: `-t -a -j -q`.
#[derive(Args, Debug, Clone)]
pub struct ListOpts {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// List the objects of all tenants
    #[arg(short, long)]
    pub all: bool,
    /// Print the list as JSON
    #[arg(short, long)]
    pub json: bool,
    /// Print only the names
    #[arg(short, long)]
    pub quiet: bool,
}

impl ListOpts {
    /// Whether an object of `tenant` is listed.
    pub fn keeps(&self, tenant: &str) -> bool {
        self.all || tenant == self.tenant.tenant
    }
}

/// The netmaster URLs to use: `--netmaster`, else `$NETMASTER` when set and not empty, else
/// [`DEFAULT_NETMASTER`].
pub fn netmaster_urls(flag: Option<String>, env: Option<String>) -> String {
    flag.or(env.filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_NETMASTER.to_string())
}

/// `--insecure`, else `$INSECURE` read as Go's `strconv.ParseBool` did (`1`, `t`, `true`).
pub fn insecure(flag: bool, env: Option<String>) -> bool {
    flag || env.is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "1" | "t" | "true"))
}

/// `--cacert`, else `$NETCTL_CACERT` when set and not empty, else, for an https netmaster, the
/// CA netmaster writes with its default data dir when it exists (this is a master's host).
pub fn ca_file(
    flag: Option<std::path::PathBuf>,
    env: Option<std::ffi::OsString>,
    urls: &str,
) -> Option<std::path::PathBuf> {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(Into::into))
        .or_else(|| model::default_ca_file(urls))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    if let Family::Completion(args) = &cli.command {
        return completion::run(args);
    }
    let urls = netmaster_urls(cli.netmaster, std::env::var("NETMASTER").ok());
    // The token goes over https, or a local unix socket; never in clear over the network.
    let secure = urls
        .split(',')
        .any(|u| u.trim().starts_with("https://") || u.trim().starts_with("unix://"));
    let is_login = matches!(cli.command, Family::Login);
    let opts = ClientOptions {
        insecure: insecure(cli.insecure, std::env::var("INSECURE").ok()),
        ca_file: ca_file(cli.cacert, std::env::var_os("NETCTL_CACERT"), &urls),
        // The token of `netctl login`.
        auth_token: if secure && !is_login {
            login::saved_token()?
        } else {
            None
        },
    };
    let client = Client::with_options(&[urls], &opts)?;
    let warnings = crate::notice::of_command(&cli.command);
    let done = match cli.command {
        Family::AciGw(c) => aci_gw::run(c, &client).await,
        Family::AppProfile(c) => app_profile::run(c, &client).await,
        Family::Bgp(c) => bgp::run(c, &client).await,
        Family::Completion(_) => unreachable!("handled above"),
        Family::Endpoint(c) => endpoint::run(c, &client).await,
        Family::ExternalContracts(c) => ext_contracts::run(c, &client).await,
        Family::Global(c) => global::run(c, &client).await,
        Family::Group(c) => group::run(c, &client).await,
        Family::Login => login::run(&client).await,
        Family::Netprofile(c) => netprofile::run(c, &client).await,
        Family::Network(c) => network::run(c, &client).await,
        Family::Policy(c) => policy::run(c, &client).await,
        Family::Service(c) => service::run(c, &client).await,
        Family::Tenant(c) => tenant::run(c, &client).await,
        Family::Token(c) => token::run(c, &client).await,
        Family::Version => version::run(&client).await,
    };
    if done.is_ok() {
        warnings.iter().for_each(|w| crate::notice::warn(w));
    }
    done
}

/// Lists the objects of a tenant-scoped collection. Like Contiv, the tenant must exist even
/// with `-a`, and the filtering is done here.
pub async fn list_scoped<T: model::Object>(
    client: &Client,
    opts: &ListOpts,
    tenant_of: fn(&T) -> &str,
) -> Result<Vec<T>> {
    client.get::<model::Tenant>(&opts.tenant.tenant).await?;
    let all = client.list::<T>().await?;
    Ok(all
        .into_iter()
        .filter(|o| opts.keeps(tenant_of(o)))
        .collect())
}

/// Prints a list as `-j` JSON, `-q` names, or the table `table` builds.
pub fn print_list<T: serde::Serialize>(
    json: bool,
    quiet: bool,
    items: &[T],
    name: fn(&T) -> &str,
    table: impl FnOnce(&[T]) -> crate::table::Table,
) -> Result<()> {
    if json {
        crate::out::json(items)
    } else if quiet {
        let names: String = items.iter().map(|i| format!("{}\n", name(i))).collect();
        crate::out::print(&names)
    } else {
        crate::out::print(&table(items).render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn netmaster_flag_then_env_then_this_machine() {
        let cli = parse(&["netctl", "version"]);
        assert_eq!(
            netmaster_urls(cli.netmaster, None),
            "https://127.0.0.1:9999"
        );
        assert_eq!(
            netmaster_urls(None, Some("http://env:1".into())),
            "http://env:1"
        );
        assert_eq!(netmaster_urls(None, Some(" ".into())), DEFAULT_NETMASTER);
        let cli = parse(&[
            "netctl",
            "tenant",
            "ls",
            "--netmaster",
            "http://a:1,http://b:2",
        ]);
        assert_eq!(
            netmaster_urls(cli.netmaster, Some("http://env:1".into())),
            "http://a:1,http://b:2"
        );
    }

    #[test]
    fn ca_file_flag_then_env_then_the_masters_default_for_https_only() {
        let urls = "https://h:9999";
        assert_eq!(
            ca_file(Some("a.pem".into()), Some("b.pem".into()), urls),
            Some("a.pem".into())
        );
        assert_eq!(
            ca_file(None, Some("b.pem".into()), urls),
            Some("b.pem".into())
        );
        // An empty variable counts as unset; an http netmaster needs no CA.
        let default = std::path::Path::new(model::DEFAULT_NETMASTER_CA)
            .exists()
            .then(|| model::DEFAULT_NETMASTER_CA.into());
        assert_eq!(ca_file(None, Some("".into()), urls), default);
        assert_eq!(ca_file(None, None, "http://h:9999"), None);
    }

    #[test]
    fn aliases() {
        for args in [
            &["netctl", "net", "ls"][..],
            &["netctl", "network", "list"],
            &["netctl", "ep", "inspect", "x"],
            &["netctl", "group", "delete", "g"],
            &["netctl", "tenant", "rm", "t"],
        ] {
            parse(args);
        }
    }
}
