//! The embedded store's on-disk records, in fixed little-endian layouts so that the file format
//! never depends on a serializer's version.
//!
//! A key's record: `create_revision u64 | mod_revision u64 | lease u64 (0 = none) | value`.
//! A revision's log entry: `count u32`, then per event:
//! `kind u8 | key_len u32 | key | record_len u32 | record | has_prev u8 [| prev_len u32 | prev]`,
//! where the records are key records as above (the key is stored once for both).

use crate::{Event, EventKind, KeyValue, StoreError};

const HEADER: usize = 24;

/// The record of `kv` (its key is the table's key, so it is not repeated).
pub(super) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    put_kv(&mut out, kv);
    out
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&kv.value);
}

pub(super) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let mut r = Reader(bytes);
    let create_revision = r.u64()?;
    let mod_revision = r.u64()?;
    let lease = r.u64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: r.0.to_vec(),
        create_revision,
        mod_revision,
        lease: (lease != 0).then_some(lease),
    })
}

pub(super) fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, events.len());
    for ev in events {
        out.push(match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_len(&mut out, ev.kv.key.len());
        out.extend_from_slice(ev.kv.key.as_bytes());
        put_record(&mut out, &ev.kv);
        match &ev.prev {
            None => out.push(0),
            Some(prev) => {
                out.push(1);
                put_record(&mut out, prev);
            }
        }
    }
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // A key or value over 4 GiB cannot reach here: redb caps values well below that.
    out.extend_from_slice(
        &u32::try_from(len)
            .expect("record under 4 GiB")
            .to_le_bytes(),
    );
}

fn put_record(out: &mut Vec<u8>, kv: &KeyValue) {
    put_len(out, HEADER + kv.value.len());
    put_kv(out, kv);
}

/// How many events a log entry holds, without decoding them (compaction only needs the count).
pub(super) fn event_count(bytes: &[u8]) -> Result<u64, StoreError> {
    Reader(bytes).u32().map(u64::from)
}

pub(super) fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, StoreError> {
    let mut r = Reader(bytes);
    let count = r.u32()?;
    let mut events = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            other => return Err(corrupt(format!("unknown event kind {other}"))),
        };
        let key_len = r.u32()? as usize;
        let key = std::str::from_utf8(r.take(key_len)?)
            .map_err(|e| corrupt(format!("key is not utf-8: {e}")))?;
        let kv = r.record(key)?;
        let prev = match r.u8()? {
            0 => None,
            1 => Some(r.record(key)?),
            other => return Err(corrupt(format!("bad prev flag {other}"))),
        };
        events.push(Event { kind, kv, prev });
    }
    if !r.0.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", r.0.len())));
    }
    Ok(events)
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Backend {
        action: "decode record",
        reason,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt(format!(
                "truncated: need {n} bytes, have {}",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn record(&mut self, key: &str) -> Result<KeyValue, StoreError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        decode_kv(key, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(key: String) -> impl Strategy<Value = KeyValue> {
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(1..=u64::MAX),
        )
            .prop_map(
                move |(value, create_revision, mod_revision, lease)| KeyValue {
                    key: key.clone(),
                    value,
                    create_revision,
                    mod_revision,
                    lease,
                },
            )
    }

    fn event() -> impl Strategy<Value = Event> {
        "\\PC{0,24}".prop_flat_map(|key| {
            (
                prop_oneof![Just(EventKind::Put), Just(EventKind::Delete)],
                kv(key.clone()),
                proptest::option::of(kv(key)),
            )
                .prop_map(|(kind, kv, prev)| Event { kind, kv, prev })
        })
    }

    proptest! {
        #[test]
        fn kv_round_trips(kv in "\\PC{0,24}".prop_flat_map(kv)) {
            let bytes = encode_kv(&kv);
            prop_assert_eq!(decode_kv(&kv.key, &bytes).unwrap(), kv);
        }

        #[test]
        fn events_round_trip(events in proptest::collection::vec(event(), 0..8)) {
            let bytes = encode_events(&events);
            prop_assert_eq!(event_count(&bytes).unwrap(), events.len() as u64);
            prop_assert_eq!(decode_events(&bytes).unwrap(), events);
        }

        #[test]
        fn truncated_events_fail_cleanly(events in proptest::collection::vec(event(), 1..4), cut in any::<prop::sample::Index>()) {
            let bytes = encode_events(&events);
            let cut = cut.index(bytes.len());
            prop_assert!(decode_events(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn short_kv_record_is_an_error() {
        let err = decode_kv("k", &[0; HEADER - 1]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("store decode record: truncated")
        );
    }
}
