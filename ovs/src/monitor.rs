//! Monitors (RFC 7047 section 4.1.5): the initial contents of some tables and a stream of their
//! changes.

use crate::client::Command;
use crate::datum::{DecodeError, Row};
use futures::Stream;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What to monitor in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorRequest {
    pub table: String,
    /// `None` monitors every column.
    pub columns: Option<Vec<String>>,
    pub initial: bool,
    pub insert: bool,
    pub delete: bool,
    pub modify: bool,
}

impl MonitorRequest {
    /// Every column, every kind of change, with the initial contents.
    pub fn new(table: impl Into<String>) -> Self {
        MonitorRequest {
            table: table.into(),
            columns: None,
            initial: true,
            insert: true,
            delete: true,
            modify: true,
        }
    }

    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// The `<monitor-requests>` object of the `monitor` method.
    pub(crate) fn to_json(requests: &[MonitorRequest]) -> Value {
        let mut object = Map::new();
        for r in requests {
            let mut req = json!({"select": {
                "initial": r.initial, "insert": r.insert, "delete": r.delete, "modify": r.modify,
            }});
            if let Some(columns) = &r.columns {
                req["columns"] = json!(columns);
            }
            object.insert(r.table.clone(), req);
        }
        Value::Object(object)
    }
}

/// A change to one row. For an insert only `new` is set, for a delete only `old`. For a
/// modification `new` holds every monitored column and `old` only the columns that changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowUpdate {
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// Row changes by table name, then by row uuid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableUpdates(pub BTreeMap<String, BTreeMap<Uuid, RowUpdate>>);

impl TableUpdates {
    pub fn from_json(value: &Value) -> Result<TableUpdates, DecodeError> {
        let tables = value
            .as_object()
            .ok_or_else(|| DecodeError::new("expected a table-updates object", value))?;
        let mut out = BTreeMap::new();
        for (table, rows) in tables {
            let rows = rows
                .as_object()
                .ok_or_else(|| DecodeError::new("expected a table-update object", rows))?;
            let mut updates = BTreeMap::new();
            for (uuid, update) in rows {
                let uuid = Uuid::parse_str(uuid)
                    .map_err(|_| DecodeError::new("bad row uuid", &json!(uuid)))?;
                let side = |key: &str| update.get(key).map(Row::from_json).transpose();
                updates.insert(
                    uuid,
                    RowUpdate {
                        old: side("old")?,
                        new: side("new")?,
                    },
                );
            }
            out.insert(table.clone(), updates);
        }
        Ok(TableUpdates(out))
    }

    /// The changed rows of one table.
    pub fn table(&self, name: &str) -> impl Iterator<Item = (&Uuid, &RowUpdate)> {
        self.0.get(name).into_iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }
}

/// One item of a monitor's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorEvent {
    /// Rows changed.
    Update(TableUpdates),
    /// The client reconnected and set the monitor up again: this is the complete current
    /// contents of the monitored tables, to replace what was known before. Changes made while
    /// disconnected (including deletions) are only visible through it.
    Resync(TableUpdates),
}

/// A live monitor: [`Monitor::initial`] holds the contents when it was set up, and the stream
/// yields the changes after that, in order. Dropping it cancels the monitor on the server.
///
/// Events are buffered without bound, so that a slow consumer never stalls replies to other
/// requests on the shared connection; consume the stream promptly.
pub struct Monitor {
    pub initial: TableUpdates,
    pub(crate) id: u64,
    pub(crate) events: mpsc::UnboundedReceiver<MonitorEvent>,
    pub(crate) cmd_tx: mpsc::UnboundedSender<Command>,
}

impl Monitor {
    /// The next change; `None` once the client has shut down for good.
    pub async fn next(&mut self) -> Option<MonitorEvent> {
        self.events.recv().await
    }
}

impl Stream for Monitor {
    type Item = MonitorEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MonitorEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // The connection task may already be gone; then there is nothing to cancel.
        let _ = self.cmd_tx.send(Command::CancelMonitor { id: self.id });
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("id", &self.id)
            .field("initial", &self.initial)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_update_notification_body() {
        let v = json!({"Port": {
            "36bf6b56-8f80-4b2e-9c5c-8a8a9c1f2c11": {"new": {"name": "p1", "tag": ["set", []]}},
            "5ac5393a-f067-43dd-8ba6-32c402e86311": {"old": {"name": "p0"}},
        }});
        let tu = TableUpdates::from_json(&v).unwrap();
        let rows: Vec<_> = tu.table("Port").collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.new.as_ref().unwrap().string("name"), Some("p1"));
        assert!(rows[1].1.new.is_none());
        assert!(tu.table("Bridge").next().is_none());
    }

    #[test]
    fn request_encoding() {
        let v = MonitorRequest::to_json(&[
            MonitorRequest::new("Interface").columns(&["name", "ofport"]),
            MonitorRequest::new("Port"),
        ]);
        insta::assert_json_snapshot!(v);
    }
}
