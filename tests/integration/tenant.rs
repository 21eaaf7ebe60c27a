//! A tenant's side, for the tests that use the support services as a tenant would: its hosts
//! (BareMetalHosts with networkData and BMC Secrets), their BMCs (sushy-tools, metal3's Redfish
//! emulator, with its fake driver, each host behind its own BMC user), its nodes' sshd, and the
//! ssh keys. The addresses are the caller's: TEST-NET-1 in a sandbox linked to a service's
//! sandbox, or the node cluster's bridge.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sip_envtest::apply_yaml;

use crate::common::TestEnv;
use crate::sandbox::{Sandbox, quote, tools};

/// A tenant host: name, flavor, address on `oam-ipv4`, Redfish system id.
pub type Host = (&'static str, &'static str, &'static str, &'static str);

pub struct Tenant {
    pub hosts: [Host; 4],
    /// The BMCs' `ip:port` (one Redfish emulator serving every host's system).
    pub bmc: &'static str,
    /// A label every host carries, `key=value`, for clusters that must take these hosts only.
    pub label: Option<(&'static str, String)>,
}

pub fn bmc_user(host: &str) -> String {
    format!("admin-{host}")
}

/// With a quote, a backslash and a space: what broke the jump host's curl configuration once.
pub fn bmc_password(host: &str) -> String {
    format!("pw \"of\" \\{host}")
}

impl Tenant {
    /// Every host's BareMetalHost, networkData Secret and BMC credentials, one host per rack
    /// and per server so the sample's 1 + 1 of each role takes them all.
    pub async fn create_hosts(&self, env: &TestEnv) {
        let mut docs = Vec::new();
        for (i, (name, flavor, ip, system)) in self.hosts.iter().enumerate() {
            let mut labels = json!({
                "vino.airshipit.org/flavor": flavor,
                "vino.airshipit.org/rack": format!("rack-{i}"),
                "vino.airshipit.org/host": format!("server-{i}"),
            });
            if let Some((key, value)) = &self.label {
                labels[*key] = json!(value);
            }
            docs.push(json!({
                "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "online": true,
                    "bootMACAddress": format!("52:54:00:00:00:{i:02x}"),
                    "bmc": {
                        "address": format!("redfish+http://{}/redfish/v1/Systems/{system}", self.bmc),
                        "credentialsName": format!("{name}-bmc"),
                    },
                    "networkData": {"name": format!("{name}-network-data"), "namespace": env.namespace},
                },
            }));
            let network_data = json!({
                "links": [{"id": "oam-ipv4", "type": "phy", "ethernet_mac_address": format!("52:54:00:00:00:{i:02x}")}],
                "networks": [{"id": "oam-ipv4", "type": "ipv4", "link": "oam-ipv4", "ip_address": ip, "netmask": "255.255.255.0"}],
            });
            docs.push(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-network-data")},
                "stringData": {"networkData": network_data.to_string()},
            }));
            docs.push(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-bmc")},
                "stringData": {"username": bmc_user(name), "password": bmc_password(name)},
            }));
        }
        let yaml: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
        apply_yaml(&env.client, &yaml.join("\n---\n"), &env.namespace)
            .await
            .unwrap();
    }

    /// The hosts' and the BMCs' addresses, with a prefix length, for the tenant's sandbox.
    pub fn addresses(&self, prefix: u8) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("{}/{prefix}", h.2))
            .collect();
        addresses.push(format!("{}/{prefix}", self.bmc.split(':').next().unwrap()));
        addresses
    }

    /// sushy-tools with its fake driver in `sandbox`: every host's system, powered on, each
    /// behind its own BMC user (so a wrong host's credentials would be refused).
    pub fn start_bmcs(&self, sandbox: &mut Sandbox) {
        let tools = tools().expect("the tools were found before the tenant was made");
        let mut auth = String::new();
        let mut systems = Vec::new();
        for (name, _, _, system) in self.hosts {
            let hash = sandbox.sh_ok(&format!(
                "{} -c 'import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())' {}",
                tools["sushy_python"],
                quote(&bmc_password(name))
            ));
            auth.push_str(&format!("{}:{}\n", bmc_user(name), hash.trim()));
            systems.push(json!({"uuid": system, "name": name, "power_state": "On", "nics": []}));
        }
        let auth_file = sandbox.dir.join("bmc-users");
        std::fs::write(&auth_file, auth).unwrap();
        let config = sandbox.dir.join("sushy.conf");
        std::fs::write(
            &config,
            format!(
                "import logging\n# Every reset request is logged at INFO, the ResetType named.\nlogging.getLogger('sushy_tools').setLevel(logging.INFO)\nSUSHY_EMULATOR_FAKE_SYSTEMS = {}\nSUSHY_EMULATOR_AUTH_FILE = {:?}\nSUSHY_EMULATOR_STATE_DIR = {:?}\n",
                // JSON with strings, lists and objects only is a Python literal too.
                serde_json::Value::Array(systems),
                auth_file.display().to_string(),
                sandbox.dir.join("sushy-state").display().to_string(),
            ),
        )
        .unwrap();
        let (ip, port) = self.bmc.split_once(':').unwrap();
        sandbox.spawn(
            "bmc",
            &format!(
                "{} --fake -i {ip} -p {port} --config {}",
                tools["sushy_emulator"],
                config.display()
            ),
        );
        sandbox.wait_until(
            "the Redfish emulator answering",
            Duration::from_secs(30),
            &format!("curl -sSf --max-time 2 http://{}/redfish/v1/", self.bmc),
        );
    }

    /// The power state of host `host` as the emulator reports it, asked directly.
    pub fn power_state(&self, sandbox: &Sandbox, host: usize) -> String {
        let (name, _, _, system) = self.hosts[host];
        let auth = format!("{}:{}", bmc_user(name), bmc_password(name));
        sandbox
            .sh_ok(&format!(
                "curl -sSf -u {} http://{}/redfish/v1/Systems/{system} | jq -r .PowerState",
                quote(&auth),
                self.bmc
            ))
            .trim()
            .to_string()
    }

    pub fn wait_for_power(&self, sandbox: &Sandbox, host: usize, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.power_state(sandbox, host);
            if state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} stayed {state}, expected {want}; the emulator's log:\n{}",
                self.hosts[host].0,
                sandbox.log("bmc")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The tenant nodes' sshd in `sandbox`: user `ubuntu` with the public half of the node key.
    pub fn start_nodes(&self, sandbox: &mut Sandbox, node_public_key: &str) {
        sandbox.sh_ok(&format!(
            "set -e
groupadd --gid 1000 ubuntu
useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh --password '*' ubuntu
install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
printf '%s\\n' {} > /home/ubuntu/.ssh/authorized_keys
chown ubuntu:ubuntu /home/ubuntu/.ssh/authorized_keys && chmod 0600 /home/ubuntu/.ssh/authorized_keys
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/tenant_node_key
mkdir -p -m 0755 /run/sshd
printf 'HostKey /etc/ssh/tenant_node_key\\nUsePAM no\\nPidFile none\\nPasswordAuthentication no\\n' > /etc/ssh/tenant_node_config",
            quote(node_public_key)
        ));
        sandbox.spawn(
            "nodes-sshd",
            "/usr/sbin/sshd -D -e -f /etc/ssh/tenant_node_config",
        );
        sandbox.wait_until(
            "the tenant nodes' sshd",
            Duration::from_secs(10),
            &format!("ssh-keyscan -T 1 {} >/dev/null 2>&1", self.hosts[0].2),
        );
    }
}

/// The Secret the jump host takes the tenant nodes' private keys from (`ssh-private-keys`, as
/// the sample names it).
pub async fn node_keys(env: &TestEnv, key: Vec<u8>) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("ssh-private-keys".into()),
                    ..Default::default()
                },
                data: Some([("node-key".to_string(), ByteString(key))].into()),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
}

/// An ed25519 key pair made by ssh-keygen in `dir`: (private key path, public key line).
pub fn ssh_key(dir: &Path, name: &str) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (
        path.to_string_lossy().into_owned(),
        public.trim().to_string(),
    )
}

pub struct Keys {
    /// A key listed in `sshAuthorizedKeys`, one that is not, and the tenant nodes' key.
    pub user: (String, String),
    pub stranger: (String, String),
    pub node: (String, String),
    dir: std::path::PathBuf,
}

impl Keys {
    pub fn make(dir: &Path) -> Keys {
        Keys {
            user: ssh_key(dir, "user"),
            stranger: ssh_key(dir, "stranger"),
            node: ssh_key(dir, "node"),
            dir: dir.to_path_buf(),
        }
    }
}

/// The keys go with the test, passed or failed: private keys are not left in /tmp.
impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
