//! The `labelSelector` query syntax: a lexer and a recursive-descent parser that follow
//! upstream's grammar token by token, error messages included.

use std::collections::BTreeSet;

use super::{invalid, Operator, Requirement};
use crate::selector::names::{go_quote, label_key_errors};

/// Parses the requirements of a selector string; the error is the message a client sees.
pub(super) fn parse(s: &str) -> Result<Vec<Requirement>, String> {
    Parser { items: lex(s), pos: 0 }.parse()
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
