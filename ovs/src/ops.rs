//! Typed `transact` operations (RFC 7047 section 5.2) and their results.

use crate::datum::{Datum, DecodeError, Row};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A comparison in a `where` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
    Includes,
    Excludes,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Ge => ">=",
            Function::Gt => ">",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// One term of a `where` clause; a row matches when every term holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: Function,
    pub value: Datum,
}

impl Condition {
    pub fn new(column: impl Into<String>, function: Function, value: impl Into<Datum>) -> Self {
        Condition {
            column: column.into(),
            function,
            value: value.into(),
        }
    }

    pub fn eq(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Condition::new(column, Function::Eq, value)
    }

    pub fn ne(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Condition::new(column, Function::Ne, value)
    }

    pub fn includes(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Condition::new(column, Function::Includes, value)
    }

    /// The row whose `_uuid` is `uuid`.
    pub fn uuid(uuid: Uuid) -> Self {
        Condition::eq("_uuid", Datum::uuid(uuid))
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

/// How a `mutate` operation changes a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
    /// Add elements to a set or pairs to a map.
    Insert,
    /// Remove elements from a set, or keys (given as a set) or pairs (given as a map) from a map.
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Subtract => "-=",
            Mutator::Multiply => "*=",
            Mutator::Divide => "/=",
            Mutator::Modulo => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: Mutator,
    pub value: Datum,
}

impl Mutation {
    pub fn new(column: impl Into<String>, mutator: Mutator, value: impl Into<Datum>) -> Self {
        Mutation {
            column: column.into(),
            mutator,
            value: value.into(),
        }
    }

    pub fn insert(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Mutation::new(column, Mutator::Insert, value)
    }

    pub fn delete(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Mutation::new(column, Mutator::Delete, value)
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.mutator.as_str(), self.value.to_json()])
    }
}

/// When a `wait` operation is satisfied: when the selected rows equal, or differ from, `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    Equal,
    NotEqual,
}

/// One operation of a `transact` request.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Insert {
        table: String,
        row: Row,
        /// Lets later operations of the same transaction refer to the new row
        /// as `["named-uuid", name]`.
        uuid_name: Option<String>,
    },
    Select {
        table: String,
        conditions: Vec<Condition>,
        /// `None` selects every column.
        columns: Option<Vec<String>>,
    },
    Update {
        table: String,
        conditions: Vec<Condition>,
        row: Row,
    },
    Mutate {
        table: String,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    Delete {
        table: String,
        conditions: Vec<Condition>,
    },
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: WaitUntil,
        rows: Vec<Row>,
        /// Milliseconds; `Some(0)` turns the wait into an assertion that fails the transaction
        /// at once, which is how we use it (optimistic concurrency, "must exist"/"must not").
        timeout_ms: Option<u64>,
    },
    Commit {
        durable: bool,
    },
    Abort,
    /// Shows up in the ovsdb-server log and in the database file's history.
    Comment(String),
    Assert {
        lock: String,
    },
}

impl Operation {
    pub fn insert(table: impl Into<String>, row: Row) -> Self {
        Operation::Insert {
            table: table.into(),
            row,
            uuid_name: None,
        }
    }

    pub fn insert_named(table: impl Into<String>, uuid_name: impl Into<String>, row: Row) -> Self {
        Operation::Insert {
            table: table.into(),
            row,
            uuid_name: Some(uuid_name.into()),
        }
    }

    /// Selects every column of the matching rows.
    pub fn select(table: impl Into<String>, conditions: Vec<Condition>) -> Self {
        Operation::Select {
            table: table.into(),
            conditions,
            columns: None,
        }
    }

    pub fn select_columns(
        table: impl Into<String>,
        conditions: Vec<Condition>,
        columns: &[&str],
    ) -> Self {
        Operation::Select {
            table: table.into(),
            conditions,
            columns: Some(columns.iter().map(|c| c.to_string()).collect()),
        }
    }

    pub fn update(table: impl Into<String>, conditions: Vec<Condition>, row: Row) -> Self {
        Operation::Update {
            table: table.into(),
            conditions,
            row,
        }
    }

    pub fn mutate(
        table: impl Into<String>,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    ) -> Self {
        Operation::Mutate {
            table: table.into(),
            conditions,
            mutations,
        }
    }

    pub fn delete(table: impl Into<String>, conditions: Vec<Condition>) -> Self {
        Operation::Delete {
            table: table.into(),
            conditions,
        }
    }

    pub fn wait(
        table: impl Into<String>,
        conditions: Vec<Condition>,
        columns: &[&str],
        until: WaitUntil,
        rows: Vec<Row>,
        timeout_ms: Option<u64>,
    ) -> Self {
        Operation::Wait {
            table: table.into(),
            conditions,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            until,
            rows,
            timeout_ms,
        }
    }

    /// Fails the transaction at once unless some row matches `conditions`.
    pub fn assert_exists(table: impl Into<String>, conditions: Vec<Condition>) -> Self {
        // With no columns, each matching row projects to `{}`, so "not equal to no rows" means
        // "at least one row matches".
        Operation::wait(table, conditions, &[], WaitUntil::NotEqual, vec![], Some(0))
    }

    /// Fails the transaction at once if any row matches `conditions`.
    pub fn assert_absent(table: impl Into<String>, conditions: Vec<Condition>) -> Self {
        Operation::wait(table, conditions, &[], WaitUntil::Equal, vec![], Some(0))
    }

    pub fn comment(text: impl Into<String>) -> Self {
        Operation::Comment(text.into())
    }

    /// A short description for error messages: "insert into Port", "wait on Bridge".
    pub fn describe(&self) -> String {
        match self {
            Operation::Insert { table, .. } => format!("insert into {table}"),
            Operation::Select { table, .. } => format!("select from {table}"),
            Operation::Update { table, .. } => format!("update {table}"),
            Operation::Mutate { table, .. } => format!("mutate {table}"),
            Operation::Delete { table, .. } => format!("delete from {table}"),
            Operation::Wait { table, .. } => format!("wait on {table}"),
            Operation::Commit { .. } => "commit".to_string(),
            Operation::Abort => "abort".to_string(),
            Operation::Comment(_) => "comment".to_string(),
            Operation::Assert { lock } => format!("assert lock {lock}"),
        }
    }

    pub fn to_json(&self) -> Value {
        fn conds(c: &[Condition]) -> Value {
            Value::Array(c.iter().map(Condition::to_json).collect())
        }
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut op = json!({"op": "insert", "table": table, "row": row.to_json()});
                if let Some(name) = uuid_name {
                    op["uuid-name"] = json!(name);
                }
                op
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                let mut op = json!({"op": "select", "table": table, "where": conds(conditions)});
                if let Some(columns) = columns {
                    op["columns"] = json!(columns);
                }
                op
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                json!({"op": "update", "table": table, "where": conds(conditions), "row": row.to_json()})
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate",
                "table": table,
                "where": conds(conditions),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>(),
            }),
            Operation::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conds(conditions)})
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                let mut op = json!({
                    "op": "wait",
                    "table": table,
                    "where": conds(conditions),
                    "columns": columns,
                    "until": match until { WaitUntil::Equal => "==", WaitUntil::NotEqual => "!=" },
                    "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
                });
                if let Some(t) = timeout_ms {
                    op["timeout"] = json!(t);
                }
                op
            }
            Operation::Commit { durable } => json!({"op": "commit", "durable": durable}),
            Operation::Abort => json!({"op": "abort"}),
            Operation::Comment(text) => json!({"op": "comment", "comment": text}),
            Operation::Assert { lock } => json!({"op": "assert", "lock": lock}),
        }
    }
}

/// The `params` of a `transact` request: the database name followed by the operations.
pub fn transact_params(db: &str, ops: &[Operation]) -> Value {
    let mut params = vec![json!(db)];
    params.extend(ops.iter().map(Operation::to_json));
    Value::Array(params)
}

/// The successful result of one operation. Which fields are set depends on the operation:
/// `uuid` for insert, `count` for update/mutate/delete, `rows` for select; none for the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationResult {
    pub uuid: Option<Uuid>,
    pub count: Option<u64>,
    pub rows: Option<Vec<Row>>,
}

impl OperationResult {
    pub fn from_json(value: &Value) -> Result<Self, DecodeError> {
        let empty = Map::new();
        let object = match value {
            Value::Object(o) => o,
            // Operations after a failed one come back as null; callers stop at the failure first.
            Value::Null => &empty,
            _ => return Err(DecodeError::new("expected an operation result", value)),
        };
        let uuid = match object.get("uuid") {
            Some(u) => Some(
                Datum::from_json(u)?
                    .uuids()
                    .first()
                    .copied()
                    .ok_or_else(|| DecodeError::new("bad uuid in insert result", u))?,
            ),
            None => None,
        };
        let count = match object.get("count") {
            Some(c) => Some(c.as_u64().ok_or_else(|| DecodeError::new("bad count", c))?),
            None => None,
        };
        let rows = match object.get("rows") {
            Some(Value::Array(rows)) => {
                Some(rows.iter().map(Row::from_json).collect::<Result<_, _>>()?)
            }
            Some(other) => return Err(DecodeError::new("bad rows", other)),
            None => None,
        };
        Ok(OperationResult { uuid, count, rows })
    }

    /// The rows of a select result (empty for other operations).
    pub fn rows(&self) -> &[Row] {
        self.rows.as_deref().unwrap_or(&[])
    }
}

/// How a transaction failed, as reported inside a successful JSON-RPC reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactFailure {
    /// Operation `index` failed; later operations were not run.
    Operation {
        index: usize,
        error: String,
        details: Option<String>,
    },
    /// Every operation succeeded but the commit did not (for example a referential integrity
    /// violation): the server appends one extra error element.
    Commit {
        error: String,
        details: Option<String>,
    },
}

/// Splits a `transact` reply into per-operation results, or the first failure.
pub fn parse_transact_reply(
    n_ops: usize,
    reply: &Value,
) -> Result<Result<Vec<OperationResult>, TransactFailure>, DecodeError> {
    let items = reply
        .as_array()
        .ok_or_else(|| DecodeError::new("expected an array of operation results", reply))?;
    for (index, item) in items.iter().enumerate() {
        if let Some(error) = item.get("error").filter(|e| !e.is_null()) {
            let error = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string);
            let details = item
                .get("details")
                .and_then(Value::as_str)
                .map(str::to_string);
            return Ok(Err(if index < n_ops {
                TransactFailure::Operation {
                    index,
                    error,
                    details,
                }
            } else {
                TransactFailure::Commit { error, details }
            }));
        }
    }
    if items.len() < n_ops {
        return Err(DecodeError::new(
            format!("expected {n_ops} operation results"),
            reply,
        ));
    }
    items[..n_ops]
        .iter()
        .map(OperationResult::from_json)
        .collect::<Result<_, _>>()
        .map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_error_names_the_failed_operation() {
        let reply = json!([{}, {"error": "constraint violation", "details": "5000 is not in the valid range 0 to 4095 (inclusive)"}, null]);
        assert_eq!(
            parse_transact_reply(3, &reply).unwrap(),
            Err(TransactFailure::Operation {
                index: 1,
                error: "constraint violation".into(),
                details: Some("5000 is not in the valid range 0 to 4095 (inclusive)".into()),
            })
        );
    }

    #[test]
    fn commit_error_is_the_extra_element() {
        let reply = json!([{"uuid": ["uuid", "5ac5393a-f067-43dd-8ba6-32c402e86311"]}, {"error": "referential integrity violation", "details": "..."}]);
        assert!(matches!(
            parse_transact_reply(1, &reply).unwrap(),
            Err(TransactFailure::Commit { .. })
        ));
    }

    #[test]
    fn results_are_typed() {
        let reply = json!([
            {"uuid": ["uuid", "5ac5393a-f067-43dd-8ba6-32c402e86311"]},
            {"count": 2},
            {"rows": [{"name": "br0", "ports": ["set", []]}]},
            {}
        ]);
        let results = parse_transact_reply(4, &reply).unwrap().unwrap();
        assert_eq!(
            results[0].uuid.unwrap().to_string(),
            "5ac5393a-f067-43dd-8ba6-32c402e86311"
        );
        assert_eq!(results[1].count, Some(2));
        assert_eq!(results[2].rows()[0].string("name"), Some("br0"));
        assert_eq!(results[3], OperationResult::default());
    }

    #[test]
    fn every_operation_kind_encodes() {
        let ops = vec![
            Operation::insert_named("Port", "p", Row::new().with("name", "p1")),
            Operation::select_columns("Port", vec![Condition::eq("name", "p1")], &["_uuid"]),
            Operation::update(
                "Port",
                vec![Condition::ne("tag", 5i64)],
                Row::new().with("tag", 5i64),
            ),
            Operation::mutate(
                "Bridge",
                vec![Condition::eq("name", "br0")],
                vec![
                    Mutation::insert("ports", Datum::named_uuid("p")),
                    Mutation::new("flood_vlans", Mutator::Delete, Datum::set([1i64])),
                ],
            ),
            Operation::delete(
                "Bridge",
                vec![Condition::includes("protocols", "OpenFlow10")],
            ),
            Operation::assert_exists("Open_vSwitch", vec![]),
            Operation::wait(
                "Port",
                vec![],
                &["name"],
                WaitUntil::Equal,
                vec![Row::new().with("name", "p1")],
                None,
            ),
            Operation::Commit { durable: false },
            Operation::Abort,
            Operation::comment("add port p1"),
            Operation::Assert {
                lock: "agent".into(),
            },
        ];
        insta::assert_json_snapshot!(transact_params("Open_vSwitch", &ops));
    }
}
