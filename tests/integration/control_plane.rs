use crate::common::test_env;

#[tokio::test]
async fn control_plane_serves_the_project_crds() {
    let env = test_env("cp").await;
    eprintln!(
        "local control plane started in {:.1}s (binaries from {})",
        env.cp.startup.as_secs_f64(),
        env.cp.bin_dir.display()
    );
    let resources = env.kubectl(&["api-resources", "--no-headers"]);
    for (name, short) in [("sipclusters", "sip"), ("baremetalhosts", "bmh")] {
        let line = resources
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not served; api-resources:\n{resources}"));
        assert!(
            line.split_whitespace()
                .any(|w| w.split(',').any(|s| s == short)),
            "{name} should have short name {short}: {line}"
        );
    }
}
