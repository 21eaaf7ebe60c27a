//! What the node's components read: containerd's configuration, the CNI network, the
//! kubelet's and kube-proxy's configurations. Each names only the node's own directory,
//! bridge, cgroup and addresses, so nothing of the machine's own setup is touched.

use std::path::Path;

use super::{BRIDGE, CGROUP, NODE_IP, PAUSE_IMAGE, POD_CIDR};

/// containerd 1.6 (Debian's), CRI only: state, sockets, runc's state and network namespaces
/// under `dir`; runc through `wrapper` (see tools/node/runc-wrapper).
pub fn containerd(dir: &Path, wrapper: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
oom_score = 0

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{wrapper}"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#,
        wrapper = wrapper.display()
    )
}

/// One bridge network: pods get addresses .10 to .199 of `POD_CIDR` on `BRIDGE`, whose address
/// is the node's (the rest is for tests' hosts plugged into the bridge); no masquerading (pods
/// talk to the node and to what is on the bridge only).
pub fn cni(dir: &Path) -> String {
    let (net, _) = POD_CIDR.split_once('/').unwrap_or((POD_CIDR, ""));
    let first = net.rsplit_once('.').map_or(net, |(a, _)| a);
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "sip-node",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{POD_CIDR}", "gateway": "{NODE_IP}", "rangeStart": "{first}.10", "rangeEnd": "{first}.199"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{ipam}"
      }}
    }}
  ]
}}
"#,
        ipam = dir.join("cni/ipam").display()
    )
}

/// The kubelet: pods under the node's own cgroup, served and authorized as a real node's
/// (client certificates from the cluster's CA, webhook authorization), on the node's address.
pub struct Kubelet<'a> {
    pub dir: &'a Path,
    pub client_ca: &'a Path,
    pub serving_cert: &'a Path,
    pub serving_key: &'a Path,
}

impl Kubelet<'_> {
    pub fn config(&self) -> String {
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The cgroup layout of these machines is hybrid v1 (see ARCHITECTURE.md).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP}
containerRuntimeEndpoint: unix://{dir}/containerd.sock
address: {NODE_IP}
readOnlyPort: 0
healthzPort: 0
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
failSwapOn: false
resolvConf: ""
# Images cannot be pulled back here: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Absolute floors, not shares: these machines' disks are large and mostly taken by others
# (a few GiB free of 250), so even 1% tainted the node with disk-pressure mid-run.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 256Mi
  imagefs.available: 256Mi
  nodefs.inodesFree: "1000"
  imagefs.inodesFree: "1000"
serializeImagePulls: false
"#,
            dir = self.dir.display(),
            cert = self.serving_cert.display(),
            key = self.serving_key.display(),
            ca = self.client_ca.display(),
        )
    }
}

/// kube-proxy in iptables mode, node ports on the node's address only; traffic to a Service is
/// masqueraded, so a pod's reply from another pod on the bridge comes back through the node.
pub fn kube_proxy(kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
hostnameOverride: {node}
clusterCIDR: {POD_CIDR}
nodePortAddresses: ["{NODE_IP}/32"]
healthzBindAddress: {NODE_IP}:10256
metricsBindAddress: {NODE_IP}:10249
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display(),
        node = super::NODE_NAME,
    )
}
