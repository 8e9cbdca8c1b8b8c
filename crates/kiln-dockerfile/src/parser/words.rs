//! Word splitting and JSON-array detection over logical-line text.
//! All positions are byte offsets into the logical text; splitting only
//! happens at ASCII bytes so every boundary is a char boundary.

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

pub(crate) fn skip_ws(t: &str, mut i: usize, end: usize) -> usize {
    let b = t.as_bytes();
    while i < end && is_ws(b[i]) {
        i += 1;
    }
    i
}

pub(crate) fn trim_end(t: &str, from: usize, mut end: usize) -> usize {
    let b = t.as_bytes();
    while end > from && is_ws(b[end - 1]) {
        end -= 1;
    }
    end
}

/// Plain whitespace split (BuildKit `parseStringsWhitespaceDelimited`).
pub(crate) fn split_ws(t: &str, from: usize, to: usize) -> Vec<(usize, usize)> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        i = skip_ws(t, i, to);
        if i >= to {
            break;
        }
        let s = i;
        while i < to && !is_ws(b[i]) {
            i += 1;
        }
        out.push((s, i));
    }
    out
}

/// Split on whitespace outside quotes; the escape char protects the next
/// byte (BuildKit `parseWords`, used by ENV/LABEL/ARG and heredoc detection).
pub(crate) fn split_quoted(t: &str, from: usize, to: usize, escape: u8) -> Vec<(usize, usize)> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        i = skip_ws(t, i, to);
        if i >= to {
            break;
        }
        let s = i;
        let mut quote = 0u8;
        while i < to {
            let c = b[i];
            if quote == 0 && is_ws(c) {
                break;
            }
            if c == escape && quote != b'\'' {
                i += 1;
                if i < to {
                    // step over the escaped char (may be multi-byte)
                    i += utf8_len(b[i]);
                }
                continue;
            }
            if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            }
            i += 1;
        }
        let e = i.min(to);
        out.push((s, e));
    }
    out
}

pub fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Parse `t[from..to]` as a JSON array of strings. Returns the decoded
/// strings with the logical range of each string literal (quotes included).
/// `None` means "not JSON" and callers fall back to shell form, as BuildKit does.
pub(crate) fn json_array(t: &str, from: usize, to: usize) -> Option<Vec<(String, usize, usize)>> {
    let b = &t.as_bytes()[..to];
    let ws = |mut i: usize| {
        while i < to && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    let mut i = ws(from);
    if i >= to || b[i] != b'[' {
        return None;
    }
    i = ws(i + 1);
    let mut out = Vec::new();
    if i < to && b[i] == b']' {
        i += 1;
    } else {
        loop {
            if i >= to || b[i] != b'"' {
                return None;
            }
            let (s, next) = json_string(t, i, to)?;
            out.push((s, i, next));
            i = ws(next);
            if i >= to {
                return None;
            }
            match b[i] {
                b',' => i = ws(i + 1),
                b']' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if ws(i) != to {
        return None;
    }
    Some(out)
}

/// Decode one JSON string literal starting at the opening quote.
fn json_string(t: &str, start: usize, to: usize) -> Option<(String, usize)> {
    let b = t.as_bytes();
    let mut out = String::new();
    let mut i = start + 1;
    let mut run = i; // start of pending unescaped run
    while i < to {
        match b[i] {
            b'"' => {
                out.push_str(&t[run..i]);
                return Some((out, i + 1));
            }
            b'\\' => {
                out.push_str(&t[run..i]);
                let e = *b.get(i + 1).filter(|_| i + 1 < to)?;
                i += 2;
                match e {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let hi = hex4(t, i, to)?;
                        i += 4;
                        let cp = if (0xd800..0xdc00).contains(&hi)
                            && b.get(i) == Some(&b'\\')
                            && b.get(i + 1) == Some(&b'u')
                        {
                            match hex4(t, i + 2, to) {
                                Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                                    i += 6;
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                }
                                _ => 0xfffd,
                            }
                        } else {
                            hi
                        };
                        // Lone surrogates decode to U+FFFD like Go's encoding/json.
                        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                    _ => return None,
                }
                run = i;
            }
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
    None
}

fn hex4(t: &str, i: usize, to: usize) -> Option<u32> {
    if i + 4 > to {
        return None;
    }
    let s = t.get(i..i + 4)?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Edit distance with adjacent transpositions (optimal string alignment),
/// so `FORM`/`FROM` are one edit apart. Used for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// Closest candidate within a distance that still looks like a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    let n = lw.chars().count();
    // Long garbage words cannot be typos of short keywords; keep cost bounded.
    if n > 64 {
        return None;
    }
    let max = (n / 4).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
