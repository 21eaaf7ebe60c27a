use std::process::Command;

use serde_json::{Value as Json, json};

use super::*;

/// A control-plane template in the predecessor's style: its variables, nested ranges and
/// trim markers (shared with sip's tests and the integration tests).
const CONTROL_PLANE: &str =
    include_str!("../../../tests/fixtures/predecessor/loadBalancerControlPlane.cfg");
/// The worker balancer's, in the same style.
const WORKER: &str = include_str!("../../../tests/fixtures/predecessor/loadBalancerWorker.cfg");

type Ports = Vec<(String, u16)>;
type Servers = Vec<(String, String)>;

fn models() -> Vec<(Ports, Servers)> {
    let cp_ports = vec![("http".to_string(), 6443)];
    let worker_ports = (30002..=30004).map(|p| (format!("port-{p}"), p)).collect();
    let servers = vec![
        ("cp-1".to_string(), "192.0.2.11".to_string()),
        // Names a person may write, and what html/template made of them.
        ("cp&2".to_string(), "2001:db8::12".to_string()),
        ("cp'3+x".to_string(), "192.0.2.13".to_string()),
    ];
    vec![
        (cp_ports.clone(), servers.clone()),
        (worker_ports, servers),
        (cp_ports, Vec::new()),
    ]
}

fn templates() -> Vec<&'static str> {
    vec![
        CONTROL_PLANE,
        WORKER,
        "{{ range $i, $s := .Servers }}{{ $i }}={{ $s.Name }};{{ else }}none{{ end }}",
        "{{ if eq (len .Servers) 0 }}empty{{ else if gt (len .Servers) 2 }}many{{ else }}few{{ end }}",
        "{{ with index .Servers 0 }}{{ .IP }}{{ end }}",
        "{{ with .Servers }}{{ len . }}{{ else }}no servers{{ end }}",
        "{{ printf \"%s:%d %v %q %%\" (index .ContainerPorts 0).Name (index .ContainerPorts 0).ContainerPort true \"q\" }}",
        "{{ .Servers | len }} {{ len .ContainerPorts | printf \"%d ports\" }}",
        "{{ and .Servers \"yes\" }} {{ or \"\" \"fallback\" }} {{ not .Servers }}",
        "{{ print 1 2 \"a\" 3 \"b\" }}|{{ println \"x\" 1 }}",
        "{{ index .ContainerPorts 0 }}",
        "{{ $x := \"a\" }}{{ if true }}{{ $x := \"b\" }}{{ $x }}{{ end }}{{ $x }}",
        "{{ $x := \"a\" }}{{ range .Servers }}{{ $x = .Name }}{{ end }}{{ $x }}",
        "a  {{- \" b \" -}}  c{{/* a comment */}}{{- /* trimmed */ -}}  d",
        "{{ \"}}\" }} {{ `raw\\n` }} {{ \"tab\\there\" }}",
        "{{ range .ContainerPorts }}{{ $.Servers | len }}{{ .ContainerPort }},{{ end }}",
        "{{ if and (ge (len .Servers) 1) (ne (index .Servers 0).Name \"x\") }}yes{{ end }}",
        "{{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ eq 1 2 3 1 }}",
        "{{ .Nope }}",
        "{{ (index .Servers 0).Nope }}",
        "{{ range .Servers }}{{ .IP }}",
        // The four comparisons, at values where each differs from the other three.
        "{{ le 1 2 }} {{ le 2 1 }} {{ gt 1 1 }} {{ ge 1 1 }} {{ lt 2 1 }} {{ ge 1 2 }} {{ gt 2 1 }}",
        // `and` and `or` with a piped argument (evaluated eagerly), and with none.
        "{{ \"\" | and \"x\" }}|{{ 0 | or 1 }}|{{ 1 | and 0 }}|{{ \"\" | or \"\" }}",
        "{{ and }}",
        "{{ or }}",
        "{{ not 1 2 }}",
        "{{ len \"a\" \"b\" }}",
        "{{ range $s := .Servers }}{{ $s.Name }},{{ end }}",
        "{{ .Servers \"x\" }}",
        "{{ \"x\" | .Servers }}",
        // A lone brace inside an action; a raw string ending in a backslash; an escaped quote
        // before braces in a string.
        "{{ 1 }2}}",
        "{{ `a\\` }}",
        "{{ \"say \\\"}}\\\"\" }}",
        "{{ +3 }} {{ -3 }} {{ 3 }}",
        // Declarations of what is not a variable.
        "{{ .Servers := 1 }}",
        "{{ x := 1 }}",
        "{{ $x := .Servers }}{{ $x.Name := 1 }}",
        "{{ range .Servers, $s := .Servers }}{{ end }}",
        "{{ range $i, .Name := .Servers }}{{ end }}",
        "{{ range $i x $s := .Servers }}{{ end }}",
        // Variables declared or assigned by a block: visible in its body and its else, a
        // range's holding the list until its first iteration, an assignment outliving it.
        "{{ if $x := len .Servers }}{{ $x }}{{ else }}none {{ $x }}{{ end }}",
        "{{ $x := 0 }}{{ with $x = len .Servers }}{{ $x }}{{ else }}none{{ end }} {{ $x }}",
        "{{ with $x := .Servers }}{{ len $x }}{{ else }}{{ len $x }}{{ end }}",
        "{{ $x := 0 }}{{ range $x = .Servers }}{{ $x.Name }},{{ end }}{{ $x }}",
        "{{ $i := 9 }}{{ $e := 0 }}{{ range $i, $e = .ContainerPorts }}{{ $i }}{{ end }}{{ $i }} {{ $e }}",
        "{{ range $e := .Servers }}{{ $e.Name }}{{ else }}{{ len $e }}{{ end }}",
        "{{ range $i, $e := .Servers }}{{ $i }}{{ $e.Name }}{{ else }}{{ len $i }} {{ len $e }}{{ end }}",
        "{{ range $i, $e := .Servers }}{{ $j := $i }}{{ end }}{{ $j }}",
        "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}",
        "{{ $a, $b := 1 }}",
        "{{ with $a, $b := 1 }}{{ end }}",
        "{{ if $a, $b := 1 }}{{ end }}",
        // `if` keeps the dot, `end` takes no argument, `else` opens no range.
        "{{ if .Servers }}{{ len .ContainerPorts }}{{ end }}",
        "{{ if 1 }}x{{ end 1 }}",
        "{{ if 1 }}a{{ else range .Servers }}b{{ end }}",
    ]
}

fn json_model(ports: &Ports, servers: &Servers) -> Json {
    json!({
        "ContainerPorts": ports.iter().map(|(n, p)| json!({"Name": n, "ContainerPort": p})).collect::<Vec<_>>(),
        "Servers": servers.iter().map(|(n, ip)| json!({"Name": n, "IP": ip})).collect::<Vec<_>>(),
    })
}

#[test]
fn the_predecessors_style_renders_as_it_did() {
    let (ports, servers) = &models()[0];
    let out = render(CONTROL_PLANE, &load_balancer_model(ports, servers)).unwrap();
    assert!(
        out.contains("\nfrontend http-frontend\n  bind *:6443\n  default_backend http-backend\n"),
        "{out}"
    );
    assert!(
        out.contains("  server cp-1 192.0.2.11:6443 check check-ssl verify none\n"),
        "{out}"
    );
    assert!(
        out.contains("  server cp&amp;2 2001:db8::12:6443"),
        "escaped as html/template did: {out}"
    );
    assert!(
        out.contains("  server cp&#39;3&#43;x 192.0.2.13:6443"),
        "{out}"
    );
}

#[test]
fn what_cannot_be_honoured_is_named_with_its_line() {
    let data = load_balancer_model(&[], &[]);
    let cases = [
        ("a\n<b>{{ .Servers }}</b>", "line 2: HTML markup"),
        ("a\nb\n<br>{{ .Servers }}", "line 3: HTML markup"),
        ("{{ template \"x\" }}", "{{template}} is not supported"),
        ("{{ html .Servers }}", "the function html is not supported"),
        ("{{ printf \"%x\" 1 }}", "the printf verb %x"),
        (
            "x\n{{ .Servers.Name }}",
            "line 2: can't evaluate field Name",
        ),
        ("{{ range .Servers }}", "range without {{end}}"),
        ("{{ foo_bar 1 }}", "the function foo_bar is not supported"),
        ("{{ 1 # }}", "unexpected \"#\""),
    ];
    for (text, needle) in cases {
        let err = render(text, &data).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn go_templates_are_told_from_jinja() {
    let cases = [
        (CONTROL_PLANE, true, "the predecessor's style"),
        ("{{ range .Servers }}x{{ end }}", true, "a range"),
        ("{{ $x := 1 }}", true, "a variable"),
        (
            "{% for s in servers %}{{ s.name }}{% endfor %}",
            false,
            "a Jinja loop",
        ),
        ("{{ containerPort }}", false, "a Jinja variable"),
        ("plain text", false, "no action at all"),
    ];
    for (text, go, msg) in cases {
        assert_eq!(looks_like_go(text), go, "{msg}");
    }
}

/// Every template over every model, rendered here and by Go's own html/template
/// (`oracle/`, run with the Go toolchain the project requires): the same text,
/// or an error on both sides.
#[test]
fn rendering_matches_gos_html_template() {
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for text in templates() {
        for (ports, servers) in models() {
            requests.push(json!({"template": text, "data": json_model(&ports, &servers)}));
            ours.push((text, render(text, &load_balancer_model(&ports, &servers))));
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/oracle");
    let mut child = Command::new("go")
        .args(["run", "."])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the Go toolchain (go) is required to build the control plane and this oracle");
    serde_json::to_writer(child.stdin.take().unwrap(), &requests).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<Json> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(theirs.len(), ours.len());
    let mut errors_on_both = 0;
    for ((text, mine), go) in ours.iter().zip(&theirs) {
        match (mine, go.get("out").and_then(Json::as_str)) {
            (Ok(mine), Some(go)) => assert_eq!(mine, go, "template {text:?}"),
            (Err(_), None) => errors_on_both += 1,
            (mine, _) => panic!("template {text:?}: sip gave {mine:?}, Go gave {go}"),
        }
    }
    // The failing templates fail for every model, `index .Servers 0` for the empty one.
    assert!(errors_on_both >= 9, "{errors_on_both}");
    assert!(
        ours.len() - errors_on_both >= 40,
        "most renderings compared text"
    );
}

/// What one tenant's ConfigMap may hold must cost that tenant an error, never the operator's
/// stack or its thread: nesting beyond the limit is refused before any recursion gets deep, and
/// loops that write nothing run out of steps.
#[test]
fn hostile_templates_are_refused_not_run() {
    let model = load_balancer_model(
        &(30000..30010)
            .map(|p| (format!("p{p}"), p))
            .collect::<Vec<_>>(),
        &[("cp-1".to_string(), "192.0.2.11".to_string())],
    );
    let deep_blocks = "{{if 1}}".repeat(60_000) + &"{{end}}".repeat(60_000);
    let deep_groups = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
    let shallow = "{{if 1}}".repeat(MAX_DEPTH) + "x" + &"{{end}}".repeat(MAX_DEPTH);
    let ranges = "{{range $.ContainerPorts}}".repeat(10) + &"{{end}}".repeat(10);
    let cases = [
        (
            deep_blocks.as_str(),
            "blocks nested more than 100 deep",
            "60,000 nested ifs",
        ),
        (
            deep_groups.as_str(),
            "parentheses nested more than 100 deep",
            "10,000 parentheses",
        ),
        (
            ranges.as_str(),
            "takes more than 1000000 steps",
            "ten nested ranges over ten ports",
        ),
    ];
    for (text, says, what) in cases {
        let error = render(text, &model).expect_err(what);
        assert!(error.message.contains(says), "{what}: {error}");
    }
    assert_eq!(
        render(&shallow, &model).unwrap(),
        "x",
        "the limit itself is allowed"
    );
}

#[test]
fn lines_are_counted_across_a_long_template() {
    let text = "{{ .X }}\n".repeat(5_000) + "{{ .Y";
    let error = lex::pieces(&text).expect_err("unclosed");
    assert_eq!(error.line, 5_001, "{error}");
}
