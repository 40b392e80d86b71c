//! Klaviyo's `filter` query language (notes §5): a tokenizer, a recursive-descent parser,
//! a check against the operation's `x-klaviyo-filters`, and an evaluator.
//!
//! Grammar (whitespace between tokens is ignored):
//! ```text
//! filter  := expr ("," expr)*                 -- top-level commas are an implicit AND
//! expr    := ("and" | "or") "(" expr ("," expr)* ")"
//!          | "not" "(" expr ")"
//!          | operator "(" field ["," value] ")"
//! value   := "'…'" | "\"…\"" | number | true | false | null | datetime | "[" value,* "]"
//! ```
//! Strings must be quoted and datetimes must not be (a Klaviyo staff answer, ruby#3).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::time;

/// A literal in a filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// An unquoted ISO 8601 datetime, as unix seconds.
    DateTime(i64),
    List(Vec<Literal>),
}

/// A parsed filter expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `op(field[, value])`.
    Cond {
        op: String,
        field: String,
        value: Option<Literal>,
    },
}

/// Why a filter is invalid (becomes the `detail` after "Invalid filter provided: ").
#[derive(Debug, PartialEq)]
pub(crate) struct FilterError(pub String);

type Result<T> = std::result::Result<T, FilterError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(FilterError(msg.into()))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Quoted(String),
    /// An unquoted word: an operator, field, number, boolean, null or datetime.
    Bare(String),
}

fn tokenize(input: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    _ => Tok::Comma,
                });
            }
            '\'' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return err("unterminated string literal"),
                        Some('\\') => match chars.next() {
                            Some(e) => s.push(e),
                            None => return err("unterminated string literal"),
                        },
                        Some(q) if q == c => break,
                        Some(other) => s.push(other),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()[],'\"".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Tok::Bare(s));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<()> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => err(format!("expected {what}, found {}", describe(&t))),
            None => err(format!("expected {what}, found the end of the filter")),
        }
    }

    fn top(&mut self) -> Result<Expr> {
        let mut exprs = vec![self.expr()?];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            exprs.push(self.expr()?);
        }
        if let Some(t) = self.peek() {
            return err(format!("unexpected {} after the expression", describe(t)));
        }
        Ok(if exprs.len() == 1 {
            exprs.remove(0)
        } else {
            Expr::And(exprs)
        })
    }

    fn expr(&mut self) -> Result<Expr> {
        let name = match self.next() {
            Some(Tok::Bare(name)) if is_word(&name) => name,
            Some(t) => return err(format!("expected an operator, found {}", describe(&t))),
            None => return err("expected an operator, found the end of the filter"),
        };
        self.expect(Tok::LParen, &format!("\"(\" after \"{name}\""))?;
        match name.as_str() {
            "and" | "or" => {
                let mut args = vec![self.expr()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    args.push(self.expr()?);
                }
                self.expect(Tok::RParen, "\")\"")?;
                Ok(if name == "and" {
                    Expr::And(args)
                } else {
                    Expr::Or(args)
                })
            }
            "not" => {
                let inner = self.expr()?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(Expr::Not(Box::new(inner)))
            }
            _ => {
                let field = match self.next() {
                    Some(Tok::Bare(f)) if is_word(&f) => f,
                    Some(t) => {
                        return err(format!(
                            "expected a field name in \"{name}\", found {}",
                            describe(&t)
                        ));
                    }
                    None => return err("expected a field name, found the end of the filter"),
                };
                let value = if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    Some(self.value()?)
                } else {
                    None
                };
                self.expect(Tok::RParen, "\")\"")?;
                Ok(Expr::Cond {
                    op: name,
                    field,
                    value,
                })
            }
        }
    }

    fn value(&mut self) -> Result<Literal> {
        match self.next() {
            Some(Tok::Quoted(s)) => Ok(Literal::Str(s)),
            Some(Tok::Bare(word)) => bare_literal(&word),
            Some(Tok::LBracket) => {
                let mut items = Vec::new();
                if self.peek() == Some(&Tok::RBracket) {
                    self.pos += 1;
                    return Ok(Literal::List(items));
                }
                loop {
                    match self.value()? {
                        Literal::List(_) => return err("lists cannot be nested"),
                        v => items.push(v),
                    }
                    match self.next() {
                        Some(Tok::Comma) => {}
                        Some(Tok::RBracket) => return Ok(Literal::List(items)),
                        Some(t) => {
                            return err(format!("expected \",\" or \"]\", found {}", describe(&t)));
                        }
                        None => return err("unterminated list"),
                    }
                }
            }
            Some(t) => err(format!("expected a value, found {}", describe(&t))),
            None => err("expected a value, found the end of the filter"),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::RBracket => "\"]\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Quoted(s) => format!("the string '{s}'"),
        Tok::Bare(s) => format!("\"{s}\""),
    }
}

/// Operator and field names: letters, digits, `_`, `-`, `.`, `$`.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.$".contains(c))
}

fn bare_literal(word: &str) -> Result<Literal> {
    match word {
        "true" => return Ok(Literal::Bool(true)),
        "false" => return Ok(Literal::Bool(false)),
        "null" => return Ok(Literal::Null),
        _ => {}
    }
    if let Ok(n) = word.parse::<f64>()
        && n.is_finite()
    {
        return Ok(Literal::Num(n));
    }
    if let Some(t) = time::parse_iso(word) {
        return Ok(Literal::DateTime(t));
    }
    err(format!(
        "the value {word} must be quoted (strings are written 'value' or \"value\")"
    ))
}

/// Parse a filter expression.
pub(crate) fn parse(input: &str) -> Result<Expr> {
    if input.trim().is_empty() {
        return err("the filter is empty");
    }
    Parser {
        toks: tokenize(input)?,
        pos: 0,
    }
    .top()
}

/// Check the expression against `x-klaviyo-filters` (field → operators by arity, value type).
pub(crate) fn check(expr: &Expr, allowed: &Map<String, Value>) -> Result<()> {
    match expr {
        Expr::And(list) | Expr::Or(list) => list.iter().try_for_each(|e| check(e, allowed)),
        Expr::Not(inner) => check(inner, allowed),
        Expr::Cond { op, field, value } => {
            let Some(spec) = allowed.get(field) else {
                return err(format!("filtering on \"{field}\" is not supported"));
            };
            let ops = |arity: &str| -> Vec<&str> {
                spec["operators"][arity]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            };
            let known_op = ["none", "single", "list"]
                .iter()
                .any(|a| ops(a).contains(&op.as_str()));
            if !known_op {
                return err(format!(
                    "operator \"{op}\" is not supported for \"{field}\""
                ));
            }
            let arity_ok = match value {
                None => ops("none").contains(&op.as_str()),
                Some(Literal::List(_)) => ops("list").contains(&op.as_str()),
                // A single value where only the list form is declared (e.g. `equals(name,"x")`
                // on get_lists) is taken as a one-element list.
                Some(_) => {
                    ops("single").contains(&op.as_str()) || ops("list").contains(&op.as_str())
                }
            };
            if !arity_ok {
                let got = match value {
                    None => "no value",
                    Some(Literal::List(_)) => "a list",
                    Some(_) => "a single value",
                };
                return err(format!("\"{op}\" on \"{field}\" does not take {got}"));
            }
            let items: Vec<&Literal> = match value {
                None => vec![],
                Some(Literal::List(items)) => items.iter().collect(),
                Some(v) => vec![v],
            };
            items
                .into_iter()
                .try_for_each(|v| check_type(field, &spec["value"], v))
        }
    }
}

fn check_type(field: &str, spec: &Value, v: &Literal) -> Result<()> {
    let is_datetime = spec["format"] == "date-time";
    match (spec["type"].as_str(), v) {
        (Some("string"), Literal::DateTime(_)) if is_datetime => Ok(()),
        (Some("string"), Literal::Str(_)) if is_datetime => err(format!(
            "datetime values for \"{field}\" must not be quoted (e.g. 2024-01-01T00:00:00Z)"
        )),
        (Some("string"), _) if is_datetime => {
            err(format!("\"{field}\" takes an unquoted ISO 8601 datetime"))
        }
        (Some("string"), Literal::Str(s)) => match spec["enum"].as_array() {
            Some(e) if !e.iter().any(|x| x.as_str() == Some(s)) => {
                err(format!("'{s}' is not a valid value for \"{field}\""))
            }
            _ => Ok(()),
        },
        (Some("string"), _) => err(format!("\"{field}\" takes a quoted string")),
        (Some("boolean"), Literal::Bool(_)) => Ok(()),
        (Some("boolean"), _) => err(format!("\"{field}\" takes true or false")),
        // `timestamp` is a number; an unquoted datetime is accepted too.
        (Some("number" | "integer"), Literal::Num(_) | Literal::DateTime(_)) => Ok(()),
        (Some("number" | "integer"), _) => err(format!("\"{field}\" takes a number")),
        _ => Ok(()),
    }
}

/// A resource's value for a filter or sort field.
#[derive(Clone, Debug)]
pub(crate) enum FieldVal {
    Str(String),
    Num(f64),
    Bool(bool),
    /// Unix seconds.
    Time(i64),
    List(Vec<String>),
    Null,
}

impl FieldVal {
    /// From an optional string.
    pub fn opt_str(s: Option<&str>) -> FieldVal {
        s.map_or(FieldVal::Null, |s| FieldVal::Str(s.to_string()))
    }

    /// From an ISO 8601 string attribute (e.g. a seeded `created_at`).
    pub fn from_json_time(v: Option<&Value>) -> FieldVal {
        v.and_then(Value::as_str)
            .and_then(time::parse_iso)
            .map_or(FieldVal::Null, FieldVal::Time)
    }

    /// From a JSON attribute value.
    pub fn from_json(v: Option<&Value>) -> FieldVal {
        match v {
            Some(Value::String(s)) => FieldVal::Str(s.clone()),
            Some(Value::Bool(b)) => FieldVal::Bool(*b),
            Some(Value::Number(n)) => n.as_f64().map_or(FieldVal::Null, FieldVal::Num),
            Some(Value::Array(a)) => FieldVal::List(
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
            ),
            _ => FieldVal::Null,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            FieldVal::Num(n) => Some(*n),
            FieldVal::Time(t) => Some(*t as f64),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            FieldVal::Null => 0,
            FieldVal::Bool(_) => 1,
            FieldVal::Num(_) | FieldVal::Time(_) => 2,
            FieldVal::Str(_) => 3,
            FieldVal::List(_) => 4,
        }
    }

    /// Total order for `sort`: nulls first, then booleans, numbers/times, strings.
    pub fn sort_cmp(&self, other: &FieldVal) -> Ordering {
        match (self, other) {
            (FieldVal::Bool(a), FieldVal::Bool(b)) => a.cmp(b),
            (FieldVal::Str(a), FieldVal::Str(b)) => a.cmp(b),
            (FieldVal::List(a), FieldVal::List(b)) => a.cmp(b),
            (a, b) => match (a.number(), b.number()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => a.rank().cmp(&b.rank()),
            },
        }
    }
}

fn lit_number(l: &Literal) -> Option<f64> {
    match l {
        Literal::Num(n) => Some(*n),
        Literal::DateTime(t) => Some(*t as f64),
        _ => None,
    }
}

fn equals(f: &FieldVal, l: &Literal) -> bool {
    match (f, l) {
        (_, Literal::List(items)) => items.iter().any(|i| equals(f, i)),
        (FieldVal::Str(a), Literal::Str(b)) => a == b,
        (FieldVal::Bool(a), Literal::Bool(b)) => a == b,
        (FieldVal::Null, Literal::Null) => true,
        (FieldVal::List(a), Literal::Str(b)) => a.contains(b),
        (f, l) => match (f.number(), lit_number(l)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn text_op(f: &FieldVal, l: &Literal, test: fn(&str, &str) -> bool) -> bool {
    match (f, l) {
        (FieldVal::Str(a), Literal::Str(b)) => test(&a.to_lowercase(), &b.to_lowercase()),
        (FieldVal::List(a), Literal::Str(b)) => a.iter().any(|x| test(x, b)),
        _ => false,
    }
}

fn compare(f: &FieldVal, l: &Literal) -> Option<Ordering> {
    match (f, l) {
        (FieldVal::Str(a), Literal::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => f.number()?.partial_cmp(&lit_number(l)?),
    }
}

/// Does a resource (given by its field getter) satisfy the expression?
pub(crate) fn eval(expr: &Expr, get: &dyn Fn(&str) -> FieldVal) -> bool {
    match expr {
        Expr::And(list) => list.iter().all(|e| eval(e, get)),
        Expr::Or(list) => list.iter().any(|e| eval(e, get)),
        Expr::Not(inner) => !eval(inner, get),
        Expr::Cond { op, field, value } => {
            let f = get(field);
            let Some(v) = value else {
                // `has(field)`: the relationship or attribute is set.
                return !matches!(f, FieldVal::Null);
            };
            let as_list = |v: &Literal| match v {
                Literal::List(items) => items.clone(),
                other => vec![other.clone()],
            };
            match op.as_str() {
                "equals" | "any" => equals(&f, v),
                "contains" => text_op(&f, v, |a, b| a.contains(b)),
                "starts-with" => text_op(&f, v, |a, b| a.starts_with(b)),
                "ends-with" => text_op(&f, v, |a, b| a.ends_with(b)),
                "contains-any" => as_list(v).iter().any(|i| equals(&f, i)),
                "contains-all" => as_list(v).iter().all(|i| equals(&f, i)),
                "greater-than" => compare(&f, v) == Some(Ordering::Greater),
                "greater-or-equal" => {
                    matches!(compare(&f, v), Some(Ordering::Greater | Ordering::Equal))
                }
                "less-than" => compare(&f, v) == Some(Ordering::Less),
                "less-or-equal" => {
                    matches!(compare(&f, v), Some(Ordering::Less | Ordering::Equal))
                }
                _ => false,
            }
        }
    }
}

/// The value of a top-level (possibly `and`-nested) `equals(field, value)` condition.
pub(crate) fn find_equals<'a>(expr: &'a Expr, field: &str) -> Option<&'a Literal> {
    match expr {
        Expr::And(list) => list.iter().find_map(|e| find_equals(e, field)),
        Expr::Cond {
            op,
            field: f,
            value: Some(v),
        } if op == "equals" && f == field => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events_filters() -> Map<String, Value> {
        json!({"metric_id": {"operators": {"single": ["equals"], "list": ["equals"]}, "value": {"type": "string"}}, "profile_id": {"operators": {"single": ["equals"]}, "value": {"type": "string"}}, "profile": {"operators": {"none": ["has"]}}, "datetime": {"operators": {"single": ["greater-or-equal", "greater-than", "less-or-equal", "less-than"]}, "value": {"type": "string", "format": "date-time"}}, "timestamp": {"operators": {"single": ["greater-than"]}, "value": {"type": "number"}}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn ok(f: &str) -> Expr {
        let e = parse(f).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        check(&e, &events_filters()).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        e
    }

    fn bad(f: &str) -> String {
        match parse(f).and_then(|e| check(&e, &events_filters())) {
            Ok(()) => panic!("{f} should be rejected"),
            Err(FilterError(m)) => m,
        }
    }

    #[test]
    fn parses_and_checks() {
        let e =
            ok("and(equals(metric_id,\"ABC123\"),greater-or-equal(datetime,2024-01-01T00:00:00Z))");
        assert!(matches!(e, Expr::And(ref v) if v.len() == 2));
        let e = ok("equals(profile_id,'01H'), less-than(datetime,2024-08-01T00:00:00-07:00)");
        assert!(matches!(e, Expr::And(ref v) if v.len() == 2));
        ok("has(profile)");
        ok("equals(metric_id,[\"a\",\"b\"])");
        ok("greater-than(timestamp,1700000000)");
        assert!(bad("equals(metric_id,ABC)").contains("must be quoted"));
        assert!(
            bad("greater-than(datetime,'2024-01-01T00:00:00Z')").contains("must not be quoted")
        );
        assert!(bad("equals(email,'a@b.c')").contains("not supported"));
        assert!(bad("contains(metric_id,'a')").contains("not supported"));
        bad("equals(metric_id,'a'");
        bad("equals(metric_id,'a'))");
        bad("equals(metric_id 'a')");
        bad("");
        bad("has(profile,'x')");
    }

    #[test]
    fn evaluates() {
        let e = ok("and(equals(profile_id,'P1'),greater-or-equal(datetime,2024-01-01T00:00:00Z))");
        let get = |t: i64| {
            move |f: &str| match f {
                "profile_id" => FieldVal::Str("P1".into()),
                "datetime" => FieldVal::Time(t),
                _ => FieldVal::Null,
            }
        };
        assert!(eval(&e, &get(1_704_067_200)));
        assert!(!eval(&e, &get(1_704_067_199)));
        assert!(find_equals(&e, "profile_id").is_some());
    }
}
