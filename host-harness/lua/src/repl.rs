//! The REPL's one rewrite: top-level `local` declarations of a line become globals.
//!
//! Each REPL line is its own chunk, so in Lua `local x = 1` then `x` gives nil: the local
//! ended with its line. People type `local` out of habit (and paste script lines), so at the
//! top level of a line (outside every block) the keyword is removed: `local x = 1` is
//! `x = 1`, `local function f() end` is `function f() end`, `local a, b` is `a, b = nil`,
//! and attributes (`<const>`, `<close>`) are dropped. Locals inside functions and blocks
//! stay locals.
//!
//! A small lexer finds them: it skips strings (long brackets too), comments and numbers, and
//! counts block depth (`function`, `if`, `do`, `repeat` open a block; `end` and `until` close
//! one; `while` and `for` open theirs through their `do`).

/// One token the rewrite cares about, with where it is in the text.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// A name or keyword.
    Name(&'a str),
    /// Any other punctuation character (`=`, `,`, `<`, ...).
    Punct(u8),
}

/// Yields the names and punctuation of Lua code, skipping whitespace, comments, strings and
/// numbers. Unterminated strings and comments end the text.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    fn peek_byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    /// The level of a long bracket opening at `at` (`[[` is 0, `[==[` is 2), if one does.
    fn long_bracket(&self, at: usize) -> Option<usize> {
        let bytes = self.text.as_bytes();
        if bytes.get(at) != Some(&b'[') {
            return None;
        }
        let level = bytes[at + 1..].iter().take_while(|&&b| b == b'=').count();
        (bytes.get(at + 1 + level) == Some(&b'[')).then_some(level)
    }

    /// Skip a long bracket of `level` opening at `pos`, to just past its closing bracket.
    fn skip_long(&mut self, level: usize) {
        let close = format!("]{}]", "=".repeat(level));
        let body = self.pos + level + 2;
        self.pos = match self.text[body..].find(&close) {
            Some(i) => body + i + close.len(),
            None => self.text.len(),
        };
    }

    /// Skip a short string opened by `quote` at `pos`.
    fn skip_string(&mut self, quote: u8) {
        let bytes = self.text.as_bytes();
        let mut i = self.pos + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b if b == quote => {
                    i += 1;
                    break;
                }
                b'\n' => break,
                _ => i += 1,
            }
        }
        self.pos = i.min(bytes.len());
    }

    /// Skip a number starting at `pos` (decimal or hex, with exponents and their sign).
    fn skip_number(&mut self) {
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        while i < bytes.len() {
            let b = bytes[i];
            let exponent_sign = (b == b'+' || b == b'-')
                && i > self.pos
                && matches!(bytes[i - 1], b'e' | b'E' | b'p' | b'P');
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || exponent_sign {
                i += 1;
            } else {
                break;
            }
        }
        self.pos = i;
    }

    /// The next token and the byte range it spans.
    fn next_token(&mut self) -> Option<(Token<'a>, usize, usize)> {
        loop {
            let start = self.pos;
            let b = self.peek_byte(start)?;
            match b {
                b if b.is_ascii_whitespace() => self.pos += 1,
                b'-' if self.peek_byte(start + 1) == Some(b'-') => {
                    self.pos += 2;
                    match self.long_bracket(self.pos) {
                        Some(level) => self.skip_long(level),
                        None => {
                            self.pos = match self.text[self.pos..].find('\n') {
                                Some(i) => self.pos + i,
                                None => self.text.len(),
                            }
                        }
                    }
                }
                b'"' | b'\'' => self.skip_string(b),
                b'[' if self.long_bracket(start).is_some() => {
                    let level = self.long_bracket(start).unwrap_or(0);
                    self.skip_long(level);
                }
                b'0'..=b'9' => self.skip_number(),
                b'.' if self
                    .peek_byte(start + 1)
                    .is_some_and(|d| d.is_ascii_digit()) =>
                {
                    self.skip_number()
                }
                b if b.is_ascii_alphabetic() || b == b'_' => {
                    let bytes = self.text.as_bytes();
                    let mut end = start + 1;
                    while end < bytes.len()
                        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                    {
                        end += 1;
                    }
                    self.pos = end;
                    return Some((Token::Name(&self.text[start..end]), start, end));
                }
                other => {
                    // Non-ASCII bytes (in code, not strings) are not Lua: step over the char.
                    let len = self.text[start..].chars().next().map_or(1, char::len_utf8);
                    self.pos += len;
                    return Some((Token::Punct(other), start, start + len));
                }
            }
        }
    }
}

/// `code` with its top-level `local` declarations made global (see the module's
/// documentation); code without any is returned unchanged.
pub(crate) fn globalize_locals(code: &str) -> String {
    let mut lexer = Lexer::new(code);
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut depth: i64 = 0;
    let mut pending = lexer.next_token();
    while let Some((token, start, _)) = pending.take() {
        pending = lexer.next_token();
        let Token::Name(word) = token else {
            continue;
        };
        match word {
            "function" | "if" | "do" | "repeat" => depth += 1,
            "end" | "until" => depth -= 1,
            "local" if depth == 0 => {
                // The keyword and the space after it.
                let after = pending.as_ref().map_or(code.len(), |t| t.1);
                edits.push((start, after, ""));
                if !matches!(pending, Some((Token::Name("function"), ..))) {
                    pending = declared_names(&mut lexer, pending, &mut edits);
                }
            }
            _ => {}
        }
    }
    if edits.is_empty() {
        return code.to_string();
    }
    let mut out = String::with_capacity(code.len() + 8 * edits.len());
    let mut at = 0;
    for (start, end, with) in edits {
        out.push_str(&code[at..start]);
        out.push_str(with);
        at = end;
    }
    out.push_str(&code[at..]);
    out
}

/// After `local`: the names and their attributes (`x <const>, y`). Attributes are removed;
/// without a following `=`, ` = nil` is added after the last name. Returns the token after
/// the list (for the caller to go on from).
fn declared_names<'a>(
    lexer: &mut Lexer<'a>,
    mut token: Option<(Token<'a>, usize, usize)>,
    edits: &mut Vec<(usize, usize, &'static str)>,
) -> Option<(Token<'a>, usize, usize)> {
    let mut last_end = None;
    while let Some((Token::Name(_), _, end)) = token {
        last_end = Some(end);
        token = lexer.next_token();
        // An attribute: `<` Name `>`, removed with the space before it.
        if let Some((Token::Punct(b'<'), ..)) = token {
            let name = lexer.next_token();
            let close = lexer.next_token();
            if let (Some((Token::Name(_), ..)), Some((Token::Punct(b'>'), _, close_end))) =
                (&name, &close)
            {
                edits.push((end, *close_end, ""));
                last_end = Some(*close_end);
                token = lexer.next_token();
            } else {
                // Not an attribute: leave the text as it is (Lua reports the error).
                return close;
            }
        }
        match token {
            Some((Token::Punct(b','), ..)) => token = lexer.next_token(),
            _ => break,
        }
    }
    if let Some(end) = last_end
        && !matches!(token, Some((Token::Punct(b'='), ..)))
    {
        edits.push((end, end, " = nil"));
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_locals_become_globals() {
        let cases = [
            ("local x = 1", "x = 1"),
            ("local a, b = 1, 2", "a, b = 1, 2"),
            ("local x", "x = nil"),
            ("local a, b; print(a)", "a, b = nil; print(a)"),
            ("local x <const> = 5", "x = 5"),
            ("local f <close>, g <const> = h(), 2", "f, g = h(), 2"),
            (
                "local function f() return 1 end",
                "function f() return 1 end",
            ),
            ("local x = 1 local y = x + 1", "x = 1 y = x + 1"),
            (
                "local t = {local_ = 1}\nlocal s",
                "t = {local_ = 1}\ns = nil",
            ),
        ];
        for (code, expected) in cases {
            assert_eq!(globalize_locals(code), expected, "{code}");
        }
    }

    #[test]
    fn blocks_strings_and_comments_keep_their_text() {
        let unchanged = [
            "local_x = 1",
            "print('local x = 1', \"local y\")",
            "s = [==[\nlocal x ]] still ]==] print(s)",
            "-- local x = 1",
            "--[[ local x\n = 1 ]] y = 2",
            "function f() local x = 1 return x end",
            "if ok then local y = 2 end",
            "for i = 1, 3 do local z = i end",
            "while false do local w end",
            "repeat local r = 1 until r",
            "do local d = 4 end",
            "t = {f = function() local inner = 1 end}",
            "x = 0x1p-3 local_ = 1e+5",
        ];
        for code in unchanged {
            assert_eq!(globalize_locals(code), code, "{code}");
        }
        assert_eq!(
            globalize_locals(
                "local f = function() local inner = 1 return inner end -- local c\nlocal g"
            ),
            "f = function() local inner = 1 return inner end -- local c\ng = nil"
        );
        assert_eq!(
            globalize_locals("if x then end local y = [[local]] .. 'end'"),
            "if x then end y = [[local]] .. 'end'"
        );
        assert_eq!(
            globalize_locals("local s = 'unterminated"),
            "s = 'unterminated"
        );
        assert_eq!(globalize_locals("local x <bad"), "x <bad");
    }
}
