//! The CNI result (the 1.1.0 shape) and its rendering for each supported spec version.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode_error;
use crate::error::CniError;
use crate::version;

/// The result of ADD in the spec's 1.1.0 shape, which carries everything the older shapes do.
/// It has no `cniVersion`: the version is chosen when rendering ([`render_result`]).
///
/// Deserializing accepts a result of any supported version (0.3.0 to 1.1.0): the `version`
/// field of 0.3.x/0.4.0 ips is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Result11 {
    /// Interfaces created: host side (no sandbox) and container side (with sandbox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes added in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings for the container.
    #[serde(default)]
    pub dns: Dns,
}

/// One interface of a result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name (in its namespace).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path of the container side; absent for a host interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// vhost-user or similar socket path (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// PCI id of a device interface (1.1.0 only).
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One address of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length, `10.1.1.2/24` (host bits kept).
    pub address: IpNet,
    /// The default gateway of this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`Result11::interfaces`] of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination, `0.0.0.0/0` for the default route.
    pub dst: IpNet,
    /// Next hop; the default gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority (metric) (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope, e.g. 0 universe, 253 link (1.1.0 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// DNS settings of a result (and of the config's `dns` field).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name server addresses, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// How a spec version spells a result.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// 0.3.0, 0.3.1, 0.4.0: each ip has `"version": "4"|"6"`; no 1.1.0 fields.
    V03,
    /// 1.0.0: no `version` on ips; no 1.1.0 fields.
    V10,
    /// 1.1.0: everything.
    V11,
}

fn shape_of(cni_version: &str) -> Result<Shape, CniError> {
    match cni_version {
        "0.3.0" | "0.3.1" | "0.4.0" => Ok(Shape::V03),
        "1.0.0" => Ok(Shape::V10),
        "1.1.0" => Ok(Shape::V11),
        other => {
            version::check_supported(other)?;
            unreachable!("every supported version has a shape")
        }
    }
}

/// Renders `result` as the JSON the plugin prints for a config of `cni_version`: the shape of
/// that version, with `"cniVersion": cni_version`. Fields a version does not define are dropped
/// (interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/`table`/`scope`
/// before 1.1.0), and 0.3.x/0.4.0 ips get their `version`. Errors: code 1 for an unsupported
/// version; code 999 when an ip names an interface index the result does not have.
pub fn render_result(result: &Result11, cni_version: &str) -> Result<Vec<u8>, CniError> {
    let shape = shape_of(cni_version)?;
    for ip in &result.ips {
        if let Some(i) = ip.interface
            && i >= result.interfaces.len()
        {
            return Err(CniError::internal(format!(
                "render CNI result: ip {} names interface {i} but the result has {} interfaces",
                ip.address,
                result.interfaces.len()
            )));
        }
    }
    let v11 = shape == Shape::V11;
    let out = Rendered {
        cni_version,
        interfaces: result
            .interfaces
            .iter()
            .map(|i| RenderedInterface {
                name: &i.name,
                mac: &i.mac,
                mtu: i.mtu.filter(|_| v11),
                sandbox: i.sandbox.as_deref(),
                socket_path: i.socket_path.as_deref().filter(|_| v11),
                pci_id: i.pci_id.as_deref().filter(|_| v11),
            })
            .collect(),
        ips: result
            .ips
            .iter()
            .map(|ip| RenderedIp {
                version: (shape == Shape::V03).then_some(match ip.address {
                    IpNet::V4(_) => "4",
                    IpNet::V6(_) => "6",
                }),
                address: &ip.address,
                gateway: ip.gateway,
                interface: ip.interface,
            })
            .collect(),
        routes: result
            .routes
            .iter()
            .map(|r| Route {
                dst: r.dst,
                gw: r.gw,
                mtu: r.mtu.filter(|_| v11),
                advmss: r.advmss.filter(|_| v11),
                priority: r.priority.filter(|_| v11),
                table: r.table.filter(|_| v11),
                scope: r.scope.filter(|_| v11),
            })
            .collect(),
        dns: &result.dns,
    };
    let mut bytes = serde_json::to_vec_pretty(&out)
        .map_err(|e| CniError::internal(format!("render CNI result: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decodes a result of any supported version (e.g. a `prevResult`, or what a plugin printed).
/// Error code 6.
pub fn parse_result(bytes: &[u8]) -> Result<Result11, CniError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| decode_error("CNI result", e))
}

pub(super) fn parse_result_value(value: &Value) -> Result<Result11, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| decode_error("CNI result", e))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rendered<'a> {
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<RenderedInterface<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<RenderedIp<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    // Always present, `{}` when empty, as the reference plugins print it.
    dns: &'a Dns,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderedInterface<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    mac: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_path: Option<&'a str>,
    #[serde(rename = "pciID", skip_serializing_if = "Option::is_none")]
    pci_id: Option<&'a str>,
}

#[derive(Serialize)]
struct RenderedIp<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    address: &'a IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use serde_json::json;

    /// A dual-stack result with every 1.1.0 field set.
    fn sample() -> Result11 {
        Result11 {
            interfaces: vec![
                Interface {
                    name: "vport1a2b3c".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    mtu: Some(1450),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:02:0a:01:01:02".into(),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/pod1".into()),
                    socket_path: Some("/run/vhost.sock".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.1.2/24".parse().unwrap(),
                    gateway: Some("10.1.1.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::2/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.1.1".parse().unwrap()),
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(100),
                table: Some(254),
                scope: Some(0),
            }],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                domain: Some("cluster.local".into()),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
        }
    }

    fn render(version: &str) -> Value {
        serde_json::from_slice(&render_result(&sample(), version).unwrap()).unwrap()
    }

    fn dns() -> Value {
        json!({
            "nameservers": ["10.96.0.10"],
            "domain": "cluster.local",
            "search": ["default.svc.cluster.local"],
            "options": ["ndots:5"]
        })
    }

    #[test]
    fn renders_1_1_0_with_every_field() {
        assert_eq!(
            render("1.1.0"),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "vport1a2b3c", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1450},
                    {"name": "eth0", "mac": "02:02:0a:01:01:02", "mtu": 1450,
                     "sandbox": "/var/run/netns/pod1", "socketPath": "/run/vhost.sock",
                     "pciID": "0000:00:1f.6"}
                ],
                "ips": [
                    {"address": "10.1.1.2/24", "gateway": "10.1.1.1", "interface": 1},
                    {"address": "fd00::2/64", "interface": 1}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1", "mtu": 1400, "advmss": 1360,
                            "priority": 100, "table": 254, "scope": 0}],
                "dns": dns()
            })
        );
    }

    #[test]
    fn renders_1_0_0_without_the_1_1_fields() {
        assert_eq!(
            render("1.0.0"),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "vport1a2b3c", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "02:02:0a:01:01:02", "sandbox": "/var/run/netns/pod1"}
                ],
                "ips": [
                    {"address": "10.1.1.2/24", "gateway": "10.1.1.1", "interface": 1},
                    {"address": "fd00::2/64", "interface": 1}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}],
                "dns": dns()
            })
        );
    }

    #[test]
    fn renders_0_3_and_0_4_with_ip_versions() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            assert_eq!(
                render(v),
                json!({
                    "cniVersion": v,
                    "interfaces": [
                        {"name": "vport1a2b3c", "mac": "ee:ee:ee:ee:ee:ee"},
                        {"name": "eth0", "mac": "02:02:0a:01:01:02", "sandbox": "/var/run/netns/pod1"}
                    ],
                    "ips": [
                        {"version": "4", "address": "10.1.1.2/24", "gateway": "10.1.1.1", "interface": 1},
                        {"version": "6", "address": "fd00::2/64", "interface": 1}
                    ],
                    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}],
                    "dns": dns()
                }),
                "{v}"
            );
        }
    }

    #[test]
    fn an_empty_result_has_version_and_dns_only() {
        let out = render_result(&Result11::default(), "1.0.0").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"cniVersion": "1.0.0", "dns": {}})
        );
        assert!(out.ends_with(b"}\n"));
    }

    #[test]
    fn refuses_unsupported_versions_and_bad_indexes() {
        for v in ["0.2.0", "1.2.0", ""] {
            let err = render_result(&sample(), v).unwrap_err();
            assert_eq!(err.code, code::INCOMPATIBLE_CNI_VERSION, "{v:?}");
        }
        let mut bad = sample();
        bad.ips[0].interface = Some(2);
        let err = render_result(&bad, "1.1.0").unwrap_err();
        assert_eq!(err.code, code::INTERNAL);
        assert_eq!(
            err.msg,
            "render CNI result: ip 10.1.1.2/24 names interface 2 but the result has 2 interfaces"
        );
    }

    #[test]
    fn every_rendering_parses_back_to_what_its_version_keeps() {
        let full = sample();
        assert_eq!(
            parse_result(&render_result(&full, "1.1.0").unwrap()).unwrap(),
            full
        );
        let mut older = full.clone();
        for i in &mut older.interfaces {
            (i.mtu, i.socket_path, i.pci_id) = (None, None, None);
        }
        older.routes[0] = Route {
            dst: older.routes[0].dst,
            gw: older.routes[0].gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        };
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            assert_eq!(
                parse_result(&render_result(&full, v).unwrap()).unwrap(),
                older,
                "{v}"
            );
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err =
            parse_result(br#"{"ips":[{"address":"10.1.1.2/24","gateway":"x"}]}"#).unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
        assert!(
            err.msg
                .starts_with("decode CNI result: field ips[0].gateway"),
            "{err}"
        );
    }
}
