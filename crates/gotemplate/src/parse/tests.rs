use super::*;
use crate::lex::pieces;

fn tree(text: &str) -> Result<Vec<Node>, Error> {
    parse(pieces(text)?)
}

#[test]
fn declarations_ranges_and_groups_parse() {
    let nodes =
        tree("{{ $s := .Servers }}{{ range $i, $p := .Ports }}{{ (index $s 0).IP }}{{ end }}")
            .unwrap();
    assert!(matches!(&nodes[0], Node::Output { vars, .. } if vars == &["$s"]));
    let Node::Block {
        kind, vars, body, ..
    } = &nodes[1]
    else {
        panic!("{nodes:?}")
    };
    assert_eq!(
        (*kind, vars.as_slice()),
        (BlockKind::Range, &["$i".to_string(), "$p".to_string()][..])
    );
    let Node::Output { pipeline, .. } = &body[0] else {
        panic!("{body:?}")
    };
    assert!(matches!(&pipeline[0].operands[0], Operand::Group(_, f) if f == &["IP"]));
}

#[test]
fn what_go_has_and_sip_does_not_is_named() {
    let cases = [
        ("{{ define \"x\" }}{{ end }}", "{{define}}"),
        ("{{ template \"x\" . }}", "{{template}}"),
        ("{{ range .A }}{{ break }}{{ end }}", "{{break}}"),
        ("{{ if .A }}x", "if without {{end}}"),
        ("{{ end }}", "{{end}} without a block"),
        ("{{ 'x' }}", "character constants"),
        ("{{ 1.5 }}", "the number 1.5"),
    ];
    for (text, needle) in cases {
        let err = tree(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

/// The nesting limit counts open parentheses, not groups seen: exactly `MAX_DEPTH` nested
/// parse, one more is refused, and any number side by side parse.
#[test]
fn parentheses_nest_up_to_the_limit() {
    let nested = |n: usize| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n));
    assert!(tree(&nested(MAX_DEPTH)).is_ok());
    let err = tree(&nested(MAX_DEPTH + 1)).unwrap_err().to_string();
    assert!(
        err.contains("parentheses nested more than 100 deep"),
        "{err}"
    );
    let side_by_side = format!("{{{{ print {} }}}}", "(1) ".repeat(3 * MAX_DEPTH));
    assert!(tree(&side_by_side).is_ok());
}

/// Blocks count as nested only while open: any number side by side parse.
#[test]
fn blocks_side_by_side_are_not_nested() {
    let text = "{{ if 1 }}x{{ end }}".repeat(3 * MAX_DEPTH);
    assert_eq!(tree(&text).unwrap().len(), 3 * MAX_DEPTH);
}
