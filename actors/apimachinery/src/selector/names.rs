//! Label key and value syntax checks are the validation module's (one implementation for
//! objects and selectors); this file adds Go's `%q` quoting for selector messages.

pub(crate) use crate::validation::names::{label_value_errors, qualified_name_errors as label_key_errors};

/// A string quoted the way Go's `%q` quotes it, so messages read like upstream's.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        assert!(label_key_errors("app").is_empty());
        assert!(label_key_errors("app.kubernetes.io/name").is_empty());
        assert!(label_key_errors("A_b-9").is_empty());
        assert_eq!(label_key_errors("/x"), vec!["prefix part must be non-empty"]);
        assert!(label_key_errors("Upper.io/x")[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(label_key_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(label_key_errors(&"k".repeat(64))[0], "name part must be no more than 63 characters");
        assert_eq!(
            label_key_errors("-x"),
            vec!["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
        );
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_x-y").is_empty());
        assert_eq!(label_value_errors("a$").len(), 1);
        assert_eq!(label_value_errors(&"v".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
