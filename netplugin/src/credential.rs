//! The agent's node credential: it presents the cluster's join token to netmaster, gets a
//! credential that lets it act for its own node only, and renews it before it expires.

use std::time::Duration;

/// Joins once (retrying while netmaster refuses nothing but is unreachable is the caller's
/// loop: a wrong join token fails here), sets the credential on `client` and keeps renewing it
/// at half its lifetime. The renewal runs until the process ends.
pub async fn join(
    client: &model::Client,
    host: &str,
    join_token: &str,
) -> Result<(), model::ClientError> {
    let lifetime = join_once(client, host, join_token).await?;
    let (client, host, join_token) = (client.clone(), host.to_string(), join_token.to_string());
    tokio::spawn(async move {
        let mut wait = half(lifetime);
        loop {
            tokio::time::sleep(wait).await;
            wait = match join_once(&client, &host, &join_token).await {
                Ok(lifetime) => half(lifetime),
                Err(e) => {
                    // The old credential may still be good for a while: try again soon.
                    tracing::error!(error = %e, "renew the node credential; retrying in 30 s");
                    Duration::from_secs(30)
                }
            };
        }
    });
    Ok(())
}

fn half(lifetime: u64) -> Duration {
    Duration::from_secs((lifetime / 2).max(1))
}

async fn join_once(
    client: &model::Client,
    host: &str,
    join_token: &str,
) -> Result<u64, model::ClientError> {
    let (token, lifetime) = client.join(host, join_token).await?;
    client.set_auth_token(&token)?;
    tracing::info!(
        node = host,
        lifetime_s = lifetime,
        "joined: holding a node credential"
    );
    Ok(lifetime)
}
