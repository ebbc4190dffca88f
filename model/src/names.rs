//! Contiv's naming rule and small format checks shared by the validators.

/// Contiv's common name format: dot-separated labels, each alphanumeric with inner `-`.
pub fn is_valid_name(s: &str, max_len: usize) -> bool {
    if s.is_empty() || s.len() > max_len {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// The rule as users read it in an error message.
pub const NAME_RULE: &str =
    "letters, digits and '-' in dot-separated labels, no label starting or ending with '-'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "contiv-net", "web.tier-1", "A1", "x.y.z"] {
            assert!(is_valid_name(ok, 64), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", ".a", "a_b", "a b", "a/b", "é"] {
            assert!(!is_valid_name(bad, 64), "{bad}");
        }
        assert!(!is_valid_name(&"a".repeat(65), 64));
        assert!(is_valid_name(&"a".repeat(64), 64));
    }
}
