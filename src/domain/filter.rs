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
//! op       := "=" | "!=" | "<" | "<=" | ">" | ">="
//! string   := '"' (char | '\"' | '\\')* '"'
//! order_by := ("metric." key | "created_at" | "version") (":asc" | ":desc")?
//! ```
//!
//! A clause about something a version does not have (no such metric, tag or config value, or
//! a config value of the other type) is false, whatever the operator. Strings compare only for
//! (in)equality: ordering text would depend on each database's collation.

use crate::domain::VersionStatus;
use crate::domain::cursor;
use crate::domain::time::{self, Timestamp};
use crate::error::Error;

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

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Metric(String),
    Tag(String),
    /// Object member names, outermost first.
    Config(Vec<String>),
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
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
}

/// What the version list is ordered by. Ties, and versions without the metric (listed last
/// in either direction), are ordered newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Metric(String),
    CreatedAt,
    Version,
}

impl OrderBy {
    /// The list's default: newest first.
    pub fn newest_first() -> Self {
        Self {
            key: SortKey::Version,
            descending: true,
        }
    }

    pub fn parse(input: &str) -> Result<Self, Error> {
        let (key, direction) = match input.rsplit_once(':') {
            Some((k, d @ ("asc" | "desc"))) => (k, Some(d)),
            _ => (input, None),
        };
        let key = match key {
            "created_at" => SortKey::CreatedAt,
            "version" => SortKey::Version,
            _ => match key.strip_prefix("metric.") {
                Some(k) if is_metric_key(k) => SortKey::Metric(k.to_owned()),
                _ => {
                    return Err(Error::bad_request(
                        "invalid_order_by",
                        format!(
                            "order_by {input:?}: use metric.<key>, created_at or version, \
                             optionally followed by :asc or :desc"
                        ),
                    )
                    .with_field("order_by"));
                }
            },
        };
        Ok(Self {
            key,
            descending: direction == Some("desc"),
        })
    }

    /// A stable spelling, carried in cursors so that a page of one order cannot continue
    /// another.
    pub fn canonical(&self) -> String {
        let key = match &self.key {
            SortKey::Metric(k) => format!("metric.{k}"),
            SortKey::CreatedAt => "created_at".to_owned(),
            SortKey::Version => "version".to_owned(),
        };
        let dir = if self.descending { "desc" } else { "asc" };
        format!("{key}:{dir}")
    }
}

/// The sort value of the last version on a page.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    /// The version has no such metric (these come last).
    Missing,
    Number(f64),
    Time(Timestamp),
    /// Ordered by version number: the number is the position.
    Version,
}

/// Where the next page starts: after this value, and among equal values after this version
/// (ties are newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    pub value: SortValue,
    pub version: i64,
}

impl OrderBy {
    /// An opaque cursor. Newest-first pages keep the plain version cursor; other orders carry
    /// their own spelling so that a cursor of one order is refused by another.
    pub fn encode_cursor(&self, after: &After) -> String {
        if *self == Self::newest_first() {
            return cursor::encode("v", &after.version.to_string());
        }
        let value = match &after.value {
            SortValue::Missing => "-".to_owned(),
            SortValue::Number(n) => format!("n{n}"),
            SortValue::Time(t) => format!("t{}", time::to_micros(*t)),
            SortValue::Version => String::new(),
        };
        cursor::encode(
            "vs",
            &format!("{}|{value}|{}", self.canonical(), after.version),
        )
    }

    pub fn decode_cursor(&self, raw: &str) -> Result<After, Error> {
        let invalid = || {
            Error::bad_request(
                "invalid_cursor",
                "cursor is not valid for this list and order",
            )
            .with_field("cursor")
        };
        if *self == Self::newest_first() {
            return Ok(After {
                value: SortValue::Version,
                version: cursor::decode_i64("v", raw)?,
            });
        }
        let text = cursor::decode("vs", raw)?;
        let mut parts = text.rsplitn(3, '|');
        let (Some(version), Some(value), Some(order)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if order != self.canonical() {
            return Err(invalid());
        }
        let version: i64 = version.parse().map_err(|_| invalid())?;
        let value = match (&self.key, value) {
            (SortKey::Version, "") => SortValue::Version,
            (SortKey::Metric(_), "-") => SortValue::Missing,
            (SortKey::Metric(_), n) => match n.strip_prefix('n').map(str::parse::<f64>) {
                Some(Ok(n)) if n.is_finite() => SortValue::Number(n),
                _ => return Err(invalid()),
            },
            (SortKey::CreatedAt, t) => match t.strip_prefix('t').map(str::parse::<i64>) {
                Some(Ok(us)) => SortValue::Time(time::from_micros(us)),
                _ => return Err(invalid()),
            },
            _ => return Err(invalid()),
        };
        Ok(After { value, version })
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

fn is_metric_key(k: &str) -> bool {
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

/// Reads the filter a character at a time; positions are character indexes.
struct Lexer {
    chars: Vec<char>,
    at: usize,
}

impl Lexer {
    fn new(input: &str) -> Self {
        Self {
            chars: input.chars().collect(),
            at: 0,
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.chars.len()
    }

    /// A run of characters up to whitespace, an operator or a quote.
    fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, '=' | '!' | '<' | '>' | '"'))
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn op(&mut self) -> Result<Op, Error> {
        let pos = self.at;
        let first = self.peek();
        let second = self.chars.get(self.at + 1).copied();
        let (op, len) = match (first, second) {
            (Some('!'), Some('=')) => (Op::Ne, 2),
            (Some('<'), Some('=')) => (Op::Le, 2),
            (Some('>'), Some('=')) => (Op::Ge, 2),
            (Some('='), _) => (Op::Eq, 1),
            (Some('<'), _) => (Op::Lt, 1),
            (Some('>'), _) => (Op::Gt, 1),
            _ => {
                return Err(error_at(pos, "expected an operator (= != < <= > >=)"));
            }
        };
        self.at += len;
        Ok(op)
    }

    fn string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(error_at(open, "unterminated string")),
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    match self.chars.get(self.at + 1).copied() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => return Err(error_at(self.at, "only \\\" and \\\\ are escapes")),
                    }
                    self.at += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn value(&mut self) -> Result<(usize, Value, bool), Error> {
        let pos = self.at;
        if self.peek() == Some('"') {
            return Ok((pos, Value::Text(self.string()?), true));
        }
        let word = self.word();
        if word.is_empty() {
            return Err(error_at(pos, "expected a value"));
        }
        // Rust also reads "inf" and "NaN"; the grammar's numbers are finite decimals.
        let numeric = word
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        match word.parse::<f64>() {
            Ok(n) if numeric && n.is_finite() => Ok((pos, Value::Number(n), false)),
            _ => Ok((pos, Value::Text(word), false)),
        }
    }
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
    }
    if matches!(value, Value::Text(_)) && !op.is_equality() {
        return Err(error_at(op_pos, "text compares only with = or !="));
    }
    Ok(Clause { field, op, value })
}

fn field(pos: usize, name: &str) -> Result<Field, Error> {
    if name == "status" {
        return Ok(Field::Status);
    }
    let Some((kind, rest)) = name.split_once('.') else {
        return Err(error_at(
            pos,
            format!("unknown field {name:?}: use metric.<key>, tag.<key>, config.<path> or status"),
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
            format!("unknown field {name:?}: use metric.<key>, tag.<key>, config.<path> or status"),
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
    fn order_by() {
        let o = OrderBy::parse("metric.accuracy:desc").unwrap();
        assert_eq!(o.key, SortKey::Metric("accuracy".into()));
        assert!(o.descending);
        let o = OrderBy::parse("created_at:asc").unwrap();
        assert_eq!((o.key, o.descending), (SortKey::CreatedAt, false));
        // Ascending unless said otherwise, as in SQL.
        assert!(!OrderBy::parse("version").unwrap().descending);
        // A metric key may itself contain ':'.
        let o = OrderBy::parse("metric.eval:top1:desc").unwrap();
        assert_eq!(o.key, SortKey::Metric("eval:top1".into()));
        assert_eq!(o.canonical(), "metric.eval:top1:desc");
        for bad in ["", "accuracy", "metric.", "created_at:up", "metric.a b"] {
            let e = OrderBy::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_order_by", "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_order() {
        let t = time::from_micros(1_790_000_000_123_456);
        for (order, value) in [
            ("metric.loss:asc", SortValue::Number(-0.125)),
            ("metric.loss:desc", SortValue::Missing),
            ("created_at:desc", SortValue::Time(t)),
            ("version:asc", SortValue::Version),
        ] {
            let o = OrderBy::parse(order).unwrap();
            let after = After { value, version: 7 };
            let c = o.encode_cursor(&after);
            assert_eq!(o.decode_cursor(&c).unwrap(), after, "{order}");
            let other = OrderBy::parse("metric.other:asc").unwrap();
            assert_eq!(
                other.decode_cursor(&c).unwrap_err().code,
                "invalid_cursor",
                "{order}"
            );
            assert!(OrderBy::newest_first().decode_cursor(&c).is_err());
        }
        let newest = OrderBy::newest_first();
        let after = After {
            value: SortValue::Version,
            version: 12,
        };
        assert_eq!(newest.encode_cursor(&after), cursor::encode("v", "12"));
        assert_eq!(
            newest.decode_cursor(&newest.encode_cursor(&after)).unwrap(),
            after
        );
        let o = OrderBy::parse("metric.loss:asc").unwrap();
        for junk in ["", "x", &cursor::encode("vs", "metric.loss:asc|nabc|1")] {
            assert!(o.decode_cursor(junk).is_err(), "{junk}");
        }
    }
}
