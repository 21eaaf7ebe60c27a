//! Schema fragments that derive cannot express: admission rules on maps and on the
//! label selector, written so each rejection tells the user what to change.

use schemars::{Schema, SchemaGenerator, json_schema};

use super::sipcluster::NodeSet;

/// `spec.nodes`: a map keyed by role. OpenAPI cannot constrain map keys, so CEL does.
pub fn node_sets(generator: &mut SchemaGenerator) -> Schema {
    let node_set = generator.subschema_for::<NodeSet>();
    json_schema!({
        "type": "object",
        "description": "Hosts wanted per role. Keys: ControlPlane, Worker.",
        "maxProperties": 2,
        "additionalProperties": node_set,
        "x-kubernetes-validations": [{
            "rule": "self.all(role, role == 'ControlPlane' || role == 'Worker')",
            "message": "unknown node role: spec.nodes accepts only the keys ControlPlane and Worker",
        }],
    })
}

/// `metav1.LabelSelector` with its rules checked at admission rather than at first use:
/// operators restricted to the four the API defines, and `values` present exactly when the
/// operator needs them.
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Selects candidate hosts by their labels (metav1.LabelSelector).",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 63},
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        // A qualified label key: a DNS-subdomain prefix, '/', a 63-character name.
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {
                            "type": "array",
                            "maxItems": 256,
                            "items": {"type": "string", "maxLength": 63},
                        },
                    },
                    "x-kubernetes-validations": [
                        {
                            "rule": "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
                            "messageExpression": "'matchExpressions with operator ' + self.operator + ' on key ' + self.key + ' needs a non-empty values list'",
                        },
                        {
                            "rule": "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
                            "messageExpression": "'matchExpressions with operator ' + self.operator + ' on key ' + self.key + ' must not list values: remove them'",
                        },
                    ],
                },
            },
        },
    })
}

/// `status.conditions` as the API conventions want them: a map keyed by `type`.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let condition =
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    json_schema!({
        "type": "array",
        "items": condition,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Adds `field` to an object schema's `required` list and drops the default schemars derived
/// for it: a field read with a serde default (so a stored object from before the schema
/// tightened still reads) stays required at admission, and the API server never fills it in.
fn require(schema: &mut Schema, field: &str) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(property) = object
        .get_mut("properties")
        .and_then(|p| p.get_mut(field))
        .and_then(|p| p.as_object_mut())
    {
        property.remove("default");
    }
    let required = object
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut()
        && !list.iter().any(|f| f == field)
    {
        list.push(field.into());
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

pub fn require_node_interface_id(schema: &mut Schema) {
    require(schema, "nodeInterfaceId");
}

pub fn require_node_port_range(schema: &mut Schema) {
    require(schema, "nodePortRange");
}

pub fn require_node_ssh_private_keys(schema: &mut Schema) {
    require(schema, "nodeSSHPrivateKeys");
}
