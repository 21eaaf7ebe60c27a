//! What a spec makes the controller read before it renders (its Secrets, the hosts' BMC
//! credentials, the template ConfigMaps): each read is one a service needs, and none is missed.

use super::*;

#[test]
fn the_secrets_a_spec_reads_are_exactly_those_its_services_name() {
    let mut fixture = Fixture::new();
    let named =
        |spec: &SIPClusterSpec| -> Vec<String> { referenced_secrets(spec).into_iter().collect() };
    assert_eq!(
        named(&fixture.spec),
        ["dex-config", "dex-tls", "ssh-private-keys"]
    );
    // Each of them is one a rendering fails without.
    for name in named(&fixture.spec) {
        let secret = fixture.secrets.remove(&name).unwrap();
        assert!(
            fixture.render().iter().any(|r| r.objects.is_err()),
            "nothing needed {name}"
        );
        fixture.secrets.insert(name, secret);
    }
    fixture.spec.services.auth[0].tls_secret = None;
    fixture.spec.services.jump_host.clear();
    assert_eq!(named(&fixture.spec), ["dex-config"]);
    fixture.spec.services.auth.clear();
    assert!(named(&fixture.spec).is_empty());
}

#[test]
fn only_a_jump_host_needs_the_hosts_bmc_credentials() {
    let mut fixture = Fixture::new();
    assert!(needs_credentials(&fixture.spec));
    fixture.spec.services.jump_host.clear();
    assert!(!needs_credentials(&fixture.spec));
    // Without them every other service still renders.
    fixture.credentials.clear();
    assert!(fixture.render().iter().all(|r| r.objects.is_ok()));
}

#[test]
fn either_load_balancer_reads_the_template_config_maps() {
    let spec = Fixture::new().spec;
    let with = |control_plane: bool, worker: bool| {
        let mut spec = spec.clone();
        if !control_plane {
            spec.services.load_balancer_control_plane.clear();
        }
        if !worker {
            spec.services.load_balancer_worker.clear();
        }
        uses_templates(&spec)
    };
    assert!(with(true, true));
    assert!(with(true, false));
    assert!(with(false, true));
    assert!(!with(false, false));
}
