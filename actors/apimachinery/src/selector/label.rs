//! Label selectors: the `labelSelector` query syntax (`a=b,c in (x,y),!d`) and the
//! `metav1.LabelSelector` object form (`matchLabels` / `matchExpressions`).
//!
//! The parser follows upstream's grammar token by token, error messages included, because
//! kubectl shows the server's message unchanged and scripts compare against it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::names::{go_quote, label_key_errors, label_value_errors};
use crate::status::StatusError;

/// How a requirement relates a label's value to its value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The spelling upstream uses for the operator (`selection.Operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One term of a selector: a key, an operator and the values it compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking key and value syntax and the operator's arity.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, StatusError> {
        Self::checked(key.into(), operator, values).map_err(StatusError::bad_request)
    }

    /// Upstream's `NewRequirement`: every problem is reported, aggregated into one message.
    fn checked(key: String, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = label_key_errors(&key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", &go_quote(&key), &key_errs.join("; ")));
        }
        let arity = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(detail) = arity {
            errs.push(invalid("values", &go_string_slice(&values), detail));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid(
                        &format!("values[{i}]"),
                        &go_quote(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(invalid(&format!("values[{i}][{key}]"), &go_quote(v), &value_errs.join("; ")));
            }
        }
        match aggregate(errs) {
            Some(message) => Err(message),
            None => Ok(Requirement { key, operator, values }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether this requirement holds for a label set.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let found = labels.get(&self.key).map(label_text);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => found.is_some_and(|v| self.has_value(&v)),
            // An absent label is "not equal" to anything, as upstream.
            Operator::NotIn | Operator::NotEquals => found.is_none_or(|v| !self.has_value(&v)),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Non-numeric label values never satisfy an inequality.
                let Some(actual) = found.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [bound] = self.values.as_slice() else {
                    return false;
                };
                let Ok(bound) = bound.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        // Values print sorted so equal selectors print the same whatever their input order.
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A label selector: the AND of its requirements, or the selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Matches every label set (the empty selector).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Matches no label set: what a null `metav1.LabelSelector` means.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string syntax of the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let parser = Parser { items: lex(s), pos: 0 };
        let requirements = parser.parse().map_err(StatusError::bad_request)?;
        Ok(LabelSelector::sorted(requirements))
    }

    /// Converts a `metav1.LabelSelector` object: null matches nothing, `{}` everything.
    pub fn from_json(sel: &Value) -> Result<Self, StatusError> {
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => return Err(bad_shape("label selector", "object", other)),
        };
        let empty = Map::new();
        let match_labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => return Err(bad_shape("matchLabels", "object", other)),
        };
        let expressions: &[Value] = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => return Err(bad_shape("matchExpressions", "array", other)),
        };
        if match_labels.is_empty() && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (key, value) in match_labels {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => return Err(bad_shape("matchLabels value", "string", other)),
            };
            requirements.push(Requirement::new(key.clone(), Operator::Equals, vec![value])?);
        }
        for expr in expressions {
            requirements.push(expression(expr)?);
        }
        Ok(LabelSelector::sorted(requirements))
    }

    /// Exact-match selector for a label map, e.g. a Service's or ReplicationController's
    /// `spec.selector`; an empty map selects everything. The map is trusted, not validated.
    pub fn from_set(labels: &Map<String, Value>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![label_text(v).into_owned()],
            })
            .collect();
        LabelSelector::sorted(requirements)
    }

    /// Requirements are kept sorted by key, as upstream does, so printing is deterministic.
    fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything (`nothing()` is not empty).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True only for `nothing()`.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object by its `metadata.labels` (absent labels are an empty set).
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj.pointer("/metadata/labels") {
            Some(Value::Object(labels)) => self.matches(labels),
            _ => self.matches(&Map::new()),
        }
    }

    /// The one value `key` must have, if the selector pins it (`key=v`, `key==v`, `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// One `matchExpressions` entry.
fn expression(expr: &Value) -> Result<Requirement, StatusError> {
    let Value::Object(expr) = expr else {
        return Err(bad_shape("matchExpressions item", "object", expr));
    };
    let key = match expr.get("key") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad_shape("key", "string", other)),
    };
    let operator = match expr.get("operator") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(bad_shape("operator", "string", other)),
    };
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(StatusError::bad_request(format!("{} is not a valid label selector operator", go_quote(other))))
        }
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad_shape("values item", "string", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad_shape("values", "array", other)),
    };
    Requirement::new(key, operator, values)
}

fn bad_shape(what: &str, expected: &str, got: &Value) -> StatusError {
    StatusError::bad_request(format!("invalid {what}: expected {expected}, got {got}"))
}

/// A label's value as text; labels are strings, anything else is compared by its JSON form.
fn label_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// A field error as upstream prints it: `<path>: Invalid value: <value>: <detail>`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// A `[]string` as Go's `%#v` prints it, for messages about value sets.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream's error aggregate: duplicates dropped, one message bare, several bracketed.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    Greater,
    Identifier,
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, Copy)]
struct Lexed<'a> {
    tok: Token,
    lit: &'a str,
}

const END: Lexed<'static> = Lexed { tok: Token::End, lit: "" };

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens, always ending with `End`. Works on bytes: every delimiter
/// is ASCII, so identifiers may hold any other UTF-8 and are judged later by validation.
fn lex(s: &str) -> Vec<Lexed<'_>> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        // Upstream's lexer reads a NUL byte as the end of input.
        if pos >= b.len() || b[pos] == 0 {
            out.push(END);
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            let (tok, len) = match (b[pos], b.get(pos + 1)) {
                (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
                (b'!', Some(b'=')) => (Token::NotEquals, 2),
                (b'=', _) => (Token::Equals, 1),
                (b'!', _) => (Token::Not, 1),
                (b'(', _) => (Token::OpenPar, 1),
                (b')', _) => (Token::ClosedPar, 1),
                (b',', _) => (Token::Comma, 1),
                (b'>', _) => (Token::Greater, 1),
                // The only special byte left is '<'.
                _ => (Token::Less, 1),
            };
            pos += len;
            out.push(Lexed { tok, lit: &s[start..pos] });
        } else {
            while pos < b.len() && b[pos] != 0 && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = match lit {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            out.push(Lexed { tok, lit });
        }
    }
}

/// Where the parser is: `in`/`notin` are operators after a key but plain words elsewhere,
/// so `in in (in)` is a valid selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<Lexed<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn lookahead(&self, ctx: Context) -> (Token, &'a str) {
        let item = self.items.get(self.pos).copied().unwrap_or(END);
        let tok = match item.tok {
            Token::In | Token::NotIn if ctx == Context::Values => Token::Identifier,
            tok => tok,
        };
        (tok, item.lit)
    }

    fn consume(&mut self, ctx: Context) -> (Token, &'a str) {
        let next = self.lookahead(ctx);
        self.pos += 1;
        next
    }

    fn parse(mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::Not => {
                    let r = self.requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (tok, lit) = self.consume(Context::Values);
                    match tok {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, lit) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::Not {
                                return Err(format!("found '{lit}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{lit}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_unary_operator()?;
        if let Some(op) = unary {
            return Requirement::checked(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::checked(key, op, values)
    }

    /// The key, and the operator when it is unary: `!key`, or a bare `key` before `,`/end.
    fn key_and_unary_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let negated = tok == Token::Not;
        if negated {
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = label_key_errors(lit);
        if !errs.is_empty() {
            // Upstream reports this one without a field path, which prints as "<nil>".
            return Err(invalid("<nil>", &go_quote(lit), &errs.join("; ")));
        }
        let unary = if negated {
            Some(Operator::DoesNotExist)
        } else if matches!(self.lookahead(Context::Values).0, Token::End | Token::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((lit.to_string(), unary))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            _ => return Err(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt")),
        })
    }

    /// `( values )`; `()` and empty items mean the empty-string value.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.identifier_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// Comma-separated, possibly empty identifiers up to (not including) `)`; sorted, unique.
    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut set: BTreeSet<&str> = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (next, lit) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => break,
                        _ => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // A comma with nothing before or after it stands for an empty value.
                    if set.is_empty() {
                        set.insert("");
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            set.insert("");
                            break;
                        }
                        Token::Comma => {
                            set.insert("");
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
        Ok(set.into_iter().map(str::to_string).collect())
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing means the empty string.
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(Context::Values).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Context::Values) {
            (Token::Identifier, lit) => Ok(vec![lit.to_string()]),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn parse_err(s: &str) -> String {
        let e = LabelSelector::parse(s).expect_err(s);
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "BadRequest");
        e.message
    }

    #[test]
    fn parses_every_operator() {
        let sel = LabelSelector::parse("a=1,b==2,c!=3,d in (x,y),e notin (z),f,!g,h>1,i<9").unwrap();
        let ops: Vec<(&str, Operator)> = sel.requirements().iter().map(|r| (r.key(), r.operator())).collect();
        assert_eq!(
            ops,
            vec![
                ("a", Operator::Equals),
                ("b", Operator::DoubleEquals),
                ("c", Operator::NotEquals),
                ("d", Operator::In),
                ("e", Operator::NotIn),
                ("f", Operator::Exists),
                ("g", Operator::DoesNotExist),
                ("h", Operator::GreaterThan),
                ("i", Operator::LessThan),
            ]
        );
        assert_eq!(sel.requirements()[3].values(), ["x", "y"]);
    }

    #[test]
    fn display_is_canonical_and_sorted_by_key() {
        let sel = LabelSelector::parse(" z in ( b , a , b ) , !y,x, w != 1 , v==2,u>3 ").unwrap();
        assert_eq!(sel.to_string(), "u>3,v==2,w!=1,x,!y,z in (a,b)");
        assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn whitespace_and_empty_input() {
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("  \t ").unwrap().is_empty());
        let sel = LabelSelector::parse("\tenv\n=\rprod ").unwrap();
        assert_eq!(sel.to_string(), "env=prod");
    }

    #[test]
    fn empty_values() {
        assert_eq!(LabelSelector::parse("a=").unwrap().requirements()[0].values(), [""]);
        assert_eq!(LabelSelector::parse("a=,b").unwrap().to_string(), "a=,b");
        assert_eq!(LabelSelector::parse("a in ()").unwrap().requirements()[0].values(), [""]);
        assert_eq!(LabelSelector::parse("a in (x,,y)").unwrap().requirements()[0].values(), ["", "x", "y"]);
        assert_eq!(LabelSelector::parse("a in (,x)").unwrap().requirements()[0].values(), ["", "x"]);
        assert_eq!(LabelSelector::parse("a in (x,)").unwrap().requirements()[0].values(), ["", "x"]);
    }

    #[test]
    fn keywords_are_plain_words_outside_operator_position() {
        let sel = LabelSelector::parse("in in (in,notin),notin=in").unwrap();
        assert_eq!(sel.to_string(), "in in (in,notin),notin=in");
    }

    #[test]
    fn prefixed_keys() {
        let sel = LabelSelector::parse("app.kubernetes.io/name=web").unwrap();
        assert_eq!(sel.requirements()[0].key(), "app.kubernetes.io/name");
    }

    #[test]
    fn syntax_errors_read_like_upstream() {
        assert_eq!(parse_err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(parse_err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(parse_err(",a"), "found ',', expected: !, identifier, or 'end of string'");
        assert_eq!(parse_err("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(parse_err("a in x"), "unable to parse requirement: found 'x' expected: '('");
        assert_eq!(parse_err("a in (x"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(parse_err("a in (="), "unable to parse requirement: found '=', expected: ',', ')' or identifier");
        assert_eq!(parse_err("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
        assert_eq!(parse_err("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(parse_err("!a=b"), "found '=', expected: ',' or 'end of string'");
    }

    #[test]
    fn validation_errors_read_like_upstream() {
        assert!(parse_err("a$b=c").starts_with(
            "unable to parse requirement: <nil>: Invalid value: \"a$b\": name part must consist of alphanumeric characters"
        ));
        assert!(parse_err("a=b$").starts_with(
            "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be an empty string"
        ));
        assert_eq!(
            parse_err("a>b"),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        let both = parse_err("a in (x$,y$)");
        assert!(both.starts_with("unable to parse requirement: [values[0][a]: "), "{both}");
        assert!(both.contains(", values[1][a]: Invalid value: \"y$\""), "{both}");
    }

    #[test]
    fn matching() {
        let l = labels(json!({"app": "web", "tier": "front", "replicas": "3"}));
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (db,web)",
            "app notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "replicas>2",
            "replicas<4",
            "app=web,tier",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s} should match");
        }
        let no = [
            "app=db",
            "app!=web",
            "missing=x",
            "app in (db)",
            "app notin (web)",
            "missing in (x)",
            "missing",
            "!app",
            "replicas>3",
            "replicas<3",
            "app>1",
            "missing>1",
            "app=web,!tier",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s} should not match");
        }
    }

    #[test]
    fn empty_value_matches_only_present_empty_label() {
        let sel = LabelSelector::parse("a=").unwrap();
        assert!(sel.matches(&labels(json!({"a": ""}))));
        assert!(!sel.matches(&labels(json!({}))));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let sel = LabelSelector::parse("app=web").unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::parse("!app").unwrap().matches_object(&json!({})));
    }

    #[test]
    fn from_json_match_labels_and_expressions() {
        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []}
            ]
        }))
        .unwrap();
        assert_eq!(sel.to_string(), "app=web,env notin (dev),!legacy,team,tier in (back,front)");
        assert!(sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x", "legacy": "1"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "mid", "team": "x"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x", "env": "dev"}))));
    }

    #[test]
    fn from_json_empty_matches_everything_null_matches_nothing() {
        let empty = LabelSelector::from_json(&json!({})).unwrap();
        assert!(empty.is_empty());
        assert!(empty.matches(&Map::new()));
        let also_empty = LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
        assert!(also_empty.is_empty());

        let none = LabelSelector::from_json(&Value::Null).unwrap();
        assert_eq!(none, LabelSelector::nothing());
        assert!(none.matches_nothing());
        assert!(!none.is_empty());
        assert!(!none.matches(&labels(json!({"a": "b"}))));
        assert!(!none.matches(&Map::new()));
        assert_eq!(none.to_string(), "");
    }

    #[test]
    fn from_json_errors() {
        let bad_op =
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]})).unwrap_err();
        assert_eq!(bad_op.message, "\"Equals\" is not a valid label selector operator");
        let no_values =
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).unwrap_err();
        assert_eq!(
            no_values.message,
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let extra = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert_eq!(
            extra.message,
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        let bad_key = LabelSelector::from_json(&json!({"matchLabels": {"a b": "c"}})).unwrap_err();
        assert!(bad_key.message.starts_with("key: Invalid value: \"a b\": name part"), "{}", bad_key.message);
        assert_eq!(bad_key.code, 400);
        assert!(LabelSelector::from_json(&json!("app=web")).is_err());
    }

    #[test]
    fn from_set_and_exact_match() {
        let sel = LabelSelector::from_set(&labels(json!({"b": "2", "a": "1"})));
        assert_eq!(sel.to_string(), "a=1,b=2");
        assert_eq!(sel.requires_exact_match("b"), Some("2"));
        assert_eq!(sel.requires_exact_match("c"), None);
        assert!(LabelSelector::from_set(&Map::new()).is_empty());
        let set = LabelSelector::parse("a in (x),b in (x,y),c!=z").unwrap();
        assert_eq!(set.requires_exact_match("a"), Some("x"));
        assert_eq!(set.requires_exact_match("b"), None);
        assert_eq!(set.requires_exact_match("c"), None);
    }

    #[test]
    fn requirement_new_checks_arity() {
        assert!(Requirement::new("a", Operator::Equals, vec![]).is_err());
        assert!(Requirement::new("a", Operator::GreaterThan, vec!["-5".into()]).is_err());
        assert!(Requirement::new("a", Operator::LessThan, vec!["5".into()]).is_ok());
        let r = Requirement::new("a", Operator::NotIn, vec!["y".into(), "x".into()]).unwrap();
        assert_eq!(r.to_string(), "a notin (x,y)");
    }
}
