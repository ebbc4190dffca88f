//! A structure-aware mutator without coverage feedback. Each input is one of the target's seeds
//! (valid inputs taken from real examples) changed by a few mutations: byte flips, splices with
//! other seeds, tokens from the target's dictionary, numbers at the edges of their types, invalid
//! UTF-8, truncation, deep nesting and long repetitions; for JSON, changes made on the parsed tree
//! (a node replaced by another type, another seed's node, a deep wrap, a key added or removed)
//! so that inputs get past the syntax check into the typed decoders.

use serde_json::{Map, Value};

use crate::rng::Rng;

/// What a target's inputs look like, which decides the mutations worth making.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One JSON document.
    Json,
    /// JSON documents one after another (the OVSDB JSON-RPC stream).
    JsonStream,
    /// OpenFlow messages: 8-byte headers whose length field frames the body.
    OpenFlow,
    /// Text (environment variables, command output, HTTP responses).
    Text,
}

/// Inputs are never longer than this: enough for deep nesting and long repetitions, small
/// enough that every input runs in milliseconds.
pub const MAX_INPUT: usize = 1 << 20;

/// Byte strings worth inserting anywhere: JSON punctuation, numbers at the edges of the integer
/// and float types, escapes, invalid UTF-8.
const GENERIC_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-1",
    b"1e400",
    b"-1e400",
    b"1.7976931348623157e308",
    b"5e-324",
    b"0.1",
    b"127",
    b"128",
    b"255",
    b"256",
    b"32767",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\\u",
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\r\n",
    b"\n",
    b"\0",
    b" ",
    b";",
    b"=",
    b"/",
    b"..",
    b"0x",
];

/// Numbers substituted for a run of digits.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "7",
    "8",
    "9",
    "15",
    "16",
    "63",
    "64",
    "68",
    "127",
    "128",
    "255",
    "256",
    "4095",
    "4096",
    "65535",
    "65536",
    "16777215",
    "16777216",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e308",
    "1e309",
    "-0",
    "0.5",
    "1E2",
    "00",
    "0x10",
];

/// Tree mutations stop growing a document past this many nodes (copies of copies would
/// otherwise grow without bound).
const MAX_NODES: usize = 100_000;

/// Nesting depths around serde_json's recursion limit (128) and far past it.
const DEPTHS: &[usize] = &[2, 16, 64, 126, 127, 128, 129, 200, 1000, 100_000];

pub struct Mutator {
    shape: Shape,
    seeds: Vec<Vec<u8>>,
    /// The JSON values of each seed (a stream seed gives several), for tree mutations.
    trees: Vec<Vec<Value>>,
    /// Every subtree of every seed: replacements of the right kind for another seed's nodes.
    nodes: Vec<Value>,
    tokens: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator over `seeds`, inserting the target's `dictionary` tokens beside the generic ones.
    pub fn new(shape: Shape, seeds: Vec<Vec<u8>>, dictionary: &[&str]) -> Mutator {
        assert!(!seeds.is_empty(), "a target needs at least one seed");
        let trees: Vec<Vec<Value>> = seeds
            .iter()
            .map(|s| match shape {
                Shape::Json | Shape::JsonStream => serde_json::Deserializer::from_slice(s)
                    .into_iter::<Value>()
                    .map_while(Result::ok)
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut nodes = Vec::new();
        for tree in trees.iter().flatten() {
            collect_nodes(tree, &mut nodes);
        }
        let mut tokens: Vec<Vec<u8>> = GENERIC_TOKENS.iter().map(|t| t.to_vec()).collect();
        for word in dictionary {
            tokens.push(word.as_bytes().to_vec());
            if matches!(shape, Shape::Json | Shape::JsonStream) {
                tokens.push(serde_json::to_vec(word).expect("a string serializes"));
            }
        }
        Mutator {
            shape,
            seeds,
            trees,
            nodes,
            tokens,
        }
    }

    pub fn seeds(&self) -> &[Vec<u8>] {
        &self.seeds
    }

    /// Input number `index` of a run started with `seed`: always the same bytes.
    pub fn input(&self, seed: u64, index: u64) -> Vec<u8> {
        let mut rng = Rng::for_input(seed, index);
        let pick = rng.below(self.seeds.len());
        let tree = !self.trees[pick].is_empty() && rng.one_in(2);
        let mut data = if tree {
            self.mutate_tree(&mut rng, pick)
        } else {
            self.seeds[pick].clone()
        };
        // Half the tree mutations stay valid JSON, to reach the typed decoders.
        let rounds = if tree && rng.one_in(2) {
            0
        } else {
            1 + rng.small_len(3)
        };
        for _ in 0..rounds {
            self.mutate_bytes(&mut rng, &mut data);
        }
        data.truncate(MAX_INPUT);
        data
    }

    /// Changes one node of seed `pick`'s JSON and serializes the result.
    fn mutate_tree(&self, rng: &mut Rng, pick: usize) -> Vec<u8> {
        let mut values = self.trees[pick].clone();
        let which = rng.below(values.len());
        let changes = 1 + rng.small_len(3);
        for _ in 0..changes {
            let count = count_nodes(&values[which]);
            if count > MAX_NODES {
                break;
            }
            let target = rng.below(count);
            let node = nth_node(&mut values[which], target).expect("index below the node count");
            self.change_node(rng, node);
        }
        let mut out = Vec::new();
        for v in &values {
            // Pretty printing indents each level: only for documents of ordinary size.
            let bytes = if rng.one_in(4) && count_nodes(v) < 1000 {
                serde_json::to_vec_pretty(v)
            } else {
                serde_json::to_vec(v)
            };
            out.extend(bytes.expect("a Value serializes"));
            if self.shape == Shape::JsonStream && rng.one_in(3) {
                out.push(b'\n');
            }
        }
        out
    }

    fn change_node(&self, rng: &mut Rng, node: &mut Value) {
        match rng.below(10) {
            // Another seed's subtree: the right shape in the wrong place, or the right place.
            0 | 1 => *node = rng.pick(&self.nodes).clone(),
            2 => *node = self.scalar(rng),
            3 => {
                // Past serde_json's limit but shallow enough for the mutator's own recursion; the byte
                // mutation `nest` makes the really deep ones.
                let depth = *rng.pick(DEPTHS).min(&200);
                let mut v = std::mem::take(node);
                for _ in 0..depth {
                    v = if rng.one_in(2) {
                        Value::Array(vec![v])
                    } else {
                        let mut m = Map::new();
                        m.insert("a".into(), v);
                        Value::Object(m)
                    };
                }
                *node = v;
            }
            4 => {
                let n = *rng.pick(&[0usize, 2, 100, 10_000]);
                let bytes = serde_json::to_vec(node).map_or(1, |b| b.len().max(1));
                let n = n.min(MAX_NODES / count_nodes(node)).min(MAX_INPUT / bytes);
                *node = Value::Array(vec![node.clone(); n]);
            }
            5 => match node {
                Value::Object(m) if !m.is_empty() => {
                    let k = m.keys().nth(rng.below(m.len())).cloned().expect("in range");
                    m.remove(&k);
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = rng.below(a.len());
                    a.remove(i);
                }
                _ => *node = Value::Null,
            },
            6 => {
                if let Value::Object(m) = node {
                    let key = self.token_string(rng);
                    m.insert(key, self.scalar(rng));
                } else if let Value::Array(a) = node {
                    a.push(rng.pick(&self.nodes).clone());
                } else {
                    *node = Value::String(self.token_string(rng));
                }
            }
            7 => {
                if let Value::String(s) = node {
                    let mut t = s.clone();
                    let at = floor_char_boundary(&t, rng.below(t.len() + 1));
                    t.insert_str(at, &self.token_string(rng));
                    *s = t;
                } else {
                    *node = Value::String(self.token_string(rng));
                }
            }
            8 => {
                if let Value::Object(m) = node {
                    // Keys that differ only in case or by a suffix: near misses of field names.
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if let Some(k) = keys.get(rng.below(keys.len().max(1))) {
                        let v = m.remove(k).unwrap_or_default();
                        let renamed = if rng.one_in(2) {
                            k.to_uppercase()
                        } else {
                            format!("{k}{}", self.token_string(rng))
                        };
                        m.insert(renamed, v);
                    }
                } else {
                    *node = self.scalar(rng);
                }
            }
            _ => {
                let n = *rng.pick(&[1usize, 1000, 70_000]);
                *node = Value::String("x".repeat(n));
            }
        }
    }

    fn scalar(&self, rng: &mut Rng) -> Value {
        match rng.below(8) {
            0 => Value::Null,
            1 => Value::Bool(rng.one_in(2)),
            2 => serde_json::from_str(NUMBERS[rng.below(NUMBERS.len())]).unwrap_or(Value::Null),
            3 => Value::from(rng.next_u64() as i64),
            4 => Value::from(f64::from_bits(rng.next_u64())),
            5 => Value::String(String::new()),
            6 => Value::Array(Vec::new()),
            _ => Value::String(self.token_string(rng)),
        }
    }

    fn token_string(&self, rng: &mut Rng) -> String {
        let t = rng.pick(&self.tokens);
        let s = String::from_utf8_lossy(t);
        // Dictionary words were also added JSON-quoted; take them bare here.
        s.trim_matches('"').to_string()
    }

    fn mutate_bytes(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let len = data.len();
        match rng.below(16) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(&[0u8, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'[', b'0', b' ']);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let n = rng.small_len(len - at);
                data.drain(at..at + n);
            }
            3 => {
                let at = rng.below(len + 1);
                let t = rng.pick(&self.tokens).clone();
                data.splice(at..at, t);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = rng.small_len(len - at).max(1).min(len - at);
                let t = rng.pick(&self.tokens).clone();
                data.splice(at..at + n, t);
            }
            5 => data.truncate(rng.below(len + 1)),
            6 => {
                // Splice: a prefix of this input and a suffix of another seed.
                let other = rng.pick(&self.seeds);
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => {
                // Repeat a range: long runs, many messages, many keys.
                let at = rng.below(len);
                let n = rng.small_len(len - at).max(1).min(len - at).min(64);
                let times = *rng.pick(&[2usize, 10, 1000, 50_000]);
                let chunk = data[at..at + n].to_vec();
                let rep: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take((n * times).min(MAX_INPUT))
                    .collect();
                data.splice(at..at, rep);
            }
            8 => self.nest(rng, data),
            9 => replace_number(rng, data),
            10 => {
                let at = rng.below(len + 1);
                let n = rng.small_len(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, junk);
            }
            11 if self.shape == Shape::OpenFlow => openflow_field(rng, data),
            12 if self.shape == Shape::JsonStream || self.shape == Shape::OpenFlow => {
                // Another whole message after this one.
                let other = rng.pick(&self.seeds).clone();
                data.extend(other);
            }
            14 => {
                // A dictionary word many times over: many keys, many messages, long runs of
                // whitespace or of interim responses.
                let at = rng.below(len + 1);
                let t = rng.pick(&self.tokens);
                let times = *rng.pick(&[2usize, 100, 10_000, 100_000]);
                let times = times.min(MAX_INPUT / t.len().max(1));
                data.splice(at..at, t.repeat(times));
            }
            13 if len > 1 => {
                // Swap two bytes far apart (an unbalanced bracket, a moved quote).
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => {
                let at = rng.below(len + 1);
                let t = *rng.pick(&[
                    &b"\xff"[..],
                    b"\xc3",
                    b"\xed\xa0\x80",
                    b"\xf8\x88\x80\x80\x80",
                ]);
                data.splice(at..at, t.iter().copied());
            }
        }
    }

    /// Wraps a range in many brackets or braces (possibly unbalanced).
    fn nest(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let depth = *rng.pick(DEPTHS);
        let (open, close): (&[u8], &[u8]) = match rng.below(3) {
            0 => (b"[", b"]"),
            1 => (b"{\"a\":", b"}"),
            _ => (b"[{\"k\":[", b"]}]"),
        };
        let depth = depth.min(MAX_INPUT / (open.len() + close.len()));
        let start = rng.below(data.len() + 1);
        let end = start + rng.below(data.len() - start + 1);
        let mut out = Vec::with_capacity(data.len() + depth * (open.len() + close.len()));
        out.extend_from_slice(&data[..start]);
        for _ in 0..depth {
            out.extend_from_slice(open);
        }
        out.extend_from_slice(&data[start..end]);
        if !rng.one_in(4) {
            for _ in 0..depth {
                out.extend_from_slice(close);
            }
        }
        out.extend_from_slice(&data[end..]);
        *data = out;
    }
}

/// Replaces a run of digits with a number at the edge of some integer type.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let digits: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return;
    }
    let mut start = *rng.pick(&digits);
    while start > 0 && data[start - 1].is_ascii_digit() {
        start -= 1;
    }
    let mut end = start;
    while end < data.len() && (data[end].is_ascii_digit() || data[end] == b'.') {
        end += 1;
    }
    let n = rng.pick(NUMBERS).as_bytes().to_vec();
    data.splice(start..end, n);
}

/// Changes a field of an OpenFlow header: the length (the framing), the type or the version.
fn openflow_field(rng: &mut Rng, data: &mut [u8]) {
    // Message starts, found by following the length fields as a reader would.
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        starts.push(at);
        let len = u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize;
        if len < 8 {
            break;
        }
        at += len;
    }
    let Some(&m) = starts.get(rng.below(starts.len().max(1))) else {
        return;
    };
    match rng.below(3) {
        0 => {
            let cur = u16::from_be_bytes([data[m + 2], data[m + 3]]);
            let random = rng.next_u64() as u16;
            let v = *rng.pick(&[
                0u16,
                1,
                7,
                8,
                9,
                11,
                12,
                cur.wrapping_sub(1),
                cur.wrapping_add(1),
                0xffff,
                random,
            ]);
            data[m + 2..m + 4].copy_from_slice(&v.to_be_bytes());
        }
        // Types the reader treats specially: hello 0, error 1, echo request 2, barrier reply 21,
        // bundle control 33, and any other.
        1 => {
            let random = rng.next_u64() as u8;
            data[m + 1] = *rng.pick(&[0u8, 1, 2, 3, 21, 33, 255, random]);
        }
        _ => data[m] = *rng.pick(&[0u8, 1, 4, 5, 6, 0xff]),
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn collect_nodes(v: &Value, out: &mut Vec<Value>) {
    out.push(v.clone());
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_nodes(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_nodes(x, out)),
        _ => {}
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`th node in pre-order.
fn nth_node(v: &mut Value, n: usize) -> Option<&mut Value> {
    fn walk<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|x| walk(x, n)),
            Value::Object(m) => m.values_mut().find_map(|x| walk(x, n)),
            _ => None,
        }
    }
    let mut n = n;
    walk(v, &mut n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_reproducible_from_their_index() {
        let m = Mutator::new(
            Shape::Json,
            vec![br#"{"a":[1,"x",{"b":null}]}"#.to_vec()],
            &["key"],
        );
        let first: Vec<Vec<u8>> = (0..200).map(|i| m.input(7, i)).collect();
        let again: Vec<Vec<u8>> = (0..200).map(|i| m.input(7, i)).collect();
        assert_eq!(first, again);
        let other_seed: Vec<Vec<u8>> = (0..200).map(|i| m.input(8, i)).collect();
        assert_ne!(first, other_seed);
        // Mutations change inputs, and stay within the size bound.
        assert!(
            first
                .iter()
                .filter(|d| d.as_slice() != m.seeds()[0])
                .count()
                > 150
        );
        assert!(first.iter().all(|d| d.len() <= MAX_INPUT));
    }

    #[test]
    fn nth_node_visits_every_node() {
        let mut v: Value = serde_json::from_str(r#"{"a":[1,2],"b":{"c":3}}"#).unwrap();
        let n = count_nodes(&v);
        assert_eq!(n, 6);
        for i in 0..n {
            assert!(nth_node(&mut v, i).is_some(), "node {i}");
        }
        assert!(nth_node(&mut v, n).is_none());
    }
}
