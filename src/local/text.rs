//! A tweet-aware tokenizer.
//!
//! It works on `&str`: text that was not valid UTF-8 never reaches it, because
//! decoding a record (see [`crate::decode`]) already failed with a typed error
//! upstream. Every `&str` is accepted: empty text, a 100 KB text, stray
//! combining marks or private-use characters all tokenize without panicking.
//!
//! The tokenizer writes into a reusable [`TokenBuf`]; once the buffer has grown
//! to the size of the largest text seen, tokenizing allocates nothing.

use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// The kind of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A run of letters and digits that is not a number (`"booting"`, `"fra1"`, `"don't"`).
    Word,
    /// An `@mention`.
    Mention,
    /// A `#hashtag`.
    Hashtag,
    /// A URL (`http://…`, `https://…`, `www.…`).
    Url,
    /// A number (`"25"`, `"3.5"`, `"10:30"`).
    Number,
    /// One emoji character (skin-tone modifiers, joiners and variation
    /// selectors are dropped).
    Emoji,
    /// An ASCII emoticon such as `":)"`, `":-("`, `"<3"` (noses are dropped:
    /// `":-)"` becomes `":)"`).
    Emoticon,
    /// `"?"` or `"!"` (a run of the same mark counts once).
    Punct,
}

/// What to do with tokens of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindMode {
    /// Keep the token's own text (`"@united"`).
    Keep,
    /// Replace the token by its kind (`"<mention>"`).
    Kind,
    /// Drop the token.
    Drop,
}

/// How to tokenize. Stored in the model file as part of the featurizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Lowercase the text.
    pub lowercase: bool,
    /// Apply Unicode NFKC normalisation (fullwidth letters, ligatures and
    /// compatibility forms become their plain equivalents). ASCII text skips it.
    pub nfkc: bool,
    /// Collapse a character repeated three or more times to two
    /// (`"sooooo"` → `"soo"`), in words and hashtags.
    pub collapse_elongation: bool,
    /// What to do with `@mentions`.
    pub mentions: KindMode,
    /// What to do with `#hashtags`.
    pub hashtags: KindMode,
    /// What to do with URLs.
    pub urls: KindMode,
    /// What to do with numbers.
    pub numbers: KindMode,
    /// What to do with emoji and emoticons.
    pub emoji: KindMode,
    /// Emit `"?"` and `"!"` as tokens.
    pub punctuation: bool,
}

impl Default for TokenizerConfig {
    /// Lowercase, NFKC, collapse elongation, keep mentions, hashtags and
    /// emoji, map URLs to `"<url>"` and numbers to `"<num>"`, keep `?` and `!`.
    fn default() -> Self {
        TokenizerConfig {
            lowercase: true,
            nfkc: true,
            collapse_elongation: true,
            mentions: KindMode::Keep,
            hashtags: KindMode::Keep,
            urls: KindMode::Kind,
            numbers: KindMode::Kind,
            emoji: KindMode::Keep,
            punctuation: true,
        }
    }
}

/// One token: its kind and where its text lies in the [`TokenBuf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    kind: TokenKind,
    text: Piece,
}

/// Where a token's text is. Most tokens are a slice of the normalised
/// input, so tokenizing copies no text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    /// `normalized[start..end]`.
    Input(usize, usize),
    /// `text[start..end]` (a collapsed word).
    Own(usize, usize),
    /// A fixed text (`"<url>"`, a canonical emoticon).
    Static(&'static str),
}

/// A token's text as the tokenizer found it.
#[derive(Clone, Copy, Debug)]
enum Found<'a> {
    /// Starting at this byte offset of the normalised input.
    Input(usize, &'a str),
    /// A fixed text.
    Static(&'static str),
}

/// Reusable scratch space for [`Tokenizer::tokenize`], holding the tokens of
/// the last text.
#[derive(Clone, Debug, Default)]
pub struct TokenBuf {
    normalized: String,
    text: String,
    spans: Vec<Span>,
    /// One bit per [`TokenKind`] found in the text (kept or dropped).
    seen: u16,
}

impl TokenBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        TokenBuf::default()
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`-th token, if any.
    pub fn get(&self, i: usize) -> Option<(TokenKind, &str)> {
        let span = self.spans.get(i)?;
        Some((span.kind, self.resolve(span.text)))
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = (TokenKind, &str)> + '_ {
        self.spans.iter().map(|s| (s.kind, self.resolve(s.text)))
    }

    fn resolve(&self, piece: Piece) -> &str {
        match piece {
            Piece::Input(a, b) => self.normalized.get(a..b).unwrap_or(""),
            Piece::Own(a, b) => self.text.get(a..b).unwrap_or(""),
            Piece::Static(s) => s,
        }
    }

    /// The text after normalisation and lowercasing.
    pub(crate) fn normalized(&self) -> &str {
        &self.normalized
    }

    /// Whether the text had a token of this kind, kept or dropped.
    pub fn has_kind(&self, kind: TokenKind) -> bool {
        self.seen & kind_bit(kind) != 0
    }

    fn clear(&mut self) {
        self.normalized.clear();
        self.text.clear();
        self.spans.clear();
        self.seen = 0;
    }
}

/// The tweet-aware tokenizer.
///
/// ```
/// use streamsift::local::{TokenBuf, TokenKind, Tokenizer, TokenizerConfig};
/// let tokenizer = Tokenizer::new(TokenizerConfig::default());
/// let mut buf = TokenBuf::new();
/// tokenizer.tokenize("@United SOOOO late again :( #fail https://t.co/x", &mut buf);
/// let tokens: Vec<_> = buf.iter().collect();
/// assert_eq!(tokens, vec![
///     (TokenKind::Mention, "@united"),
///     (TokenKind::Word, "soo"),
///     (TokenKind::Word, "late"),
///     (TokenKind::Word, "again"),
///     (TokenKind::Emoticon, ":("),
///     (TokenKind::Hashtag, "#fail"),
///     (TokenKind::Url, "<url>"),
/// ]);
/// ```
#[derive(Clone, Debug)]
pub struct Tokenizer {
    config: TokenizerConfig,
}

/// Emoticons, longest first where one is a prefix of another. Matched on
/// lowercased text, at a token boundary.
const EMOTICONS: &[&str] = &[
    ">:-(", ">:(", ":'-(", ":'(", ":-)", ":-(", ":-d", ":-p", ":-/", ":-|", ":-o", ":-*", ";-)",
    "</3", "^_^", "-_-", ":)", ":(", ":d", ":p", ":/", ":|", ":o", ":*", ";)", ":]", ":[", "=)",
    "=(", "<3", "^^", "xd",
];

impl Tokenizer {
    /// A tokenizer with this configuration.
    pub fn new(config: TokenizerConfig) -> Self {
        Tokenizer { config }
    }

    /// The configuration.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Tokenizes `text` into `buf`, replacing what it held.
    pub fn tokenize(&self, text: &str, buf: &mut TokenBuf) {
        buf.clear();
        self.normalize(text, &mut buf.normalized);
        let TokenBuf {
            normalized,
            text: out,
            spans,
            seen,
        } = buf;
        let s = normalized.as_str();
        let bytes = s.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            // ASCII whitespace, the commonest byte, first (char::is_whitespace
            // for ASCII is exactly space and \t..=\r).
            if b == b' ' || (b'\t'..=b'\r').contains(&b) {
                i += 1;
                continue;
            }
            let rest = &s[i..];
            let Some(c) = rest.chars().next() else { break };
            if c.is_whitespace() {
                i += c.len_utf8();
            } else if let Some(len) = matches!(b, b'h' | b'H' | b'w' | b'W')
                .then(|| url_len(rest))
                .flatten()
            {
                let url = trim_url(&rest[..len]);
                *seen |= kind_bit(TokenKind::Url);
                let found = Found::Input(i, url);
                self.push(out, spans, TokenKind::Url, self.config.urls, found, "<url>");
                i += len;
            } else if (c == '@' || c == '#') && rest[1..].chars().next().is_some_and(is_word_char) {
                let len = 1 + word_len(&rest[1..]);
                let (kind, mode, name) = if c == '@' {
                    (TokenKind::Mention, self.config.mentions, "<mention>")
                } else {
                    (TokenKind::Hashtag, self.config.hashtags, "<hashtag>")
                };
                *seen |= kind_bit(kind);
                self.push(out, spans, kind, mode, Found::Input(i, &rest[..len]), name);
                i += len;
            } else if let Some(emo) = (is_emoticon_start(b) && at_boundary(s, i))
                .then(|| emoticon_at(rest))
                .flatten()
            {
                let canonical = canonical_emoticon(emo);
                let mode = self.config.emoji;
                *seen |= kind_bit(TokenKind::Emoticon);
                let found = Found::Static(canonical);
                self.push(out, spans, TokenKind::Emoticon, mode, found, "<emoticon>");
                i += emo.len();
            } else if is_word_char(c) {
                let len = word_len(rest);
                let word = &rest[..len];
                if is_number(word) {
                    let mode = self.config.numbers;
                    *seen |= kind_bit(TokenKind::Number);
                    let found = Found::Input(i, word);
                    self.push(out, spans, TokenKind::Number, mode, found, "<num>");
                } else {
                    *seen |= kind_bit(TokenKind::Word);
                    let found = Found::Input(i, word);
                    self.push(out, spans, TokenKind::Word, KindMode::Keep, found, "");
                }
                i += len;
            } else if is_emoji(c) {
                let mode = self.config.emoji;
                let e = &rest[..c.len_utf8()];
                *seen |= kind_bit(TokenKind::Emoji);
                self.push(
                    out,
                    spans,
                    TokenKind::Emoji,
                    mode,
                    Found::Input(i, e),
                    "<emoji>",
                );
                i += c.len_utf8();
            } else if c == '?' || c == '!' {
                let len = rest.bytes().take_while(|&x| x == b).count();
                *seen |= kind_bit(TokenKind::Punct);
                if self.config.punctuation {
                    let mark = Found::Input(i, &rest[..1]);
                    self.push(out, spans, TokenKind::Punct, KindMode::Keep, mark, "");
                }
                i += len;
            } else {
                i += c.len_utf8();
            }
        }
    }

    fn normalize(&self, text: &str, out: &mut String) {
        let lower = self.config.lowercase;
        if text.is_ascii() {
            out.push_str(text);
            if lower {
                out.make_ascii_lowercase();
            }
            return;
        }
        let mut push = |c: char| {
            if c.is_ascii() {
                out.push(if lower { c.to_ascii_lowercase() } else { c });
                return;
            }
            let c = match c {
                '\u{2018}' | '\u{2019}' | '\u{02BC}' => '\'',
                _ => c,
            };
            if lower {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        };
        // Most non-ASCII tweets (emoji, accents) are already in NFKC: the
        // quick check says so without normalising.
        if self.config.nfkc && is_nfkc_quick(text.chars()) != IsNormalized::Yes {
            text.nfkc().for_each(&mut push);
        } else {
            text.chars().for_each(&mut push);
        }
    }

    fn push(
        &self,
        out: &mut String,
        spans: &mut Vec<Span>,
        kind: TokenKind,
        mode: KindMode,
        found: Found<'_>,
        kind_name: &'static str,
    ) {
        let text = match (mode, found) {
            (KindMode::Drop, _) => return,
            (KindMode::Kind, _) => Piece::Static(kind_name),
            (KindMode::Keep, Found::Static(s)) => Piece::Static(s),
            (KindMode::Keep, Found::Input(at, token)) => {
                let collapse = self.config.collapse_elongation
                    && matches!(kind, TokenKind::Word | TokenKind::Hashtag)
                    && is_elongated(token);
                if collapse {
                    let start = out.len();
                    push_collapsed(out, token);
                    Piece::Own(start, out.len())
                } else {
                    Piece::Input(at, at + token.len())
                }
            }
        };
        spans.push(Span { kind, text });
    }
}

/// The bit of `kind` in [`TokenBuf`]'s set of kinds seen.
fn kind_bit(kind: TokenKind) -> u16 {
    1 << (kind as u16)
}

/// Whether `b` can start an emoticon.
fn is_emoticon_start(b: u8) -> bool {
    matches!(
        b,
        b':' | b';' | b'<' | b'>' | b'=' | b'^' | b'-' | b'x' | b'X'
    )
}

/// Whether byte offset `i` of `s` starts a token: the text starts there or
/// whitespace precedes it.
fn at_boundary(s: &str, i: usize) -> bool {
    s[..i].chars().next_back().is_none_or(char::is_whitespace)
}

/// Whether `text` may have a character three times in a row (exact for
/// ASCII; any non-ASCII text says yes and [`push_collapsed`] decides).
fn is_elongated(text: &str) -> bool {
    let b = text.as_bytes();
    !text.is_ascii() || b.windows(3).any(|w| w[0] == w[1] && w[1] == w[2])
}

/// Appends `text`, keeping at most two of any run of one character.
fn push_collapsed(out: &mut String, text: &str) {
    let mut last = None;
    let mut run = 0usize;
    for c in text.chars() {
        if Some(c) == last {
            run += 1;
        } else {
            last = Some(c);
            run = 1;
        }
        if run <= 2 {
            out.push(c);
        }
    }
}

/// Letters, digits, `_` and combining marks.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || c == '_'
        || (!c.is_ascii() && is_combining_mark(c) && !is_variation_selector(c))
}

/// Variation selectors (emoji/text presentation), which are marks but noise.
fn is_variation_selector(c: char) -> bool {
    matches!(c as u32, 0xFE00..=0xFE0F | 0xE0100..=0xE01EF)
}

/// The byte length of the word at the start of `s`: word characters, with
/// single inner apostrophes (`don't`) and inner `.`, `,`, `:` between digits
/// (`3.5`, `10:30`).
fn word_len(s: &str) -> usize {
    let b = s.as_bytes();
    let char_at = |i: usize| -> Option<char> {
        match b.get(i) {
            Some(&x) if x < 0x80 => Some(x as char),
            Some(_) => s.get(i..).and_then(|r| r.chars().next()),
            None => None,
        }
    };
    let mut i = 0;
    loop {
        // The common case: a run of ASCII letters, digits and `_`.
        while b
            .get(i)
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_')
        {
            i += 1;
        }
        match b.get(i) {
            // Any other ASCII byte but these four ends the word.
            Some(x) if x.is_ascii() && !matches!(x, b'\'' | b'.' | b',' | b':') => break,
            _ => {}
        }
        let Some(c) = char_at(i) else { break };
        let prev = || s[..i].chars().next_back();
        let len = c.len_utf8();
        let inner = match c {
            '\'' => {
                prev().is_some_and(is_word_char)
                    && char_at(i + len).is_some_and(char::is_alphanumeric)
            }
            '.' | ',' | ':' => {
                prev().is_some_and(|p| p.is_ascii_digit())
                    && char_at(i + len).is_some_and(|n| n.is_ascii_digit())
            }
            _ => is_word_char(c),
        };
        if !inner {
            break;
        }
        i += len;
    }
    i
}

/// Digits with optional inner separators.
fn is_number(word: &str) -> bool {
    word.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && word
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',' || b == b':')
}

/// The length of a URL at the start of `s` (up to the next whitespace).
fn url_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let starts = |p: &[u8]| b.len() > p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    if !(starts(b"http://") || starts(b"https://") || starts(b"www.")) {
        return None;
    }
    Some(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// A URL without trailing punctuation that ends sentences.
fn trim_url(url: &str) -> &str {
    url.trim_end_matches(['.', ',', '!', '?', ')', ':', ';', '"', '\''])
}

/// The emoticon at the start of `s`, if one ends at a token boundary.
fn emoticon_at(s: &str) -> Option<&str> {
    if !is_emoticon_start(*s.as_bytes().first()?) {
        return None;
    }
    EMOTICONS.iter().find_map(|&e| {
        let m = s.get(..e.len())?;
        if !m.eq_ignore_ascii_case(e) {
            return None;
        }
        let after = s[e.len()..].chars().next();
        after.is_none_or(|a| !is_word_char(a)).then_some(m)
    })
}

/// An emoticon with its nose dropped, lowercased: `":-D"` → `":d"`.
fn canonical_emoticon(e: &str) -> &'static str {
    let nose = |a: &'static str, b: &'static str| e.eq_ignore_ascii_case(a).then_some(b);
    nose(":-)", ":)")
        .or_else(|| nose(":-(", ":("))
        .or_else(|| nose(":-d", ":d"))
        .or_else(|| nose(":-p", ":p"))
        .or_else(|| nose(":-/", ":/"))
        .or_else(|| nose(":-|", ":|"))
        .or_else(|| nose(":-o", ":o"))
        .or_else(|| nose(":-*", ":*"))
        .or_else(|| nose(";-)", ";)"))
        .or_else(|| nose(":'-(", ":'("))
        .or_else(|| nose(">:-(", ">:("))
        .or_else(|| {
            EMOTICONS
                .iter()
                .copied()
                .find(|&known| known.eq_ignore_ascii_case(e))
        })
        .unwrap_or(":)")
}

/// Pictographic emoji (not modifiers, joiners or variation selectors, which
/// are skipped as noise).
fn is_emoji(c: char) -> bool {
    let u = c as u32;
    if (0x1F3FB..=0x1F3FF).contains(&u) {
        return false;
    }
    matches!(
        u,
        0x1F000..=0x1F02F
            | 0x1F0A0..=0x1F0FF
            | 0x1F1E6..=0x1F1FF
            | 0x1F300..=0x1F64F
            | 0x1F680..=0x1F6FF
            | 0x1F700..=0x1F77F
            | 0x1F900..=0x1F9FF
            | 0x1FA70..=0x1FAFF
            | 0x2600..=0x27BF
            | 0x2B50
            | 0x2B55
            | 0x231A..=0x231B
            | 0x23E9..=0x23F3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(config: TokenizerConfig, text: &str) -> Vec<(TokenKind, String)> {
        let mut buf = TokenBuf::new();
        Tokenizer::new(config).tokenize(text, &mut buf);
        buf.iter().map(|(k, t)| (k, t.to_string())).collect()
    }

    fn texts(text: &str) -> Vec<String> {
        toks(TokenizerConfig::default(), text)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn mentions_hashtags_urls_numbers() {
        let t = toks(
            TokenizerConfig::default(),
            "@nimbus_help fra1 down for 25 min, see https://status.example.com/x. #outage",
        );
        use TokenKind::*;
        let want: Vec<(TokenKind, String)> = vec![
            (Mention, "@nimbus_help".into()),
            (Word, "fra1".into()),
            (Word, "down".into()),
            (Word, "for".into()),
            (Number, "<num>".into()),
            (Word, "min".into()),
            (Word, "see".into()),
            (Url, "<url>".into()),
            (Hashtag, "#outage".into()),
        ];
        assert_eq!(t, want);
    }

    #[test]
    fn keep_mode_keeps_url_and_number_text() {
        let config = TokenizerConfig {
            urls: KindMode::Keep,
            numbers: KindMode::Keep,
            mentions: KindMode::Kind,
            ..TokenizerConfig::default()
        };
        let t: Vec<String> = toks(config, "@a v3.5 at 10:30 (www.Example.com/a)")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(t, ["<mention>", "v3.5", "at", "10:30", "www.example.com/a"]);
    }

    #[test]
    fn drop_mode_drops() {
        let config = TokenizerConfig {
            mentions: KindMode::Drop,
            emoji: KindMode::Drop,
            ..TokenizerConfig::default()
        };
        let t: Vec<String> = toks(config, "@a hi 🙂 :)")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(t, ["hi"]);
    }

    #[test]
    fn emoticons_at_boundaries_only() {
        assert_eq!(
            texts(":-) great :D <3 </3"),
            [":)", "great", ":d", "<3", "</3"]
        );
        assert_eq!(texts("so sad :'( >:-("), ["so", "sad", ":'(", ">:("]);
        // Not an emoticon inside a word or a URL.
        assert_eq!(texts("note:) https://x.io"), ["note", "<url>"]);
    }

    #[test]
    fn elongation_collapses_to_two() {
        assert_eq!(texts("sooooo gooood #yaaaay"), ["soo", "good", "#yaay"]);
        assert_eq!(texts("book"), ["book"]);
    }

    #[test]
    fn emoji_are_single_tokens_without_modifiers() {
        use TokenKind::*;
        let t = toks(TokenizerConfig::default(), "ok👍🏽🔥🔥✈️");
        assert_eq!(
            t,
            vec![
                (Word, "ok".into()),
                (Emoji, "👍".into()),
                (Emoji, "🔥".into()),
                (Emoji, "🔥".into()),
                (Emoji, "✈".into()),
            ]
        );
    }

    #[test]
    fn apostrophes_punctuation_and_unicode() {
        assert_eq!(
            texts("Doesn’t WORK?!?? ＡＢＣ café"),
            ["doesn't", "work", "?", "!", "?", "abc", "café"]
        );
        assert_eq!(texts("'quoted' it's"), ["quoted", "it's"]);
    }

    #[test]
    fn odd_input_does_not_panic() {
        let long = "a".repeat(100_000);
        assert_eq!(texts(&long), ["aa"]);
        assert!(texts("").is_empty());
        assert!(texts("   \n\t").is_empty());
        for s in [
            "@",
            "#",
            "@@",
            "##x",
            "http://",
            "https",
            "www.",
            ":",
            "<",
            "'",
            "1.",
            ".1",
            "1..2",
            "\u{0301}",
            "e\u{0301}\u{0301}",
            "\u{200d}\u{fe0f}",
            "\u{10FFFF}",
            "ﷺ",
            "ß",
            "İ",
        ] {
            let _ = texts(s);
        }
    }
}
