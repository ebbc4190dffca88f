//! Allocators: a set of free values kept as disjoint inclusive ranges, so that a /8 subnet, an
//! IPv6 /64 or the VXLAN space cost memory per allocation, not per possible value. Lowest free
//! value first, like Contiv's bitmaps.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Free values of a pool, as disjoint, non-adjacent inclusive ranges `start -> end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    free: BTreeMap<u128, u128>,
    /// The pool's whole range; values outside it are never handed out nor freed.
    lo: u128,
    hi: u128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The value is outside the pool's range.
    OutOfRange,
    /// The value is in range but not free.
    InUse,
}

impl Pool {
    /// A pool where every value of `lo..=hi` is free.
    pub fn new(lo: u128, hi: u128) -> Self {
        let mut free = BTreeMap::new();
        if lo <= hi {
            free.insert(lo, hi);
        }
        Pool { free, lo, hi }
    }

    pub fn bounds(&self) -> (u128, u128) {
        (self.lo, self.hi)
    }

    pub fn contains_range(&self, v: u128) -> bool {
        v >= self.lo && v <= self.hi
    }

    /// The free range containing `v`, if `v` is free.
    fn free_range_of(&self, v: u128) -> Option<(u128, u128)> {
        let (&s, &e) = self.free.range(..=v).next_back()?;
        (v <= e).then_some((s, e))
    }

    pub fn is_free(&self, v: u128) -> bool {
        self.free_range_of(v).is_some()
    }

    /// The lowest free value, without taking it.
    pub fn lowest_free(&self) -> Option<u128> {
        self.free.keys().next().copied()
    }

    /// True when every value of `a..=b` is free.
    pub fn is_range_free(&self, a: u128, b: u128) -> bool {
        self.free_range_of(a).is_some_and(|(_, e)| b <= e)
    }

    /// Takes the lowest free value.
    pub fn take_lowest(&mut self) -> Option<u128> {
        let (&s, &e) = self.free.iter().next()?;
        self.free.remove(&s);
        if s < e {
            self.free.insert(s + 1, e);
        }
        Some(s)
    }

    /// Takes a given value.
    pub fn take(&mut self, v: u128) -> Result<(), Taken> {
        if !self.contains_range(v) {
            return Err(Taken::OutOfRange);
        }
        let (s, e) = self.free_range_of(v).ok_or(Taken::InUse)?;
        self.free.remove(&s);
        if s < v {
            self.free.insert(s, v - 1);
        }
        if v < e {
            self.free.insert(v + 1, e);
        }
        Ok(())
    }

    /// Takes every value of `a..=b`; fails, taking nothing, unless all are free.
    pub fn take_range(&mut self, a: u128, b: u128) -> Result<(), (u128, Taken)> {
        if a < self.lo {
            return Err((a, Taken::OutOfRange));
        }
        if b > self.hi {
            return Err((b, Taken::OutOfRange));
        }
        let (s, e) = self.free_range_of(a).ok_or((a, Taken::InUse))?;
        if b > e {
            return Err((e + 1, Taken::InUse));
        }
        self.free.remove(&s);
        if s < a {
            self.free.insert(s, a - 1);
        }
        if b < e {
            self.free.insert(b + 1, e);
        }
        Ok(())
    }

    /// Returns `v` to the pool. Freeing a free or out-of-range value does nothing.
    pub fn release(&mut self, v: u128) {
        self.release_range(v, v)
    }

    /// Returns `a..=b` to the pool (clipped to the pool's range), merging with neighbours.
    pub fn release_range(&mut self, a: u128, b: u128) {
        let (mut a, mut b) = (a.max(self.lo), b.min(self.hi));
        if a > b {
            return;
        }
        // Absorb every free range overlapping or adjacent to [a, b].
        let lower = a.saturating_sub(1);
        let overlapping: Vec<(u128, u128)> = self
            .free
            .range(..=b.saturating_add(1))
            .rev()
            .take_while(|(_, e)| **e >= lower)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            self.free.remove(&s);
            a = a.min(s);
            b = b.max(e);
        }
        self.free.insert(a, b);
    }

    /// Free ranges, lowest first.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.free.iter().map(|(s, e)| (*s, *e))
    }

    /// Used ranges (the complement of the free ranges within the pool's range).
    pub fn used_ranges(&self) -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        if self.lo > self.hi {
            return out;
        }
        let mut next = Some(self.lo);
        for (s, e) in self.free_ranges() {
            if let Some(n) = next
                && s > n
            {
                out.push((n, s - 1));
            }
            next = e.checked_add(1);
        }
        if let Some(n) = next
            && n <= self.hi
        {
            out.push((n, self.hi));
        }
        out
    }

    pub fn free_count(&self) -> u128 {
        self.free.iter().map(|(s, e)| e - s + 1).sum()
    }
}

/// How values of a pool are printed.
pub trait Render {
    fn render(v: u128) -> String;
}

pub struct AsNumber;
impl Render for AsNumber {
    fn render(v: u128) -> String {
        v.to_string()
    }
}
pub struct AsV4;
impl Render for AsV4 {
    fn render(v: u128) -> String {
        Ipv4Addr::from(v as u32).to_string()
    }
}
pub struct AsV6;
impl Render for AsV6 {
    fn render(v: u128) -> String {
        Ipv6Addr::from(v).to_string()
    }
}

/// Contiv's range list: `a-b` per range (a single value when the range has one member), joined
/// by `", "`.
pub fn render_ranges<R: Render>(ranges: impl IntoIterator<Item = (u128, u128)>) -> String {
    struct Joined(Vec<String>);
    impl fmt::Display for Joined {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0.join(", "))
        }
    }
    Joined(
        ranges
            .into_iter()
            .map(|(s, e)| {
                if s == e {
                    R::render(s)
                } else {
                    format!("{}-{}", R::render(s), R::render(e))
                }
            })
            .collect(),
    )
    .to_string()
}

/// Ranges of a sorted list of values (for "in use" strings).
pub fn ranges_of(values: impl IntoIterator<Item = u128>) -> Vec<(u128, u128)> {
    let mut out: Vec<(u128, u128)> = Vec::new();
    for v in values {
        match out.last_mut() {
            Some((_, e)) if *e + 1 == v => *e = v,
            Some((_, e)) if *e >= v => {}
            _ => out.push((v, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn lowest_first_and_ranges() {
        let mut p = Pool::new(1, 254);
        assert_eq!(p.take_lowest(), Some(1));
        p.take(5).unwrap();
        assert_eq!(p.take(5), Err(Taken::InUse));
        assert_eq!(p.take(255), Err(Taken::OutOfRange));
        let v4 = |x: u32| u128::from(u32::from(Ipv4Addr::new(10, 1, 1, 0)) + x);
        let mut q = Pool::new(v4(1), v4(254));
        q.take(v4(1)).unwrap();
        q.take(v4(5)).unwrap();
        assert_eq!(render_ranges::<AsV4>(q.used_ranges()), "10.1.1.1, 10.1.1.5");
        assert_eq!(
            render_ranges::<AsV4>(q.free_ranges()),
            "10.1.1.2-10.1.1.4, 10.1.1.6-10.1.1.254"
        );
        q.release(v4(1));
        q.release(v4(5));
        assert_eq!(
            render_ranges::<AsV4>(q.free_ranges()),
            "10.1.1.1-10.1.1.254"
        );
        assert_eq!(q.used_ranges(), vec![]);
    }

    #[test]
    fn take_range_all_or_nothing() {
        let mut p = Pool::new(1, 100);
        p.take(50).unwrap();
        assert_eq!(p.take_range(40, 60), Err((50, Taken::InUse)));
        assert!(p.is_free(40));
        p.take_range(10, 20).unwrap();
        assert!(!p.is_free(15));
        assert_eq!(p.used_ranges(), vec![(10, 20), (50, 50)]);
        p.release_range(10, 20);
        assert_eq!(p.used_ranges(), vec![(50, 50)]);
    }

    #[test]
    fn exhaustion_and_full_used() {
        let mut p = Pool::new(1, 3);
        assert_eq!(p.take_lowest(), Some(1));
        assert_eq!(p.take_lowest(), Some(2));
        assert_eq!(p.take_lowest(), Some(3));
        assert_eq!(p.take_lowest(), None);
        assert_eq!(p.used_ranges(), vec![(1, 3)]);
        let empty = Pool::new(5, 4);
        assert_eq!(empty.used_ranges(), vec![]);
    }

    #[test]
    fn huge_ranges_are_cheap() {
        let mut p = Pool::new(1, u64::MAX as u128);
        for i in 1..=1000u128 {
            assert_eq!(p.take_lowest(), Some(i));
        }
        assert_eq!(p.free_ranges().count(), 1);
    }

    #[derive(Debug, Clone)]
    enum OpKind {
        Lowest,
        Take(u128),
        Release(u128),
    }

    fn op() -> impl Strategy<Value = OpKind> {
        prop_oneof![
            Just(OpKind::Lowest),
            (0u128..70).prop_map(OpKind::Take),
            (0u128..70).prop_map(OpKind::Release),
        ]
    }

    proptest! {
        /// Against a model set: never hands out a value twice, never one outside the range,
        /// always the lowest free, and freed values come back.
        #[test]
        fn matches_model(lo in 0u128..20, width in 0u128..40, ops in proptest::collection::vec(op(), 0..200)) {
            let hi = lo + width;
            let mut p = Pool::new(lo, hi);
            let mut used = BTreeSet::new();
            for o in ops {
                match o {
                    OpKind::Lowest => {
                        let expect = (lo..=hi).find(|v| !used.contains(v));
                        let got = p.take_lowest();
                        prop_assert_eq!(got, expect);
                        if let Some(v) = got { prop_assert!(used.insert(v)); }
                    }
                    OpKind::Take(v) => {
                        let r = p.take(v);
                        if v < lo || v > hi { prop_assert_eq!(r, Err(Taken::OutOfRange)); }
                        else if used.contains(&v) { prop_assert_eq!(r, Err(Taken::InUse)); }
                        else { prop_assert_eq!(r, Ok(())); used.insert(v); }
                    }
                    OpKind::Release(v) => { p.release(v); used.remove(&v); }
                }
                let used_from_pool: BTreeSet<u128> = p.used_ranges().into_iter().flat_map(|(s, e)| s..=e).collect();
                prop_assert_eq!(&used_from_pool, &used);
                prop_assert_eq!(p.free_count(), width + 1 - used.len() as u128);
                // Free ranges are disjoint and not adjacent.
                let fr: Vec<_> = p.free_ranges().collect();
                for w in fr.windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
            }
        }
    }
}
