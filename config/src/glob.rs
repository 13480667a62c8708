//! Destination globs.

#[derive(Clone, Copy)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes except `/`.
    Star,
    /// `**`: any run of bytes.
    AnyStar,
}

/// Matches `text` against `pattern`: `*` matches any run of characters
/// except `/`, `**` any run of characters including `/`; everything else
/// matches itself. Both must match whole (`/queue/*` does not match
/// `/queue/a/b`, `/queue/**` does).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let tokens = tokenize(pattern.as_bytes());
    let text = text.as_bytes();
    // matches[j] = whether tokens[i..] match text[j..], computed for i from
    // the end backwards: O(pattern * text) time, no exponential backtracking.
    let mut next = vec![false; text.len() + 1];
    next[text.len()] = true;
    for token in tokens.iter().rev() {
        let mut cur = vec![false; text.len() + 1];
        for j in (0..=text.len()).rev() {
            cur[j] = match *token {
                Token::Byte(b) => j < text.len() && text[j] == b && next[j + 1],
                Token::Star => next[j] || (j < text.len() && text[j] != b'/' && cur[j + 1]),
                Token::AnyStar => next[j] || (j < text.len() && cur[j + 1]),
            };
        }
        next = cur;
    }
    next[0]
}

fn tokenize(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        if pattern[i] == b'*' {
            let run = pattern[i..].iter().take_while(|&&b| b == b'*').count();
            tokens.push(if run >= 2 {
                Token::AnyStar
            } else {
                Token::Star
            });
            i += run;
        } else {
            tokens.push(Token::Byte(pattern[i]));
            i += 1;
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn literal() {
        assert!(glob_match("/queue/a", "/queue/a"));
        assert!(!glob_match("/queue/a", "/queue/ab"));
        assert!(!glob_match("/queue/ab", "/queue/a"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn star_stops_at_slash() {
        assert!(glob_match("/queue/*", "/queue/orders"));
        assert!(glob_match("/queue/*", "/queue/"));
        assert!(!glob_match("/queue/*", "/queue/a/b"));
        assert!(!glob_match("/queue/*", "/topic/a"));
        assert!(glob_match("/queue/orders.*", "/queue/orders.eu"));
        assert!(!glob_match("/queue/orders.*", "/queue/orders"));
        assert!(glob_match("/*/x", "/queue/x"));
        assert!(!glob_match("/*/x", "/a/b/x"));
        assert!(glob_match("/queue/*.dlq", "/queue/orders.dlq"));
        assert!(!glob_match("/queue/*.dlq", "/queue/orders.dlq.x"));
    }

    #[test]
    fn double_star_crosses_slash() {
        assert!(glob_match("/topic/**", "/topic/a/b/c"));
        assert!(glob_match("/topic/**", "/topic/"));
        assert!(glob_match("**", "/anything/at/all"));
        assert!(glob_match("/a/**/z", "/a/b/c/z"));
        assert!(!glob_match("/a/**/z", "/a/b/c/y"));
        assert!(!glob_match("/topic/**", "/queue/a"));
    }

    #[test]
    fn several_stars_backtrack() {
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b*", "xxbxxaxx"));
        assert!(glob_match("a*a*a*a*a*b", &format!("{}b", "a".repeat(60))));
        assert!(!glob_match("a*a*a*a*a*b", &"a".repeat(60)));
    }

    #[test]
    fn non_ascii() {
        assert!(glob_match("/queue/*", "/queue/größe"));
        assert!(glob_match("/queue/grö*", "/queue/größe"));
        assert!(!glob_match("/queue/grü*", "/queue/größe"));
    }
}
