//! The agents' endpoint operations: create (allocating addresses), delete, get and list.

use super::{Master, Plan};
use crate::error::{ApiError, ApiResult};
use crate::keys;
use model::agent::{Endpoint, EndpointRequest};
use store::{Compare, Op, Txn};

impl Master {
    /// Creates an endpoint, or returns it if it exists already in the same network. A create of
    /// an id whose create is in flight waits for that one and then answers the same way.
    pub async fn create_endpoint(&self, req: &EndpointRequest) -> ApiResult<Endpoint> {
        let (ep, _r) = loop {
            self.resync_if_needed().await?;
            let r = self.gate.read().await;
            let mut settled = {
                let mut s = self.state();
                if let Some(e) = s.endpoints.get(&req.endpoint_id) {
                    if e.tenant_name == req.tenant_name && e.network_name == req.network_name {
                        return Ok(e.clone());
                    }
                    return Err(ApiError::conflict(format!(
                        "endpoint {} already exists in network {}:{}",
                        req.endpoint_id, e.tenant_name, e.network_name
                    )));
                }
                if !s.pending.contains_key(&req.endpoint_id) {
                    break (s.reserve_endpoint(req)?, r);
                }
                // Subscribed under the state lock: the other create settles under it too, and
                // notifies after, so its outcome cannot slip between the look and the wait.
                self.endpoint_settled.subscribe()
            };
            drop(r);
            let _ = settled.changed().await;
        };
        let value = serde_json::to_vec(&ep).expect("serializable");
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let owner = format!("endpoint:{}", ep.endpoint_id);
        let mut txn = Txn::new()
            .when(Compare::absent(keys::ep(&ep.endpoint_id)))
            .then(Op::put(keys::ep(&ep.endpoint_id), value.clone()));
        for a in [&ep.ip_address, &ep.ipv6_address] {
            if !a.is_empty() {
                let k = keys::ip(&net_key, a);
                txn = txn
                    .when(Compare::absent(k.clone()))
                    .then(Op::put(k, owner.clone().into_bytes()));
            }
        }
        let outcome = self.fenced_txn(txn).await;
        let answer = {
            let mut s = self.state();
            match outcome {
                Ok(r) if r.succeeded => {
                    if let Err(e) = s.apply_put(&keys::ep(&ep.endpoint_id), &value) {
                        tracing::error!(endpoint = %ep.endpoint_id, error = %e, "apply endpoint");
                    }
                    tracing::debug!(endpoint = %ep.endpoint_id, ip = %ep.ip_address, network = %net_key, "endpoint created");
                    Ok(ep)
                }
                Ok(_) => {
                    s.abort_endpoint(&ep.endpoint_id);
                    Err(ApiError::conflict(format!(
                        "endpoint {} or address {} was taken by a concurrent writer; retry",
                        ep.endpoint_id, ep.ip_address
                    )))
                }
                Err(e) => {
                    s.abort_endpoint(&ep.endpoint_id);
                    Err(e)
                }
            }
        };
        self.endpoint_settled.send_modify(|n| *n += 1);
        answer
    }

    /// Deletes an endpoint and releases its addresses; deleting an absent one succeeds.
    pub async fn delete_endpoint(&self, id: &str) -> ApiResult<()> {
        self.resync_if_needed().await?;
        let _r = self.gate.read().await;
        let Some(ep) = self.state().endpoints.get(id).cloned() else {
            return Ok(());
        };
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let mut plan = Plan::default();
        plan.delete(keys::ep(id));
        for a in [&ep.ip_address, &ep.ipv6_address] {
            if !a.is_empty() {
                plan.release(keys::ip(&net_key, a));
            }
        }
        self.commit(plan).await?;
        self.forget_endpoint_reports(&ep.host, id);
        tracing::debug!(endpoint = %id, "endpoint deleted");
        Ok(())
    }

    pub fn get_endpoint(&self, id: &str) -> ApiResult<Endpoint> {
        self.state()
            .endpoints
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("endpoint {id} not found")))
    }

    pub fn list_endpoints(&self, host: Option<&str>) -> Vec<Endpoint> {
        self.state()
            .endpoints
            .values()
            .filter(|e| host.is_none_or(|h| e.host == h))
            .cloned()
            .collect()
    }
}
