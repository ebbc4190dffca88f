//! `netctl endpoint` (`ep`): inspect.

use crate::error::{CtlError, Result};
use crate::out;
use clap::{Args, Subcommand};
use model::Client;
use model::oper::EndpointOper;
use serde::{Deserialize, Serialize};

/// Contiv's endpoint inspect answer: an endpoint has no config, only its oper view.
#[derive(Debug, Serialize, Deserialize)]
struct EndpointInspect {
    #[serde(rename = "Oper", default)]
    oper: EndpointOper,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Inspect an endpoint, found by (part of) its endpoint id, container id or container name
    #[command(after_help = "\
Examples:
  netctl endpoint inspect 4a0e1d
  netctl ep inspect web-1")]
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Endpoint id, container id or container name, or a part of one
    #[arg(value_name = "EPID")]
    pub epid: String,
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Inspect(a) => {
            let raw = client.inspect_endpoint(&a.epid).await?;
            let ep: EndpointInspect =
                serde_json::from_value(raw).map_err(|e| CtlError::Decode(e.to_string()))?;
            out::json(&ep)
        }
    }
}
