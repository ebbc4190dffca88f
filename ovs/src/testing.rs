//! Test doubles for code that programs flows, so that its unit tests need no ovs-vswitchd.
//! The crate's own tests run against real daemons.

use crate::error::FlowError;
use crate::flows::{CookieMask, Flow, FlowMatch, FlowProgrammer, FlowStats};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// An in-memory [`FlowProgrammer`]: keeps each bridge's flows keyed by (table, priority, match)
/// as a switch does, and records every call.
#[derive(Debug, Default)]
pub struct FakeFlowProgrammer {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    bridges: BTreeMap<String, BTreeMap<(u8, u16, String), Flow>>,
    calls: Vec<FlowCall>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowCall {
    Add {
        bridge: String,
        flows: Vec<Flow>,
    },
    Delete {
        bridge: String,
        matches: Vec<FlowMatch>,
    },
    Replace {
        bridge: String,
        cookie: u64,
        flows: Vec<Flow>,
    },
}

impl FakeFlowProgrammer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<FlowCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The flows now on `bridge`, ordered by table, priority and match.
    pub fn flows(&self, bridge: &str) -> Vec<Flow> {
        self.state
            .lock()
            .unwrap()
            .bridges
            .get(bridge)
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn key(f: &Flow) -> (u8, u16, String) {
    (f.table, f.priority, f.matches.clone())
}

#[async_trait]
impl FlowProgrammer for FakeFlowProgrammer {
    async fn add_flows(&self, bridge: &str, flows: &[Flow]) -> Result<(), FlowError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(FlowCall::Add {
            bridge: bridge.into(),
            flows: flows.to_vec(),
        });
        let table = s.bridges.entry(bridge.into()).or_default();
        for f in flows {
            table.insert(key(f), f.clone());
        }
        Ok(())
    }

    /// Deletes by cookie and table; a non-empty `matches` must equal the flow's match exactly
    /// (a simplification of OpenFlow's "at least as specific").
    async fn del_flows(&self, bridge: &str, matches: &[FlowMatch]) -> Result<(), FlowError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(FlowCall::Delete {
            bridge: bridge.into(),
            matches: matches.to_vec(),
        });
        if let Some(table) = s.bridges.get_mut(bridge) {
            table.retain(|_, f| {
                !matches.iter().any(|m| {
                    m.cookie.matches(f.cookie)
                        && m.table.is_none_or(|t| t == f.table)
                        && (m.matches.is_empty() || m.matches == f.matches)
                })
            });
        }
        Ok(())
    }

    async fn replace_flows_for_cookie(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), FlowError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(FlowCall::Replace {
            bridge: bridge.into(),
            cookie,
            flows: flows.to_vec(),
        });
        let table = s.bridges.entry(bridge.into()).or_default();
        table.retain(|_, f| f.cookie != cookie);
        for f in flows {
            table.insert(key(f), f.clone());
        }
        Ok(())
    }

    async fn replace_flow_sets(
        &self,
        bridge: &str,
        sets: &[(u64, Vec<Flow>)],
    ) -> Result<(), FlowError> {
        for (cookie, flows) in sets {
            self.replace_flows_for_cookie(bridge, *cookie, flows)
                .await?;
        }
        Ok(())
    }

    async fn set_meter(&self, _: &str, _: u32, _: u64, _: u64) -> Result<(), FlowError> {
        Ok(())
    }

    async fn del_meter(&self, _: &str, _: u32) -> Result<(), FlowError> {
        Ok(())
    }

    async fn flush_conntrack(&self, _: &str, _: u16, _: &str) -> Result<(), FlowError> {
        Ok(())
    }

    async fn dump_meters(&self, _: &str) -> Result<Vec<crate::MeterConfig>, FlowError> {
        // Meters are not kept by the fake.
        Ok(Vec::new())
    }

    async fn dump_flows(
        &self,
        bridge: &str,
        filter: Option<CookieMask>,
    ) -> Result<Vec<FlowStats>, FlowError> {
        Ok(self
            .flows(bridge)
            .into_iter()
            .filter(|f| filter.is_none_or(|m| m.matches(f.cookie)))
            .map(|f| FlowStats {
                cookie: f.cookie,
                table: f.table,
                priority: f.priority,
                matches: f.matches,
                actions: f.actions,
                n_packets: 0,
                n_bytes: 0,
                idle_timeout: f.idle_timeout,
                hard_timeout: f.hard_timeout,
                duration: Duration::ZERO,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_keeps_flows_by_cookie() {
        let fake = FakeFlowProgrammer::new();
        let a = Flow::new(0, 10, "ip", "drop").cookie(1);
        let b = Flow::new(0, 20, "arp", "NORMAL").cookie(2);
        fake.add_flows("br0", &[a.clone(), b.clone()])
            .await
            .unwrap();
        let c = Flow::new(1, 10, "", "drop").cookie(1);
        fake.replace_flows_for_cookie("br0", 1, std::slice::from_ref(&c))
            .await
            .unwrap();
        assert_eq!(fake.flows("br0"), vec![b.clone(), c]);
        fake.del_flows("br0", &[FlowMatch::cookie(CookieMask::exact(2))])
            .await
            .unwrap();
        let left = fake.dump_flows("br0", None).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].cookie, 1);
        assert_eq!(fake.calls().len(), 3);
    }
}
