//! A version's interface schema, in MLflow's signature model: the inputs it accepts and the
//! outputs it answers (named columns, or tensors with a dtype and a shape), and the params a
//! caller may pass. Set by the client or read from an `MLmodel` file's `signature`; compared
//! between versions, each change classified as compatible with the callers of the older one
//! or breaking them.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Columns or tensors one part (inputs, outputs or params) may list.
pub const MAX_SPECS: usize = 1000;
/// The largest schema, as compact JSON.
pub const MAX_BYTES: usize = 256 << 10;
const MAX_NAME: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    #[serde(default)]
    pub inputs: Vec<Spec>,
    #[serde(default)]
    pub outputs: Vec<Spec>,
    #[serde(default)]
    pub params: Vec<Param>,
}

/// A column (`type`: `double`, `long`, `string`, `array`, …) or a tensor (`type: "tensor"`,
/// with `dtype` and `shape`, -1 for a dimension of any length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i64>>,
    #[serde(default = "yes")]
    pub required: bool,
    /// What else MLflow says of the type (an array's `items`, an object's `properties`, a
    /// map's `values`), compared as a whole.
    #[serde(flatten)]
    pub detail: BTreeMap<String, Value>,
}

fn yes() -> bool {
    true
}

/// A parameter a caller may pass at inference, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub default: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i64>>,
}

/// Keys a spec's `detail` may carry.
const DETAIL_KEYS: [&str; 3] = ["items", "properties", "values"];

impl Schema {
    /// Reads a schema as a client sends it (MLflow's `tensor-spec` form taken too), checked
    /// against the limits; the error names the field at fault.
    pub fn parse(field: &str, value: Value) -> Result<Self, Error> {
        let bad = |detail: String| Error::validation(field, detail);
        if serde_json::to_vec(&value).map_err(Error::internal)?.len() > MAX_BYTES {
            return Err(bad(format!(
                "a schema is at most {MAX_BYTES} bytes as JSON"
            )));
        }
        let Value::Object(mut parts) = value else {
            return Err(bad(
                "a schema is an object of inputs, outputs and params".into()
            ));
        };
        for part in ["inputs", "outputs"] {
            if let Some(Value::Array(specs)) = parts.get_mut(part) {
                for spec in specs.iter_mut() {
                    tensor_spec_inline(spec);
                }
            }
        }
        let schema: Schema = serde_json::from_value(Value::Object(parts))
            .map_err(|e| bad(format!("not a schema: {e}")))?;
        schema.check(field)?;
        Ok(schema)
    }

    fn check(&self, field: &str) -> Result<(), Error> {
        for (part, n) in [
            ("inputs", self.inputs.len()),
            ("outputs", self.outputs.len()),
            ("params", self.params.len()),
        ] {
            if n > MAX_SPECS {
                return Err(Error::validation(
                    format!("{field}.{part}"),
                    format!("at most {MAX_SPECS} {part}"),
                ));
            }
        }
        for (part, specs) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for (i, s) in specs.iter().enumerate() {
                let at = format!("{field}.{part}[{i}]");
                if let Some(k) = s.detail.keys().find(|k| !DETAIL_KEYS.contains(&k.as_str())) {
                    return Err(Error::validation(
                        format!("{at}.{k}"),
                        "a column or tensor has name, type, dtype, shape, required, and for \
                         nested types items, properties or values",
                    ));
                }
                word(&format!("{at}.type"), &s.ty)?;
                if let Some(d) = &s.dtype {
                    word(&format!("{at}.dtype"), d)?;
                }
                if let Some(n) = &s.name {
                    name(&format!("{at}.name"), n)?;
                }
                shape(&format!("{at}.shape"), s.shape.as_deref())?;
            }
        }
        for (i, p) in self.params.iter().enumerate() {
            let at = format!("{field}.params[{i}]");
            name(&format!("{at}.name"), &p.name)?;
            word(&format!("{at}.type"), &p.ty)?;
            shape(&format!("{at}.shape"), p.shape.as_deref())?;
        }
        Ok(())
    }

    /// The `signature` of an `MLmodel` file (YAML whose `inputs`, `outputs` and `params` are
    /// JSON text); `None` when it has none.
    pub fn from_mlmodel(text: &str) -> Result<Option<Self>, Error> {
        let bad = |detail: String| Error::validation("MLmodel", detail);
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
        let Some(signature) = doc.get("signature") else {
            return Ok(None);
        };
        let mut parts = Map::new();
        for part in ["inputs", "outputs", "params"] {
            match signature.get(part) {
                None | Some(serde_yaml::Value::Null) => {}
                Some(serde_yaml::Value::String(json_text)) => {
                    let v: Value = serde_json::from_str(json_text)
                        .map_err(|e| bad(format!("signature.{part} is not JSON: {e}")))?;
                    parts.insert(part.to_owned(), v);
                }
                Some(_) => return Err(bad(format!("signature.{part} is not JSON text"))),
            }
        }
        Self::parse("MLmodel.signature", Value::Object(parts)).map(Some)
    }
}

/// MLflow writes a tensor as `{"type": "tensor", "tensor-spec": {"dtype", "shape"}}`.
fn tensor_spec_inline(spec: &mut Value) {
    let Some(obj) = spec.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(t)) = obj.remove("tensor-spec") {
        for (k, v) in t {
            obj.entry(k).or_insert(v);
        }
    }
}

fn word(field: &str, s: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            field,
            "a type is 1 to 64 letters, digits and _ - .",
        ))
    }
}

fn name(field: &str, s: &str) -> Result<(), Error> {
    if s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            format!("a name is at most {MAX_NAME} bytes without control characters"),
        ));
    }
    Ok(())
}

fn shape(field: &str, s: Option<&[i64]>) -> Result<(), Error> {
    if let Some(dims) = s
        && (dims.len() > 32 || dims.iter().any(|d| *d < -1))
    {
        return Err(Error::validation(
            field,
            "a shape is at most 32 dimensions, each a length or -1 (any)",
        ));
    }
    Ok(())
}

/// One difference between two schemas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `inputs`, `outputs`, `params`, or `schema` (one side has none).
    pub part: &'static str,
    /// The column, tensor or param (`#2` for an unnamed one, by position).
    pub name: String,
    /// `added`, `removed`, `retyped`, `reshaped`, `now_required`, `now_optional`,
    /// `default_changed`.
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
    /// Whether callers of the older version still work with the newer one.
    pub compatible: bool,
    pub detail: String,
}

/// Type changes an input may take without breaking its callers: the newer type accepts every
/// value of the older one.
const WIDER: [(&str, &str); 6] = [
    ("integer", "long"),
    ("float", "double"),
    ("int8", "int16"),
    ("int16", "int32"),
    ("int32", "int64"),
    ("float32", "float64"),
];

fn widens(from: &str, to: &str) -> bool {
    WIDER.contains(&(from, to))
}

fn label(i: usize, name: Option<&String>) -> String {
    name.cloned().unwrap_or_else(|| format!("#{i}"))
}

/// How shapes compare, for a side that takes values (inputs) or gives them (outputs).
fn shape_change(from: Option<&[i64]>, to: Option<&[i64]>, taking: bool) -> Option<(bool, String)> {
    if from == to {
        return None;
    }
    let (Some(a), Some(b)) = (from, to) else {
        // A shape given or dropped: only the dtype was said before, or is now.
        return Some((true, "a shape given or dropped".into()));
    };
    if a.len() != b.len() {
        return Some((false, format!("{} dimensions, now {}", a.len(), b.len())));
    }
    let mut narrower = false;
    let mut wider = false;
    for (x, y) in a.iter().zip(b) {
        match (*x, *y) {
            (x, y) if x == y => {}
            (-1, _) => narrower = true,
            (_, -1) => wider = true,
            _ => {
                narrower = true;
                wider = true;
            }
        }
    }
    // An input that accepts less breaks callers; an output that may give more does.
    let compatible = if taking { !narrower } else { !wider };
    let word = match (narrower, wider) {
        (true, true) => "changed",
        (true, false) => "narrowed",
        _ => "widened",
    };
    Some((compatible, format!("{word} from {a:?} to {b:?}")))
}

fn type_of(s: &Spec) -> Value {
    let mut t = json!({"type": s.ty});
    if let Some(d) = &s.dtype {
        t["dtype"] = json!(d);
    }
    for (k, v) in &s.detail {
        t[k] = v.clone();
    }
    t
}

fn specs(specs: &[Spec]) -> Vec<(String, &Spec)> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| (label(i, s.name.as_ref()), s))
        .collect()
}

fn diff_specs(part: &'static str, old: &[Spec], new: &[Spec], out: &mut Vec<Change>) {
    let taking = part == "inputs";
    let what = if taking { "input" } else { "output" };
    let old = specs(old);
    let new = specs(new);
    for (name, o) in &old {
        let Some((_, n)) = new.iter().find(|(k, _)| k == name) else {
            out.push(Change {
                part,
                name: name.clone(),
                change: "removed",
                from: Some(type_of(o)),
                to: None,
                compatible: false,
                detail: format!("{what} {name:?} is gone"),
            });
            continue;
        };
        let (from, to) = (type_of(o), type_of(n));
        if from != to {
            let same_nesting = o.detail == n.detail;
            let widened = same_nesting
                && match (&o.dtype, &n.dtype) {
                    (Some(a), Some(b)) if o.ty == n.ty => widens(a, b),
                    (None, None) => widens(&o.ty, &n.ty),
                    _ => false,
                };
            out.push(Change {
                part,
                name: name.clone(),
                change: "retyped",
                detail: format!("{what} {name:?} was {from}, now {to}"),
                from: Some(from),
                to: Some(to),
                compatible: taking && widened,
            });
        }
        if let Some((compatible, how)) =
            shape_change(o.shape.as_deref(), n.shape.as_deref(), taking)
        {
            out.push(Change {
                part,
                name: name.clone(),
                change: "reshaped",
                from: o.shape.as_ref().map(|s| json!(s)),
                to: n.shape.as_ref().map(|s| json!(s)),
                compatible,
                detail: format!("{what} {name:?}: shape {how}"),
            });
        }
        if taking && o.required != n.required {
            out.push(Change {
                part,
                name: name.clone(),
                change: if n.required {
                    "now_required"
                } else {
                    "now_optional"
                },
                from: Some(json!(o.required)),
                to: Some(json!(n.required)),
                compatible: !n.required,
                detail: if n.required {
                    format!("input {name:?} was optional and is now required")
                } else {
                    format!("input {name:?} is now optional")
                },
            });
        }
    }
    for (name, n) in &new {
        if old.iter().any(|(k, _)| k == name) {
            continue;
        }
        let compatible = !taking || !n.required;
        out.push(Change {
            part,
            name: name.clone(),
            change: "added",
            from: None,
            to: Some(type_of(n)),
            compatible,
            detail: if !taking {
                format!("a new output {name:?}")
            } else if n.required {
                format!("a new required input {name:?}: callers do not send it")
            } else {
                format!("a new optional input {name:?}")
            },
        });
    }
}

fn diff_params(old: &[Param], new: &[Param], out: &mut Vec<Change>) {
    let change = |name: &str, change, from, to, compatible, detail| Change {
        part: "params",
        name: name.to_owned(),
        change,
        from,
        to,
        compatible,
        detail,
    };
    for o in old {
        let name = &o.name;
        let Some(n) = new.iter().find(|n| n.name == *name) else {
            out.push(change(
                name,
                "removed",
                Some(json!(o.ty)),
                None,
                false,
                format!("param {name:?} is gone: callers that pass it are refused"),
            ));
            continue;
        };
        if o.ty != n.ty {
            out.push(change(
                name,
                "retyped",
                Some(json!(o.ty)),
                Some(json!(n.ty)),
                false,
                format!("param {name:?} was {}, now {}", o.ty, n.ty),
            ));
        }
        if o.shape != n.shape {
            out.push(change(
                name,
                "reshaped",
                o.shape.as_ref().map(|s| json!(s)),
                n.shape.as_ref().map(|s| json!(s)),
                false,
                format!("param {name:?}: shape {:?}, now {:?}", o.shape, n.shape),
            ));
        }
        if o.default != n.default {
            out.push(change(
                name,
                "default_changed",
                Some(o.default.clone()),
                Some(n.default.clone()),
                true,
                format!("param {name:?}: default {}, now {}", o.default, n.default),
            ));
        }
    }
    for n in new.iter().filter(|n| !old.iter().any(|o| o.name == n.name)) {
        out.push(change(
            &n.name,
            "added",
            None,
            Some(json!(n.ty)),
            true,
            format!("a new param {:?} (default {})", n.name, n.default),
        ));
    }
}

/// The changes from `old` to `new`, inputs then outputs then params.
pub fn diff(old: Option<&Schema>, new: Option<&Schema>) -> Vec<Change> {
    let mut out = Vec::new();
    match (old, new) {
        (None, None) => {}
        (None, Some(_)) => out.push(Change {
            part: "schema",
            name: String::new(),
            change: "added",
            from: None,
            to: None,
            compatible: true,
            detail: "a schema is declared where there was none".into(),
        }),
        (Some(_), None) => out.push(Change {
            part: "schema",
            name: String::new(),
            change: "removed",
            from: None,
            to: None,
            compatible: false,
            detail: "no schema is declared: what it accepts cannot be checked".into(),
        }),
        (Some(o), Some(n)) => {
            diff_specs("inputs", &o.inputs, &n.inputs, &mut out);
            diff_specs("outputs", &o.outputs, &n.outputs, &mut out);
            diff_params(&o.params, &n.params, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(v: Value) -> Schema {
        Schema::parse("schema", v).unwrap()
    }

    fn col(name: &str, ty: &str) -> Value {
        json!({"name": name, "type": ty})
    }

    fn changes(old: &Schema, new: &Schema) -> Vec<(String, &'static str, bool)> {
        diff(Some(old), Some(new))
            .into_iter()
            .map(|c| (c.name, c.change, c.compatible))
            .collect()
    }

    #[test]
    fn reads_an_mlmodel_signature() {
        let text = r#"
artifact_path: model
flavors:
  python_function: {loader_module: mlflow.sklearn}
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "x"}]'
  outputs: '[{"type": "long", "required": true}]'
  params: '[{"name": "temperature", "type": "float", "default": 0.5, "shape": null}]'
"#;
        let s = Schema::from_mlmodel(text).unwrap().unwrap();
        assert_eq!(s.inputs[0].name.as_deref(), Some("sepal length (cm)"));
        assert_eq!(s.inputs[1].dtype.as_deref(), Some("float32"));
        assert_eq!(s.inputs[1].shape, Some(vec![-1, 4]));
        assert_eq!(s.outputs[0].ty, "long");
        assert_eq!(s.params[0].default, json!(0.5));
        assert!(
            Schema::from_mlmodel("flavors: {}\n").unwrap().is_none(),
            "no signature"
        );
        assert!(Schema::from_mlmodel("signature: {inputs: '[1'}").is_err());
    }

    #[test]
    fn refuses_what_is_not_a_schema() {
        for bad in [
            json!([]),
            json!({"inputs": [{"name": "a"}]}),
            json!({"inputs": [{"name": "a", "type": "double", "color": 1}]}),
            json!({"inputs": [{"name": "a", "type": "no spaces"}]}),
            json!({"inputs": [{"type": "tensor", "dtype": "float32", "shape": [-2]}]}),
            json!({"outputs": [], "extra": []}),
            json!({"params": [{"name": "p", "type": "float", "default": 1, "x": 1}]}),
        ] {
            assert!(Schema::parse("schema", bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies_input_changes() {
        let old = schema(json!({"inputs": [col("age", "long"), col("city", "string"),
                                           col("score", "float"), col("gone", "double")]}));
        let new = schema(
            json!({"inputs": [col("age", "string"), col("city", "string"),
                                           col("score", "double"),
                                           {"name": "note", "type": "string", "required": false},
                                           col("must", "double")]}),
        );
        assert_eq!(
            changes(&old, &new),
            [
                ("age".into(), "retyped", false),
                ("score".into(), "retyped", true),
                ("gone".into(), "removed", false),
                ("note".into(), "added", true),
                ("must".into(), "added", false),
            ]
        );
        assert!(changes(&old, &old).is_empty());
        // Required ↔ optional.
        let optional =
            schema(json!({"inputs": [{"name": "a", "type": "long", "required": false}]}));
        let required = schema(json!({"inputs": [col("a", "long")]}));
        assert_eq!(
            changes(&optional, &required),
            [("a".into(), "now_required", false)]
        );
        assert_eq!(
            changes(&required, &optional),
            [("a".into(), "now_optional", true)]
        );
    }

    #[test]
    fn shapes_narrow_inputs_and_widen_outputs() {
        let t = |shape: Value| json!({"type": "tensor", "dtype": "float32", "shape": shape});
        let s = |i: Value, o: Value| schema(json!({"inputs": [i], "outputs": [o]}));
        let any = s(t(json!([-1, 4])), t(json!([-1, 2])));
        let fixed = s(t(json!([8, 4])), t(json!([8, 2])));
        // Inputs: fixing a length accepts less (breaking); outputs: giving a fixed length is
        // within what callers took.
        assert_eq!(
            changes(&any, &fixed),
            [
                ("#0".into(), "reshaped", false),
                ("#0".into(), "reshaped", true)
            ]
        );
        assert_eq!(
            changes(&fixed, &any),
            [
                ("#0".into(), "reshaped", true),
                ("#0".into(), "reshaped", false)
            ]
        );
        let rank = s(t(json!([-1, 4, 1])), t(json!([-1, 2])));
        assert_eq!(changes(&any, &rank), [("#0".into(), "reshaped", false)]);
        let wider_dtype = s(
            json!({"type": "tensor", "dtype": "float64", "shape": [-1, 4]}),
            t(json!([-1, 2])),
        );
        assert_eq!(
            changes(&any, &wider_dtype),
            [("#0".into(), "retyped", true)]
        );
        assert_eq!(
            changes(&wider_dtype, &any),
            [("#0".into(), "retyped", false)]
        );
    }

    #[test]
    fn classifies_output_and_param_changes() {
        let old = schema(
            json!({"outputs": [col("label", "long"), col("p", "double")],
            "params": [{"name": "k", "type": "long", "default": 5},
                       {"name": "t", "type": "float", "default": 0.5}]}),
        );
        let new = schema(
            json!({"outputs": [col("label", "string"), col("extra", "double")],
            "params": [{"name": "k", "type": "long", "default": 10},
                       {"name": "top_p", "type": "float", "default": 1.0}]}),
        );
        assert_eq!(
            changes(&old, &new),
            [
                ("label".into(), "retyped", false),
                ("p".into(), "removed", false),
                ("extra".into(), "added", true),
                ("k".into(), "default_changed", true),
                ("t".into(), "removed", false),
                ("top_p".into(), "added", true),
            ]
        );
    }

    #[test]
    fn a_missing_schema() {
        let s = schema(json!({"inputs": [col("a", "long")]}));
        assert!(diff(None, None).is_empty());
        assert!(diff(None, Some(&s))[0].compatible);
        assert!(!diff(Some(&s), None)[0].compatible);
    }
}
