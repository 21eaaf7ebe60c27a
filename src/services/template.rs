//! HAProxy configuration templates: a built-in default per load balancer, or the predecessor's
//! per-namespace ConfigMap override, rendered with Jinja syntax (minijinja), or, for a
//! ConfigMap written for the predecessor, with Go's template syntax over its data model
//! (the `sip-gotemplate` crate, `crates/gotemplate`). The annotation
//! `sip.airshipit.org/template-syntax: go|jinja` says which; without it the text tells.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sip_gotemplate as gotemplate;

use super::{ServiceError, ServiceId, sandbox};

/// Bounds the work one template may do (a loop over a huge range is a user error, not a hang).
const FUEL: u64 = 5_000_000;
/// The largest template a ConfigMap may hold: a load balancer's is a few KiB; whoever can
/// write a ConfigMap in a cluster's namespace must not make the operator parse megabytes.
pub const MAX_TEMPLATE: usize = 64 << 10;

/// The largest configuration a template may render: a load balancer's is a few KiB.
pub const MAX_OUTPUT: usize = 1 << 20;

/// A ConfigMap's annotation naming its template syntax: `go` or `jinja`.
pub const ANNOTATION_SYNTAX: &str = "sip.airshipit.org/template-syntax";

/// The template languages a ConfigMap may be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    /// sip's own (minijinja).
    Jinja,
    /// The predecessor's: Go's html/template over `{ContainerPorts, Servers}`.
    Go,
}

/// A template and where it came from, for error messages.
pub struct Template<'a> {
    pub origin: String,
    pub text: &'a str,
    pub syntax: Syntax,
    /// Written by a user (a ConfigMap), not built in: rendered where it cannot hurt the
    /// operator (see [`Renderer`]).
    pub user: bool,
}

/// Where a template a user wrote is rendered.
#[derive(Clone, Debug, Default)]
pub enum Renderer {
    /// In the calling thread, bounded by the engines' own limits only (depth, steps, fuel,
    /// output): for the pure tests and benches, where the templates are the test's.
    #[default]
    InProcess,
    /// In a child process of this executable (`sip render-template`) under kernel limits on
    /// memory, CPU time and wall time: what the operator does (`sandbox.rs`).
    Child(PathBuf),
}

/// What the predecessor's Go templates saw: its ports (named as it named them) and the
/// servers' `(name, ip)`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GoModel {
    pub ports: Vec<(String, u16)>,
    pub servers: Vec<(String, String)>,
}

/// The override in `config_maps[name][key]` when that ConfigMap exists, else the built-in.
pub fn pick<'a>(
    service: ServiceId,
    config_maps: &'a BTreeMap<String, ConfigMap>,
    namespace: &str,
    (name, key): (&str, &'static str),
    built_in: &'static str,
) -> Result<Template<'a>, ServiceError> {
    let Some(cm) = config_maps.get(name) else {
        return Ok(Template {
            origin: "the built-in default".into(),
            text: built_in,
            syntax: Syntax::Jinja,
            user: false,
        });
    };
    let text = cm.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
        ServiceError::TemplateKeyMissing {
            service,
            config_map: format!("{namespace}/{name}"),
            key,
        }
    })?;
    let origin = format!("ConfigMap {namespace}/{name} key {key}");
    if text.len() > MAX_TEMPLATE {
        return Err(ServiceError::Template {
            service,
            origin,
            detail: format!(
                "the template is {} bytes, over the {MAX_TEMPLATE}-byte limit; shorten it",
                text.len()
            ),
        });
    }
    let annotated = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SYNTAX));
    let syntax = match annotated.map(String::as_str) {
        None if gotemplate::looks_like_go(text) => Syntax::Go,
        None | Some("jinja") => Syntax::Jinja,
        Some("go") => Syntax::Go,
        Some(other) => {
            return Err(ServiceError::Template {
                service,
                origin,
                detail: format!(
                    "annotation {ANNOTATION_SYNTAX}: {other:?} names no syntax; use \"go\" or \"jinja\""
                ),
            });
        }
    };
    Ok(Template {
        origin,
        text,
        syntax,
        user: true,
    })
}

/// Renders `template`: Jinja with `data`, Go with the predecessor's model `go_model`; a user's
/// template where `renderer` says. An unknown variable, a syntax error, a limit passed or an
/// empty result is an error naming the template's origin.
pub fn render(
    service: ServiceId,
    template: &Template<'_>,
    data: impl Serialize,
    go_model: impl FnOnce() -> GoModel,
    renderer: &Renderer,
) -> Result<String, ServiceError> {
    let result = match renderer {
        Renderer::Child(exe) if template.user => serde_json::to_value(data)
            .map_err(|e| e.to_string())
            .and_then(|data| {
                let job = sandbox::Job {
                    syntax: template.syntax,
                    text: template.text.to_string(),
                    data,
                    go: go_model(),
                };
                sandbox::render(exe, &job)
            }),
        _ => engine(template.syntax, template.text, data, go_model),
    };
    let rendered = result.map_err(|detail| match template.syntax {
        Syntax::Jinja => ServiceError::Template {
            service,
            origin: template.origin.clone(),
            detail,
        },
        Syntax::Go => ServiceError::GoTemplate {
            service,
            origin: template.origin.clone(),
            detail,
        },
    })?;
    if rendered.trim().is_empty() {
        return Err(ServiceError::EmptyConfig {
            service,
            origin: template.origin.clone(),
        });
    }
    Ok(rendered)
}

/// Runs the engine of `syntax` here: what the operator's child process does, and the
/// in-process renderer.
pub fn engine(
    syntax: Syntax,
    text: &str,
    data: impl Serialize,
    go_model: impl FnOnce() -> GoModel,
) -> Result<String, String> {
    let rendered = match syntax {
        Syntax::Jinja => render_jinja(text, data)?,
        Syntax::Go => {
            let model = go_model();
            let data = gotemplate::load_balancer_model(&model.ports, &model.servers);
            gotemplate::render(text, &data).map_err(|e| e.to_string())?
        }
    };
    if rendered.len() > MAX_OUTPUT {
        return Err(too_long());
    }
    Ok(rendered)
}

fn too_long() -> String {
    format!(
        "the rendered configuration passed {MAX_OUTPUT} bytes; a load balancer's needs a few KiB"
    )
}

fn render_jinja(text: &str, data: impl Serialize) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    let template = env.template_from_str(text).map_err(|e| e.to_string())?;
    // Written through a bounded buffer: output past the cap stops the render there.
    let mut out = Capped(Vec::new());
    match template.render_captured_to(data, &mut out) {
        Ok(_) => String::from_utf8(out.0).map_err(|e| e.to_string()),
        Err(_) if out.0.len() > MAX_OUTPUT => Err(too_long()),
        Err(e) => Err(e.to_string()),
    }
}

/// A buffer that refuses to grow past [`MAX_OUTPUT`] (by one byte, so the caller can tell).
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_OUTPUT + 1 - self.0.len().min(MAX_OUTPUT + 1);
        if room == 0 {
            return Err(std::io::Error::other(too_long()));
        }
        let n = buf.len().min(room);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ServiceKind;
    use serde_json::json;

    const ID: ServiceId = ServiceId {
        kind: ServiceKind::LoadBalancerControlPlane,
        index: 0,
    };

    fn t(text: &str) -> Template<'_> {
        Template {
            origin: "test".into(),
            text,
            syntax: Syntax::Jinja,
            user: true,
        }
    }

    #[test]
    fn bad_templates_are_errors_that_say_where_they_came_from() {
        let cases = [
            (
                "{{ .Servers }}",
                "syntax error",
                "a Go template (the predecessor's)",
            ),
            (
                "{% for s in servers %}",
                "syntax error",
                "an unclosed block",
            ),
            ("{{ nothing }}", "undefined", "an unknown variable"),
            ("{{ servers[0].nope }}", "undefined", "an unknown field"),
            ("   \n", "empty configuration", "whitespace only"),
            (
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                "fuel",
                "a runaway loop",
            ),
        ];
        for (text, needle, what) in cases {
            let err = render(
                ID,
                &t(text),
                json!({"servers": [{"name": "a"}]}),
                GoModel::default,
                &Renderer::InProcess,
            )
            .expect_err(what)
            .to_string();
            assert!(err.contains(needle), "{what}: {err}");
            assert!(err.contains("loadBalancerControlPlane[0]"), "{what}: {err}");
            assert!(err.contains("test"), "{what}: {err}");
        }
    }

    #[test]
    fn a_config_map_without_the_key_is_an_error_not_the_default() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("other".into(), "x".into())])),
            ..ConfigMap::default()
        };
        let maps = BTreeMap::from([("lb".to_string(), cm)]);
        let err = pick(ID, &maps, "ns", ("lb", "k.cfg"), "default")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("ConfigMap ns/lb has no key \"k.cfg\""),
            "{err}"
        );
        let none = BTreeMap::new();
        let built_in = pick(ID, &none, "ns", ("lb", "k.cfg"), "default").unwrap();
        assert_eq!(built_in.text, "default");
    }

    fn config_map(text: String) -> BTreeMap<String, ConfigMap> {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("k.cfg".into(), text)])),
            ..ConfigMap::default()
        };
        BTreeMap::from([("lb".to_string(), cm)])
    }

    /// The limits are inclusive: a template of exactly `MAX_TEMPLATE` bytes is taken, one
    /// byte more is refused with its size and the limit.
    #[test]
    fn a_template_may_be_exactly_as_long_as_the_limit() {
        let at = config_map("x".repeat(MAX_TEMPLATE));
        assert!(pick(ID, &at, "ns", ("lb", "k.cfg"), "default").is_ok());
        let over = config_map("x".repeat(MAX_TEMPLATE + 1));
        let err = pick(ID, &over, "ns", ("lb", "k.cfg"), "default")
            .err()
            .expect("one byte over the limit")
            .to_string();
        assert!(
            err.contains("the template is 65537 bytes, over the 65536-byte limit"),
            "{err}"
        );
    }

    /// In either syntax a configuration of exactly `MAX_OUTPUT` bytes renders; one byte more
    /// is an error that says which limit it passed.
    #[test]
    fn a_configuration_may_be_exactly_as_long_as_the_limit() {
        for syntax in [Syntax::Jinja, Syntax::Go] {
            let render_text = |text: &str| {
                let template = Template { syntax, ..t(text) };
                render(
                    ID,
                    &template,
                    json!({}),
                    GoModel::default,
                    &Renderer::InProcess,
                )
            };
            let at = render_text(&"x".repeat(MAX_OUTPUT)).expect("exactly at the limit");
            assert_eq!(at.len(), MAX_OUTPUT, "{syntax:?}");
            let err = render_text(&"x".repeat(MAX_OUTPUT + 1))
                .expect_err("one byte over")
                .to_string();
            assert!(
                err.contains("passed 1048576 bytes; a load balancer's needs a few KiB"),
                "{syntax:?}: {err}"
            );
        }
    }

    /// Only a user's template goes to the child renderer: a built-in one renders here even
    /// when the renderer named cannot start, a user's does not.
    #[test]
    fn only_a_users_template_is_rendered_in_the_child() {
        let child = Renderer::Child("/nonexistent/sip".into());
        let data = json!({"servers": [{"name": "a"}]});
        let built_in = Template {
            user: false,
            ..t("{{ servers[0].name }}")
        };
        let rendered = render(ID, &built_in, &data, GoModel::default, &child);
        assert_eq!(rendered.expect("rendered in process"), "a");
        let err = render(
            ID,
            &t("{{ servers[0].name }}"),
            &data,
            GoModel::default,
            &child,
        )
        .expect_err("a user's template needs the child")
        .to_string();
        assert!(
            err.contains("starting the template renderer /nonexistent/sip"),
            "{err}"
        );
    }

    /// The Jinja engine writes through a buffer that stops at one byte past the limit: a
    /// template that would write megabytes stops there, with the limit's message; an error of
    /// the template's own, right at the limit, is that error.
    #[test]
    fn a_jinja_render_stops_one_byte_past_the_limit() {
        let mut capped = Capped(Vec::new());
        assert_eq!(capped.write(&[b'x'; MAX_OUTPUT]).unwrap(), MAX_OUTPUT);
        assert_eq!(capped.write(b"yz").unwrap(), 1, "one byte past the limit");
        let refused = capped.write(b"z").expect_err("full");
        assert_eq!(refused.to_string(), too_long());
        assert_eq!(capped.0.len(), MAX_OUTPUT + 1);

        let data = json!({"chunk": "x".repeat(1024)});
        let flood = "{% for i in range(4096) %}{{ chunk }}{% endfor %}";
        let err = engine(Syntax::Jinja, flood, &data, GoModel::default).expect_err("4 MiB");
        assert_eq!(err, too_long());
        let at_the_limit = format!("{}{{{{ nothing }}}}", "x".repeat(MAX_OUTPUT));
        let err = engine(Syntax::Jinja, &at_the_limit, &data, GoModel::default)
            .expect_err("an unknown variable");
        assert!(err.contains("undefined"), "{err}");
    }
}
