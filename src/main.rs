#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The version `--version` prints: `SIP_VERSION` at build time (the image build passes the git
/// description), else the crate's version.
const VERSION: &str = match option_env!("SIP_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The SIP operator: carves tenant clusters out of metal3 BareMetalHosts.
#[derive(Parser)]
#[command(version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the SIPCluster CRD as YAML, or write every CRD the project ships into a directory.
    Crd {
        /// Write `crd/`-style files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
    /// Print the SIPCluster state machine as Mermaid, or write Mermaid and DOT files.
    Diagrams {
        /// Write `state-diagrams/`-style files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
    /// Render one load balancer template (the operator's own child process, under limits).
    #[command(name = "render-template", hide = true)]
    RenderTemplate,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig to use; in a pod the in-cluster configuration is used when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch BareMetalHosts in this namespace only (default: all namespaces).
    #[arg(long, env = "SIP_HOST_NAMESPACE")]
    host_namespace: Option<String>,
    /// Serve SIPClusters in this namespace only (default: all namespaces).
    #[arg(long, env = "SIP_CLUSTER_NAMESPACE")]
    cluster_namespace: Option<String>,
    /// Follow a BareMetalHost's spec.networkData into other namespaces than the host's (off:
    /// whoever may edit a host could otherwise have sip read any Secret through it).
    #[arg(long, env = "SIP_NETWORK_DATA_ANY_NAMESPACE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    network_data_any_namespace: bool,
    /// Log format.
    #[arg(long, env = "SIP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (for example `info,sip=debug`).
    #[arg(long, env = "SIP_LOG", default_value = "info")]
    log: String,
    /// Name of this replica in Events (set it to the pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Address of the admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "SIP_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: std::net::SocketAddr,
    /// Serve /metrics only to a bearer token whose user may `get` the non-resource URL
    /// /metrics (TokenReview and SubjectAccessReview, as kube-rbac-proxy does).
    #[arg(long, env = "SIP_METRICS_AUTH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    metrics_auth: bool,
    /// Serve the admin server (/metrics and the probes) over TLS, so scrapers' bearer tokens
    /// never cross the network in clear.
    #[arg(long, env = "SIP_METRICS_TLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    metrics_tls: bool,
    /// Which namespaces' hosts a SIPCluster may claim, by its namespace:
    /// `CLUSTER_NS=HOST_NS[,HOST_NS...]` rules separated by `;`, `*` for every other cluster
    /// namespace, `.` for the cluster's own (e.g. `*=.;ops=metal3`). Unset: any namespace's
    /// hosts, as the predecessor chose them. Set, a namespace no rule names claims nothing.
    #[arg(long, env = "SIP_CLAIMABLE_HOSTS")]
    claimable_hosts: Option<sip::scheduling::ClaimScope>,
    /// With --metrics-tls: a directory holding tls.crt and tls.key (a mounted
    /// kubernetes.io/tls Secret), read again when tls.crt changes. Without it the operator
    /// makes a self-signed certificate at start.
    #[arg(long, env = "SIP_METRICS_CERT_DIR", requires = "metrics_tls")]
    metrics_cert_dir: Option<PathBuf>,
    /// Work only while holding the Lease, so several replicas can run (`false`: always work).
    #[arg(long, env = "SIP_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "SIP_LEASE_NAME", default_value = "sip-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds the Lease is held without renewal; a standby takes over after that.
    #[arg(long, env = "SIP_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            // One thread: the controller works one SIPCluster at a time and everything else
            // (watches, the admin server, the Lease) waits on the network. Worker threads
            // bought no speed here and cost memory: glibc gives each thread that allocates
            // under contention an arena of its own (about 6 MiB of the peak at 10,000 hosts).
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sip run: starting the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sip run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crd { write: Some(dir) } => match sip::crdgen::write_all(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sip crd: writing {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::RenderTemplate => sip::services::sandbox::serve(),
        Command::Diagrams { write: Some(dir) } => match sip::machine::diagram::write_all(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sip diagrams: writing {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Diagrams { write: None } => {
            print!("{}", sip::machine::diagram::mermaid());
            ExitCode::SUCCESS
        }
        Command::Crd { write: None } => {
            let crd = sip::crdgen::files().remove(0).crd;
            match sip::crdgen::render(&crd) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sip crd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let metrics = std::sync::Arc::new(sip::metrics::Metrics::new());
    let layer = || sip::metrics::ApiMetricsLayer::new(metrics.clone());
    // Three clients, three connections: the Lease's renewals never queue behind the
    // controller's requests or a burst of scrapes' TokenReviews, and only the controller's
    // writes pass the leader's fence.
    let fence = if args.leader_election {
        sip::leader::Fence::shut()
    } else {
        sip::leader::Fence::open()
    };
    let client = sip::client::build_fenced(config.clone(), layer(), fence.clone())?;
    let lease_client = sip::client::build(config.clone(), layer())?;
    let review_client = sip::client::build(config, layer())?;
    let identity = args.instance.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sip".into());
        format!("{host}-{}", std::process::id())
    });
    let lease = sip::leader::LeaseSettings {
        name: args.lease_name,
        namespace: args
            .lease_namespace
            .unwrap_or_else(|| client.default_namespace().to_string()),
        identity,
        duration_seconds: args.lease_duration,
        fence,
    };
    let settings = sip::controller::Settings {
        host_namespace: args.host_namespace,
        cluster_namespace: args.cluster_namespace,
        instance: args.instance,
        metrics: metrics.clone(),
        network_data_any_namespace: args.network_data_any_namespace,
        claim_scope: args.claimable_hosts.unwrap_or_default(),
        cancel: None,
        pause: None,
        ledger_lag: None,
        turn_limit: sip::controller::TURN_LIMIT,
        // Templates from ConfigMaps render in a child of this very executable.
        renderer: match std::env::current_exe() {
            Ok(exe) => sip::services::Renderer::Child(exe),
            Err(e) => {
                return Err(
                    format!("finding this executable for the template renderer: {e}").into(),
                );
            }
        },
    };
    // SIGTERM (kubelet) or Ctrl-C: the controller finishes the step in hand, then stops.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let scrape_auth = args
        .metrics_auth
        .then(|| std::sync::Arc::new(sip::scrape_auth::ScrapeAuth::new(review_client)));
    let tls = if args.metrics_tls {
        let names = vec![
            std::env::var("HOSTNAME").unwrap_or_else(|_| "sip".into()),
            "localhost".into(),
        ];
        Some(sip::admin::tls::acceptor(
            args.metrics_cert_dir.as_deref(),
            names,
        )?)
    } else {
        None
    };
    let (address, admin) = sip::admin::bind(
        args.metrics_address,
        metrics.clone(),
        scrape_auth,
        tls,
        until(stopped.clone()),
    )
    .await?;
    let admin = tokio::spawn(admin);
    tracing::info!(%address, version = VERSION, "sip operator starting; admin server listening");
    let gave_up = metrics.clone();
    let outcome = if args.leader_election {
        sip::leader::run_as_leader(
            lease_client,
            lease,
            metrics,
            until(stopped.clone()),
            |stop| sip::controller::run(client, settings, stop),
        )
        .await
    } else {
        // The controller reports itself as the working replica once its caches are synced.
        sip::controller::run(client, settings, until(stopped.clone())).await;
        Ok(())
    };
    if let Err(e) = outcome {
        // Nothing in memory is worth keeping: a restart resumes from the persisted phases.
        tracing::error!(error = %e, "stopping");
        return Err(e.into());
    }
    if let Some(reason) = gave_up.gave_up() {
        tracing::error!(%reason, "the controller gave up; stopping");
        return Err(reason.into());
    }
    let _ = admin.await;
    tracing::info!("sip operator stopped");
    Ok(())
}

/// Resolves once the shutdown flag is raised (or its sender is gone).
async fn until(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
