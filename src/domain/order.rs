//! The version list's `order_by` and the keyset cursor that continues a page in that order.

use super::filter::is_metric_key;
use crate::domain::cursor;
use crate::domain::time::{self, Timestamp};
use crate::error::Error;

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

#[cfg(test)]
mod tests {
    use super::*;

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
