//! What the agent's unit tests share: a real netmaster in the test process (embedded store in
//! a temp dir, served on a unix socket) and a manager over the kernel and switch fakes.

use crate::attach::CniMode;
use crate::kernel::fake::FakeKernel;
use crate::manager::{AddRequest, Attachment, Manager, ManagerConfig, endpoint_id};
use crate::switch::fake::FakeSwitch;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub const SIDE: &str = "/run/netns/side";

pub struct Rig {
    pub kernel: FakeKernel,
    pub switch: Arc<FakeSwitch>,
    pub master: model::Client,
    pub m: Arc<Manager>,
    pub dir: tempfile::TempDir,
    pub mode: CniMode,
    pub server: tokio::task::JoinHandle<()>,
}

pub fn veth() -> CniMode {
    CniMode::Veth
}
pub fn pool() -> CniMode {
    CniMode::Pool {
        side_netns: SIDE.into(),
        size: 2,
    }
}
pub fn trunks(dir: &Path) -> CniMode {
    CniMode::Trunks {
        side_netns: SIDE.into(),
        state_dir: dir.join("trunks"),
        idle: std::time::Duration::from_secs(300),
    }
}

/// A netmaster in this process, on a unix socket in `dir`, with network default:net.
pub async fn netmaster(dir: &Path) -> (model::Client, tokio::task::JoinHandle<()>) {
    let store = store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.join("contiv.redb")))
        .expect("open the embedded store");
    let m = master::Master::open(
        Arc::new(store),
        master::MasterOptions::single("unix", "embedded"),
    )
    .await
    .expect("open netmaster");
    let sock = dir.join("netmaster.sock");
    let l = tokio::net::UnixListener::bind(&sock).expect("bind netmaster's socket");
    let server = tokio::spawn(async move {
        let _ = axum::serve(l, master::api::router(m)).await;
    });
    let c = model::Client::new(&[format!("unix://{}", sock.display())]).expect("client");
    let net: model::objects::Network = serde_json::from_value(serde_json::json!({
        "tenantName": "default", "networkName": "net", "subnet": "10.1.0.0/24",
        "gateway": "10.1.0.1", "encap": "vxlan"
    }))
    .expect("network");
    c.put(&net).await.expect("create network default:net");
    (c, server)
}

impl Rig {
    pub async fn new(mode: impl FnOnce(&Path) -> CniMode) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let (master, server) = netmaster(dir.path()).await;
        let kernel = FakeKernel::default();
        let switch = Arc::new(FakeSwitch::default());
        let mode = mode(dir.path());
        let m = Arc::new(Self::manager(&kernel, &switch, &master, mode.clone()).await);
        Rig {
            kernel,
            switch,
            master,
            m,
            dir,
            mode,
            server,
        }
    }

    pub async fn manager(
        kernel: &FakeKernel,
        switch: &Arc<FakeSwitch>,
        master: &model::Client,
        mode: CniMode,
    ) -> Manager {
        Manager::new(
            master.clone(),
            Arc::new(kernel.clone()),
            switch.clone(),
            ManagerConfig {
                node: "node1".into(),
                mtu: 1450,
            },
            mode,
        )
        .await
        .expect("manager")
    }

    /// The agent restarts: a new manager over the same kernel, switch and netmaster.
    pub async fn restart(&mut self) {
        self.m = Arc::new(
            Self::manager(&self.kernel, &self.switch, &self.master, self.mode.clone()).await,
        );
        self.m.reconcile().await.expect("reconcile after restart");
    }

    /// A pod namespace and an ADD request for it.
    pub fn pod(&self, name: &str) -> AddRequest {
        let ns = format!("/run/netns/{name}");
        self.kernel.add_netns(&ns);
        AddRequest {
            container_id: name.into(),
            netns: ns.into(),
            ifname: "eth0".into(),
            tenant: "default".into(),
            network: "net".into(),
            attachment_network: "contiv".into(),
            ..Default::default()
        }
    }

    pub async fn endpoint_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .master
            .list_endpoints(None)
            .await
            .expect("list endpoints")
            .into_iter()
            .map(|e| e.endpoint_id)
            .collect();
        v.sort();
        v
    }

    /// Asserts the pod's interface is plumbed as the endpoint says.
    pub fn assert_plumbed(&self, req: &AddRequest, a: &Attachment) {
        let ns = req.netns.display().to_string();
        let l = self
            .kernel
            .link(&ns, &req.ifname)
            .unwrap_or_else(|| panic!("{} has no {}", ns, req.ifname));
        assert!(l.up, "the pod's interface is up");
        assert_eq!(crate::netlink::parse_mac(&a.mac), Some(l.mac), "MAC");
        let want: IpAddr = a.endpoint.ip_address.parse().unwrap();
        assert!(l.addrs.contains(&(want, 24)), "{:?}", l.addrs);
        assert!(!l.ipv6, "no IPv6 on a network without it");
        let gw: IpAddr = "10.1.0.1".parse().unwrap();
        assert!(self.kernel.routes(&ns).iter().any(|(g, _)| *g == gw));
        let ep = endpoint_id(&req.container_id, &req.ifname);
        assert_eq!(
            self.switch.flows().get(&ep).copied(),
            self.switch.port(&a.host_ifname).and_then(|p| p.ofport),
            "the endpoint's flows are on its port"
        );
    }
}
