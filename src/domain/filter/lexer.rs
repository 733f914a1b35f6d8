//! The filter's tokens: names, operators, numbers and quoted strings, each with its position.

use super::*;

/// Reads the filter a character at a time; positions are character indexes.
pub(super) struct Lexer {
    pub(super) chars: Vec<char>,
    pub(super) at: usize,
}

impl Lexer {
    pub(super) fn new(input: &str) -> Self {
        Self {
            chars: input.chars().collect(),
            at: 0,
        }
    }

    pub(super) fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.at >= self.chars.len()
    }

    /// A run of characters up to whitespace, an operator or a quote.
    pub(super) fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, '=' | '!' | '<' | '>' | '"'))
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    pub(super) fn op(&mut self) -> Result<Op, Error> {
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

    pub(super) fn string(&mut self) -> Result<String, Error> {
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

    pub(super) fn value(&mut self) -> Result<(usize, Value, bool), Error> {
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
