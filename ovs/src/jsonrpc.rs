//! JSON-RPC 1.0 framing as ovsdb-server speaks it: a stream of concatenated JSON values with no
//! delimiter between them (RFC 7047 section 4).

use serde_json::Value;

/// Splits a byte stream into top-level JSON values.
///
/// It scans incrementally (tracking nesting and string state across reads), so a large message
/// that arrives in many reads is parsed once, not once per read.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// How far `buf` has been scanned for the end of the current value.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

/// The peer sent something that is not a stream of JSON objects or arrays.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(String);

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, if one has fully arrived.
    pub fn next_value(&mut self) -> Result<Option<Value>, FrameError> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => {
                    if self.depth == 0 {
                        // A message starts: drop the whitespace scanned before it, in one go.
                        self.buf.drain(..self.scanned - 1);
                        self.scanned = 1;
                    }
                    self.depth += 1;
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.scanned;
                        let parsed = serde_json::from_slice(&self.buf[..end]);
                        self.buf.drain(..end);
                        self.scanned = 0;
                        return parsed
                            .map(Some)
                            .map_err(|e| FrameError(format!("invalid JSON message: {e}")));
                    }
                }
                // Whitespace between messages: dropped when the next message starts or when
                // the buffer has been scanned (dropping it byte by byte moved the rest of the
                // buffer once per byte, quadratic in a run of whitespace; found by fuzzing).
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {}
                _ if self.depth == 0 => {
                    return Err(FrameError(format!(
                        "unexpected byte {:?} between JSON-RPC messages",
                        b as char
                    )));
                }
                _ => {}
            }
        }
        if self.depth == 0 {
            // Only whitespace since the last message.
            self.buf.clear();
            self.scanned = 0;
        }
        Ok(None)
    }
}

/// A message from the server, classified.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The reply to one of our requests.
    Response {
        id: Value,
        result: Value,
        error: Value,
    },
    /// A request we must answer (ovsdb-server only sends `echo`).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification (`update` for monitors, `locked`, `stolen`).
    Notification { method: String, params: Value },
}

impl Incoming {
    pub fn classify(mut msg: Value) -> Result<Incoming, FrameError> {
        let Some(object) = msg.as_object_mut() else {
            return Err(FrameError(format!("expected a JSON-RPC object, got {msg}")));
        };
        let id = object.remove("id").unwrap_or(Value::Null);
        match object.remove("method") {
            Some(Value::String(method)) => {
                let params = object.remove("params").unwrap_or(Value::Null);
                Ok(if id.is_null() {
                    Incoming::Notification { method, params }
                } else {
                    Incoming::Request { id, method, params }
                })
            }
            Some(other) => Err(FrameError(format!("bad JSON-RPC method {other}"))),
            None => Ok(Incoming::Response {
                id,
                result: object.remove("result").unwrap_or(Value::Null),
                error: object.remove("error").unwrap_or(Value::Null),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn decode_all(chunks: &[&[u8]]) -> Vec<Value> {
        let mut d = FrameDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(v) = d.next_value().unwrap() {
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn concatenated_values_without_separators() {
        let text =
            br#"{"id":1,"result":[],"error":null}{"method":"echo","params":[],"id":"x"}  [1,2]"#;
        let values = decode_all(&[text]);
        assert_eq!(values.len(), 3);
        assert_eq!(values[2], json!([1, 2]));
    }

    #[test]
    fn braces_and_escapes_inside_strings() {
        let v = json!({"s": "a}b]\"{[\\", "t": ["\\\"}"]});
        let text = serde_json::to_vec(&v).unwrap();
        assert_eq!(decode_all(&[&text]), vec![v]);
    }

    #[test]
    fn long_runs_of_whitespace_between_messages() {
        // 4 MiB of whitespace in one read: dropped byte by byte, this took hours (1 MiB took
        // 10 s in a release build); dropped at once it is one scan.
        let mut stream = b"{\"id\":1}".to_vec();
        stream.extend(std::iter::repeat_n(b' ', 2 << 20));
        stream.extend(std::iter::repeat_n(b'\n', 2 << 20));
        stream.extend(b"[2]\t");
        assert_eq!(decode_all(&[&stream]), vec![json!({"id": 1}), json!([2])]);
        let mut d = FrameDecoder::default();
        d.push(b"  \n ");
        assert!(d.next_value().unwrap().is_none());
        assert!(d.buf.is_empty(), "whitespace is not kept");
        d.push(b" {\"a\": [1, \"]\"]}  ");
        assert_eq!(d.next_value().unwrap(), Some(json!({"a": [1, "]"]})));
        assert!(d.next_value().unwrap().is_none());
        assert!(d.buf.is_empty());
    }

    #[test]
    fn garbage_between_messages_is_an_error() {
        let mut d = FrameDecoder::default();
        d.push(b"{}x");
        assert!(d.next_value().unwrap().is_some());
        assert!(d.next_value().is_err());
    }

    #[test]
    fn classifies_messages() {
        assert!(matches!(
            Incoming::classify(json!({"id": 3, "result": {}, "error": null})).unwrap(),
            Incoming::Response { .. }
        ));
        assert!(matches!(
            Incoming::classify(json!({"id": "echo", "method": "echo", "params": []})).unwrap(),
            Incoming::Request { .. }
        ));
        assert!(matches!(
            Incoming::classify(json!({"id": null, "method": "update", "params": [1, {}]})).unwrap(),
            Incoming::Notification { .. }
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Whatever way the stream is cut into reads, the same messages come out.
        #[test]
        fn any_split_yields_the_same_messages(
            msgs in prop::collection::vec(json_value().prop_map(|v| json!({"m": v})), 1..5),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let text: Vec<u8> = msgs.iter().flat_map(|m| serde_json::to_vec(m).unwrap()).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
            points.sort();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&text[start..p]);
                start = p;
            }
            chunks.push(&text[start..]);
            prop_assert_eq!(decode_all(&chunks), msgs);
        }
    }
}
