//! WebTransport sub-protocol negotiation (draft-ietf-webtrans-http3 §3.3): the client's
//! `wt-available-protocols` is an RFC 8941 List of Strings, the server's `wt-protocol` one
//! Item. Parsed just far enough to negotiate; bare Tokens are accepted too, and each entry
//! remembers which syntax it came in so the answer can use the same.

/// Most entries kept from one `wt-available-protocols` (browsers offer about ten); later ones
/// are parsed and dropped.
const MAX_PROTOCOLS: usize = 64;

/// An entry of `wt-available-protocols`, and its syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    /// Sent as a quoted String (`"moq-lite-05"`) rather than a bare Token (`moq-lite-05`).
    pub quoted: bool,
}

/// Parses `wt-available-protocols` (an RFC 8941 List whose items are Strings, e.g.
/// `"moq-lite-05", "moq-lite-04"`; also accept bare Tokens, remembering which syntax each
/// entry used; parameters after `;` ignored). Malformed -> empty list.
pub fn parse_protocols(value: &str) -> Vec<Protocol> {
    let mut parser = Parser::new(value);
    let mut out = Vec::new();
    if parser.rest.is_empty() {
        return out;
    }
    loop {
        let Some(protocol) = parser.item() else {
            return Vec::new();
        };
        if out.len() < MAX_PROTOCOLS {
            out.push(protocol);
        }
        parser.skip_ows();
        if parser.rest.is_empty() {
            return out;
        }
        if !parser.eat(b',') {
            return Vec::new();
        }
        parser.skip_ows();
        if parser.rest.is_empty() {
            return Vec::new();
        }
    }
}

/// Parses `wt-protocol`: one String or Token Item, parameters ignored. Malformed -> None.
pub(crate) fn parse_protocol(value: &str) -> Option<Protocol> {
    let mut parser = Parser::new(value);
    let protocol = parser.item()?;
    parser.rest.is_empty().then_some(protocol)
}

/// The first offered protocol (client's order) that is in `supported`.
pub fn choose<'a>(offered: &'a [Protocol], supported: &[&str]) -> Option<&'a Protocol> {
    offered
        .iter()
        .find(|p| supported.contains(&p.name.as_str()))
}

/// `protocol` as a field value in its own syntax: a quoted String (with `"` and `\` escaped)
/// or the bare Token.
pub(crate) fn serialize(protocol: &Protocol, out: &mut String) {
    if !protocol.quoted {
        out.push_str(&protocol.name);
        return;
    }
    out.push('"');
    for c in protocol.name.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// RFC 9110 §5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Parser<'a> {
    rest: &'a [u8],
}

impl<'a> Parser<'a> {
    /// RFC 8941 §4.2: leading and trailing spaces are discarded.
    fn new(value: &'a str) -> Self {
        Parser {
            rest: value.trim_matches(' ').as_bytes(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        if matched {
            self.rest = &self.rest[1..];
        }
        matched
    }

    /// Consumes the longest run of bytes matching `accept`.
    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.rest.iter().take_while(|&&b| accept(b)).count();
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        taken
    }

    fn skip_ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    /// A String or Token bare item, then parameters (checked, ignored).
    fn item(&mut self) -> Option<Protocol> {
        let protocol = match self.peek()? {
            b'"' => Protocol {
                name: self.string()?,
                quoted: true,
            },
            b if b.is_ascii_alphabetic() || b == b'*' => Protocol {
                name: self.token(),
                quoted: false,
            },
            _ => return None,
        };
        self.parameters()?;
        Some(protocol)
    }

    /// RFC 8941 §4.2.5: a quoted string of printable ASCII, `\"` and `\\` escaped.
    fn string(&mut self) -> Option<String> {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.eat(b'"');
                    return Some(out);
                }
                b'\\' => {
                    self.eat(b'\\');
                    let escaped = self.peek().filter(|&b| b == b'"' || b == b'\\')?;
                    self.eat(escaped);
                    out.push(char::from(escaped));
                }
                b @ 0x20..=0x7e => {
                    self.eat(b);
                    out.push(char::from(b));
                }
                _ => return None,
            }
        }
    }

    /// RFC 8941 §4.2.6: the caller saw an ALPHA or `*`.
    fn token(&mut self) -> String {
        let token = self.take_while(|b| is_tchar(b) || b == b':' || b == b'/');
        token.iter().copied().map(char::from).collect()
    }

    /// RFC 8941 §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.take_while(|b| b == b' ');
            if !self
                .peek()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
            {
                return None;
            }
            self.take_while(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b)
            });
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// Skips any bare item: String, Token, Integer / Decimal, Byte Sequence, Boolean.
    fn bare_item(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'?' => {
                self.eat(b'?');
                (self.eat(b'0') || self.eat(b'1')).then_some(())
            }
            b':' => {
                self.eat(b':');
                self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                self.eat(b':').then_some(())
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.token();
                Some(())
            }
            _ => {
                self.eat(b'-');
                let integer = self.take_while(|b| b.is_ascii_digit());
                if integer.is_empty() || integer.len() > 15 {
                    return None;
                }
                if self.eat(b'.') {
                    let fraction = self.take_while(|b| b.is_ascii_digit());
                    (1..=3).contains(&fraction.len()).then_some(())
                } else {
                    Some(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(name: &str) -> Protocol {
        Protocol {
            name: name.into(),
            quoted: true,
        }
    }

    fn t(name: &str) -> Protocol {
        Protocol {
            name: name.into(),
            quoted: false,
        }
    }

    #[test]
    fn lists() {
        let cases: &[(&str, Vec<Protocol>)] = &[
            (
                r#""moq-lite-05", "moq-lite-04""#,
                vec![q("moq-lite-05"), q("moq-lite-04")],
            ),
            (r#""moq-lite-05""#, vec![q("moq-lite-05")]),
            ("moq-lite-05, moql", vec![t("moq-lite-05"), t("moql")]),
            ("  \"a\",b  ", vec![q("a"), t("b")]),
            ("\"a\" ,\t\"b\"", vec![q("a"), q("b")]),
            (
                r#""a";q=1;x, b;y="z";n=-1.5;b=?1;s=:AAE=:;tk=*x, "c\"d\\e""#,
                vec![q("a"), t("b"), q("c\"d\\e")],
            ),
            ("*any:thing/1", vec![t("*any:thing/1")]),
            ("", vec![]),
            ("   ", vec![]),
        ];
        for (value, expected) in cases {
            assert_eq!(&parse_protocols(value), expected, "{value}");
        }
    }

    #[test]
    fn malformed_lists_are_empty() {
        for value in [
            r#""a", , "b""#,    // empty member
            r#""a","#,          // trailing comma
            r#","a""#,          // leading comma
            r#""a" "b""#,       // no comma
            r#""unterminated"#, // unterminated string
            r#""a\x""#,         // bad escape
            "\"caf\u{e9}\"",    // non-ASCII
            "1, \"a\"",         // an Integer member
            "(\"a\" \"b\")",    // an Inner List
            "\"a\";Q=1",        // upper-case parameter key
            "\"a\" ;q",         // space before a parameter
            "\"a\";q=",         // parameter without its value
            "\"a\";q=1.2345",   // decimal with four fraction digits
            "a=b",
            "@garbage!",
        ] {
            assert_eq!(parse_protocols(value), vec![], "{value}");
        }
    }

    #[test]
    fn long_lists_are_capped() {
        let value = vec!["p"; 100].join(", ");
        assert_eq!(parse_protocols(&value), vec![t("p"); MAX_PROTOCOLS]);
    }

    #[test]
    fn single_items() {
        assert_eq!(parse_protocol(r#""moq-lite-05""#), Some(q("moq-lite-05")));
        assert_eq!(parse_protocol("moq-lite-05"), Some(t("moq-lite-05")));
        assert_eq!(parse_protocol(r#" "x";p=1 "#), Some(q("x")));
        assert_eq!(parse_protocol(r#""a", "b""#), None);
        assert_eq!(parse_protocol("7"), None);
        assert_eq!(parse_protocol(""), None);
    }

    #[test]
    fn choice_follows_the_client_order() {
        let offered = parse_protocols(r#""moq-lite-06", "moq-lite-05", moq-lite-04"#);
        assert_eq!(
            choose(&offered, &["moq-lite-04", "moq-lite-05"]),
            Some(&q("moq-lite-05"))
        );
        assert_eq!(choose(&offered, &["moq-lite-04"]), Some(&t("moq-lite-04")));
        assert_eq!(choose(&offered, &["moql"]), None);
        assert_eq!(choose(&[], &["moql"]), None);
    }

    #[test]
    fn serialized_in_the_clients_syntax() {
        let mut out = String::new();
        serialize(&q("moq-lite-05"), &mut out);
        out.push(' ');
        serialize(&t("moq-lite-05"), &mut out);
        out.push(' ');
        serialize(&q(r#"a"b\c"#), &mut out);
        assert_eq!(out, r#""moq-lite-05" moq-lite-05 "a\"b\\c""#);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_values(value in "[ -~\t]{0,40}") {
            // Never panics; whatever parses serializes back to something that parses the same.
            let parsed = parse_protocols(&value);
            let mut again = String::new();
            for (i, p) in parsed.iter().enumerate() {
                if i > 0 {
                    again.push_str(", ");
                }
                serialize(p, &mut again);
            }
            prop_assert_eq!(parse_protocols(&again), parsed);
            let _ = parse_protocol(&value);
        }

        #[test]
        fn lists_round_trip(names in proptest::collection::vec(("[ -~]{0,12}", any::<bool>()), 1..8)) {
            let protocols: Vec<Protocol> = names
                .into_iter()
                .map(|(name, quoted)| {
                    // A token needs a leading letter and token characters.
                    let token: String = name.bytes().filter(|&b| is_tchar(b)).map(char::from).collect();
                    if quoted { q(&name) } else { t(&format!("p{token}")) }
                })
                .collect();
            let mut value = String::new();
            for (i, p) in protocols.iter().enumerate() {
                if i > 0 {
                    value.push_str(", ");
                }
                serialize(p, &mut value);
            }
            prop_assert_eq!(parse_protocols(&value), protocols);
        }
    }
}
