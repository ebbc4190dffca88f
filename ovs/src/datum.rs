//! OVSDB data in its JSON wire form (RFC 7047 section 5.1).
//!
//! An [`Atom`] is a single scalar; a [`Datum`] is what a column holds: one atom, a set, or a map.
//! Decoding does not consult the schema, so a column that the schema calls a set but that holds
//! exactly one element arrives as [`Datum::Atom`] (the server sends it bare). The accessors
//! ([`Datum::atoms`], [`Datum::integer`], ...) paper over that difference.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A value from the server that does not follow RFC 7047's encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {value}")]
pub struct DecodeError {
    pub reason: String,
    /// The offending JSON, as text (shortened).
    pub value: String,
}

impl DecodeError {
    pub(crate) fn new(reason: impl Into<String>, value: &Value) -> Self {
        let mut value = value.to_string();
        if value.len() > 200 {
            let mut end = 200;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
            value.push_str("...");
        }
        DecodeError {
            reason: reason.into(),
            value,
        }
    }
}

/// One OVSDB scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Integer(i64),
    /// A real. JSON has no NaN or infinity, so only finite values can be sent.
    Real(f64),
    Boolean(bool),
    String(String),
    Uuid(Uuid),
    /// A reference to a row inserted earlier in the same transaction (`uuid-name`).
    NamedUuid(String),
}

impl Atom {
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    pub fn from_json(value: &Value) -> Result<Atom, DecodeError> {
        match value {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.clone())),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Atom::Integer(i))
                } else if n.is_u64() {
                    // OVSDB integers are 64-bit signed; anything larger is not an integer atom.
                    Err(DecodeError::new("integer out of range", value))
                } else {
                    n.as_f64()
                        .map(Atom::Real)
                        .ok_or_else(|| DecodeError::new("bad number", value))
                }
            }
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("uuid"), Some(Value::String(s)), 2) => Uuid::parse_str(s)
                    .map(Atom::Uuid)
                    .map_err(|_| DecodeError::new("bad uuid", value)),
                (Some("named-uuid"), Some(Value::String(s)), 2) => Ok(Atom::NamedUuid(s.clone())),
                _ => Err(DecodeError::new("expected an atom", value)),
            },
            _ => Err(DecodeError::new("expected an atom", value)),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Atom::String(s.to_string())
    }
}
impl From<String> for Atom {
    fn from(s: String) -> Self {
        Atom::String(s)
    }
}
impl From<&String> for Atom {
    fn from(s: &String) -> Self {
        Atom::String(s.clone())
    }
}
impl From<i64> for Atom {
    fn from(i: i64) -> Self {
        Atom::Integer(i)
    }
}
impl From<bool> for Atom {
    fn from(b: bool) -> Self {
        Atom::Boolean(b)
    }
}
impl From<f64> for Atom {
    fn from(r: f64) -> Self {
        Atom::Real(r)
    }
}
impl From<Uuid> for Atom {
    fn from(u: Uuid) -> Self {
        Atom::Uuid(u)
    }
}

/// The value of one column: an atom, a set of atoms or a map of atoms to atoms.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// A scalar column, or a set column holding exactly one element.
    Atom(Atom),
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

impl Datum {
    /// The empty set: how OVSDB spells "no value" for an optional column.
    pub fn empty() -> Datum {
        Datum::Set(Vec::new())
    }

    pub fn set<I, A>(items: I) -> Datum
    where
        I: IntoIterator<Item = A>,
        A: Into<Atom>,
    {
        Datum::Set(items.into_iter().map(Into::into).collect())
    }

    pub fn map<I, K, V>(pairs: I) -> Datum
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Atom>,
        V: Into<Atom>,
    {
        Datum::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A string-to-string map, the type of every `external_ids`, `options` and `other_config`.
    pub fn string_map(map: &BTreeMap<String, String>) -> Datum {
        Datum::map(map.iter())
    }

    pub fn uuid(u: Uuid) -> Datum {
        Datum::Atom(Atom::Uuid(u))
    }

    pub fn named_uuid(name: impl Into<String>) -> Datum {
        Datum::Atom(Atom::NamedUuid(name.into()))
    }

    /// An optional column: the atom, or the empty set for `None`.
    pub fn optional<A: Into<Atom>>(value: Option<A>) -> Datum {
        match value {
            Some(a) => Datum::Atom(a.into()),
            None => Datum::empty(),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Datum::Atom(a) => a.to_json(),
            Datum::Set(items) => {
                json!(["set", items.iter().map(Atom::to_json).collect::<Vec<_>>()])
            }
            Datum::Map(pairs) => json!([
                "map",
                pairs
                    .iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    pub fn from_json(value: &Value) -> Result<Datum, DecodeError> {
        if let Value::Array(a) = value {
            match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("set"), Some(Value::Array(items)), 2) => {
                    return items
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Result<_, _>>()
                        .map(Datum::Set);
                }
                (Some("map"), Some(Value::Array(pairs)), 2) => {
                    return pairs
                        .iter()
                        .map(|pair| match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((Atom::from_json(k)?, Atom::from_json(v)?)),
                            _ => Err(DecodeError::new("expected a [key, value] pair", pair)),
                        })
                        .collect::<Result<_, _>>()
                        .map(Datum::Map);
                }
                _ => {}
            }
        }
        Atom::from_json(value).map(Datum::Atom)
    }

    /// The elements of a set column (a bare atom is a set of one). Empty for a map.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Datum::Atom(a) => std::slice::from_ref(a),
            Datum::Set(items) => items,
            Datum::Map(_) => &[],
        }
    }

    /// The single string of a string column or of an optional string column that is set.
    pub fn as_str(&self) -> Option<&str> {
        match self.atoms() {
            [a] => a.as_str(),
            _ => None,
        }
    }

    /// The single integer of an integer column or of an optional integer column that is set.
    pub fn integer(&self) -> Option<i64> {
        match self.atoms() {
            [a] => a.as_integer(),
            _ => None,
        }
    }

    /// The uuids of a reference column (a single reference or a set of them).
    pub fn uuids(&self) -> Vec<Uuid> {
        self.atoms().iter().filter_map(Atom::as_uuid).collect()
    }

    /// The strings of a set-of-strings column.
    pub fn strings(&self) -> Vec<String> {
        self.atoms()
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    }

    /// A string-to-string map. The empty set is accepted as an empty map, since that is how an
    /// untyped decoder sees `["set",[]]` versus `["map",[]]` ambiguity in hand-written data.
    pub fn to_string_map(&self) -> Option<BTreeMap<String, String>> {
        match self {
            Datum::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect(),
            Datum::Set(items) if items.is_empty() => Some(BTreeMap::new()),
            _ => None,
        }
    }
}

impl<A: Into<Atom>> From<A> for Datum {
    fn from(a: A) -> Self {
        Datum::Atom(a.into())
    }
}

impl From<&BTreeMap<String, String>> for Datum {
    fn from(map: &BTreeMap<String, String>) -> Self {
        Datum::string_map(map)
    }
}

/// A row: column name to value. Columns absent from the map are left alone by `update` and take
/// their defaults on `insert`. Ordered so that encoded transactions are deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub BTreeMap<String, Datum>);

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    /// Builder form of [`Row::insert`].
    pub fn with(mut self, column: impl Into<String>, value: impl Into<Datum>) -> Row {
        self.insert(column, value);
        self
    }

    pub fn insert(&mut self, column: impl Into<String>, value: impl Into<Datum>) {
        self.0.insert(column.into(), value.into());
    }

    pub fn get(&self, column: &str) -> Option<&Datum> {
        self.0.get(column)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Datum)> {
        self.0.iter()
    }

    /// The row's own uuid (the `_uuid` column), when it was selected.
    pub fn uuid(&self) -> Option<Uuid> {
        self.get("_uuid").and_then(|d| d.uuids().first().copied())
    }

    pub fn string(&self, column: &str) -> Option<&str> {
        self.get(column).and_then(Datum::as_str)
    }

    pub fn integer(&self, column: &str) -> Option<i64> {
        self.get(column).and_then(Datum::integer)
    }

    pub fn uuids(&self, column: &str) -> Vec<Uuid> {
        self.get(column).map(Datum::uuids).unwrap_or_default()
    }

    pub fn strings(&self, column: &str) -> Vec<String> {
        self.get(column).map(Datum::strings).unwrap_or_default()
    }

    /// A string map column; empty when the column is absent or not a string map.
    pub fn string_map(&self, column: &str) -> BTreeMap<String, String> {
        self.get(column)
            .and_then(Datum::to_string_map)
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    pub fn from_json(value: &Value) -> Result<Row, DecodeError> {
        let object = value
            .as_object()
            .ok_or_else(|| DecodeError::new("expected a row object", value))?;
        object
            .iter()
            .map(|(k, v)| Ok((k.clone(), Datum::from_json(v)?)))
            .collect::<Result<_, _>>()
            .map(Row)
    }
}

impl FromIterator<(String, Datum)> for Row {
    fn from_iter<T: IntoIterator<Item = (String, Datum)>>(iter: T) -> Self {
        Row(iter.into_iter().collect())
    }
}

// Serde support goes through `serde_json::Value`: these types only ever travel as JSON, and the
// explicit to_json/from_json pair keeps the encoding readable in one place.
macro_rules! serde_via_json {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_json().serialize(serializer)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(deserializer)?;
                <$ty>::from_json(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_json!(Atom);
serde_via_json!(Datum);
serde_via_json!(Row);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn atom() -> impl Strategy<Value = Atom> {
        prop_oneof![
            any::<i64>().prop_map(Atom::Integer),
            // Only finite reals have a JSON form. serde_json prints integral reals as `1.0`, so
            // they stay reals on the way back.
            (-1e12f64..1e12).prop_map(Atom::Real),
            any::<bool>().prop_map(Atom::Boolean),
            ".*".prop_map(Atom::String),
            any::<u128>().prop_map(|n| Atom::Uuid(Uuid::from_u128(n))),
            "[a-z][a-z0-9_]{0,10}".prop_map(Atom::NamedUuid),
        ]
    }

    fn datum() -> impl Strategy<Value = Datum> {
        prop_oneof![
            atom().prop_map(Datum::Atom),
            prop::collection::vec(atom(), 0..5).prop_map(Datum::Set),
            prop::collection::vec((atom(), atom()), 0..5).prop_map(Datum::Map),
        ]
    }

    fn through_text<T: Serialize + for<'de> Deserialize<'de>>(v: &T) -> T {
        let text = serde_json::to_string(v).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    proptest! {
        #[test]
        fn atom_round_trips(a in atom()) {
            prop_assert_eq!(through_text(&a), a);
        }

        #[test]
        fn datum_round_trips(d in datum()) {
            prop_assert_eq!(through_text(&d), d);
        }

        #[test]
        fn row_round_trips(cols in prop::collection::btree_map("[a-z_]{1,8}", datum(), 0..6)) {
            let row = Row(cols);
            prop_assert_eq!(through_text(&row), row);
        }

        #[test]
        fn string_maps_round_trip(m in prop::collection::btree_map(".*", ".*", 0..6)) {
            let d = Datum::string_map(&m);
            prop_assert_eq!(through_text(&d).to_string_map(), Some(m));
        }
    }

    #[test]
    fn wire_forms() {
        let u = Uuid::parse_str("36bf6b56-8f80-4b2e-9c5c-8a8a9c1f2c11").unwrap();
        assert_eq!(Datum::uuid(u).to_json(), json!(["uuid", u.to_string()]));
        assert_eq!(Datum::named_uuid("p").to_json(), json!(["named-uuid", "p"]));
        assert_eq!(Datum::empty().to_json(), json!(["set", []]));
        assert_eq!(
            Datum::set(["OpenFlow13", "OpenFlow14"]).to_json(),
            json!(["set", ["OpenFlow13", "OpenFlow14"]])
        );
        assert_eq!(
            Datum::map([("a", "1"), ("b", "2")]).to_json(),
            json!(["map", [["a", "1"], ["b", "2"]]])
        );
        assert_eq!(Datum::optional(Some(7i64)).to_json(), json!(7));
        assert_eq!(Datum::optional::<i64>(None).to_json(), json!(["set", []]));
    }

    #[test]
    fn accessors_treat_a_bare_atom_as_a_set_of_one() {
        let one =
            Datum::from_json(&json!(["uuid", "36bf6b56-8f80-4b2e-9c5c-8a8a9c1f2c11"])).unwrap();
        assert_eq!(one.uuids().len(), 1);
        let unset = Datum::from_json(&json!(["set", []])).unwrap();
        assert_eq!(unset.integer(), None);
        assert_eq!(
            Datum::from_json(&json!(["set", [5]])).unwrap().integer(),
            Some(5)
        );
        assert_eq!(unset.to_string_map(), Some(BTreeMap::new()));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            json!(["uuid", "not-a-uuid"]),
            json!(["map", [["k"]]]),
            json!(["set", [["set", []]]]),
            json!({"a": 1}),
            json!(null),
            json!(u64::MAX),
        ] {
            assert!(Datum::from_json(&bad).is_err(), "{bad} should not decode");
        }
    }
}
