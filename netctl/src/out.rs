//! Writing results to stdout: text, JSON as Contiv printed it, and inspect answers.

use crate::error::{CtlError, Result};
use model::{Client, Object};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::io::Write;

/// Writes `text` to stdout as is.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CtlError::io("write to stdout", e))
}

/// Writes one line to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<()> {
    print(&format!("{text}\n"))
}

/// Pretty JSON with two-space indents and a final newline, as Go's `json.MarshalIndent`.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("JSON of an in-memory value");
    s.push('\n');
    s
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    print(&json_text(value))
}

/// An inspect answer: the object's config and its oper view.
#[derive(Debug, Serialize, Deserialize)]
pub struct Inspect<C, O> {
    #[serde(rename = "Config")]
    pub config: C,
    #[serde(rename = "Oper", default)]
    pub oper: O,
}

/// For objects without oper fields: whatever the netmaster sends, `{}` when nothing.
pub type NoOper = serde_json::Map<String, serde_json::Value>;

/// `GET /api/v1/inspect/<coll>/<key>/`, printed as `{"Config": ..., "Oper": ...}` with the
/// fields in the model's order, as Contiv printed its typed inspect structs. The `notice`
/// netmaster adds to `Oper` for what has no effect yet goes to stderr as a warning, not into
/// the JSON: stdout stays what Contiv printed.
pub async fn inspect<C: Object, O: Serialize + DeserializeOwned + Default>(
    client: &Client,
    key: &str,
) -> Result<()> {
    let mut raw = client.inspect::<C>(key).await?;
    let notice = raw
        .get_mut("Oper")
        .and_then(|o| o.as_object_mut())
        .and_then(|o| o.remove("notice"));
    let typed: Inspect<C, O> =
        serde_json::from_value(raw).map_err(|e| CtlError::Decode(e.to_string()))?;
    json(&typed)?;
    if let Some(n) = notice.as_ref().and_then(|n| n.as_str()) {
        crate::notice::warn(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_go_style() {
        let v = vec![model::Tenant {
            key: "blue".into(),
            tenant_name: "blue".into(),
            ..Default::default()
        }];
        assert_eq!(
            json_text(&v),
            "[\n  {\n    \"key\": \"blue\",\n    \"tenantName\": \"blue\"\n  }\n]\n"
        );
        assert_eq!(json_text(&Vec::<model::Tenant>::new()), "[]\n");
    }

    #[test]
    fn inspect_keeps_model_order_and_empty_oper() {
        let raw = serde_json::json!({
            "Config": {"tenantName": "blue", "key": "blue"},
        });
        let typed: Inspect<model::Tenant, model::oper::TenantOper> =
            serde_json::from_value(raw).unwrap();
        assert_eq!(
            json_text(&typed),
            "{\n  \"Config\": {\n    \"key\": \"blue\",\n    \"tenantName\": \"blue\"\n  },\n  \"Oper\": {}\n}\n"
        );
    }
}
