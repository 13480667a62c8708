//! Message selectors: the SQL-92 subset that JMS, ActiveMQ and Artemis users write in a
//! `selector` SUBSCRIBE header, evaluated over a message's STOMP headers.
//!
//! A selector is parsed once ([`Selector::parse`]) into an expression tree and then evaluated per
//! message ([`Selector::matches`]) without allocating.
//!
//! # Grammar
//!
//! ```text
//! selector   := or
//! or         := and { OR and }
//! and        := not { AND not }
//! not        := NOT not | predicate
//! predicate  := sum [ ( = | <> | < | <= | > | >= ) sum
//!                   | [NOT] BETWEEN sum AND sum
//!                   | [NOT] IN ( literal { , literal } )
//!                   | [NOT] LIKE 'pattern' [ ESCAPE 'c' ]
//!                   | IS [NOT] NULL ]
//! sum        := product { ( + | - ) product }
//! product    := unary { ( * | / ) unary }
//! unary      := ( + | - ) unary | primary
//! primary    := identifier | 'string' | number | TRUE | FALSE | ( or )
//! ```
//!
//! * Keywords (`AND OR NOT BETWEEN IN LIKE ESCAPE IS NULL TRUE FALSE`) are case-insensitive;
//!   identifiers are case-sensitive.
//! * An identifier names a header. It is a Java identifier (a letter, `_` or `$`, then letters,
//!   digits, `_` or `$`) that may also contain `.` and `-` when they are followed by a letter, digit,
//!   `_` or `$` (for `-`: by a letter, `_` or `$`), so STOMP names like `content-type` or
//!   `x.trace-id` can be written as they are. The price: subtracting one header from another needs
//!   spaces (`a - b`); `a-1` is still `a - 1`.
//! * String literals are in single quotes, `''` stands for one quote: `'it''s'`.
//! * Numbers: integers (`57`, `57L`, `0x1F`; leading zeros are decimal, not octal) and
//!   approximate numbers (`7.`, `-95.7`, `.5`, `6.02E23`). An integer beyond the 64-bit range
//!   becomes an approximate number.
//! * `LIKE` patterns: `%` matches any run of characters, `_` exactly one character; with
//!   `ESCAPE 'c'`, `c` makes the character after it literal (`'100\%' ESCAPE '\'`).
//! * `IN` lists hold string (or numeric) literals. `NULL` may only appear in `IS [NOT] NULL`.
//! * `!=` is not SQL; it is rejected with a hint to write `<>`.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, the comparisons (`= <> < <= > >=`, `BETWEEN`,
//! `IN`, `LIKE`, `IS NULL`; they do not chain: `a = b = c` is an error), `+ -`, `* /`, unary
//! `+ -`. Parentheses group.
//!
//! # Semantics
//!
//! * Header values are strings. When a header is compared with (or used in arithmetic with) a
//!   number, its value is converted to a number; a value that is not a number makes the
//!   comparison UNKNOWN. Compared with a string, it is compared as a string (code point order for
//!   `<`, `>`, ...). Two headers compare as strings: write `a + 0 > b` to compare numerically.
//!   Compared with `TRUE`/`FALSE`, a header's `true`/`false` (any case) is a boolean; a header used
//!   directly as a condition (`WHERE urgent`) works the same way.
//! * SQL three-valued logic: a missing header is NULL, and any comparison, arithmetic, `LIKE`,
//!   `IN` or `BETWEEN` involving NULL is UNKNOWN. `NOT UNKNOWN` is UNKNOWN; `FALSE AND UNKNOWN` is
//!   FALSE, `TRUE OR UNKNOWN` is TRUE, other mixes are UNKNOWN. `IS [NOT] NULL` is never UNKNOWN.
//!   A message matches only if the selector is TRUE.
//! * Integer arithmetic is 64-bit; on overflow it continues in floating point. Integer division
//!   truncates; an integer division by zero is UNKNOWN.
//!
//! # JMS names
//!
//! The JMS header fields a JMS selector may name map to STOMP headers:
//!
//! | selector name      | STOMP header     | notes                                               |
//! |--------------------|------------------|-----------------------------------------------------|
//! | `JMSPriority`      | `priority`       |                                                     |
//! | `JMSCorrelationID` | `correlation-id` |                                                     |
//! | `JMSType`          | `type`           |                                                     |
//! | `JMSMessageID`     | `message-id`     |                                                     |
//! | `JMSTimestamp`     | `timestamp`      |                                                     |
//! | `JMSExpiration`    | `expires`        |                                                     |
//! | `JMSReplyTo`       | `reply-to`       |                                                     |
//! | `JMSDestination`   | `destination`    |                                                     |
//! | `JMSDeliveryMode`  | `persistent`     | `'PERSISTENT'` if it is `true`, else `'NON_PERSISTENT'` (never NULL) |
//!
//! The header lookup is the caller's: [`Selector::matches`] asks for the STOMP names above, so
//! the caller answers for headers it keeps outside the header list (for example the priority).
//!
//! # Limits
//!
//! Selectors longer than [`MAX_SELECTOR_LEN`] characters and nesting (parentheses, `NOT`, unary
//! signs) deeper than [`MAX_NESTING`] are rejected, so hostile input cannot exhaust the stack;
//! `AND`/`OR` chains and `+`/`*` chains are flat and do not count as nesting.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Longest selector accepted, in characters.
pub const MAX_SELECTOR_LEN: usize = 4096;
/// Deepest nesting accepted: parentheses, `NOT`s and unary signs inside each other.
pub const MAX_NESTING: usize = 64;

/// Why a selector was rejected. Its text is meant for an ERROR frame after `invalid selector: `.
/// Positions are 1-based character positions in the selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector is {length} characters long, more than the limit of {limit}")]
    TooLong { length: usize, limit: usize },
    #[error("at position {position}: nested more than {limit} levels deep")]
    TooDeep { position: usize, limit: usize },
    #[error("at position {position}: expected {expected}, found {found}")]
    Syntax {
        position: usize,
        expected: String,
        found: String,
    },
}

impl SelectorError {
    /// The 1-based character position the error points at, if it has one.
    pub fn position(&self) -> Option<usize> {
        match self {
            SelectorError::TooLong { .. } => None,
            SelectorError::TooDeep { position, .. } | SelectorError::Syntax { position, .. } => {
                Some(*position)
            }
        }
    }
}

/// A parsed selector, ready to be evaluated against any number of messages.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    root: Expr,
}

impl Selector {
    /// Parses `text`. Errors name the position and what was expected there.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let length = text.chars().count();
        if length > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong {
                length,
                limit: MAX_SELECTOR_LEN,
            });
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            depth: 0,
        };
        let root = parser.or()?;
        let end = parser.peek();
        if end.kind != Tok::End {
            // Every `(` was closed inside `or`, so a `)` here has no partner.
            let expected = if end.kind == Tok::RParen {
                "an operator, AND, OR or end of selector (unbalanced ')')"
            } else {
                "an operator, AND, OR or end of selector"
            };
            return Err(syntax(end.pos, expected, describe(&end.kind)));
        }
        check_condition(&root.expr, root.pos)?;
        Ok(Selector {
            text: text.to_string(),
            root: root.expr,
        })
    }

    /// The selector as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message with these headers is selected: true only if the selector evaluates to
    /// TRUE (not FALSE, not UNKNOWN). `header` looks a header up by its STOMP name (see the
    /// module docs for the JMS names); which occurrence of a repeated header counts is the
    /// caller's choice. Never allocates.
    pub fn matches<'h>(&self, header: &dyn Fn(&str) -> Option<&'h str>) -> bool {
        truth(eval(&self.root, header)) == Some(true)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// An unsigned integer literal; its sign is applied by the parser so `-9223372036854775808`
    /// fits.
    Int(u64),
    Float(f64),
    And,
    Or,
    Not,
    Between,
    In,
    Like,
    Escape,
    Is,
    Null,
    True,
    False,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    /// 1-based character position of the token's first character.
    pos: usize,
}

fn syntax(position: usize, expected: &str, found: String) -> SelectorError {
    SelectorError::Syntax {
        position,
        expected: expected.to_string(),
        found,
    }
}

/// A short, bounded rendering of user text for an error message.
fn excerpt(s: &str) -> String {
    const MAX: usize = 32;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {}", excerpt(s)),
        Tok::Str(s) => format!("string '{}'", excerpt(&s.replace('\'', "''"))),
        Tok::Int(n) => format!("number {n}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::And => "AND".into(),
        Tok::Or => "OR".into(),
        Tok::Not => "NOT".into(),
        Tok::Between => "BETWEEN".into(),
        Tok::In => "IN".into(),
        Tok::Like => "LIKE".into(),
        Tok::Escape => "ESCAPE".into(),
        Tok::Is => "IS".into(),
        Tok::Null => "NULL".into(),
        Tok::True => "TRUE".into(),
        Tok::False => "FALSE".into(),
        Tok::Eq => "'='".into(),
        Tok::Ne => "'<>'".into(),
        Tok::Lt => "'<'".into(),
        Tok::Le => "'<='".into(),
        Tok::Gt => "'>'".into(),
        Tok::Ge => "'>='".into(),
        Tok::Plus => "'+'".into(),
        Tok::Minus => "'-'".into(),
        Tok::Star => "'*'".into(),
        Tok::Slash => "'/'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::End => "end of selector".into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn keyword(word: &str) -> Option<Tok> {
    const KEYWORDS: &[(&str, Tok)] = &[
        ("AND", Tok::And),
        ("OR", Tok::Or),
        ("NOT", Tok::Not),
        ("BETWEEN", Tok::Between),
        ("IN", Tok::In),
        ("LIKE", Tok::Like),
        ("ESCAPE", Tok::Escape),
        ("IS", Tok::Is),
        ("NULL", Tok::Null),
        ("TRUE", Tok::True),
        ("FALSE", Tok::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, t)| t.clone())
}

fn lex(text: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = if is_ident_start(c) {
            let start = i;
            i += 1;
            while let Some(c) = at(i) {
                let continues = is_ident_part(c)
                    || (c == '.' && at(i + 1).is_some_and(is_ident_part))
                    || (c == '-' && at(i + 1).is_some_and(is_ident_start));
                if !continues {
                    break;
                }
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            keyword(&word).unwrap_or(Tok::Ident(word))
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let (tok, next) = lex_number(&chars, i)?;
            i = next;
            tok
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match at(i) {
                    None => {
                        return Err(syntax(
                            chars.len() + 1,
                            &format!("a ' closing the string that starts at position {pos}"),
                            "end of selector".into(),
                        ))
                    }
                    Some('\'') if at(i + 1) == Some('\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else {
            let two = at(i + 1);
            let (tok, len) = match (c, two) {
                ('<', Some('>')) => (Tok::Ne, 2),
                ('<', Some('=')) => (Tok::Le, 2),
                ('>', Some('=')) => (Tok::Ge, 2),
                ('<', _) => (Tok::Lt, 1),
                ('>', _) => (Tok::Gt, 1),
                ('=', _) => (Tok::Eq, 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('*', _) => (Tok::Star, 1),
                ('/', _) => (Tok::Slash, 1),
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                (',', _) => (Tok::Comma, 1),
                ('!', Some('=')) => {
                    return Err(syntax(pos, "'<>' (SQL's not-equal)", "'!='".into()));
                }
                ('"', _) => {
                    return Err(syntax(
                        pos,
                        "an expression (strings are in single quotes)",
                        "'\"'".into(),
                    ));
                }
                _ => {
                    return Err(syntax(
                        pos,
                        "an expression or operator",
                        format!("character {c:?}"),
                    ))
                }
            };
            i += len;
            tok
        };
        tokens.push(Token { kind, pos });
    }
    tokens.push(Token {
        kind: Tok::End,
        pos: chars.len() + 1,
    });
    Ok(tokens)
}

/// Lexes the number starting at `chars[start]`; returns it and the index after it.
fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), SelectorError> {
    let at = |i: usize| chars.get(i).copied();
    let pos = start + 1;
    let mut i = start;
    let tok =
        if at(i) == Some('0')
            && matches!(at(i + 1), Some('x' | 'X'))
            && at(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
        {
            i += 2;
            let digits_start = i;
            while at(i).is_some_and(|c| c.is_ascii_hexdigit()) {
                i += 1;
            }
            let digits: String = chars[digits_start..i].iter().collect();
            let n = u64::from_str_radix(&digits, 16).map_err(|_| {
                syntax(
                    pos,
                    "a hexadecimal number of at most 64 bits",
                    format!("0x{}", excerpt(&digits)),
                )
            })?;
            if matches!(at(i), Some('l' | 'L')) {
                i += 1;
            }
            Tok::Int(n)
        } else {
            while at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            let mut float = false;
            if at(i) == Some('.') {
                float = true;
                i += 1;
                while at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
            }
            if matches!(at(i), Some('e' | 'E')) {
                float = true;
                i += 1;
                if matches!(at(i), Some('+' | '-')) {
                    i += 1;
                }
                if !at(i).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(syntax(
                        i + 1,
                        "digits of the exponent",
                        at(i).map_or("end of selector".into(), |c| format!("{c:?}")),
                    ));
                }
                while at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
            }
            let literal: String = chars[start..i].iter().collect();
            if float {
                Tok::Float(
                    literal
                        .parse()
                        .map_err(|_| syntax(pos, "a number", format!("{:?}", excerpt(&literal))))?,
                )
            } else {
                if matches!(at(i), Some('l' | 'L')) {
                    i += 1;
                }
                match literal.parse::<u64>() {
                    Ok(n) => Tok::Int(n),
                    // Beyond u64: an approximate number, like any literal beyond the integer range.
                    Err(_) => Tok::Float(literal.parse().map_err(|_| {
                        syntax(pos, "a number", format!("{:?}", excerpt(&literal)))
                    })?),
                }
            }
        };
    if let Some(c) = at(i) {
        if is_ident_part(c) || c == '.' {
            return Err(syntax(
                i + 1,
                "an operator or space after the number",
                format!("{c:?}"),
            ));
        }
    }
    Ok((tok, i))
}

// ---------------------------------------------------------------------------------------------
// Expression tree

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// No wildcards.
    Exact(Box<str>),
    /// `abc%`
    Prefix(Box<str>),
    /// `%abc`
    Suffix(Box<str>),
    /// `%abc%`
    Contains(Box<str>),
    General(Box<[PatElem]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatElem {
    Char(char),
    /// `_`
    One,
    /// `%`
    Many,
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Lit),
    /// A header by its STOMP name.
    Header(Box<str>),
    /// `JMSDeliveryMode`, derived from the `persistent` header.
    DeliveryMode,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `first op e op e ...`, left to right.
    Arith(Box<Expr>, Vec<(ArithOp, Expr)>),
    Neg(Box<Expr>),
    Between {
        e: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    In {
        e: Box<Expr>,
        list: Vec<Lit>,
        negated: bool,
    },
    Like {
        e: Box<Expr>,
        pattern: Pattern,
        negated: bool,
    },
    IsNull {
        e: Box<Expr>,
        negated: bool,
    },
}

/// What an expression can produce, as far as the parser can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Num,
    Str,
    /// A header or something built only from one: a string that may read as a number or a
    /// boolean.
    Any,
}

fn kind(e: &Expr) -> Kind {
    match e {
        Expr::Lit(Lit::Bool(_)) => Kind::Bool,
        Expr::Lit(Lit::Long(_) | Lit::Double(_)) => Kind::Num,
        Expr::Lit(Lit::Str(_)) | Expr::DeliveryMode => Kind::Str,
        Expr::Header(_) => Kind::Any,
        Expr::Arith(..) | Expr::Neg(_) => Kind::Num,
        Expr::And(_)
        | Expr::Or(_)
        | Expr::Not(_)
        | Expr::Cmp(..)
        | Expr::Between { .. }
        | Expr::In { .. }
        | Expr::Like { .. }
        | Expr::IsNull { .. } => Kind::Bool,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Bool => "a condition",
        Kind::Num => "a numeric expression",
        Kind::Str => "a string",
        Kind::Any => "a header",
    }
}

/// An expression and where it starts.
struct Spanned {
    expr: Expr,
    pos: usize,
}

fn check_condition(e: &Expr, pos: usize) -> Result<(), SelectorError> {
    match kind(e) {
        Kind::Bool | Kind::Any => Ok(()),
        k => Err(syntax(
            pos,
            "a condition (a comparison, LIKE, IN, BETWEEN, IS NULL, TRUE or FALSE)",
            kind_name(k).into(),
        )),
    }
}

fn check_numeric(e: &Expr, pos: usize) -> Result<(), SelectorError> {
    match kind(e) {
        Kind::Num | Kind::Any => Ok(()),
        k => Err(syntax(pos, "a numeric expression", kind_name(k).into())),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    depth: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        // The token list always ends with `End`, and `advance` never passes it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> &'t Token {
        let t = self.peek();
        if t.kind != Tok::End {
            self.at += 1;
        }
        t
    }

    fn eat(&mut self, kind: &Tok) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: &Tok, expected: &str) -> Result<&'t Token, SelectorError> {
        let t = self.peek();
        if &t.kind == kind {
            Ok(self.advance())
        } else {
            Err(syntax(t.pos, expected, describe(&t.kind)))
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(SelectorError::TooDeep {
                position: pos,
                limit: MAX_NESTING,
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn or(&mut self) -> Result<Spanned, SelectorError> {
        let first = self.and()?;
        if self.peek().kind != Tok::Or {
            return Ok(first);
        }
        check_condition(&first.expr, first.pos)?;
        let pos = first.pos;
        let mut all = vec![first.expr];
        while self.eat(&Tok::Or) {
            let next = self.and()?;
            check_condition(&next.expr, next.pos)?;
            all.push(next.expr);
        }
        Ok(Spanned {
            expr: Expr::Or(all),
            pos,
        })
    }

    fn and(&mut self) -> Result<Spanned, SelectorError> {
        let first = self.not()?;
        if self.peek().kind != Tok::And {
            return Ok(first);
        }
        check_condition(&first.expr, first.pos)?;
        let pos = first.pos;
        let mut all = vec![first.expr];
        while self.eat(&Tok::And) {
            let next = self.not()?;
            check_condition(&next.expr, next.pos)?;
            all.push(next.expr);
        }
        Ok(Spanned {
            expr: Expr::And(all),
            pos,
        })
    }

    fn not(&mut self) -> Result<Spanned, SelectorError> {
        let t = self.peek();
        if t.kind != Tok::Not {
            return self.predicate();
        }
        self.advance();
        self.enter(t.pos)?;
        let inner = self.not()?;
        self.leave();
        check_condition(&inner.expr, inner.pos)?;
        Ok(Spanned {
            expr: Expr::Not(Box::new(inner.expr)),
            pos: t.pos,
        })
    }

    fn predicate(&mut self) -> Result<Spanned, SelectorError> {
        let left = self.sum()?;
        let pos = left.pos;
        let t = self.peek();
        let op = match t.kind {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        let e = Box::new(left.expr);
        let expr = if let Some(op) = op {
            self.advance();
            let right = self.sum()?;
            Expr::Cmp(op, e, Box::new(right.expr))
        } else if t.kind == Tok::Is {
            self.advance();
            let negated = self.eat(&Tok::Not);
            let expected = if negated { "NULL" } else { "NULL or NOT NULL" };
            self.expect(&Tok::Null, expected)?;
            Expr::IsNull { e, negated }
        } else if matches!(t.kind, Tok::Not | Tok::Between | Tok::In | Tok::Like) {
            let negated = self.eat(&Tok::Not);
            let t = self.advance();
            match t.kind {
                Tok::Between => {
                    let low = self.sum()?;
                    self.expect(&Tok::And, "AND between the bounds of BETWEEN")?;
                    let high = self.sum()?;
                    Expr::Between {
                        e,
                        low: Box::new(low.expr),
                        high: Box::new(high.expr),
                        negated,
                    }
                }
                Tok::In => {
                    self.expect(&Tok::LParen, "'(' starting the IN list")?;
                    let mut list = Vec::new();
                    loop {
                        list.push(self.in_literal()?);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RParen, "',' or ')' closing the IN list")?;
                    Expr::In { e, list, negated }
                }
                Tok::Like => {
                    let (pattern, pattern_pos) =
                        self.string_literal("a string pattern after LIKE")?;
                    let escape = if self.eat(&Tok::Escape) {
                        let (s, p) = self.string_literal("a string after ESCAPE")?;
                        let mut it = s.chars();
                        match (it.next(), it.next()) {
                            (Some(c), None) => Some(c),
                            _ => {
                                return Err(syntax(
                                    p,
                                    "a single-character ESCAPE string",
                                    describe(&Tok::Str(s.to_string())),
                                ))
                            }
                        }
                    } else {
                        None
                    };
                    let pattern = compile_like(pattern, escape, pattern_pos)?;
                    if matches!(kind(&e), Kind::Num | Kind::Bool) {
                        return Err(syntax(
                            pos,
                            "a string or header before LIKE",
                            kind_name(kind(&e)).into(),
                        ));
                    }
                    Expr::Like {
                        e,
                        pattern,
                        negated,
                    }
                }
                _ => {
                    return Err(syntax(
                        t.pos,
                        "BETWEEN, IN or LIKE after NOT",
                        describe(&t.kind),
                    ))
                }
            }
        } else {
            return Ok(Spanned { expr: *e, pos });
        };
        let next = self.peek();
        if matches!(
            next.kind,
            Tok::Eq
                | Tok::Ne
                | Tok::Lt
                | Tok::Le
                | Tok::Gt
                | Tok::Ge
                | Tok::Is
                | Tok::Between
                | Tok::In
                | Tok::Like
        ) {
            return Err(syntax(
                next.pos,
                "AND, OR, ')' or end of selector (comparisons do not chain; use parentheses)",
                describe(&next.kind),
            ));
        }
        Ok(Spanned { expr, pos })
    }

    fn string_literal(&mut self, expected: &str) -> Result<(&'t str, usize), SelectorError> {
        let t = self.advance();
        match &t.kind {
            Tok::Str(s) => Ok((s, t.pos)),
            k => Err(syntax(t.pos, expected, describe(k))),
        }
    }

    fn in_literal(&mut self) -> Result<Lit, SelectorError> {
        let t = self.advance();
        let negative = t.kind == Tok::Minus;
        let t = if negative || t.kind == Tok::Plus {
            self.advance()
        } else {
            t
        };
        match (&t.kind, negative) {
            (Tok::Str(s), false) => Ok(Lit::Str(s.as_str().into())),
            (Tok::Int(n), _) => Ok(int_literal(*n, negative)),
            (Tok::Float(f), _) => Ok(Lit::Double(if negative { -f } else { *f })),
            (k, _) => Err(syntax(
                t.pos,
                "a string literal in the IN list",
                describe(k),
            )),
        }
    }

    fn sum(&mut self) -> Result<Spanned, SelectorError> {
        let first = self.product()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().kind {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => break,
            };
            if rest.is_empty() {
                check_numeric(&first.expr, first.pos)?;
            }
            self.advance();
            let next = self.product()?;
            check_numeric(&next.expr, next.pos)?;
            rest.push((op, next.expr));
        }
        Ok(arith(first, rest))
    }

    fn product(&mut self) -> Result<Spanned, SelectorError> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().kind {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => break,
            };
            if rest.is_empty() {
                check_numeric(&first.expr, first.pos)?;
            }
            self.advance();
            let next = self.unary()?;
            check_numeric(&next.expr, next.pos)?;
            rest.push((op, next.expr));
        }
        Ok(arith(first, rest))
    }

    fn unary(&mut self) -> Result<Spanned, SelectorError> {
        let t = self.peek();
        let negative = match t.kind {
            Tok::Minus => true,
            Tok::Plus => false,
            _ => return self.primary(),
        };
        self.advance();
        // A signed literal is a literal: `-9223372036854775808` is a long.
        if let Tok::Int(n) = self.peek().kind {
            self.advance();
            return Ok(Spanned {
                expr: Expr::Lit(int_literal(n, negative)),
                pos: t.pos,
            });
        }
        self.enter(t.pos)?;
        let inner = self.unary()?;
        self.leave();
        check_numeric(&inner.expr, inner.pos)?;
        let expr = match (negative, inner.expr) {
            (false, e) => Expr::Arith(Box::new(e), Vec::new()),
            (true, Expr::Lit(Lit::Double(f))) => Expr::Lit(Lit::Double(-f)),
            (true, e) => Expr::Neg(Box::new(e)),
        };
        Ok(Spanned { expr, pos: t.pos })
    }

    fn primary(&mut self) -> Result<Spanned, SelectorError> {
        let t = self.advance();
        let expr = match &t.kind {
            Tok::Ident(name) => header(name),
            Tok::Str(s) => Expr::Lit(Lit::Str(s.as_str().into())),
            Tok::Int(n) => Expr::Lit(int_literal(*n, false)),
            Tok::Float(f) => Expr::Lit(Lit::Double(*f)),
            Tok::True => Expr::Lit(Lit::Bool(true)),
            Tok::False => Expr::Lit(Lit::Bool(false)),
            Tok::LParen => {
                self.enter(t.pos)?;
                let inner = self.or()?;
                self.leave();
                self.expect(&Tok::RParen, "')' or an operator")?;
                return Ok(Spanned {
                    expr: inner.expr,
                    pos: t.pos,
                });
            }
            Tok::Null => {
                return Err(syntax(
                    t.pos,
                    "an expression (NULL is only allowed in IS [NOT] NULL)",
                    "NULL".into(),
                ))
            }
            k => return Err(syntax(t.pos, "an expression", describe(k))),
        };
        Ok(Spanned { expr, pos: t.pos })
    }
}

fn arith(first: Spanned, rest: Vec<(ArithOp, Expr)>) -> Spanned {
    if rest.is_empty() {
        first
    } else {
        Spanned {
            expr: Expr::Arith(Box::new(first.expr), rest),
            pos: first.pos,
        }
    }
}

fn int_literal(n: u64, negative: bool) -> Lit {
    let signed = if negative {
        -i128::from(n)
    } else {
        i128::from(n)
    };
    match i64::try_from(signed) {
        Ok(v) => Lit::Long(v),
        Err(_) => Lit::Double(signed as f64),
    }
}

/// Maps a selector identifier to the header it reads.
fn header(name: &str) -> Expr {
    let stomp = match name {
        "JMSDeliveryMode" => return Expr::DeliveryMode,
        "JMSPriority" => "priority",
        "JMSCorrelationID" => "correlation-id",
        "JMSType" => "type",
        "JMSMessageID" => "message-id",
        "JMSTimestamp" => "timestamp",
        "JMSExpiration" => "expires",
        "JMSReplyTo" => "reply-to",
        "JMSDestination" => "destination",
        other => other,
    };
    Expr::Header(stomp.into())
}

fn compile_like(pattern: &str, escape: Option<char>, pos: usize) -> Result<Pattern, SelectorError> {
    let mut elems = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(lit) => elems.push(PatElem::Char(lit)),
                None => {
                    return Err(syntax(
                        pos,
                        "a character after the ESCAPE character at the end of the LIKE pattern",
                        "end of pattern".into(),
                    ))
                }
            }
        } else if c == '%' {
            // `%%` is `%`.
            if elems.last() != Some(&PatElem::Many) {
                elems.push(PatElem::Many);
            }
        } else if c == '_' {
            elems.push(PatElem::One);
        } else {
            elems.push(PatElem::Char(c));
        }
    }
    let literal = |e: &[PatElem]| -> Option<Box<str>> {
        e.iter()
            .map(|e| match e {
                PatElem::Char(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<String>>()
            .map(String::into_boxed_str)
    };
    let n = elems.len();
    let starts = elems.first() == Some(&PatElem::Many);
    let ends = n > 0 && elems.last() == Some(&PatElem::Many);
    let simple = match (starts, ends) {
        (false, false) => literal(&elems).map(Pattern::Exact),
        (false, true) => literal(&elems[..n - 1]).map(Pattern::Prefix),
        (true, false) => literal(&elems[1..]).map(Pattern::Suffix),
        (true, true) if n >= 2 => literal(&elems[1..n - 1]).map(Pattern::Contains),
        // A lone `%`.
        (true, true) => Some(Pattern::Prefix("".into())),
    };
    Ok(simple.unwrap_or_else(|| Pattern::General(elems.into_boxed_slice())))
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A runtime value. `Null` is SQL's NULL, and as a condition UNKNOWN.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Long(i64),
    Double(f64),
}

fn lit_val(l: &Lit) -> Val<'_> {
    match l {
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Long(n) => Val::Long(*n),
        Lit::Double(f) => Val::Double(*f),
        Lit::Str(s) => Val::Str(s),
    }
}

fn from_bool(b: Option<bool>) -> Val<'static> {
    b.map_or(Val::Null, Val::Bool)
}

/// A value as a condition: `None` is UNKNOWN.
fn truth(v: Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(b),
        Val::Str(s) => str_bool(s),
        Val::Null | Val::Long(_) | Val::Double(_) => None,
    }
}

fn str_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A header value as a number: a 64-bit integer if it is one, else a decimal/scientific number.
/// `inf`, `NaN` and the like are not numbers here.
fn str_num(s: &str) -> Option<Num> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(Num::Long(n));
    }
    let plausible = !s.is_empty()
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if plausible {
        s.parse::<f64>().ok().map(Num::Double)
    } else {
        None
    }
}

fn num(v: Val<'_>) -> Option<Num> {
    match v {
        Val::Long(n) => Some(Num::Long(n)),
        Val::Double(f) => Some(Num::Double(f)),
        Val::Str(s) => str_num(s),
        Val::Null | Val::Bool(_) => None,
    }
}

fn num_val(n: Num) -> Val<'static> {
    match n {
        Num::Long(n) => Val::Long(n),
        Num::Double(f) => Val::Double(f),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Long(n) => n as f64,
        Num::Double(f) => f,
    }
}

fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Long(a), Num::Long(b)) => Some(a.cmp(&b)),
        (a, b) => as_f64(a).partial_cmp(&as_f64(b)),
    }
}

/// `a op b` in three-valued logic.
fn compare(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Option<bool> {
    let ordering = match (a, b) {
        (Val::Null, _) | (_, Val::Null) => return None,
        (Val::Str(a), Val::Str(b)) => match op {
            CmpOp::Eq => return Some(a == b),
            CmpOp::Ne => return Some(a != b),
            _ => Some(a.cmp(b)),
        },
        (Val::Bool(a), Val::Bool(b)) => return bool_cmp(op, a, b),
        (Val::Bool(a), Val::Str(s)) => return bool_cmp(op, a, str_bool(s)?),
        (Val::Str(s), Val::Bool(b)) => return bool_cmp(op, str_bool(s)?, b),
        (Val::Bool(_), _) | (_, Val::Bool(_)) => return None,
        (a, b) => num_cmp(num(a)?, num(b)?),
    }?;
    Some(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

/// Booleans only compare for (in)equality.
fn bool_cmp(op: CmpOp, a: bool, b: bool) -> Option<bool> {
    match op {
        CmpOp::Eq => Some(a == b),
        CmpOp::Ne => Some(a != b),
        _ => None,
    }
}

fn arith_step(op: ArithOp, a: Num, b: Num) -> Option<Num> {
    if let (Num::Long(x), Num::Long(y)) = (a, b) {
        let exact = match op {
            ArithOp::Add => x.checked_add(y),
            ArithOp::Sub => x.checked_sub(y),
            ArithOp::Mul => x.checked_mul(y),
            ArithOp::Div => {
                if y == 0 {
                    return None;
                }
                x.checked_div(y)
            }
        };
        if let Some(v) = exact {
            return Some(Num::Long(v));
        }
    }
    let (x, y) = (as_f64(a), as_f64(b));
    Some(Num::Double(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div => x / y,
    }))
}

fn eval<'a, 'h: 'a>(e: &'a Expr, header: &dyn Fn(&str) -> Option<&'h str>) -> Val<'a> {
    match e {
        Expr::Lit(l) => lit_val(l),
        Expr::Header(name) => header(name).map_or(Val::Null, Val::Str),
        Expr::DeliveryMode => Val::Str(match header("persistent") {
            Some(p) if p.eq_ignore_ascii_case("true") => "PERSISTENT",
            _ => "NON_PERSISTENT",
        }),
        Expr::And(all) => {
            let mut unknown = false;
            for e in all {
                match truth(eval(e, header)) {
                    Some(false) => return Val::Bool(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            from_bool(if unknown { None } else { Some(true) })
        }
        Expr::Or(all) => {
            let mut unknown = false;
            for e in all {
                match truth(eval(e, header)) {
                    Some(true) => return Val::Bool(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            from_bool(if unknown { None } else { Some(false) })
        }
        Expr::Not(e) => from_bool(truth(eval(e, header)).map(|b| !b)),
        Expr::Cmp(op, a, b) => from_bool(compare(*op, eval(a, header), eval(b, header))),
        Expr::Arith(first, rest) => {
            let Some(mut acc) = num(eval(first, header)) else {
                return Val::Null;
            };
            for (op, e) in rest {
                let Some(n) = num(eval(e, header)) else {
                    return Val::Null;
                };
                let Some(next) = arith_step(*op, acc, n) else {
                    return Val::Null;
                };
                acc = next;
            }
            num_val(acc)
        }
        Expr::Neg(e) => match num(eval(e, header)) {
            Some(Num::Long(n)) => n.checked_neg().map_or(Val::Double(-(n as f64)), Val::Long),
            Some(Num::Double(f)) => Val::Double(-f),
            None => Val::Null,
        },
        Expr::Between {
            e,
            low,
            high,
            negated,
        } => {
            let v = eval(e, header);
            let ge = compare(CmpOp::Ge, v, eval(low, header));
            if ge == Some(false) {
                return from_bool(Some(*negated));
            }
            let le = compare(CmpOp::Le, v, eval(high, header));
            let within = match (ge, le) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            from_bool(within.map(|b| b != *negated))
        }
        Expr::In { e, list, negated } => {
            let v = eval(e, header);
            if matches!(v, Val::Null) {
                return Val::Null;
            }
            let mut unknown = false;
            for l in list {
                match compare(CmpOp::Eq, v, lit_val(l)) {
                    Some(true) => return Val::Bool(!*negated),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            from_bool(if unknown { None } else { Some(*negated) })
        }
        Expr::Like {
            e,
            pattern,
            negated,
        } => match eval(e, header) {
            Val::Str(s) => Val::Bool(like(pattern, s) != *negated),
            _ => Val::Null,
        },
        Expr::IsNull { e, negated } => Val::Bool(matches!(eval(e, header), Val::Null) != *negated),
    }
}

fn like(p: &Pattern, s: &str) -> bool {
    match p {
        Pattern::Exact(lit) => s == &**lit,
        Pattern::Prefix(lit) => s.starts_with(&**lit),
        Pattern::Suffix(lit) => s.ends_with(&**lit),
        Pattern::Contains(lit) => s.contains(&**lit),
        Pattern::General(elems) => wildcard(elems, s),
    }
}

/// Iterative wildcard matching with single backtrack point (the last `%` seen): O(len(p) ×
/// len(s)) at worst, no allocation, no recursion.
fn wildcard(p: &[PatElem], s: &str) -> bool {
    let mut pi = 0;
    let mut si = 0; // byte index into s
                    // (pattern index after the last `%`, text index that `%` currently extends to)
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        let c = s[si..].chars().next();
        let step = match (p.get(pi), c) {
            (Some(PatElem::Many), _) => {
                pi += 1;
                backtrack = Some((pi, si));
                continue;
            }
            (Some(PatElem::One), Some(c)) => Some(c.len_utf8()),
            (Some(PatElem::Char(pc)), Some(c)) if *pc == c => Some(c.len_utf8()),
            (None, None) => return true,
            _ => None,
        };
        match step {
            Some(len) => {
                pi += 1;
                si += len;
            }
            None => match backtrack {
                // Let the last `%` swallow one more character and retry after it.
                Some((bp, bs)) if bs < s.len() => {
                    let len = s[bs..].chars().next().map_or(1, char::len_utf8);
                    backtrack = Some((bp, bs + len));
                    pi = bp;
                    si = bs + len;
                }
                _ => return false,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sel(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    /// Whether `text` selects a message with `headers` (first occurrence wins).
    fn m(text: &str, headers: &[(&str, &str)]) -> bool {
        let s = sel(text);
        s.matches(&|name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    fn err(text: &str) -> SelectorError {
        match Selector::parse(text) {
            Ok(s) => panic!("{text:?} should not parse, got {s:?}"),
            Err(e) => e,
        }
    }

    fn err_at(text: &str, position: usize, fragment: &str) {
        let e = err(text);
        assert_eq!(e.position(), Some(position), "{text:?}: {e}");
        assert!(
            e.to_string().contains(fragment),
            "{text:?}: {e:?} should mention {fragment:?}"
        );
    }

    const NONE: &[(&str, &str)] = &[];

    #[test]
    fn string_equality_and_inequality() {
        let h = [("color", "red")];
        assert!(m("color = 'red'", &h));
        assert!(!m("color = 'blue'", &h));
        assert!(m("color <> 'blue'", &h));
        assert!(!m("color <> 'red'", &h));
        assert!(m("'red' = color", &h));
        assert!(!m("color = 'RED'", &h), "strings are case-sensitive");
        assert!(m("color = 'it''s'", &[("color", "it's")]));
        assert!(m("color = ''", &[("color", "")]));
    }

    #[test]
    fn keywords_are_case_insensitive_identifiers_are_not() {
        let h = [("a", "1"), ("b", "x")];
        assert!(m("a = 1 and b = 'x'", &h));
        assert!(m("a = 1 AnD b = 'x'", &h));
        assert!(m("not a = 2", &h));
        assert!(m("b Like 'x' OR fAlSe", &h));
        assert!(m("b in ('x') and c is null and a between 0 and 2", &h));
        assert!(!m("A = 1", &h));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // a OR (b AND c)
        let h = [("a", "1"), ("b", "0"), ("c", "0")];
        assert!(m("a = 1 OR b = 1 AND c = 1", &h));
        assert!(!m("(a = 1 OR b = 1) AND c = 1", &h));
        // (b AND c) OR a, other order
        assert!(m("b = 1 AND c = 1 OR a = 1", &h));
    }

    #[test]
    fn precedence_not_binds_tighter_than_and_but_looser_than_comparison() {
        let h = [("a", "1"), ("b", "1")];
        assert!(!m("NOT a = 1 AND b = 1", &h)); // (NOT a=1) AND b=1
        assert!(m("NOT a = 2 AND b = 1", &h));
        assert!(m("NOT (a = 1 AND b = 2)", &h));
        assert!(!m("NOT NOT a = 2", &h));
        assert!(m("NOT NOT a = 1", &h));
    }

    #[test]
    fn precedence_arithmetic() {
        let h = [("x", "2")];
        assert!(m("1 + x * 3 = 7", &h));
        assert!(m("(1 + x) * 3 = 9", &h));
        assert!(m("10 - 4 - 3 = 3", NONE), "left associative");
        assert!(m("16 / 4 / 2 = 2", NONE));
        assert!(m("-x * 2 = -4", &h));
        assert!(m("- -x = 2", &h));
        assert!(m("+x = 2", &h));
        assert!(m("x - 1 = 1", &h));
        assert!(m("x-1 = 1", &h), "a digit after '-' is subtraction");
        assert!(m("7 / 2 = 3", NONE), "integer division truncates");
        assert!(m("7.0 / 2 = 3.5", NONE));
        assert!(m("-7 / 2 = -3", NONE));
        assert!(m("1 + 2 * 3 - 4 / 2 = 5", NONE));
    }

    #[test]
    fn three_valued_logic() {
        let h = [("a", "1")];
        // missing header: UNKNOWN
        assert!(!m("x = 'a'", &h));
        assert!(!m("x <> 'a'", &h));
        assert!(!m("NOT x = 'a'", &h), "NOT UNKNOWN is UNKNOWN");
        assert!(!m("NOT (x = 'a')", &h));
        // FALSE AND UNKNOWN = FALSE; NOT FALSE = TRUE
        assert!(m("NOT (a = 2 AND x = 'a')", &h));
        // TRUE AND UNKNOWN = UNKNOWN; NOT UNKNOWN = UNKNOWN
        assert!(!m("NOT (a = 1 AND x = 'a')", &h));
        assert!(!m("a = 1 AND x = 'a'", &h));
        // TRUE OR UNKNOWN = TRUE
        assert!(m("a = 1 OR x = 'a'", &h));
        assert!(m("x = 'a' OR a = 1", &h));
        // FALSE OR UNKNOWN = UNKNOWN
        assert!(!m("a = 2 OR x = 'a'", &h));
        assert!(!m("NOT (a = 2 OR x = 'a')", &h));
        // arithmetic with NULL is NULL
        assert!(!m("x + 1 > 0", &h));
        assert!(!m("NOT (x + 1 > 0)", &h));
        assert!(m("x + 1 IS NULL", &h));
        // UNKNOWN under IN/BETWEEN/LIKE, and their negations
        for p in [
            "x IN ('a')",
            "x NOT IN ('a')",
            "x BETWEEN 1 AND 2",
            "x NOT BETWEEN 1 AND 2",
            "x LIKE 'a%'",
            "x NOT LIKE 'a%'",
        ] {
            assert!(!m(p, &h), "{p}");
            assert!(!m(&format!("NOT ({p})"), &h), "NOT ({p})");
        }
    }

    #[test]
    fn is_null() {
        let h = [("a", "1"), ("empty", "")];
        assert!(m("x IS NULL", &h));
        assert!(!m("x IS NOT NULL", &h));
        assert!(m("a IS NOT NULL", &h));
        assert!(!m("a IS NULL", &h));
        assert!(m("empty IS NOT NULL", &h), "an empty header is present");
        assert!(m("NOT x IS NOT NULL", &h));
        assert!(m("x is null", &h));
    }

    #[test]
    fn numeric_versus_string_comparison() {
        let h = [("n", "10"), ("s", "abc"), ("f", "2.5"), ("e", "1e3")];
        assert!(m("n > 9", &h), "numeric, not '10' < '9'");
        assert!(m("n < '9'", &h), "string literal: string comparison");
        assert!(m("n = 10", &h));
        assert!(m("n = 10.0", &h));
        assert!(m("n = '10'", &h));
        assert!(!m("n = '10.0'", &h));
        assert!(m("f > 2", &h));
        assert!(m("f = 2.5", &h));
        assert!(m("f * 2 = 5", &h));
        assert!(m("e = 1000", &h));
        // not a number: UNKNOWN, for = and <> alike
        assert!(!m("s = 1", &h));
        assert!(!m("s <> 1", &h));
        assert!(!m("NOT s = 1", &h));
        assert!(!m("s + 1 = 1", &h));
        // `inf`/`nan` are not numbers
        assert!(!m("x > 0", &[("x", "inf")]));
        assert!(!m("x <> 0", &[("x", "NaN")]));
        // two headers: strings; + 0 makes it numeric
        let h2 = [("a", "10"), ("b", "9")];
        assert!(m("a < b", &h2));
        assert!(m("a + 0 > b", &h2));
        // string ordering
        assert!(m(
            "s < 'abd' AND s > 'ab' AND s >= 'abc' AND s <= 'abc'",
            &h
        ));
        assert!(m("n >= 10 AND n <= 10 AND n <> 11", &h));
    }

    #[test]
    fn number_literals() {
        assert!(m("57 = 57L", NONE));
        assert!(m("0x1F = 31", NONE));
        assert!(m("7. = 7", NONE));
        assert!(m(".5 = 0.5", NONE));
        assert!(m("6.02E23 > 6e23", NONE));
        assert!(m("1e-3 = 0.001", NONE));
        assert!(m("-57.9E2 = -5790", NONE));
        assert!(m("010 = 10", NONE), "no octal");
        assert!(m("-9223372036854775808 < 0", NONE));
        assert!(m("9223372036854775807 > 0", NONE));
        assert!(m("99999999999999999999 > 9223372036854775807", NONE));
        assert!(m(
            "x = -9223372036854775808",
            &[("x", "-9223372036854775808")]
        ));
        // overflow continues in floating point
        assert!(m(
            "9223372036854775807 + 9223372036854775807 > 9223372036854775807",
            NONE
        ));
        assert!(m("x * 2 > 0", &[("x", "9223372036854775807")]));
        assert!(m("-x < 0", &[("x", "9223372036854775807")]));
        assert!(m("-x > 0", &[("x", "-9223372036854775808")]));
        // division by zero
        assert!(!m("1 / 0 = 0", NONE));
        assert!(m("1 / 0 IS NULL", NONE));
        assert!(m("1.0 / 0 > 1000", NONE));
        assert!(m("x / -1 > 0", &[("x", "-9223372036854775808")]));
    }

    #[test]
    fn booleans() {
        let h = [("urgent", "true"), ("quiet", "FALSE"), ("odd", "yes")];
        assert!(m("TRUE", NONE));
        assert!(!m("FALSE", NONE));
        assert!(m("urgent", &h));
        assert!(m("urgent = TRUE", &h));
        assert!(m("quiet = false", &h));
        assert!(m("NOT quiet", &h));
        assert!(m("urgent AND NOT quiet", &h));
        assert!(!m("odd", &h));
        assert!(!m("NOT odd", &h));
        assert!(!m("odd = TRUE", &h));
        assert!(!m("missing", &h));
        assert!(m("(1 = 1) = TRUE", NONE));
        assert!(m("(1 = 2) <> TRUE", NONE));
        assert!(!m("TRUE > FALSE", NONE), "booleans do not order");
        assert!(!m("TRUE = 1", NONE));
        assert!(m("urgent = 'true'", &h));
    }

    #[test]
    fn like() {
        let h = [
            ("s", "hello world"),
            ("p", "100%"),
            ("u", "a_b"),
            ("x", "héllo"),
        ];
        assert!(m("s LIKE 'hello%'", &h));
        assert!(m("s LIKE '%world'", &h));
        assert!(m("s LIKE '%lo wo%'", &h));
        assert!(m("s LIKE 'hello world'", &h));
        assert!(m("s LIKE '%'", &h));
        assert!(m("s LIKE '%%'", &h));
        assert!(m("s LIKE 'h_llo%'", &h));
        assert!(m("s LIKE '%o%o%'", &h));
        assert!(m("s LIKE 'h%o w%d'", &h));
        assert!(m("s LIKE '___________'", &h));
        assert!(!m("s LIKE '__________'", &h));
        assert!(!m("s LIKE '____________'", &h));
        assert!(!m("s LIKE 'hello'", &h));
        assert!(!m("s LIKE 'Hello%'", &h));
        assert!(!m("s LIKE '%x%'", &h));
        assert!(m("s NOT LIKE '%x%'", &h));
        assert!(!m("s NOT LIKE 'h%'", &h));
        assert!(m("x LIKE 'h_llo'", &h), "_ is one character, not one byte");
        assert!(m("x LIKE '%é%'", &h));
        assert!(m("e LIKE ''", &[("e", "")]));
        assert!(m("e LIKE '%'", &[("e", "")]));
        assert!(!m("e LIKE '_'", &[("e", "")]));
        // backtracking
        assert!(m("s LIKE '%l%l%d'", &h));
        assert!(m("t LIKE '%aab'", &[("t", "aaaab")]));
        assert!(m("t LIKE 'a%a_b'", &[("t", "aaaab")]));
        assert!(!m("t LIKE 'a%ac%b'", &[("t", "aaaab")]));
        // escapes
        assert!(m(r"p LIKE '100\%' ESCAPE '\'", &h));
        assert!(!m(r"p LIKE '10\%' ESCAPE '\'", &h));
        assert!(m(r"p LIKE '%\%' ESCAPE '\'", &h));
        assert!(!m(r"s LIKE '%\%' ESCAPE '\'", &h));
        assert!(m(r"u LIKE 'a\_b' ESCAPE '\'", &h));
        assert!(!m(r"u LIKE 'a\_b' ESCAPE '\'", &[("u", "axb")]));
        assert!(m("u LIKE 'a_b'", &[("u", "axb")]));
        assert!(m("u LIKE 'a!_%' ESCAPE '!'", &h));
        assert!(m("v LIKE 'a!!b' ESCAPE '!'", &[("v", "a!b")]));
        assert!(m("v LIKE 'a''b%'", &[("v", "a'bc")]));
        assert!(!m("v LIKE '%x''%' ESCAPE ''''", &[("v", "ax'b")]));
        assert!(m("v LIKE '%x''%' ESCAPE ''''", &[("v", "ax%")]));
        assert!(m("v LIKE '%x''''%' ESCAPE ''''", &[("v", "ax'b")]));
        // LIKE on a string literal
        assert!(m("'abc' LIKE 'a%'", NONE));
        assert!(m("JMSDeliveryMode LIKE 'NON%'", NONE));
    }

    #[test]
    fn like_worst_case_is_bounded() {
        let text = "a".repeat(4000);
        let pattern = format!("s LIKE '{}b'", "%a".repeat(1000));
        let s = sel(&pattern);
        assert!(!s.matches(&|_| Some(text.as_str())));
    }

    #[test]
    fn in_lists() {
        let h = [("c", "red"), ("n", "2")];
        assert!(m("c IN ('red', 'green')", &h));
        assert!(m("c IN ('green','red')", &h));
        assert!(m("c IN ('red')", &h));
        assert!(!m("c IN ('green', 'blue')", &h));
        assert!(m("c NOT IN ('green', 'blue')", &h));
        assert!(!m("c NOT IN ('green', 'red')", &h));
        assert!(m("n IN (1, 2, 3)", &h));
        assert!(m("n IN ('2')", &h));
        assert!(m("n IN (-1, 2.0)", &h));
        assert!(!m("n IN (1, 3)", &h));
        // a non-numeric value against numbers: UNKNOWN unless another element matches
        assert!(!m("c IN (1)", &h));
        assert!(!m("c NOT IN (1)", &h));
        assert!(m("c IN (1, 'red')", &h));
    }

    #[test]
    fn between() {
        let h = [("n", "5"), ("s", "m")];
        assert!(m("n BETWEEN 1 AND 10", &h));
        assert!(m("n BETWEEN 5 AND 5", &h));
        assert!(!m("n BETWEEN 6 AND 10", &h));
        assert!(!m("n BETWEEN 1 AND 4", &h));
        assert!(m("n NOT BETWEEN 6 AND 10", &h));
        assert!(!m("n NOT BETWEEN 1 AND 10", &h));
        assert!(!m("n BETWEEN 10 AND 1", &h));
        assert!(m("n BETWEEN 2 * 2 AND n + 1", &h));
        assert!(
            m("n BETWEEN 1 AND 10 AND s = 'm'", &h),
            "BETWEEN's AND binds first"
        );
        assert!(m("s BETWEEN 'a' AND 'z'", &h));
        assert!(m("n BETWEEN 4.5 AND 5.5", &h));
        // NULL bound: FALSE if the other bound already fails, else UNKNOWN
        assert!(m("n NOT BETWEEN 6 AND x", &h));
        assert!(!m("n BETWEEN 1 AND x", &h));
        assert!(!m("n NOT BETWEEN 1 AND x", &h));
        assert!(m("n NOT BETWEEN x AND 4", &h));
    }

    #[test]
    fn jms_names() {
        let h = [
            ("priority", "7"),
            ("correlation-id", "c-1"),
            ("type", "order"),
            ("message-id", "m-9"),
            ("timestamp", "1700000000000"),
            ("expires", "1800000000000"),
            ("reply-to", "/queue/replies"),
            ("destination", "/queue/orders"),
            ("persistent", "true"),
        ];
        assert!(m("JMSPriority > 4", &h));
        assert!(m("JMSCorrelationID = 'c-1'", &h));
        assert!(m("JMSType = 'order'", &h));
        assert!(m("JMSMessageID LIKE 'm-%'", &h));
        assert!(m("JMSTimestamp > 1600000000000", &h));
        assert!(m("JMSExpiration > JMSTimestamp + 0", &h));
        assert!(m("JMSReplyTo = '/queue/replies'", &h));
        assert!(m("JMSDestination = '/queue/orders'", &h));
        assert!(m("JMSDeliveryMode = 'PERSISTENT'", &h));
        assert!(m(
            "JMSDeliveryMode = 'NON_PERSISTENT'",
            &[("persistent", "false")]
        ));
        assert!(m("JMSDeliveryMode = 'NON_PERSISTENT'", NONE));
        assert!(m("JMSDeliveryMode IS NOT NULL", NONE));
        // the STOMP names work too, and the JMS name is case-sensitive
        assert!(m("priority = 7 AND type = 'order'", &h));
        assert!(!m("jmspriority = 7", &h));
    }

    #[test]
    fn header_names_with_dashes_and_dots() {
        let h = [
            ("content-type", "text/plain"),
            ("x.trace-id", "t1"),
            ("a", "5"),
            ("b", "2"),
        ];
        assert!(m("content-type = 'text/plain'", &h));
        assert!(m("x.trace-id = 't1'", &h));
        assert!(m("$x IS NULL AND _y IS NULL", &h));
        assert!(m("a - b = 3", &h));
        assert!(m("a -b = 3", &h));
        assert!(m("a-2 = 3", &h));
        assert!(m("a IS NOT NULL AND a.b IS NULL", &h));
        assert!(m("a-b IS NULL", &h), "`a-b` is one header name");
    }

    #[test]
    fn whitespace_and_layout() {
        let h = [("a", "1")];
        assert!(m("a=1", &h));
        assert!(m("  a\t=\n1\r\n ", &h));
        assert!(m("(((a = 1)))", &h));
        err_at("a=1AND a<>2", 4, "after the number");
    }

    #[test]
    fn long_flat_chains_are_not_nesting() {
        let or = (0..300)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        assert!(or.len() < MAX_SELECTOR_LEN);
        assert!(m(&or, &[("a", "299")]));
        assert!(!m(&or, &[("a", "300")]));
        let sum = format!("{} = 500", vec!["a"; 500].join("+"));
        assert!(m(&sum, &[("a", "1")]));
    }

    #[test]
    fn nesting_limit() {
        let ok = format!(
            "{}a = 1{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(m(&ok, &[("a", "1")]));
        let deep = format!(
            "{}a = 1{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert_eq!(
            err(&deep),
            SelectorError::TooDeep {
                position: MAX_NESTING + 1,
                limit: MAX_NESTING
            }
        );
        // Hostile inputs up to the length limit: rejected, no stack overflow.
        for hostile in [
            "(".repeat(MAX_SELECTOR_LEN),
            "NOT ".repeat(MAX_SELECTOR_LEN / 4),
            "-".repeat(MAX_SELECTOR_LEN),
            "- ".repeat(MAX_SELECTOR_LEN / 2),
            "(-".repeat(MAX_SELECTOR_LEN / 2),
        ] {
            assert!(
                matches!(err(&hostile), SelectorError::TooDeep { .. }),
                "{hostile:.20}"
            );
        }
        assert!(m(
            &format!("{}a", "NOT ".repeat(MAX_NESTING)),
            &[("a", "true")]
        ));
        assert!(m(
            &format!("{}a = 1", "- ".repeat(MAX_NESTING)),
            &[("a", "1")]
        ));
    }

    #[test]
    fn length_limit() {
        let ok = format!("a = '{}'", "x".repeat(MAX_SELECTOR_LEN - 6));
        assert_eq!(ok.chars().count(), MAX_SELECTOR_LEN);
        assert!(Selector::parse(&ok).is_ok());
        let long = format!("a = '{}'", "x".repeat(MAX_SELECTOR_LEN - 5));
        assert_eq!(
            err(&long),
            SelectorError::TooLong {
                length: MAX_SELECTOR_LEN + 1,
                limit: MAX_SELECTOR_LEN
            }
        );
        // characters, not bytes
        let wide = format!("a = '{}'", "é".repeat(MAX_SELECTOR_LEN - 6));
        assert!(Selector::parse(&wide).is_ok());
    }

    #[test]
    fn errors_name_position_and_expectation() {
        err_at("", 1, "expected an expression, found end of selector");
        err_at("a =", 4, "expected an expression, found end of selector");
        err_at(
            "a = 'x",
            7,
            "a ' closing the string that starts at position 5",
        );
        err_at("a = 1 AND", 10, "expected an expression");
        err_at("a = 1 b = 2", 7, "found identifier b");
        err_at("(a = 1", 7, "expected ')'");
        err_at("a = 1)", 6, "unbalanced ')'");
        err_at("a != 1", 3, "'<>'");
        err_at("a = \"x\"", 5, "single quotes");
        err_at("a = 1 # 2", 7, "character '#'");
        err_at("a LIKE 5", 8, "a string pattern after LIKE");
        err_at("a LIKE 'x' ESCAPE 'ab'", 19, "single-character ESCAPE");
        err_at("a LIKE 'x' ESCAPE ''", 19, "single-character ESCAPE");
        err_at(r"a LIKE 'x\' ESCAPE '\'", 8, "after the ESCAPE character");
        err_at("a IN 'x'", 6, "'(' starting the IN list");
        err_at("a IN ()", 7, "a string literal in the IN list");
        err_at("a IN ('x' 'y')", 11, "',' or ')'");
        err_at("a IN ('x', b)", 12, "found identifier b");
        err_at("a BETWEEN 1 OR 2", 13, "AND between the bounds");
        err_at("a NOT = 1", 7, "BETWEEN, IN or LIKE after NOT");
        err_at("a IS 1", 6, "NULL or NOT NULL");
        err_at("a IS NOT 1", 10, "expected NULL");
        err_at("a = NULL", 5, "IS [NOT] NULL");
        err_at("a = b = c", 7, "do not chain");
        err_at("a < b IS NULL", 7, "do not chain");
        err_at("1e", 3, "digits of the exponent");
        err_at("a = 1e+", 8, "digits of the exponent");
        err_at("a = 12abc", 7, "after the number");
        err_at("a = 1.2.3", 8, "after the number");
        err_at("a = 0xFFFFFFFFFFFFFFFFF", 5, "hexadecimal");
        // not a condition
        err_at("5", 1, "expected a condition");
        err_at("'x'", 1, "expected a condition");
        err_at("a + 1", 1, "expected a condition");
        err_at("a = 1 AND 5", 11, "expected a condition");
        err_at("NOT 'x'", 5, "expected a condition");
        err_at("(1)", 1, "expected a condition");
        // not a number
        err_at("'x' + 1 = 2", 1, "expected a numeric expression");
        err_at("a = 1 + 'x'", 9, "expected a numeric expression");
        err_at("a = -'x'", 6, "expected a numeric expression");
        err_at("a = (b = 1) * 2", 5, "found a condition");
        err_at("5 LIKE '5'", 1, "a string or header before LIKE");
        // the whole message, as it appears in an ERROR frame
        assert_eq!(
            format!("invalid selector: {}", err("color = ")),
            "invalid selector: at position 9: expected an expression, found end of selector"
        );
        // long user text is cut short in messages
        let e = err(&format!("a = 1 {}", "b".repeat(100))).to_string();
        assert!(e.len() < 150, "{e}");
    }

    #[test]
    fn display_and_from_str() {
        let s: Selector = "a = 1".parse().unwrap();
        assert_eq!(s.to_string(), "a = 1");
        assert_eq!(s.as_str(), "a = 1");
    }

    #[test]
    fn header_values_may_borrow_from_short_lived_data() {
        // The lookup may return values borrowed from data that lives only around the call.
        let s = sel("a = 'x' AND b LIKE 'y%'");
        let owned = [
            ("a".to_string(), "x".to_string()),
            ("b".into(), "yz".into()),
        ];
        let lookup = |name: &str| {
            owned
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(s.matches(&lookup));
    }

    /// Selector-ish fragments, so random input reaches deep into the parser.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("JMSPriority".to_string()),
            Just("JMSDeliveryMode".to_string()),
            Just("'x'".to_string()),
            Just("'%a_'".to_string()),
            Just("'\\'".to_string()),
            Just("''''".to_string()),
            Just("'".to_string()),
            Just("1".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("9223372036854775807".to_string()),
            Just("0".to_string()),
            Just("2.5e3".to_string()),
            Just("0x1F".to_string()),
            Just("TRUE".to_string()),
            Just("false".to_string()),
            Just("NULL".to_string()),
            Just("AND".to_string()),
            Just("OR".to_string()),
            Just("NOT".to_string()),
            Just("BETWEEN".to_string()),
            Just("IN".to_string()),
            Just("LIKE".to_string()),
            Just("ESCAPE".to_string()),
            Just("IS".to_string()),
            Just("=".to_string()),
            Just("<>".to_string()),
            Just("<".to_string()),
            Just(">=".to_string()),
            Just("+".to_string()),
            Just("-".to_string()),
            Just("*".to_string()),
            Just("/".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just(",".to_string()),
            Just(" ".to_string()),
            any::<char>().prop_map(String::from),
        ]
    }

    /// Well-formed selectors, to exercise evaluation on random headers.
    fn valid_selector() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            Just("a".to_string()),
            Just("JMSPriority".to_string()),
            "-?[0-9]{1,20}",
            "[0-9]{1,3}\\.[0-9]{0,3}",
        ];
        let value = prop_oneof![number.clone(), Just("b".to_string()), "'[a-z%_]{0,4}'"];
        let leaf = prop_oneof![
            (value.clone(), "=|<>|<|<=|>|>=", value.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (number.clone(), "[+*/-]", value.clone(), value.clone())
                .prop_map(|(n, op, b, c)| format!("(a {op} {n}) BETWEEN {b} AND {c}")),
            (
                value.clone(),
                proptest::collection::vec("'[a-z0-9]{0,2}'|[0-9]{1,2}", 1..4)
            )
                .prop_map(|(a, l)| format!("{a} NOT IN ({})", l.join(", "))),
            "([a-z%_]|![%_!]){0,6}".prop_map(|p| format!("a LIKE '{p}' ESCAPE '!'")),
            Just("b IS NULL".to_string()),
            Just("a".to_string()),
        ];
        leaf.prop_recursive(6, 40, 4, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
                inner.prop_map(|a| format!("NOT ({a})")),
            ]
        })
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("a".to_string()),
                    Just("b".to_string()),
                    Just("priority".to_string()),
                    "[a-z]{1,3}"
                ],
                prop_oneof![
                    "-?[0-9]{1,20}",
                    "[0-9.eE+-]{0,8}",
                    "[a-z%_]{0,6}",
                    "true|false|TRUE|NaN|inf",
                    any::<String>(),
                ],
            ),
            0..5,
        )
    }

    fn run(s: &Selector, headers: &[(String, String)]) -> bool {
        s.matches(&|name| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>(), headers in headers()) {
            if let Ok(s) = Selector::parse(&text) {
                run(&s, &headers);
            }
        }

        #[test]
        fn arbitrary_token_soup_never_panics(
            parts in proptest::collection::vec(fragment(), 0..40),
            headers in headers(),
        ) {
            let text = parts.join(" ");
            match Selector::parse(&text) {
                Ok(s) => { run(&s, &headers); }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(!msg.is_empty());
                    if let Some(p) = e.position() {
                        prop_assert!(p >= 1 && p <= text.chars().count() + 1, "{}", msg);
                    }
                }
            }
            // and without separating spaces
            if let Ok(s) = Selector::parse(&parts.concat()) {
                run(&s, &headers);
            }
        }

        #[test]
        fn valid_selectors_parse_and_negation_is_consistent(
            text in valid_selector(),
            headers in headers(),
        ) {
            let s = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            let not = Selector::parse(&format!("NOT ({text})")).unwrap();
            let unknown = Selector::parse(&format!("(({text}) AND TRUE) IS NULL")).unwrap();
            let is_true = run(&s, &headers);
            let is_false = run(&not, &headers);
            let is_unknown = run(&unknown, &headers);
            // Exactly one of TRUE, FALSE, UNKNOWN.
            prop_assert_eq!(
                u8::from(is_true) + u8::from(is_false) + u8::from(is_unknown),
                1,
                "{}", text
            );
        }
    }
}
