//! The plugin's command line: kubectl's plugin convention (an executable `kubectl-sip` on
//! PATH is `kubectl sip`), its own `--kubeconfig`, `--context` and `-n` (kubectl passes none of
//! its flags to a plugin), and exit codes a script can test.

use std::io::Read as _;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::{Deserialize as _, Serialize};

use crate::api::SIPCluster;
use crate::scheduling::ClaimScope;

use super::{EXIT_ERROR, EXIT_OK, EXIT_UNSCHEDULABLE, Inventory, hosts, overrides, plan, why};

const EXAMPLES: &str = "\
Examples:
  # What would this SIPCluster take, before creating it?
  kubectl sip plan -f sipcluster.yaml

  # What would two more workers take, for a running cluster?
  kubectl sip plan tenant -n tenants --set Worker.count.active=3

  # The same, for a script: exit 0 when the pool satisfies it, 2 when not
  kubectl sip plan tenant -n tenants --set Worker.count.active=3 -o json

  # Which hosts are free, claimed, or unusable, and why
  kubectl sip hosts -l vino.airshipit.org/flavor=worker

  # Why is this cluster not Ready?
  kubectl sip why tenant -n tenants

  # Shell completion (bash, zsh, fish, elvish, powershell)
  source <(kubectl-sip completion bash)

Exit codes: 0 done (a plan the pool satisfies), 1 an error or bad usage, 2 a plan the pool
cannot satisfy. Only get and list are used: a token bound to the `view` role is enough.";

/// Plan SIPClusters on the live hosts and ledgers, see the host inventory, read a cluster's
/// story. Never writes.
#[derive(Parser)]
#[command(name = "kubectl-sip", bin_name = "kubectl sip", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// The SIPCluster's namespace (default: the context's namespace, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Only the hosts in this namespace, as an operator run with `--namespace` sees them
    /// (default: every namespace, as the shipped operator sees them).
    #[arg(long, global = true, value_name = "NAMESPACE")]
    hosts_namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What the operator's scheduling would keep, add and release for a SIPCluster now.
    Plan(PlanArgs),
    /// The host inventory by flavor and topology domain: free, claimed, unusable.
    Hosts(HostsArgs),
    /// A SIPCluster's story: phase, conditions, recent transitions, unusable hosts, warnings.
    Why {
        /// The SIPCluster's name.
        name: String,
    },
    /// Print a shell completion script for kubectl-sip.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("cluster").required(true).args(["name", "filename"])))]
struct PlanArgs {
    /// An existing SIPCluster to plan (its ledger is where the plan starts).
    name: Option<String>,
    /// A manifest holding the SIPCluster (`-` for standard input). Planned as a change when a
    /// SIPCluster of that name exists.
    #[arg(short = 'f', long, value_name = "FILE")]
    filename: Option<PathBuf>,
    /// Change the spec before planning: `Worker.count.active=5`, `ControlPlane.topologyKey=rack`
    /// (a role's path is under spec.nodes, any other under spec). Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// The operator's `--claimable-hosts` rules, when it runs with them.
    #[arg(long, value_name = "RULES")]
    claimable_hosts: Option<ClaimScope>,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(clap::Args)]
struct HostsArgs {
    /// Only hosts with these labels (a label selector, as kubectl's -l).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// The host label whose value is the host's flavor.
    #[arg(long, default_value = "vino.airshipit.org/flavor")]
    flavor_label: String,
    /// The host label whose value is its topology domain (a rack, a server).
    #[arg(long, default_value = "vino.airshipit.org/rack")]
    domain_label: String,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
    Yaml,
}

/// Runs the plugin on `args` (the program name first) and returns its exit code.
pub async fn run(args: impl IntoIterator<Item = String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
        }
    };
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

type Failure = Box<dyn std::error::Error>;

async fn dispatch(cli: Cli) -> Result<i32, Failure> {
    if let Command::Completion { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "kubectl-sip", &mut script);
        std::io::Write::write_all(&mut std::io::stdout(), &script)?;
        return Ok(EXIT_OK);
    }
    let config = config(&cli).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;
    let hosts_namespace = cli.hosts_namespace.as_deref();
    match cli.command {
        Command::Plan(args) => {
            let inventory = Inventory::read(&client, hosts_namespace, None).await?;
            let cluster = planned_cluster(&args, &namespace, &inventory)?;
            let claimable = args
                .claimable_hosts
                .as_ref()
                .and_then(|s| s.for_namespace(&namespace));
            let plan = plan::plan(&inventory, &cluster, claimable.as_ref());
            match args.output {
                Output::Text => print!("{plan}"),
                other => print(&plan, other)?,
            }
            Ok(if plan.schedulable {
                EXIT_OK
            } else {
                EXIT_UNSCHEDULABLE
            })
        }
        Command::Hosts(args) => {
            let inventory =
                Inventory::read(&client, hosts_namespace, args.selector.as_deref()).await?;
            let rows = hosts::rows(&inventory, &args.flavor_label, &args.domain_label);
            match args.output {
                Output::Text => print!("{}", hosts::table(&rows)),
                other => print(&rows, other)?,
            }
            Ok(EXIT_OK)
        }
        Command::Why { name } => {
            let api: Api<SIPCluster> = Api::namespaced(client.clone(), &namespace);
            let Some(cluster) = api.get_opt(&name).await? else {
                return Err(format!("no SIPCluster {namespace}/{name}").into());
            };
            let fields = format!("involvedObject.kind=SIPCluster,involvedObject.name={name}");
            let events = Api::<Event>::namespaced(client, &namespace)
                .list(&ListParams::default().fields(&fields))
                .await?;
            print!("{}", why::story(&cluster, &events.items));
            Ok(EXIT_OK)
        }
        Command::Completion { .. } => unreachable!("answered before any client is made"),
    }
}

/// The client configuration kubectl would use: `--kubeconfig`, else $KUBECONFIG or
/// ~/.kube/config, else the pod's service account.
async fn config(cli: &Cli) -> Result<Config, Failure> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    Ok(match &cli.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    })
}

/// The SIPCluster to plan: the named one, or the file's (with the live one's ledger when it
/// exists), with `--set` applied.
fn planned_cluster(
    args: &PlanArgs,
    namespace: &str,
    inventory: &Inventory,
) -> Result<SIPCluster, Failure> {
    let mut cluster = match (&args.filename, &args.name) {
        (Some(path), _) => {
            let mut from_file = read_manifest(path)?;
            let ns = from_file
                .metadata
                .namespace
                .get_or_insert_with(|| namespace.to_string())
                .clone();
            let name = from_file.metadata.name.clone().unwrap_or_default();
            from_file.status = inventory
                .cluster(&ns, &name)
                .and_then(|live| live.status.clone());
            from_file
        }
        (None, Some(name)) => inventory
            .cluster(namespace, name)
            .cloned()
            .ok_or_else(|| format!("no SIPCluster {namespace}/{name}: use -f to plan a new one"))?,
        (None, None) => unreachable!("clap requires a name or a file"),
    };
    if !args.sets.is_empty() {
        let mut spec = serde_json::to_value(&cluster.spec)?;
        overrides::apply(&mut spec, &args.sets)?;
        cluster.spec = serde_json::from_value(spec)
            .map_err(|e| format!("the spec after --set is no SIPCluster spec: {e}"))?;
    }
    Ok(cluster)
}

/// The SIPCluster in the YAML file at `path` (`-`: standard input), among other documents.
fn read_manifest(path: &std::path::Path) -> Result<SIPCluster, Failure> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document)?;
        if value["kind"] == "SIPCluster" {
            return serde_json::from_value(value).map_err(|e| {
                format!("{}: the SIPCluster does not parse: {e}", path.display()).into()
            });
        }
    }
    Err(format!("{}: no SIPCluster in it", path.display()).into())
}

fn print(value: &impl Serialize, output: Output) -> Result<(), Failure> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_norway::to_string(value)?),
        Output::Text => unreachable!("text is printed by each command"),
    }
    Ok(())
}
