//! `contiv`: the CNI plugin a container runtime execs. It forwards the call to the netplugin
//! agent on this node and prints the agent's answer; see the `cni` crate's README.

fn main() {
    std::process::exit(cni::shim::main());
}
