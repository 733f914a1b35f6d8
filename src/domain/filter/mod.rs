//! The version list's `filter` and `order_by` parameters, parsed into an AST. The stores turn
//! the AST into SQL with every value bound as a parameter; nothing of the input is ever
//! spliced into SQL text.
//!
//! ```text
//! filter   := clause ("and" clause)*
//! clause   := "metric." key op number          the metric's last value (at its highest step)
//!           | "tag." key ("=" | "!=") string
//!           | "config." path op (number | string)   path: object members joined by "."
//!           | "status" ("=" | "!=") status      the status bare or quoted
//!           | "input.dataset.name" ("=" | "!=") string     among its dataset inputs (or not)
//!           | "input.dataset.digest" ("=" | "!=") string
//!           | "input.version" ("=" | "!=") '"' model ":" number '"'   among its version inputs
//! op       := "=" | "!=" | "<" | "<=" | ">" | ">="
//! string   := '"' (char | '\"' | '\\')* '"'
//! order_by := ("metric." key | "created_at" | "version") (":asc" | ":desc")?
//! ```
//!
//! A clause about something a version does not have (no such metric, tag or config value, or
//! a config value of the other type) is false, whatever the operator. Strings compare only for
//! (in)equality: ordering text would depend on each database's collation.

use crate::domain::VersionStatus;
use crate::error::Error;

mod lexer;

pub use super::order::{After, OrderBy, SortKey, SortValue};
use lexer::Lexer;

/// More clauses than this is not a query a dashboard or pipeline sends.
pub const MAX_CLAUSES: usize = 20;
/// Characters; a longer filter is refused at this position.
pub const MAX_LEN: usize = 4096;
const MAX_CONFIG_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

/// A clause written back in the grammar (strings quoted and escaped as JSON strings are).
impl std::fmt::Display for Clause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Field::Metric(k) => write!(f, "metric.{k}")?,
            Field::Tag(k) => write!(f, "tag.{k}")?,
            Field::Config(path) => write!(f, "config.{}", path.join("."))?,
            Field::Status => f.write_str("status")?,
            Field::Id => f.write_str("id")?,
            Field::Input(i) => f.write_str(i.name())?,
        }
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::In => "IN",
        };
        match &self.value {
            Value::Number(n) => write!(f, " {op} {n}"),
            Value::Text(t) => write!(f, " {op} {}", serde_json::Value::String(t.clone())),
            Value::List(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|t| serde_json::Value::String(t.clone()).to_string())
                    .collect();
                write!(f, " {op} ({})", items.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Metric(String),
    Tag(String),
    /// Object member names, outermost first.
    Config(Vec<String>),
    Status,
    /// The version's id (MLflow's `attributes.run_id`; not in the native grammar).
    Id,
    /// One of its inputs: `=` is "has such an input", `!=` "has none".
    Input(InputField),
}

/// What an `input.` clause looks for among a version's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputField {
    DatasetName,
    DatasetDigest,
    /// A `version` input, written `"model:number"`.
    Version,
}

impl InputField {
    pub fn name(self) -> &'static str {
        match self {
            Self::DatasetName => "input.dataset.name",
            Self::DatasetDigest => "input.dataset.digest",
            Self::Version => "input.version",
        }
    }
}

/// `"model:3"` as a model name and a version number.
pub fn version_ref(s: &str) -> Option<(&str, i64)> {
    let (model, number) = s.rsplit_once(':')?;
    let number: i64 = number.parse().ok().filter(|n| *n >= 1)?;
    crate::domain::ModelName::parse("filter", model).ok()?;
    Some((model, number))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// SQL LIKE on text, case-sensitive (MLflow's run search; not in the native grammar).
    Like,
    /// SQL LIKE on text, ignoring case (MLflow's run search).
    ILike,
    /// One of a list (MLflow's `attributes.run_id IN (…)`).
    In,
}

impl Op {
    pub fn as_sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "like",
            Op::ILike => "ilike",
            Op::In => "in",
        }
    }

    fn is_equality(self) -> bool {
        matches!(self, Op::Eq | Op::Ne)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
    /// Strings, for `IN` (MLflow's run search only).
    List(Vec<String>),
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

pub(crate) fn is_metric_key(k: &str) -> bool {
    (1..=250).contains(&k.len()) && k.bytes().all(is_key_byte)
}

fn is_tag_key(k: &str) -> bool {
    (1..=128).contains(&k.len()) && k.bytes().all(is_key_byte)
}

/// A parse error at a character position (0-based) of the filter.
fn error_at(position: usize, message: impl std::fmt::Display) -> Error {
    Error::bad_request(
        "invalid_filter",
        format!("filter: {message} at position {position}"),
    )
    .with_field("filter")
    .with_position(position)
}

impl Filter {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut lx = Lexer::new(input);
        if lx.chars.len() > MAX_LEN {
            return Err(error_at(
                MAX_LEN,
                format!("is longer than {MAX_LEN} characters"),
            ));
        }
        let mut clauses = Vec::new();
        lx.skip_space();
        if lx.at_end() {
            return Err(error_at(0, "is empty"));
        }
        loop {
            if clauses.len() == MAX_CLAUSES {
                return Err(error_at(
                    lx.at,
                    format!("has more than {MAX_CLAUSES} clauses"),
                ));
            }
            clauses.push(clause(&mut lx)?);
            lx.skip_space();
            if lx.at_end() {
                break;
            }
            let pos = lx.at;
            let word = lx.word();
            if !word.eq_ignore_ascii_case("and") {
                return Err(error_at(pos, "expected \"and\" or the end of the filter"));
            }
            lx.skip_space();
            if lx.at_end() {
                return Err(error_at(lx.at, "expected a clause after \"and\""));
            }
        }
        Ok(Self { clauses })
    }
}

fn clause(lx: &mut Lexer) -> Result<Clause, Error> {
    let field_pos = lx.at;
    let name = lx.word();
    let field = field(field_pos, &name)?;
    lx.skip_space();
    let op_pos = lx.at;
    let op = lx.op()?;
    lx.skip_space();
    let (value_pos, value, quoted) = lx.value()?;
    match (&field, &value) {
        (Field::Metric(_), Value::Number(_)) => {}
        (Field::Metric(_), Value::Text(_)) => {
            return Err(error_at(value_pos, "a metric compares with a number"));
        }
        (Field::Tag(_), Value::Text(_)) if quoted => {}
        (Field::Tag(_), _) => {
            return Err(error_at(value_pos, "a tag compares with a quoted string"));
        }
        (Field::Config(_), Value::Number(_)) => {}
        (Field::Config(_), Value::Text(_)) if quoted => {}
        (Field::Config(_), Value::Text(_)) => {
            return Err(error_at(
                value_pos,
                "a config value compares with a number or a quoted string",
            ));
        }
        (Field::Status, Value::Text(s)) => {
            if VersionStatus::parse("filter", s).is_err() {
                return Err(error_at(
                    value_pos,
                    "status is one of pending, ready, failed, archived",
                ));
            }
        }
        (Field::Status, Value::Number(_)) => {
            return Err(error_at(
                value_pos,
                "status is one of pending, ready, failed, archived",
            ));
        }
        (Field::Input(InputField::Version), Value::Text(s))
            if quoted && version_ref(s).is_none() =>
        {
            return Err(error_at(
                value_pos,
                "input.version compares with \"model:number\"",
            ));
        }
        (Field::Input(_), Value::Text(_)) if quoted => {}
        (Field::Input(_), _) => {
            return Err(error_at(
                value_pos,
                "an input compares with a quoted string",
            ));
        }
        // Neither is written by the native grammar's parser.
        (Field::Id, _) | (_, Value::List(_)) => {
            return Err(error_at(field_pos, "not a field of this grammar"));
        }
    }
    if matches!(value, Value::Text(_)) && !op.is_equality() {
        return Err(error_at(op_pos, "text compares only with = or !="));
    }
    Ok(Clause { field, op, value })
}

fn field(pos: usize, name: &str) -> Result<Field, Error> {
    match name {
        "status" => return Ok(Field::Status),
        "input.dataset.name" => return Ok(Field::Input(InputField::DatasetName)),
        "input.dataset.digest" => return Ok(Field::Input(InputField::DatasetDigest)),
        "input.version" => return Ok(Field::Input(InputField::Version)),
        _ => {}
    }
    let Some((kind, rest)) = name.split_once('.') else {
        return Err(error_at(
            pos,
            format!(
                "unknown field {name:?}: use metric.<key>, tag.<key>, config.<path>, status, \
                 input.dataset.name, input.dataset.digest or input.version"
            ),
        ));
    };
    match kind {
        "metric" if is_metric_key(rest) => Ok(Field::Metric(rest.to_owned())),
        "metric" => Err(error_at(
            pos,
            "a metric key is 1-250 of A-Z a-z 0-9 _ . : / -",
        )),
        "tag" if is_tag_key(rest) => Ok(Field::Tag(rest.to_owned())),
        "tag" => Err(error_at(pos, "a tag key is 1-128 of A-Z a-z 0-9 _ . : / -")),
        "config" => {
            let path: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if path.iter().any(|s| s.is_empty() || s.contains('\\'))
                || path.len() > MAX_CONFIG_DEPTH
            {
                return Err(error_at(
                    pos,
                    format!(
                        "a config path is up to {MAX_CONFIG_DEPTH} non-empty member names joined by \".\""
                    ),
                ));
            }
            Ok(Field::Config(path))
        }
        _ => Err(error_at(
            pos,
            format!(
                "unknown field {name:?}: use metric.<key>, tag.<key>, config.<path>, status, \
                 input.dataset.name, input.dataset.digest or input.version"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<Clause> {
        Filter::parse(s).unwrap().clauses
    }

    fn err(s: &str) -> (usize, String) {
        let e = Filter::parse(s).unwrap_err();
        assert_eq!(e.code, "invalid_filter");
        assert_eq!(e.field.as_deref(), Some("filter"));
        (e.position.unwrap(), e.detail)
    }

    #[test]
    fn parses_each_kind_of_clause() {
        assert_eq!(
            ok(
                r#"metric.val/loss < 0.25 and tag.dataset = "v2" AND config.optimizer.lr >= 1e-3 and config.arch = "resnet \"50\"" and status = ready"#
            ),
            vec![
                Clause {
                    field: Field::Metric("val/loss".into()),
                    op: Op::Lt,
                    value: Value::Number(0.25)
                },
                Clause {
                    field: Field::Tag("dataset".into()),
                    op: Op::Eq,
                    value: Value::Text("v2".into())
                },
                Clause {
                    field: Field::Config(vec!["optimizer".into(), "lr".into()]),
                    op: Op::Ge,
                    value: Value::Number(0.001)
                },
                Clause {
                    field: Field::Config(vec!["arch".into()]),
                    op: Op::Eq,
                    value: Value::Text("resnet \"50\"".into())
                },
                Clause {
                    field: Field::Status,
                    op: Op::Eq,
                    value: Value::Text("ready".into())
                },
            ]
        );
    }

    #[test]
    fn operators_and_spacing() {
        for (s, op) in [
            ("metric.a=1", Op::Eq),
            ("metric.a != 1", Op::Ne),
            ("metric.a<1", Op::Lt),
            ("metric.a <=1", Op::Le),
            ("metric.a> 1", Op::Gt),
            ("  metric.a   >=   -1.5e2  ", Op::Ge),
        ] {
            assert_eq!(ok(s)[0].op, op, "{s}");
        }
        assert_eq!(ok("metric.a >= -1.5e2")[0].value, Value::Number(-150.0));
        assert_eq!(ok(r#"status != "failed""#)[0].op, Op::Ne);
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(err("").0, 0);
        assert_eq!(err("   ").0, 0);
        // Unknown field at its start.
        assert_eq!(err("metric.a = 1 and accuracy > 2").0, 17);
        // Missing operator.
        assert_eq!(err("metric.a 1").0, 9);
        // Missing value.
        assert_eq!(err("metric.a =").0, 10);
        // Text where a number belongs.
        assert_eq!(err(r#"metric.a = "x""#).0, 11);
        assert_eq!(err("metric.a = inf").0, 11);
        assert_eq!(err("metric.a = NaN").0, 11);
        // Ordering text.
        assert_eq!(err(r#"tag.k < "x""#).0, 6);
        // Unquoted tag value.
        assert_eq!(err("tag.k = x").0, 8);
        // Junk between clauses.
        assert_eq!(err("metric.a = 1 or metric.b = 2").0, 13);
        // Dangling and.
        assert_eq!(err("metric.a = 1 and ").0, 17);
        // Unterminated string, at its opening quote.
        assert_eq!(err(r#"tag.k = "abc"#).0, 8);
        // Bad status.
        assert_eq!(err("status = done").0, 9);
        // Bad keys and paths.
        assert_eq!(err("metric. = 1").0, 0);
        assert_eq!(err("config.a..b = 1").0, 0);
        assert_eq!(err("tag.a b = \"x\"").0, 6);
        // Positions count characters, not bytes.
        assert_eq!(err(r#"tag.k = "é" or"#).0, 12);
        let (_, detail) = err("metric.a 1");
        assert!(detail.contains("position 9"), "{detail}");
    }

    #[test]
    fn too_long() {
        let s = format!("metric.a > {}", "1".repeat(MAX_LEN));
        assert_eq!(err(&s).0, MAX_LEN);
    }

    #[test]
    fn too_many_clauses() {
        let s = vec!["metric.a > 0"; MAX_CLAUSES + 1].join(" and ");
        err(&s);
        let s = vec!["metric.a > 0"; MAX_CLAUSES].join(" and ");
        assert_eq!(ok(&s).len(), MAX_CLAUSES);
    }

    #[test]
    fn input_clauses() {
        assert_eq!(
            ok(r#"input.dataset.name = "iris" and input.version != "base-model:12""#),
            vec![
                Clause {
                    field: Field::Input(InputField::DatasetName),
                    op: Op::Eq,
                    value: Value::Text("iris".into())
                },
                Clause {
                    field: Field::Input(InputField::Version),
                    op: Op::Ne,
                    value: Value::Text("base-model:12".into())
                },
            ]
        );
        assert_eq!(
            ok(r#"input.dataset.digest = "sha256:ab""#)[0].to_string(),
            r#"input.dataset.digest = "sha256:ab""#
        );
        assert_eq!(version_ref("a.b-c:3"), Some(("a.b-c", 3)));
        assert_eq!(version_ref("a:b:3"), None, "a model name has no colon");
        for bad in [
            r#"input.version = "base""#,
            r#"input.version = "base:x""#,
            r#"input.version = ":3""#,
            "input.dataset.name = iris",
            r#"input.dataset.digest >= "a""#,
            r#"input.dataset = "a""#,
        ] {
            err(bad);
        }
    }
}
