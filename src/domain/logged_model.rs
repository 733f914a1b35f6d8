//! MLflow 3's logged models, as modelreg keeps them: a model's files and facts as a run (or a
//! script without one) produced them, apart from any registered version. The rules here are
//! pure: a logged model's lifecycle (pending, then ready or failed, never back), which changes
//! it takes in each state (files only while pending; a param is set once), and the search
//! filter MLflow's client sends, read into conditions the store turns into SQL.

use crate::error::{Error, Result};

/// A logged model's status: `pending` while its files are uploaded, then `ready` (or `failed`
/// when the upload did), never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedStatus {
    Pending,
    Ready,
    Failed,
}

impl LoggedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedStatus::Pending => "pending",
            LoggedStatus::Ready => "ready",
            LoggedStatus::Failed => "failed",
        }
    }

    pub fn from_stored(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(LoggedStatus::Pending),
            "ready" => Ok(LoggedStatus::Ready),
            "failed" => Ok(LoggedStatus::Failed),
            other => Err(Error::internal(format!(
                "unknown logged model status {other:?}"
            ))),
        }
    }

    /// MLflow's name of the status.
    pub fn mlflow(self) -> &'static str {
        match self {
            LoggedStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedStatus::Ready => "LOGGED_MODEL_READY",
            LoggedStatus::Failed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// The status MLflow names (its enum's name, or its number as the protobuf JSON may send).
    pub fn from_mlflow(s: &str) -> Result<Self> {
        match s {
            "LOGGED_MODEL_PENDING" | "1" => Ok(LoggedStatus::Pending),
            "LOGGED_MODEL_READY" | "2" => Ok(LoggedStatus::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Ok(LoggedStatus::Failed),
            other => Err(Error::validation(
                "status",
                format!(
                    "unknown logged model status {other:?} (LOGGED_MODEL_READY or \
                     LOGGED_MODEL_UPLOAD_FAILED)"
                ),
            )),
        }
    }
}

/// Whether finalizing a logged model in `current` to `to` changes it: a pending model becomes
/// ready or failed; finalizing to the status it has is a no-op (a retried call); anything else
/// is refused (a ready model's files are final; a failed upload does not become ready).
pub fn finalize(id: &str, current: LoggedStatus, to: LoggedStatus) -> Result<bool> {
    match (current, to) {
        (_, LoggedStatus::Pending) => Err(Error::validation(
            "status",
            "a logged model is finalized as LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
        )),
        (c, t) if c == t => Ok(false),
        (LoggedStatus::Pending, _) => Ok(true),
        (c, t) => Err(Error::conflict(
            "logged_model_final",
            format!(
                "logged model {id} is {}: it cannot become {}",
                c.mlflow(),
                t.mlflow()
            ),
        )),
    }
}

/// A file may be added only while the model is pending.
pub fn check_files_open(id: &str, status: LoggedStatus) -> Result<()> {
    match status {
        LoggedStatus::Pending => Ok(()),
        s => Err(Error::conflict(
            "logged_model_final",
            format!(
                "logged model {id} is {}: its files are final; log a new model instead",
                s.mlflow()
            ),
        )),
    }
}

/// A param is set once: the same value again is a no-op, a different one is refused (as
/// MLflow's server refuses changing a param).
pub fn check_param(key: &str, held: Option<&str>, new: &str) -> Result<bool> {
    match held {
        None => Ok(true),
        Some(v) if v == new => Ok(false),
        Some(v) => Err(Error::validation(
            "params",
            format!("param {key:?} is {v:?}: a logged model's params cannot be changed to {new:?}"),
        )),
    }
}

/// What a search condition or order looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Name,
    Status,
    ModelType,
    SourceRunId,
    CreatedAt,
    UpdatedAt,
    Tag(String),
    Param(String),
    Metric(String),
}

impl Subject {
    /// `name`, `attributes.status`, `tags.k`, `params.k`, `metrics.k` (keys may be quoted in
    /// backticks or double quotes).
    pub fn parse(field: &str) -> Result<Self> {
        let field = field.trim();
        let (kind, key) = match field.split_once('.') {
            Some((k, rest))
                if matches!(
                    k.to_ascii_lowercase().as_str(),
                    "attributes"
                        | "attribute"
                        | "attr"
                        | "tags"
                        | "tag"
                        | "params"
                        | "param"
                        | "metrics"
                        | "metric"
                ) =>
            {
                (k.to_ascii_lowercase(), rest)
            }
            _ => ("attributes".to_owned(), field),
        };
        let key = key.trim_matches(|c| c == '`' || c == '"');
        if key.is_empty() {
            return Err(bad(format!("{field:?} names no key")));
        }
        Ok(match kind.as_str() {
            "tags" | "tag" => Subject::Tag(key.to_owned()),
            "params" | "param" => Subject::Param(key.to_owned()),
            "metrics" | "metric" => Subject::Metric(key.to_owned()),
            _ => match key {
                "name" => Subject::Name,
                "status" => Subject::Status,
                "model_type" => Subject::ModelType,
                "source_run_id" => Subject::SourceRunId,
                "creation_timestamp" | "creation_time" | "creation_timestamp_ms" => {
                    Subject::CreatedAt
                }
                "last_updated_timestamp" | "last_updated_timestamp_ms" => Subject::UpdatedAt,
                other => {
                    return Err(bad(format!(
                        "logged models are not searched by {other:?} (name, status, \
                         model_type, source_run_id, creation_timestamp, \
                         last_updated_timestamp, tags.*, params.*, metrics.*)"
                    )));
                }
            },
        })
    }

    fn numeric(&self) -> bool {
        matches!(
            self,
            Subject::Metric(_) | Subject::CreatedAt | Subject::UpdatedAt
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// SQL LIKE, case-sensitive.
    Like,
    /// SQL LIKE, ignoring case.
    ILike,
}

impl Cmp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "=" | "==" => Cmp::Eq,
            "!=" | "<>" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "LIKE" => Cmp::Like,
            "ILIKE" => Cmp::ILike,
            _ => return None,
        })
    }

    pub fn as_sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Like => "like",
            Cmp::ILike => "ilike",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(String),
    Number(f64),
}

/// One `<field> <op> <value>` of a search filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub subject: Subject,
    pub cmp: Cmp,
    pub operand: Operand,
}

fn bad(detail: impl Into<String>) -> Error {
    Error::validation("filter", detail)
}

/// Reads one clause (the filter split on `AND` already): a field, an operator (symbols, or
/// `LIKE`/`ILIKE`), and a quoted string or a number. Numbers go with metrics and times, text
/// with the rest; a status is MLflow's name for it (`READY`, `LOGGED_MODEL_READY`, …) and is
/// compared by equality only; LIKE applies to text.
pub fn condition(raw: &str) -> Result<Condition> {
    let raw = raw.trim();
    // The field ends at whitespace or an operator character outside backticks/double quotes.
    let mut quote = None;
    let mut end = raw.len();
    for (i, c) in raw.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None if c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>') => {
                end = i;
                break;
            }
            None => {}
        }
    }
    let (field, rest) = raw.split_at(end);
    let rest = rest.trim_start();
    let op_len = if rest.starts_with(['=', '!', '<', '>']) {
        rest.chars()
            .take_while(|c| matches!(c, '=' | '!' | '<' | '>'))
            .count()
    } else {
        rest.find(char::is_whitespace).unwrap_or(rest.len())
    };
    let (op, value) = rest.split_at(op_len);
    let cmp = Cmp::parse(op).ok_or_else(|| {
        bad(format!(
            "cannot read the clause {raw:?}: expected <field> <op> <value>"
        ))
    })?;
    let subject = Subject::parse(field)?;
    let value = value.trim();
    let quoted = value
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| value.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
    let operand = if subject.numeric() {
        if matches!(cmp, Cmp::Like | Cmp::ILike) {
            return Err(bad(format!("{raw:?}: LIKE compares text")));
        }
        let n: f64 = value
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| bad(format!("{raw:?}: compares with a number")))?;
        Operand::Number(n)
    } else {
        let text = quoted.ok_or_else(|| bad(format!("{raw:?}: the value must be quoted")))?;
        if matches!(cmp, Cmp::Lt | Cmp::Le | Cmp::Gt | Cmp::Ge) {
            return Err(bad(format!(
                "{raw:?}: text compares with =, !=, LIKE or ILIKE"
            )));
        }
        if subject == Subject::Status {
            if matches!(cmp, Cmp::Like | Cmp::ILike) {
                return Err(bad(format!("{raw:?}: a status compares with = or !=")));
            }
            let status = match text {
                "READY" | "LOGGED_MODEL_READY" => LoggedStatus::Ready,
                "PENDING" | "LOGGED_MODEL_PENDING" => LoggedStatus::Pending,
                "FAILED" | "UPLOAD_FAILED" | "LOGGED_MODEL_UPLOAD_FAILED" => LoggedStatus::Failed,
                other => return Err(bad(format!("unknown logged model status {other:?}"))),
            };
            Operand::Text(status.as_str().to_owned())
        } else {
            Operand::Text(text.to_owned())
        }
    };
    Ok(Condition {
        subject,
        cmp,
        operand,
    })
}

/// One key of a search's order: a field, its direction, and for a metric the dataset whose
/// values count.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordering {
    pub subject: Subject,
    pub ascending: bool,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

impl Ordering {
    pub fn parse(
        field: &str,
        ascending: bool,
        dataset_name: Option<String>,
        dataset_digest: Option<String>,
    ) -> Result<Self> {
        let subject = Subject::parse(field).map_err(|e| Error::validation("order_by", e.detail))?;
        if matches!(subject, Subject::Tag(_)) {
            return Err(Error::validation(
                "order_by",
                "logged models are ordered by an attribute, a param or a metric, not a tag",
            ));
        }
        if dataset_name.is_some() && !matches!(subject, Subject::Metric(_)) {
            return Err(Error::validation(
                "order_by",
                "dataset_name applies to ordering by a metric",
            ));
        }
        if dataset_digest.is_some() && dataset_name.is_none() {
            return Err(Error::validation(
                "order_by",
                "dataset_digest applies with dataset_name",
            ));
        }
        Ok(Ordering {
            subject,
            ascending,
            dataset_name,
            dataset_digest,
        })
    }
}

/// A LIKE pattern as a case-sensitive GLOB pattern (SQLite's LIKE ignores ASCII case):
/// `%` is `*`, `_` is `?`, and GLOB's own special characters match themselves.
pub fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_goes_one_way() {
        use LoggedStatus::*;
        assert!(finalize("m", Pending, Ready).unwrap());
        assert!(finalize("m", Pending, Failed).unwrap());
        assert!(!finalize("m", Ready, Ready).unwrap(), "a retried finalize");
        assert_eq!(
            finalize("m", Ready, Failed).unwrap_err().code,
            "logged_model_final"
        );
        assert_eq!(
            finalize("m", Failed, Ready).unwrap_err().code,
            "logged_model_final"
        );
        assert!(finalize("m", Pending, Pending).is_err());
        assert!(check_files_open("m", Pending).is_ok());
        assert!(check_files_open("m", Ready).is_err());
        assert!(check_files_open("m", Failed).is_err());
        for s in [Pending, Ready, Failed] {
            assert_eq!(LoggedStatus::from_stored(s.as_str()).unwrap(), s);
            assert_eq!(LoggedStatus::from_mlflow(s.mlflow()).unwrap(), s);
        }
    }

    #[test]
    fn a_param_is_set_once() {
        assert!(check_param("lr", None, "0.1").unwrap());
        assert!(!check_param("lr", Some("0.1"), "0.1").unwrap());
        assert!(check_param("lr", Some("0.1"), "0.2").is_err());
    }

    #[test]
    fn filters_read_as_mlflow_writes_them() {
        let c = condition("name = 'model'").unwrap();
        assert_eq!(
            (c.subject, c.cmp, c.operand),
            (Subject::Name, Cmp::Eq, Operand::Text("model".into()))
        );
        let c = condition("metrics.`val acc`>=0.9").unwrap();
        assert_eq!(
            (c.subject, c.cmp, c.operand),
            (
                Subject::Metric("val acc".into()),
                Cmp::Ge,
                Operand::Number(0.9)
            )
        );
        let c = condition("tags.flavor LIKE 'sk%'").unwrap();
        assert_eq!(
            (c.subject, c.cmp),
            (Subject::Tag("flavor".into()), Cmp::Like)
        );
        let c = condition("attributes.status = 'READY'").unwrap();
        assert_eq!(c.operand, Operand::Text("ready".into()));
        assert_eq!(
            condition("params.alpha != \"0.5\"").unwrap().subject,
            Subject::Param("alpha".into())
        );
        assert_eq!(
            condition("creation_timestamp > 1700000000000")
                .unwrap()
                .subject,
            Subject::CreatedAt
        );
        for wrong in [
            "name",
            "name = model",
            "metrics.acc > 'high'",
            "metrics.acc LIKE '%'",
            "name > 'a'",
            "status LIKE 'R%'",
            "status = 'DONE'",
            "colour = 'red'",
            "name ~ 'x'",
            "tags. = 'x'",
        ] {
            assert_eq!(
                condition(wrong).unwrap_err().code,
                "validation_failed",
                "{wrong}"
            );
        }
    }

    #[test]
    fn orders_name_a_field_and_maybe_a_dataset() {
        let o = Ordering::parse("metrics.acc", false, Some("eval".into()), None).unwrap();
        assert_eq!(o.subject, Subject::Metric("acc".into()));
        assert!(Ordering::parse("name", true, Some("eval".into()), None).is_err());
        assert!(Ordering::parse("metrics.acc", true, None, Some("d".into())).is_err());
        assert!(Ordering::parse("tags.x", true, None, None).is_err());
        assert_eq!(
            Ordering::parse("creation_timestamp", true, None, None)
                .unwrap()
                .subject,
            Subject::CreatedAt
        );
    }

    #[test]
    fn like_patterns_become_case_sensitive_globs() {
        assert_eq!(like_to_glob("sk%_v*?[x"), "sk*?v[*][?][[]x");
    }
}
