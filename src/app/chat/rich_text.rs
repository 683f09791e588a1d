//! Rich text in messages, safely: a small markdown subset parsed into a
//! plain AST that the view turns into elements and text nodes, so nothing a
//! user writes is ever read as HTML (`<script>` is just text).
//!
//! The subset: `**bold**` / `__bold__`, `*italic*` / `_italic_` (the
//! underscore forms only at word boundaries, so `snake_case` stays as it
//! is), `` `code` ``, fenced code blocks, `[label](url)` links and bare
//! `http(s)://` URLs, bulleted (`- `, `* `) and numbered (`1. `) lists, and
//! `@mentions`. Everything else, unclosed markers included, is literal text,
//! and line breaks are kept (paragraphs render with `white-space: pre-wrap`).
//!
//! Only `http:`, `https:` and `mailto:` URLs become links: `javascript:`,
//! `data:`, relative URLs and the like stay text.
//!
//! The work is bounded whatever the input: nesting deeper than
//! [`MAX_NESTING`] is literal, recursion never goes deeper than that, and a
//! search for a closing marker that failed is not repeated, so crafted input
//! (thousands of `*` or `[`) costs about as much as plain text.
//!
//! Hand-rolled rather than a markdown crate: the client's wasm has a size
//! budget, and a full CommonMark parser (with raw HTML support to switch
//! off) is far more than chat needs.

/// Emphasis and links nest at most this deep (bold inside italic is fine);
/// markers deeper than that are shown as they are.
pub const MAX_NESTING: usize = 2;
/// Longer texts are shown plain, unparsed. Messages are at most 4,000
/// characters; this only guards against a server that allows more.
pub const MAX_PARSED_CHARS: usize = 16_000;
/// Longer URLs stay text.
const MAX_URL_CHARS: usize = 2_048;

/// A block of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// Text with its line breaks.
    Paragraph(Vec<Inline>),
    /// A fenced code block's lines, verbatim.
    Code(String),
    /// Consecutive list items; `start` is the first number of a numbered
    /// list, `None` for a bulleted one.
    List { start: Option<u32>, items: Vec<Vec<Inline>> },
}

/// A span of text inside a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inline {
    Text(String),
    Strong(Vec<Inline>),
    Emphasis(Vec<Inline>),
    Code(String),
    /// `href` is always an `http:`, `https:` or `mailto:` URL.
    Link {
        href: String,
        label: Vec<Inline>,
    },
    /// `@name` as written; `me` when it names the current user.
    Mention {
        text: String,
        me: bool,
    },
}

/// Parses a message. `me` is the current user's full name, for telling
/// mentions of them from other `@words`.
pub fn parse(text: &str, me: Option<&str>) -> Vec<Block> {
    if text.chars().count() > MAX_PARSED_CHARS {
        return vec![Block::Paragraph(vec![Inline::Text(text.to_string())])];
    }
    let names = Names::new(me);
    let lines: Vec<&str> = text.split('\n').collect();
    // The last line that can close a fence: an opener after it is literal.
    let last_closer = lines.iter().rposition(|l| is_fence_closer(l));
    let mut blocks = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_fence_opener(line)
            && let Some(last) = last_closer
            && last > i
        {
            // `last_closer > i` guarantees a closer after `i`.
            let end = (i + 1..=last).find(|&j| is_fence_closer(lines[j])).unwrap_or(last);
            flush_paragraph(&mut blocks, &mut para, &names);
            blocks.push(Block::Code(lines[i + 1..end].join("\n")));
            i = end + 1;
            continue;
        }
        if let Some((start, _)) = list_item(line) {
            flush_paragraph(&mut blocks, &mut para, &names);
            let ordered = start.is_some();
            let mut items = Vec::new();
            while let Some((n, content)) = lines.get(i).and_then(|l| list_item(l)) {
                if n.is_some() != ordered {
                    break;
                }
                items.push(inlines(&content.chars().collect::<Vec<_>>(), &names, 0, true));
                i += 1;
            }
            blocks.push(Block::List { start, items });
            continue;
        }
        para.push(line);
        i += 1;
    }
    flush_paragraph(&mut blocks, &mut para, &names);
    blocks
}

/// Whether `text` mentions the user whose full name is `full_name` (outside
/// code): what puts the "@" badge on a conversation.
pub fn mentions(text: &str, full_name: &str) -> bool {
    fn any(inlines: &[Inline]) -> bool {
        inlines.iter().any(|i| match i {
            Inline::Mention { me, .. } => *me,
            Inline::Strong(c) | Inline::Emphasis(c) | Inline::Link { label: c, .. } => any(c),
            Inline::Text(_) | Inline::Code(_) => false,
        })
    }
    // Cheap early exit: most messages mention nobody.
    text.contains('@')
        && parse(text, Some(full_name)).iter().any(|b| match b {
            Block::Paragraph(i) => any(i),
            Block::List { items, .. } => items.iter().any(|i| any(i)),
            Block::Code(_) => false,
        })
}

/// The text without its markers (links as their labels), blocks on lines
/// of their own: for one-line previews.
pub fn plain_text(text: &str) -> String {
    fn push(out: &mut String, inlines: &[Inline]) {
        for i in inlines {
            match i {
                Inline::Text(t) | Inline::Code(t) | Inline::Mention { text: t, .. } => out.push_str(t),
                Inline::Strong(c) | Inline::Emphasis(c) | Inline::Link { label: c, .. } => push(out, c),
            }
        }
    }
    let mut out = String::new();
    for (n, block) in parse(text, None).iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        match block {
            Block::Paragraph(i) => push(&mut out, i),
            Block::Code(code) => out.push_str(code),
            Block::List { items, .. } => {
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        out.push('\n');
                    }
                    push(&mut out, item);
                }
            }
        }
    }
    out
}

/// Whether `href` may become a link: `http:`, `https:` or `mailto:` with
/// something after the scheme. Case-insensitive; anything else (including
/// `javascript:`, `data:`, `vbscript:` and relative URLs) is refused.
pub fn safe_href(href: &str) -> bool {
    ["http://", "https://", "mailto:"].iter().any(|scheme| {
        href.len() > scheme.len() && href.get(..scheme.len()).is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    }) && href.chars().all(url_char_or_paren)
}

/// The current user's names, for mentions: the full name (words separated
/// by single spaces) and the first word of it.
struct Names {
    full: Vec<char>,
    first: Vec<char>,
}

impl Names {
    fn new(full_name: Option<&str>) -> Self {
        let words: Vec<&str> = full_name.map(|n| n.split_whitespace().collect()).unwrap_or_default();
        Self {
            full: words.join(" ").chars().collect(),
            first: words.first().map(|w| w.chars().collect()).unwrap_or_default(),
        }
    }

    /// The length of the current user's name at `s[from..]` (full name
    /// preferred), if it is there and ends at a word boundary.
    fn at(&self, s: &[char], from: usize) -> Option<usize> {
        [&self.full, &self.first].into_iter().find_map(|name| {
            let end = from + name.len();
            let here = !name.is_empty()
                && s.get(from..end).is_some_and(|t| t.iter().zip(name.iter()).all(|(a, b)| eq_ignore_case(*a, *b)))
                && s.get(end).is_none_or(|c| !is_word(*c));
            here.then_some(name.len())
        })
    }
}

/// Case-insensitive for ASCII letters only: Unicode case folding would pull
/// its tables into the wasm client (README, "A small client"), and names
/// in other scripts still match when written the same way.
fn eq_ignore_case(a: char, b: char) -> bool {
    a.eq_ignore_ascii_case(&b)
}

/// A character that continues a word: ASCII letters, digits and `_`, and
/// any non-ASCII character but a space (letters of every script, without
/// the Unicode property tables `char::is_alphanumeric` would link in).
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace())
}

/// A character a URL may contain here (parentheses are handled apart).
fn url_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | '"' | '`' | '[' | ']' | '(' | ')')
}

fn url_char_or_paren(c: char) -> bool {
    url_char(c) || c == '(' || c == ')'
}

/// A line that opens a code block: "```", optionally followed by a
/// language name (ignored), and no other backtick (so "```x```" on one
/// line is inline code).
fn is_fence_opener(line: &str) -> bool {
    line.trim_start().strip_prefix("```").is_some_and(|rest| !rest.contains('`'))
}

fn is_fence_closer(line: &str) -> bool {
    line.trim() == "```"
}

/// A list item line: "- ", "* " or "1. " (up to three spaces before it),
/// with its number (`None` for a bullet) and its content.
fn list_item(line: &str) -> Option<(Option<u32>, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let line = &line[indent..];
    if let Some(rest) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return Some((None, rest));
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if (1..=9).contains(&digits) {
        let rest = line[digits..].strip_prefix(". ")?;
        return Some((Some(line[..digits].parse().ok()?), rest));
    }
    None
}

/// Ends the paragraph being gathered: blank lines around it go (the blocks
/// around it are apart already), the lines in between stay.
fn flush_paragraph(blocks: &mut Vec<Block>, para: &mut Vec<&str>, names: &Names) {
    let first = para.iter().position(|l| !l.trim().is_empty());
    let last = para.iter().rposition(|l| !l.trim().is_empty());
    if let (Some(first), Some(last)) = (first, last) {
        let text = para[first..=last].join("\n");
        blocks.push(Block::Paragraph(inlines(&text.chars().collect::<Vec<_>>(), names, 0, true)));
    }
    para.clear();
}

/// How many `c` start at `s[i]`.
fn run_len(s: &[char], i: usize, c: char) -> usize {
    s[i..].iter().take_while(|&&x| x == c).count()
}

/// Parses the inline spans of `s` at nesting `depth`; `links`: whether
/// links may start here (not inside a link's label).
fn inlines(s: &[char], names: &Names, depth: usize, links: bool) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut buf = String::new();
    // Closing searches that found nothing from where they started: a later
    // opener of the same kind would find nothing either. Index: `*`, `**`,
    // `_`, `__`; code spans by backtick count.
    let mut no_closer = [false; 4];
    let mut no_code_closer: Vec<usize> = Vec::new();
    let nest = depth < MAX_NESTING;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let boundary = i == 0 || !is_word(s[i - 1]);
        match c {
            '`' => {
                let n = run_len(s, i, '`');
                if !no_code_closer.contains(&n) {
                    match code_closer(s, i + n, n) {
                        Some(close) => {
                            flush(&mut out, &mut buf);
                            out.push(Inline::Code(s[i + n..close].iter().collect()));
                            i = close + n;
                            continue;
                        }
                        None => no_code_closer.push(n),
                    }
                }
                buf.extend(&s[i..i + n]);
                i += n;
                continue;
            }
            '*' | '_' if nest => {
                let run = run_len(s, i, c);
                let k: usize = match run {
                    1 | 3 => 1,
                    2 => 2,
                    _ => 0,
                };
                let slot = usize::from(c == '_') * 2 + k.saturating_sub(1);
                let opens = k > 0
                    && (c == '*' || boundary)
                    && s.get(i + run).is_some_and(|n| !n.is_whitespace())
                    && !no_closer[slot];
                if opens {
                    match emphasis_closer(s, i + k, c, k) {
                        Some(close) => {
                            flush(&mut out, &mut buf);
                            let inner = inlines(&s[i + k..close], names, depth + 1, links);
                            out.push(if k == 2 { Inline::Strong(inner) } else { Inline::Emphasis(inner) });
                            i = close + k;
                            continue;
                        }
                        None => no_closer[slot] = true,
                    }
                }
                buf.extend(&s[i..i + run]);
                i += run;
                continue;
            }
            '[' if nest && links => {
                if let Some((label_end, href, after)) = bracket_link(s, i) {
                    flush(&mut out, &mut buf);
                    let label = inlines(&s[i + 1..label_end], names, depth + 1, false);
                    out.push(Inline::Link { href, label });
                    i = after;
                    continue;
                }
            }
            'h' | 'H' if links && boundary => {
                if let Some(end) = bare_url(s, i) {
                    flush(&mut out, &mut buf);
                    let url: String = s[i..end].iter().collect();
                    out.push(Inline::Link { href: url.clone(), label: vec![Inline::Text(url)] });
                    i = end;
                    continue;
                }
            }
            '@' if boundary && (i == 0 || s[i - 1] != '@') => {
                let (len, me) = match names.at(s, i + 1) {
                    Some(len) => (len, true),
                    None => (mention_len(s, i + 1), false),
                };
                if len > 0 {
                    flush(&mut out, &mut buf);
                    out.push(Inline::Mention { text: s[i..=i + len].iter().collect(), me });
                    i += 1 + len;
                    continue;
                }
            }
            _ => {}
        }
        buf.push(c);
        i += 1;
    }
    flush(&mut out, &mut buf);
    out
}

fn flush(out: &mut Vec<Inline>, buf: &mut String) {
    if !buf.is_empty() {
        out.push(Inline::Text(std::mem::take(buf)));
    }
}

/// Where a code span of `n` backticks that opened before `from` closes:
/// the next run of exactly `n` backticks.
fn code_closer(s: &[char], from: usize, n: usize) -> Option<usize> {
    let mut j = from;
    while j < s.len() {
        if s[j] == '`' {
            let m = run_len(s, j, '`');
            if m == n {
                return Some(j);
            }
            j += m;
        } else {
            j += 1;
        }
    }
    None
}

/// Where emphasis of `k` (1 or 2) `c`s whose content starts at `from`
/// closes. A closing run follows a non-space, is not empty, and for `_`
/// is not followed by a letter or digit. Runs of the other width are
/// skipped (so `*a **b** c*` closes at the last `*`); a run of three closes
/// either, with its last `k` characters.
fn emphasis_closer(s: &[char], from: usize, c: char, k: usize) -> Option<usize> {
    let mut j = from;
    while j < s.len() {
        if s[j] != c {
            j += 1;
            continue;
        }
        let m = run_len(s, j, c);
        let fits = m == k || m == 3;
        let after_ok = c == '*' || s.get(j + m).is_none_or(|n| !is_word(*n));
        let before_ok = j > from && !s[j - 1].is_whitespace();
        if fits && after_ok && before_ok {
            return Some(j + m - k);
        }
        j += m;
    }
    None
}

/// `[label](url)` at `s[i]` with a safe URL: (where the label ends, the
/// URL, where the link ends). Labels hold no brackets or line breaks; URLs
/// no spaces, and parentheses only balanced.
fn bracket_link(s: &[char], i: usize) -> Option<(usize, String, usize)> {
    let mut j = i + 1;
    while *s.get(j)? != ']' {
        if matches!(s[j], '[' | '\n') {
            return None;
        }
        j += 1;
    }
    if j == i + 1 || s.get(j + 1) != Some(&'(') {
        return None;
    }
    let start = j + 2;
    let mut k = start;
    let mut open = 0usize;
    loop {
        if k - start > MAX_URL_CHARS {
            return None;
        }
        match *s.get(k)? {
            '(' => open += 1,
            ')' if open == 0 => break,
            ')' => open -= 1,
            c if !url_char(c) => return None,
            _ => {}
        }
        k += 1;
    }
    let href: String = s[start..k].iter().collect();
    safe_href(&href).then_some((j, href, k + 1))
}

/// A bare `http://` or `https://` URL at `s[i]`: where it ends. Trailing
/// punctuation (a sentence's full stop, a closing parenthesis it did not
/// open, emphasis markers) is not part of it.
fn bare_url(s: &[char], i: usize) -> Option<usize> {
    let starts = |scheme: &str| {
        let n = scheme.len();
        s.get(i..i + n)
            .is_some_and(|t| t.iter().zip(scheme.chars()).all(|(a, b)| a.eq_ignore_ascii_case(&b)))
            .then_some(n)
    };
    let scheme = starts("https://").or_else(|| starts("http://"))?;
    let len = s[i..].iter().take(MAX_URL_CHARS + 1).take_while(|c| url_char_or_paren(**c)).count();
    if len > MAX_URL_CHARS {
        return None;
    }
    let mut end = i + len;
    let url = &s[i..end];
    let (mut opens, mut closes) =
        (url.iter().filter(|&&c| c == '(').count(), url.iter().filter(|&&c| c == ')').count());
    // The scheme ends in '/', which is never trimmed: `end` stays past it.
    while end > i + scheme {
        match s[end - 1] {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' | '_' => {}
            ')' if closes > opens => closes -= 1,
            '(' => opens -= 1,
            _ => break,
        }
        end -= 1;
    }
    (end > i + scheme).then_some(end)
}

/// The length of an `@word` name at `s[from..]`: letters, digits, `_`, and
/// `-` or `.` inside it.
fn mention_len(s: &[char], from: usize) -> usize {
    let n = s[from.min(s.len())..].iter().take_while(|&&c| is_word(c) || c == '-' || c == '.').count();
    s[from..from + n].iter().rposition(|&c| is_word(c)).map_or(0, |p| p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Inline {
        Inline::Text(s.into())
    }

    fn para(text: &str) -> Vec<Inline> {
        match parse(text, Some("Bob Stone")).as_slice() {
            [Block::Paragraph(i)] => i.clone(),
            other => panic!("not one paragraph: {other:?}"),
        }
    }

    fn link(href: &str, label: &str) -> Inline {
        Inline::Link { href: href.into(), label: vec![t(label)] }
    }

    /// Every href anywhere in the parse.
    fn hrefs(text: &str) -> Vec<String> {
        fn walk(inlines: &[Inline], out: &mut Vec<String>) {
            for i in inlines {
                match i {
                    Inline::Link { href, label } => {
                        out.push(href.clone());
                        walk(label, out);
                    }
                    Inline::Strong(c) | Inline::Emphasis(c) => walk(c, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for b in parse(text, None) {
            match b {
                Block::Paragraph(i) => walk(&i, &mut out),
                Block::List { items, .. } => items.iter().for_each(|i| walk(i, &mut out)),
                Block::Code(_) => {}
            }
        }
        out
    }

    #[test]
    fn plain_text_is_one_paragraph_with_its_line_breaks() {
        assert_eq!(para("hello\n\n  world"), [t("hello\n\n  world")]);
        assert_eq!(parse("", None), []);
        assert_eq!(parse("\n \n", None), []);
        assert_eq!(para("snake_case and 2 * 3 * 4 and a_b_c"), [t("snake_case and 2 * 3 * 4 and a_b_c")]);
    }

    #[test]
    fn bold_italic_and_code() {
        assert_eq!(para("a **b** c"), [t("a "), Inline::Strong(vec![t("b")]), t(" c")]);
        assert_eq!(para("__b__"), [Inline::Strong(vec![t("b")])]);
        assert_eq!(para("*i* and _j_"), [Inline::Emphasis(vec![t("i")]), t(" and "), Inline::Emphasis(vec![t("j")])]);
        assert_eq!(para("use `x *y*` now"), [t("use "), Inline::Code("x *y*".into()), t(" now")]);
        assert_eq!(para("``a ` b``"), [Inline::Code("a ` b".into())]);
        assert_eq!(para("```x```"), [Inline::Code("x".into())]);
        // `_` only at word boundaries; `*` inside words too.
        assert_eq!(para("foo_bar_ x"), [t("foo_bar_ x")]);
        assert_eq!(para("a*b*c"), [t("a"), Inline::Emphasis(vec![t("b")]), t("c")]);
    }

    #[test]
    fn nesting_is_capped() {
        assert_eq!(para("*a **b** c*"), [Inline::Emphasis(vec![t("a "), Inline::Strong(vec![t("b")]), t(" c")])]);
        assert_eq!(para("***x***"), [Inline::Emphasis(vec![Inline::Strong(vec![t("x")])])]);
        // A third level is literal.
        assert_eq!(
            para("**a _b *c* d_ e**"),
            [Inline::Strong(vec![t("a "), Inline::Emphasis(vec![t("b *c* d")]), t(" e")])]
        );
        assert_eq!(
            para("**[x *y*](https://e.com)**"),
            [Inline::Strong(vec![Inline::Link { href: "https://e.com".into(), label: vec![t("x *y*")] }])]
        );
    }

    #[test]
    fn unclosed_markers_are_literal() {
        assert_eq!(para("**bold"), [t("**bold")]);
        assert_eq!(para("*a _b `c [d](e"), [t("*a _b `c [d](e")]);
        assert_eq!(para("a ** b **"), [t("a ** b **")]);
        assert_eq!(para("****"), [t("****")]);
        assert_eq!(para("```\nno end"), [t("```\nno end")]);
        // An unclosed link's URL is still a bare one.
        assert_eq!(para("[x](https://e.com"), [t("[x]("), link("https://e.com", "https://e.com")]);
    }

    #[test]
    fn code_blocks_keep_their_text() {
        assert_eq!(
            parse("see:\n```rust\nlet a = **b**;\n  <b>x</b>\n```\nafter", None),
            [
                Block::Paragraph(vec![t("see:")]),
                Block::Code("let a = **b**;\n  <b>x</b>".into()),
                Block::Paragraph(vec![t("after")]),
            ]
        );
        assert_eq!(parse("```\n```", None), [Block::Code(String::new())]);
        // An unclosed fence is text; a later fence pair still is a block.
        assert_eq!(parse("```a\nx\n```\n```b", None), [Block::Code("x".into()), Block::Paragraph(vec![t("```b")])]);
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse("shopping:\n- milk\n* **eggs**\n\n3. one\n4. two\nend", None),
            [
                Block::Paragraph(vec![t("shopping:")]),
                Block::List { start: None, items: vec![vec![t("milk")], vec![Inline::Strong(vec![t("eggs")])]] },
                Block::List { start: Some(3), items: vec![vec![t("one")], vec![t("two")]] },
                Block::Paragraph(vec![t("end")]),
            ]
        );
        assert_eq!(parse("-not a list\n1.nor this\n1234567890. nor", None).len(), 1);
    }

    #[test]
    fn links_bare_and_labelled() {
        assert_eq!(
            para("see https://example.com/x, or (http://e.com/a_(b)) and HTTPS://E.COM."),
            [
                t("see "),
                link("https://example.com/x", "https://example.com/x"),
                t(", or ("),
                link("http://e.com/a_(b)", "http://e.com/a_(b)"),
                t(") and "),
                link("HTTPS://E.COM", "HTTPS://E.COM"),
                t("."),
            ]
        );
        assert_eq!(
            para("[the **docs**](https://e.com/a?b=1&c=(2)) [mail](mailto:a@b.c)"),
            [
                Inline::Link {
                    href: "https://e.com/a?b=1&c=(2)".into(),
                    label: vec![t("the "), Inline::Strong(vec![t("docs")])]
                },
                t(" "),
                link("mailto:a@b.c", "mail"),
            ]
        );
        assert_eq!(para("**https://e.com**"), [Inline::Strong(vec![link("https://e.com", "https://e.com")])]);
        assert_eq!(para("https:// and xhttps://e.com"), [t("https:// and xhttps://e.com")]);
    }

    #[test]
    fn dangerous_urls_stay_text() {
        for text in [
            "[bad](javascript:alert(1))",
            "[bad](JaVaScRiPt:alert(1))",
            "[bad]( javascript:alert(1))",
            "[bad](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
            "[bad](vbscript:msgbox(1))",
            "[bad](/relative) [bad](//e.com) [bad](e.com)",
            "javascript:alert(1) data:text/html,<script>alert(1)</script>",
            "[bad](java\nscript:alert(1))",
        ] {
            assert_eq!(hrefs(text), Vec::<String>::new(), "{text}");
            assert_eq!(para(text), [t(text)], "{text}");
        }
        assert!(!safe_href("javascript:alert(1)"));
        assert!(!safe_href("https:"));
        assert!(!safe_href("http://e.com/a b"));
        assert!(safe_href("HTTP://e.com"));
        // A quote ends a URL: no attribute can be smuggled in.
        assert_eq!(hrefs("[x](https://e.com\"onmouseover=\"alert(1))"), ["https://e.com"]);
        // Only the good link of a mix becomes one.
        assert_eq!(hrefs("[a](javascript:x) [b](https://ok.com)"), ["https://ok.com"]);
    }

    #[test]
    fn html_stays_literal() {
        for text in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "&lt;b&gt; <b>not bold</b> <a href=\"javascript:alert(1)\">x</a>",
        ] {
            assert_eq!(para(text), [t(text)]);
        }
    }

    #[test]
    fn mentions_of_me_and_others() {
        assert_eq!(
            para("@bob look, @Bob Stone! @alice-b. mail bob@x.com @"),
            [
                Inline::Mention { text: "@bob".into(), me: true },
                t(" look, "),
                Inline::Mention { text: "@Bob Stone".into(), me: true },
                t("! "),
                Inline::Mention { text: "@alice-b".into(), me: false },
                t(". mail bob@x.com @"),
            ]
        );
        // A name that merely starts the same is someone else.
        assert_eq!(para("@Bobby"), [Inline::Mention { text: "@Bobby".into(), me: false }]);
        assert_eq!(para("@BOB_"), [Inline::Mention { text: "@BOB_".into(), me: false }]);
        assert!(mentions("hey @Bob look", "Bob k3x9"));
        assert!(mentions("- **@bob k3x9**: review", "Bob k3x9"));
        assert!(!mentions("hey @Bobby", "Bob k3x9"));
        assert!(!mentions("`@Bob` in code", "Bob k3x9"));
        assert!(!mentions("```\n@Bob\n```", "Bob k3x9"));
        assert!(!mentions("bob@example.com", "Bob"));
        // Other scripts: word characters, matched as written (ASCII
        // letters in any case).
        assert!(mentions("@josé!", "José Ruiz"));
        assert!(!mentions("@Joséa", "José Ruiz"));
        assert!(mentions("привет @Ира", "Ира"));
        assert!(!mentions("@ nobody", ""));
        // Without a name every mention is someone else's.
        assert_eq!(parse("@Bob", None), [Block::Paragraph(vec![Inline::Mention { text: "@Bob".into(), me: false }])]);
    }

    #[test]
    fn previews_drop_the_markers() {
        assert_eq!(plain_text("**hi** [there](https://e.com) `x`\n- a\n- b"), "hi there x\na\nb");
        assert_eq!(plain_text("[bad](javascript:x)"), "[bad](javascript:x)");
    }

    #[test]
    fn pathological_input_finishes_fast() {
        let inputs = [
            "*".repeat(4_000),
            "* ".repeat(2_000),
            "*a ".repeat(1_333),
            "**a _".repeat(800),
            "_a ".repeat(1_333),
            "[".repeat(4_000),
            "[a](".repeat(1_000),
            "[a](https://e.com/(".repeat(200),
            format!("{}{}", "[".repeat(2_000), "]".repeat(2_000)),
            "`".repeat(4_000),
            (1..90).map(|n| "`".repeat(n)).collect::<Vec<_>>().join("a"),
            "```\n".repeat(1_000),
            "- ".repeat(2_000),
            "@".repeat(4_000),
            "https://".repeat(500),
            "*_`[@h".repeat(666),
            "x".repeat(20_000),
        ];
        let started = std::time::Instant::now();
        for input in &inputs {
            let blocks = parse(input, Some("Bob"));
            // Nothing is lost: the markers that did not apply are text.
            assert!(!blocks.is_empty() || input.trim().is_empty());
            mentions(input, "Bob");
            plain_text(input);
        }
        let took = started.elapsed();
        assert!(took.as_millis() < 500, "took {took:?}");
    }

    #[test]
    fn unparsed_text_keeps_every_character() {
        let text = "*a _b `c [d](e) @f <g> h*";
        assert_eq!(plain_text(text).len(), text.len() - 2, "only the closed `*` pair goes");
        let long = "*x* ".repeat(MAX_PARSED_CHARS);
        assert_eq!(parse(&long, None), [Block::Paragraph(vec![t(&long)])]);
    }
}
