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
