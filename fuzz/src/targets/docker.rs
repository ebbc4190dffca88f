//! The Docker remote network and IPAM driver bodies, through the router's `decode` (an empty
//! body is `{}`). Every input is tried as every request type; accepted requests survive a round
//! trip.

use std::fmt::Debug;

use docker_driver::decode;
use docker_driver::wire::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn wire(data: &[u8]) -> bool {
    let create = request::<CreateNetworkRequest>("NetworkDriver.CreateNetwork", data);
    if let Ok(r) = decode::<CreateNetworkRequest>("NetworkDriver.CreateNetwork", data) {
        let _ = r.driver_options();
    }
    if let Ok(r) = decode::<RequestAddressRequest>("IpamDriver.RequestAddress", data) {
        let _ = r.is_gateway();
    }
    create
        | request::<AllocateNetworkRequest>("NetworkDriver.AllocateNetwork", data)
        | request::<NetworkRequest>("NetworkDriver.DeleteNetwork", data)
        | request::<CreateEndpointRequest>("NetworkDriver.CreateEndpoint", data)
        | request::<EndpointRequest>("NetworkDriver.DeleteEndpoint", data)
        | request::<JoinRequest>("NetworkDriver.Join", data)
        | request::<ExternalConnectivityRequest>("NetworkDriver.ProgramExternalConnectivity", data)
        | request::<DiscoveryRequest>("NetworkDriver.DiscoverNew", data)
        | request::<RequestPoolRequest>("IpamDriver.RequestPool", data)
        | request::<ReleasePoolRequest>("IpamDriver.ReleasePool", data)
        | request::<RequestAddressRequest>("IpamDriver.RequestAddress", data)
        | request::<ReleaseAddressRequest>("IpamDriver.ReleaseAddress", data)
}

fn request<T: Serialize + DeserializeOwned + PartialEq + Debug>(call: &str, data: &[u8]) -> bool {
    let Ok(r) = decode::<T>(call, data) else {
        return false;
    };
    let bytes = serde_json::to_vec(&r).expect("a request encodes");
    let again: T = decode(call, &bytes).expect("an encoded request decodes");
    assert_eq!(again, r, "{call} round trip");
    true
}

/// Bodies as Docker 27 sends them (captured from `docker network create -d contiv ...`).
pub fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"NetworkID":"0f2d8a7c9b1e","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"tenant":"default","nwType":"data","pkt-tag":"100"}},"IPv4Data":[{"AddressSpace":"contiv-global","Gateway":"10.1.0.1/24","Pool":"10.1.0.0/24","AuxAddresses":null}],"IPv6Data":null}"#,
        r#"{"NetworkID":"0f2d8a7c9b1e","EndpointID":"e1f0a2","Interface":{"Address":"10.1.0.2/24","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}"#,
        r#"{"NetworkID":"0f2d8a7c9b1e","EndpointID":"e1f0a2","SandboxKey":"/var/run/docker/netns/1a2b","Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}]}}"#,
        r#"{"NetworkID":"0f2d8a7c9b1e","EndpointID":"e1f0a2"}"#,
        r#"{"NetworkID":"0f2d8a7c9b1e","Options":{"a":"b"},"IPv4Data":[],"IPv6Data":[]}"#,
        r#"{"DiscoveryType":1,"DiscoveryData":{"Address":"192.168.2.10","self":true}}"#,
        r#"{"AddressSpace":"contiv-global","Pool":"10.1.0.0/24","SubPool":"10.1.0.128/25","Options":{"network":"contiv-net"},"V6":false}"#,
        r#"{"PoolID":"contiv-global/10.1.0.0/24"}"#,
        r#"{"PoolID":"contiv-global/10.1.0.0/24","Address":"10.1.0.1","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
        r#"{"PoolID":"contiv-global/10.1.0.0/24","Address":"10.1.0.2"}"#,
        "",
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub const WORDS: &[&str] = &[
    "NetworkID",
    "EndpointID",
    "Options",
    "IPv4Data",
    "IPv6Data",
    "AddressSpace",
    "Pool",
    "Gateway",
    "AuxAddresses",
    "Interface",
    "Address",
    "AddressIPv6",
    "MacAddress",
    "SandboxKey",
    "DiscoveryType",
    "DiscoveryData",
    "SubPool",
    "V6",
    "PoolID",
    "RequestAddressType",
    "com.docker.network.gateway",
    "com.docker.network.generic",
    "tenant",
    "pkt-tag",
];
