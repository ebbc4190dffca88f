//! `netctl login`: authenticate to Contiv's auth_proxy.
//!
//! Contiv's login prompted for a user name and password, POSTed them to auth_proxy's
//! `/api/v1/auth_proxy/login/` over https, and kept the token in `~/.netctl/config.json` for
//! the `x-auth-token` header of later requests. The netmaster client this netctl is built on
//! (`model::Client`) speaks plain http only and sends no token, so login stops with an
//! explanation instead of prompting for a password it could not use.

use crate::error::{CtlError, Result};
use model::Client;

pub async fn run(client: &Client) -> Result<()> {
    let https = client.urls().iter().any(|u| u.starts_with("https://"));
    if !https {
        return Err(CtlError::Invalid(
            "login requires a https auth_proxy URL (give it in --netmaster)".into(),
        ));
    }
    Err(CtlError::Unsupported(
        "login: this netctl cannot talk to an https auth_proxy yet (its netmaster client has no TLS and sends no auth token)".into(),
    ))
}
