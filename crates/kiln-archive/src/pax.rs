//! PAX extended-header records (POSIX.1-2001): `"<len> <key>=<value>\n"`.

/// Append one record. The length prefix counts itself, so grow it until it is stable.
pub(crate) fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Split PAX data into `(key, value)` records by their length prefixes. Values may hold
/// any byte, newlines included (xattr values do), so splitting on `\n` is wrong.
pub(crate) type Record<'a> = (&'a [u8], &'a [u8]);

pub(crate) fn parse_records(mut data: &[u8]) -> Result<Vec<Record<'_>>, &'static str> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|b| *b == 0) {
            break; // NUL padding some writers leave at the end
        }
        let sp = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("record without length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad record length")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("record length out of bounds");
        }
        let kv = &data[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|b| *b == b'=')
            .ok_or("record without '='")?;
        out.push((&kv[..eq], &kv[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

/// Parse a PAX time (`"1700000000.25"`, `"-1.5"`) into seconds and nanoseconds.
pub(crate) fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += (d - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some((secs, nanos));
    }
    if nanos == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nanos))
    }
}

pub(crate) fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        let mut out = Vec::new();
        push_record(&mut out, b"path", &[b'a'; 93]);
        assert_eq!(out.len(), 103);
        assert!(out.starts_with(b"103 path="));
        let mut out = Vec::new();
        push_record(&mut out, b"k", b"v");
        assert_eq!(out, b"6 k=v\n");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_time(b"7"), Some((7, 0)));
        assert_eq!(parse_time(b"x"), None);
    }
}
