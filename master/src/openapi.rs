//! The OpenAPI 3.1 document of the whole API (`GET /api/v1/openapi.json`).
//!
//! Schemas come from the model's types (utoipa derives), so they cannot drift from what the
//! server parses; paths are generated from the collection table the router serves.

use model::agent::*;
use model::oper::*;
use model::*;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().to_string(), T::schema()));
    T::schemas(schemas);
}

fn schema_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tenant => "Tenant",
        Kind::Network => "Network",
        Kind::EndpointGroup => "EndpointGroup",
        Kind::Policy => "Policy",
        Kind::Rule => "Rule",
        Kind::Netprofile => "Netprofile",
        Kind::Global => "Global",
        Kind::Bgp => "Bgp",
        Kind::ServiceLb => "ServiceLb",
        Kind::AppProfile => "AppProfile",
        Kind::ExtContractsGroup => "ExtContractsGroup",
        Kind::AciGw => "AciGw",
    }
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

fn errors(codes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        let d = match *c {
            "400" => "invalid input: the message names the field, the value and the rule",
            "404" => "no such object",
            "409" => {
                "in use, overlapping, already allocated or exhausted: the message says what conflicts"
            }
            "410" => "the revision has been compacted: re-list",
            "413" => "body too large",
            "503" => "the store is unavailable",
            _ => "error",
        };
        m.insert((*c).into(), ok(d, r("ErrorBody")));
    }
    m
}

fn responses(success: Value, codes: &[&str]) -> Value {
    let mut m = errors(codes);
    m.insert("200".into(), success);
    Value::Object(m)
}

pub fn document() -> Value {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    add::<Tenant>(&mut schemas);
    add::<Network>(&mut schemas);
    add::<EndpointGroup>(&mut schemas);
    add::<Policy>(&mut schemas);
    add::<Rule>(&mut schemas);
    add::<Netprofile>(&mut schemas);
    add::<Global>(&mut schemas);
    add::<Bgp>(&mut schemas);
    add::<ServiceLb>(&mut schemas);
    add::<AppProfile>(&mut schemas);
    add::<ExtContractsGroup>(&mut schemas);
    add::<AciGw>(&mut schemas);
    add::<Link>(&mut schemas);
    add::<EndpointOper>(&mut schemas);
    add::<NetworkOper>(&mut schemas);
    add::<EndpointGroupOper>(&mut schemas);
    add::<PolicyOper>(&mut schemas);
    add::<TenantOper>(&mut schemas);
    add::<GlobalOper>(&mut schemas);
    add::<ServiceLbOper>(&mut schemas);
    add::<BgpOper>(&mut schemas);
    add::<AciGwOper>(&mut schemas);
    add::<NodeRegistration>(&mut schemas);
    add::<Node>(&mut schemas);
    add::<NodeLease>(&mut schemas);
    add::<RuleStatsReport>(&mut schemas);
    add::<RuleCounters>(&mut schemas);
    add::<RuleStatsOper>(&mut schemas);
    add::<SpoofStatsReport>(&mut schemas);
    add::<HostAccessReport>(&mut schemas);
    add::<EndpointRequest>(&mut schemas);
    add::<Endpoint>(&mut schemas);
    add::<NetworkState>(&mut schemas);
    add::<GroupState>(&mut schemas);
    add::<WatchEvent>(&mut schemas);
    add::<WatchEventType>(&mut schemas);
    add::<VersionInfo>(&mut schemas);
    add::<Info>(&mut schemas);
    add::<ErrorBody>(&mut schemas);
    let mut comp = Map::new();
    for (n, s) in schemas {
        comp.insert(n, serde_json::to_value(s).expect("schema serializes"));
    }

    let mut paths = Map::new();
    for kind in Kind::ALL {
        let c = kind.collection();
        let s = schema_name(kind);
        let tag = json!([c]);
        let key_desc = format!("the object's key: {}", kind.key_fields().join(":"));
        let key_param = json!([{ "name": "key", "in": "path", "required": true, "description": key_desc, "schema": { "type": "string" } }]);
        paths.insert(
            format!("/api/v1/{c}/"),
            json!({ "get": { "tags": tag, "summary": format!("list {c}"), "responses": responses(ok("every object", json!({"type":"array","items": r(s)})), &["503"]) } }),
        );
        let upsert = json!({
            "tags": tag,
            "summary": format!("create or update a {} (POST and PUT are the same upsert)", kind.name()),
            "parameters": key_param,
            "requestBody": { "required": true, "content": { "application/json": { "schema": r(s) } } },
            "responses": responses(ok("the object as stored", r(s)), &["400", "404", "409", "413", "503"]),
        });
        paths.insert(
            format!("/api/v1/{c}/{{key}}/"),
            json!({
                "get": { "tags": tag, "summary": format!("get a {}", kind.name()), "parameters": key_param, "responses": responses(ok("the object", r(s)), &["404"]) },
                "post": upsert,
                "put": upsert,
                "delete": { "tags": tag, "summary": format!("delete a {} (refused while in use)", kind.name()), "parameters": key_param, "responses": responses(ok("the deleted key", json!({"type":"string"})), &["404", "409", "503"]) },
            }),
        );
        paths.insert(
            format!("/api/v1/inspect/{c}/{{key}}/"),
            json!({ "get": { "tags": tag, "summary": format!("a {} with its oper state", kind.name()), "parameters": key_param,
                "responses": responses(ok("Config and Oper", json!({"type":"object","properties":{"Config": r(s), "Oper": {"type":"object"}}})), &["404"]) } }),
        );
    }
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    paths.insert("/api/v1/inspect/endpoints/{id}/".into(), json!({ "get": { "tags": ["endpoints"], "summary": "an endpoint by a substring of its id, container id or container name", "parameters": id_param, "responses": responses(ok("Oper", json!({"type":"object","properties":{"Oper": r("EndpointOper")}})), &["404"]) } }));
    paths.insert("/api/v1/endpoints/".into(), json!({
        "get": { "tags": ["agent"], "summary": "list endpoints", "parameters": [{ "name": "host", "in": "query", "required": false, "schema": { "type": "string" } }], "responses": responses(ok("endpoints", json!({"type":"array","items": r("Endpoint")})), &[]) },
        "post": { "tags": ["agent"], "summary": "create an endpoint: allocates its addresses and MAC (idempotent for one endpointID)", "requestBody": { "required": true, "content": { "application/json": { "schema": r("EndpointRequest") } } }, "responses": responses(ok("the endpoint", r("Endpoint")), &["400", "409", "503"]) },
    }));
    paths.insert("/api/v1/endpoints/{id}/".into(), json!({
        "get": { "tags": ["agent"], "summary": "get an endpoint", "parameters": id_param, "responses": responses(ok("the endpoint", r("Endpoint")), &["404"]) },
        "delete": { "tags": ["agent"], "summary": "delete an endpoint and release its addresses (succeeds when absent)", "parameters": id_param, "responses": responses(ok("the id", json!({"type":"string"})), &["503"]) },
    }));
    let name_param =
        json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }]);
    paths.insert("/api/v1/nodes/".into(), json!({ "get": { "tags": ["agent"], "summary": "registered nodes", "responses": responses(ok("nodes", json!({"type":"array","items": r("Node")})), &[]) } }));
    paths.insert("/api/v1/nodes/{name}/".into(), json!({
        "put": { "tags": ["agent"], "summary": "register a node or renew its registration (heartbeat)", "parameters": name_param, "requestBody": { "required": true, "content": { "application/json": { "schema": r("NodeRegistration") } } }, "responses": responses(ok("the lease", r("NodeLease")), &["400", "503"]) },
        "delete": { "tags": ["agent"], "summary": "unregister a node", "parameters": name_param, "responses": responses(ok("the name", json!({"type":"string"})), &["503"]) },
    }));
    paths.insert("/api/v1/nodes/{name}/rulestats/".into(), json!({
        "put": { "tags": ["agent"], "summary": "report the node's per-rule packet counters (replaces its previous report; kept in the leader's memory, summed in a policy's inspect)", "parameters": name_param, "requestBody": { "required": true, "content": { "application/json": { "schema": r("RuleStatsReport") } } }, "responses": responses(ok("the name", json!({"type":"string"})), &["400", "503"]) },
    }));
    paths.insert("/api/v1/nodes/{name}/spoofstats/".into(), json!({
        "put": { "tags": ["agent"], "summary": "report how many frames each of the node's endpoints sent under an identity not its own (replaces its previous report; kept in the leader's memory, shown in an endpoint's inspect as spoofedPackets)", "parameters": name_param, "requestBody": { "required": true, "content": { "application/json": { "schema": r("SpoofStatsReport") } } }, "responses": responses(ok("the name", json!({"type":"string"})), &["400", "503"]) },
    }));
    paths.insert("/api/v1/nodes/{name}/hostaccess/".into(), json!({
        "put": { "tags": ["agent"], "summary": "report the private (host-access) address of each of the node's endpoints (replaces its previous report; kept in the leader's memory, shown in an endpoint's inspect as privateIPAddress)", "parameters": name_param, "requestBody": { "required": true, "content": { "application/json": { "schema": r("HostAccessReport") } } }, "responses": responses(ok("the name", json!({"type":"string"})), &["400", "503"]) },
    }));
    paths.insert("/api/v1/watch".into(), json!({ "get": { "tags": ["agent"], "summary": "the change stream, newline-delimited JSON WatchEvents: without revision, a listing then 'synced' then live events; with revision, events from it (inclusive)",
        "parameters": [{ "name": "revision", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1 } }],
        "responses": responses(json!({"description": "a long-lived stream", "content": {"application/x-ndjson": {"schema": r("WatchEvent")}}}), &["400", "410", "503"]) } }));
    paths.insert("/version".into(), json!({ "get": { "summary": "version", "responses": responses(ok("version", r("VersionInfo")), &[]) } }));
    paths.insert("/info".into(), json!({ "get": { "summary": "cluster info", "responses": responses(ok("info", r("Info")), &["503"]) } }));
    paths.insert("/api/v1/openapi.json".into(), json!({ "get": { "summary": "this document", "responses": { "200": { "description": "OpenAPI 3.1" } } } }));

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Contiv netmaster API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Contiv's REST API (same paths and JSON names), inspect, and the agent-facing API. Errors are JSON {\"error\": \"...\"} with 400/404/409/410/413/503.",
        },
        "paths": paths,
        "components": { "schemas": comp },
    })
}
