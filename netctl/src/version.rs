//! `netctl version`: the versions of netctl and of the netmaster.

use crate::error::Result;
use crate::out;
use model::Client;
use model::agent::VersionInfo;

/// This netctl's version. The commit and build time come from the build's environment
/// (`NETCTL_GIT_COMMIT`, `NETCTL_BUILD_TIME`) when it sets them.
pub fn client_version() -> VersionInfo {
    VersionInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("NETCTL_GIT_COMMIT").unwrap_or("unknown").into(),
        build_time: option_env!("NETCTL_BUILD_TIME").unwrap_or("unknown").into(),
    }
}

/// Contiv's form: `Version:`, `GitCommit:`, `BuildTime:`, one a line.
pub fn render(v: &VersionInfo) -> String {
    format!(
        "Version: {}\nGitCommit: {}\nBuildTime: {}\n",
        v.version, v.git_commit, v.build_time
    )
}

pub async fn run(client: &Client) -> Result<()> {
    out::print(&format!("Client Version:\n{}\n", render(&client_version())))?;
    let server = client.version().await?;
    out::print(&format!("Server Version:\n{}", render(&server)))?;
    // Who answered and who leads (several netmasters on etcd elect one leader).
    let info = client.info().await?;
    out::print(&format!("\n{}", render_cluster(&info)))
}

/// `Netmaster:` (the one that answered), its role, the leader and the store.
pub fn render_cluster(i: &model::agent::Info) -> String {
    let leader = if i.leader_ip.is_empty() {
        "(none elected)"
    } else {
        &i.leader_ip
    };
    format!(
        "Netmaster: {}\nRole: {}\nLeader: {leader}\nStore: {}\n",
        i.local_ip, i.current_state, i.store
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_form() {
        let v = VersionInfo {
            version: "1.2.3".into(),
            git_commit: "abc".into(),
            build_time: "now".into(),
        };
        assert_eq!(
            render(&v),
            "Version: 1.2.3\nGitCommit: abc\nBuildTime: now\n"
        );
    }
}
