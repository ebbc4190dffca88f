//! netmaster's REST bodies, through the functions its handlers call: `parse_object` (decode,
//! normalize, check the key against the URL's) for the twelve object kinds, and `parse_body` for
//! the agent's bodies. Every input is tried as every body type.

use std::fmt::Debug;

use master::ops::{parse_body, parse_object};
use model::agent::{EndpointRequest, NodeRegistration, RuleStatsReport};
use model::{
    AciGw, AppProfile, Bgp, EndpointGroup, ExtContractsGroup, Global, Netprofile, Network, Object,
    Policy, Rule, ServiceLb, Tenant,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn rest(data: &[u8]) -> bool {
    // Bitwise or, not `||`: every type sees every input.
    object::<Tenant>(data)
        | object::<Network>(data)
        | object::<EndpointGroup>(data)
        | object::<Policy>(data)
        | object::<Rule>(data)
        | object::<Netprofile>(data)
        | object::<Global>(data)
        | object::<Bgp>(data)
        | object::<ServiceLb>(data)
        | object::<AppProfile>(data)
        | object::<ExtContractsGroup>(data)
        | object::<AciGw>(data)
        | agent_body::<NodeRegistration>(data)
        | agent_body::<RuleStatsReport>(data)
        | agent_body::<EndpointRequest>(data)
}

/// A write of a `T`: accepted at the key its body names and refused at any other; what was
/// accepted, written back as it is (netctl's read, change, write), is accepted and unchanged.
fn object<T: Object + PartialEq + Debug>(data: &[u8]) -> bool {
    let Ok(mut probe) = parse_body::<T>(data) else {
        return false;
    };
    if probe.normalize().is_err() {
        assert!(parse_object::<T>(&probe.key(), data).is_err());
        return false;
    }
    let key = probe.key();
    let obj = parse_object::<T>(&key, data)
        .unwrap_or_else(|e| panic!("{} accepted at its own key {key:?}: {e}", T::KIND));
    assert!(parse_object::<T>(&format!("{key}-other"), data).is_err());
    let bytes = serde_json::to_vec(&obj).expect("an object encodes");
    let again = parse_object::<T>(&key, &bytes)
        .unwrap_or_else(|e| panic!("{} written back is refused: {e}", T::KIND));
    assert_eq!(again, obj, "{} written back changes", T::KIND);
    true
}

fn agent_body<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> bool {
    let Ok(body) = parse_body::<T>(data) else {
        return false;
    };
    let bytes = serde_json::to_vec(&body).expect("a body encodes");
    let again: T = parse_body(&bytes).expect("an encoded body decodes");
    assert_eq!(again, body);
    true
}

/// One body per type, as netctl and the agent send them.
pub fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"tenantName":"blue","defaultNetwork":"web"}"#,
        r#"{"tenantName":"default","networkName":"contiv-net","encap":"vxlan","subnet":"10.1.1.0/24","gateway":"10.1.1.254","nwType":"data","pktTag":2000,"ipv6Subnet":"fd00::/64","ipv6Gateway":"fd00::1"}"#,
        r#"{"tenantName":"default","networkName":"vlan-net","encap":"vlan","pktTag":100,"subnet":"10.2.0.10-10.2.0.100/24","gateway":"10.2.0.1","cfgdTag":"infra"}"#,
        r#"{"tenantName":"default","networkName":"contiv-net","groupName":"web","policies":["allow-http"],"netProfile":"gold","ipPool":"10.1.1.10-10.1.1.20","extContractsGrps":[],"cfgdTag":"web-tag"}"#,
        r#"{"tenantName":"default","policyName":"allow-http"}"#,
        r#"{"tenantName":"default","policyName":"allow-http","ruleId":"1","direction":"in","priority":10,"protocol":"tcp","port":80,"action":"allow","fromEndpointGroup":"db","fromNetwork":"","fromIpAddress":"","toEndpointGroup":"","toNetwork":"","toIpAddress":""}"#,
        r#"{"tenantName":"default","policyName":"p","ruleId":"2","direction":"out","priority":1,"protocol":"udp","action":"deny","toIpAddress":"10.9.0.0/16"}"#,
        r#"{"tenantName":"default","profileName":"gold","bandwidth":"10 Mbps","burst":100,"DSCP":10}"#,
        r#"{"name":"global","networkInfraType":"default","vlans":"1-4094","vxlans":"1-10000","fwdMode":"bridge","arpMode":"proxy","pvtSubnet":"172.19.0.0/16"}"#,
        r#"{"hostname":"node1","routerip":"10.0.0.1/24","as":"65002","neighbor":"10.0.0.2","neighbor-as":"500"}"#,
        r#"{"tenantName":"default","serviceName":"web-svc","networkName":"contiv-net","ipAddress":"10.1.1.100","ports":["80:8080:TCP"],"selectors":["app=web","tier=fe"]}"#,
        r#"{"tenantName":"default","appProfileName":"app1","endpointGroups":["web","db"]}"#,
        r#"{"tenantName":"default","contractsGroupName":"ext","contractsType":"provided","contracts":["uni/tn-common/brc-default"]}"#,
        r#"{"name":"aciGw","enforcePolicies":"yes","includeCommonTenant":"no","nodeBindings":"topology/pod-1/node-101","pathBindings":"topology/pod-1/paths-101/pathep-[eth1/14]","physicalDomain":"phys"}"#,
        r#"{"hostname":"node1","vtepIP":"192.168.2.10","version":"0.1.0"}"#,
        r#"{"hostname":"node1","rules":{"default:allow-http:1":{"packets":10,"bytes":1200}}}"#,
        r#"{"endpointID":"c1-eth0","tenantName":"default","networkName":"contiv-net","groupName":"web","host":"node1","containerID":"c1","containerName":"web-0","intfName":"vport1","labels":{"io.contiv.tenant":"default"},"ipAddress":"10.1.1.5","ipv6Address":"fd00::5"}"#,
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub const WORDS: &[&str] = &[
    "tenantName",
    "networkName",
    "groupName",
    "policyName",
    "ruleId",
    "profileName",
    "name",
    "serviceName",
    "appProfileName",
    "contractsGroupName",
    "hostname",
    "key",
    "link-sets",
    "links",
    "encap",
    "vxlan",
    "vlan",
    "subnet",
    "gateway",
    "pktTag",
    "nwType",
    "ipv6Subnet",
    "ipv6Gateway",
    "direction",
    "in",
    "out",
    "priority",
    "protocol",
    "tcp",
    "udp",
    "icmp",
    "port",
    "action",
    "allow",
    "deny",
    "bandwidth",
    "burst",
    "DSCP",
    "vlans",
    "vxlans",
    "fwdMode",
    "routing",
    "arpMode",
    "flood",
    "pvtSubnet",
    "networkInfraType",
    "aci",
    "ports",
    "selectors",
    "vtepIP",
    "rules",
    "packets",
    "bytes",
    "endpointID",
    "labels",
    "ipAddress",
    "10.1.1.0/24",
    "10.1.1.0/33",
    "10.1.1.1-10.1.1.0",
    "1-4094",
    "4094-1",
    "0-0",
    "1-4096",
    "fd00::/64",
    "::1",
    "1 Gbps",
    "10 kbps",
    "99999999999999999999 Mbps",
    "a:b",
    "default",
    "-",
    "_",
    "a.b",
];
