//! Builder flags (`--name=value` before the arguments) and `RUN --mount`.

use super::logical::Logical;
use super::words::{is_ws, suggest};
use crate::ast::*;
use crate::diag::Diagnostic;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    /// May be repeated.
    Strings,
}

pub(crate) type FlagDefs = &'static [(&'static str, Kind)];

pub(crate) const FROM_FLAGS: FlagDefs = &[("platform", Kind::Str)];
pub(crate) const RUN_FLAGS: FlagDefs = &[
    ("mount", Kind::Strings),
    ("network", Kind::Str),
    ("security", Kind::Str),
];
pub(crate) const ADD_FLAGS: FlagDefs = &[
    ("chown", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("checksum", Kind::Str),
    ("keep-git-dir", Kind::Bool),
    ("exclude", Kind::Strings),
    ("unpack", Kind::Bool),
];
pub(crate) const COPY_FLAGS: FlagDefs = &[
    ("from", Kind::Str),
    ("chown", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("parents", Kind::Bool),
    ("exclude", Kind::Strings),
];
pub(crate) const HEALTHCHECK_FLAGS: FlagDefs = &[
    ("interval", Kind::Str),
    ("timeout", Kind::Str),
    ("start-period", Kind::Str),
    ("start-interval", Kind::Str),
    ("retries", Kind::Str),
];

const ALL: &[(&str, FlagDefs)] = &[
    ("FROM", FROM_FLAGS),
    ("RUN", RUN_FLAGS),
    ("ADD", ADD_FLAGS),
    ("COPY", COPY_FLAGS),
    ("HEALTHCHECK", HEALTHCHECK_FLAGS),
];

/// Scan leading `--flag` words exactly like BuildKit's `extractBuilderFlags`:
/// quotes and backslashes inside a flag word are removed, a bare `--` ends
/// the flags. Returns flags and the logical offset where arguments start.
pub(crate) fn extract(line: &Logical, from: usize, to: usize, expand: bool) -> (Vec<Flag>, usize) {
    let t = line.text.as_bytes();
    let mut flags = Vec::new();
    let mut i = from;
    loop {
        while i < to && is_ws(t[i]) {
            i += 1;
        }
        if i + 1 >= to || t[i] != b'-' || t[i + 1] != b'-' {
            return (flags, i);
        }
        let start = i;
        // Decode the word, remembering the raw offset of the first '='.
        let mut dec: Vec<u8> = Vec::new();
        let mut quote = 0u8;
        let mut eq: Option<(usize, usize)> = None; // (raw offset, decoded len)
        while i < to {
            let c = t[i];
            if quote == 0 {
                if is_ws(c) {
                    break;
                }
                if c == b'\'' || c == b'"' {
                    quote = c;
                    i += 1;
                    continue;
                }
            } else if c == quote {
                quote = 0;
                i += 1;
                continue;
            }
            if c == b'\\' && i + 1 < to {
                i += 1;
            } else if c == b'\\' {
                i += 1;
                continue;
            }
            if t[i] == b'=' && eq.is_none() {
                eq = Some((i, dec.len()));
            }
            dec.push(t[i]);
            i += 1;
        }
        let end = i;
        if dec == b"--" {
            return (flags, end);
        }
        // Only ASCII bytes were removed, so `dec` is still valid UTF-8.
        let dec = String::from_utf8_lossy(&dec).into_owned();
        let (name, name_end, value) = match eq {
            Some((raw_eq, dl)) => {
                let v = Word {
                    raw: dec[dl + 1..].to_string(),
                    span: line.span(raw_eq + 1, end),
                    expand,
                };
                (dec[2..dl].to_string(), raw_eq, Some(v))
            }
            None => (dec[2..].to_string(), end, None),
        };
        flags.push(Flag {
            name,
            name_span: line.span(start, name_end),
            value,
            span: line.span(start, end),
        });
    }
}

/// Validated flag values for one instruction.
#[derive(Default)]
pub(crate) struct Values<'a> {
    pub items: Vec<(&'static str, &'a Flag, bool)>,
}

impl<'a> Values<'a> {
    pub fn str(&self, name: &str) -> Option<Word> {
        self.items
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, f, _)| f.value.clone())
    }
    pub fn strs(&self, name: &str) -> Vec<&'a Flag> {
        self.items
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, f, _)| *f)
            .collect()
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.items
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, b)| *b)
    }
}

fn list(defs: FlagDefs) -> String {
    defs.iter()
        .map(|(n, _)| format!("--{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check flags against what `inst` accepts; push diagnostics. Returns the
/// values and whether everything was valid.
pub(crate) fn validate<'a>(
    inst: &str,
    defs: FlagDefs,
    flags: &'a [Flag],
    diags: &mut Vec<Diagnostic>,
) -> (Values<'a>, bool) {
    let mut vals = Values::default();
    let mut ok = true;
    for f in flags {
        let Some(&(name, kind)) = defs.iter().find(|(n, _)| *n == f.name) else {
            ok = false;
            let mut d = Diagnostic::error(
                "unknown-flag",
                format!("unknown flag --{} for {inst}", f.name),
                f.span,
            );
            let owners: Vec<&str> = ALL
                .iter()
                .filter(|(i, d)| *i != inst && d.iter().any(|(n, _)| *n == f.name))
                .map(|(i, _)| *i)
                .collect();
            let mut hint = String::new();
            if !owners.is_empty() {
                hint = format!(
                    "--{} is a flag of {}, not {inst}; ",
                    f.name,
                    owners.join("/")
                );
            } else if let Some(s) = suggest(&f.name, defs.iter().map(|(n, _)| *n)) {
                hint = format!("did you mean --{s}? ");
            }
            if defs.is_empty() {
                hint.push_str(&format!("{inst} does not accept any flags"));
            } else {
                hint.push_str(&format!("{inst} accepts {}", list(defs)));
            }
            d = d.with_hint(hint);
            diags.push(d);
            continue;
        };
        if kind != Kind::Strings && vals.items.iter().any(|(n, _, _)| *n == name) {
            ok = false;
            diags.push(Diagnostic::error(
                "duplicate-flag",
                format!("duplicate flag specified: --{name}"),
                f.span,
            ));
            continue;
        }
        let mut b = false;
        match (kind, &f.value) {
            (Kind::Bool, None) => b = true,
            (Kind::Bool, Some(v)) => match v.raw.to_ascii_lowercase().as_str() {
                "true" => b = true,
                "false" => b = false,
                _ => {
                    ok = false;
                    diags.push(Diagnostic::error(
                        "flag-value",
                        format!("expecting boolean value for flag --{name}, not: {}", v.raw),
                        v.span,
                    ));
                    continue;
                }
            },
            (_, None) => {
                ok = false;
                diags.push(
                    Diagnostic::error(
                        "flag-value",
                        format!("missing a value on flag --{name}"),
                        f.span,
                    )
                    .with_hint(format!("write it as --{name}=<value>")),
                );
                continue;
            }
            _ => {}
        }
        vals.items.push((name, f, b));
    }
    (vals, ok)
}

// ---------------------------------------------------------------------------
// --mount

fn has_var(v: &str) -> bool {
    v.contains('$')
}

fn parse_bool_opt(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(o) => Err(format!(
            "invalid value for {key}: {o:?} (expected true or false)"
        )),
    }
}

fn numeric(key: &str, v: &str, radix: u32) -> Result<String, String> {
    if has_var(v) || u32::from_str_radix(v, radix).is_ok() {
        Ok(v.to_string())
    } else {
        Err(format!("invalid value for {key}: {v:?}"))
    }
}

/// Split a mount spec on commas, honouring CSV double quotes.
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    for c in s.chars() {
        match c {
            '"' => q = !q,
            ',' if !q => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parse one `--mount` value into its typed form.
pub(crate) fn parse_mount(value: &str) -> Result<MountKind, String> {
    let fields = csv_fields(value);
    let mut ty = "bind".to_string();
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for f in fields {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (f.to_ascii_lowercase(), None),
        };
        if k == "type" {
            ty = v.unwrap_or_default().to_ascii_lowercase();
        } else {
            kv.push((k, v));
        }
    }
    let need =
        |k: &str, v: Option<String>| v.ok_or_else(|| format!("mount option {k} needs a value"));
    macro_rules! unexpected {
        ($k:expr) => {
            return Err(format!("unexpected key '{}' for mount type {}", $k, ty))
        };
    }
    let kind = match ty.as_str() {
        "bind" => {
            let mut m = BindMount::default();
            for (k, v) in kv {
                match k.as_str() {
                    "target" | "dst" | "destination" => m.target = Some(need(&k, v)?),
                    "source" | "src" => m.source = Some(need(&k, v)?),
                    "from" => m.from = Some(need(&k, v)?),
                    "rw" | "readwrite" => m.readwrite = parse_bool_opt(&k, v.as_deref())?,
                    "ro" | "readonly" => m.readwrite = !parse_bool_opt(&k, v.as_deref())?,
                    _ => unexpected!(k),
                }
            }
            if m.target.is_none() {
                return Err("mount type bind requires a target".into());
            }
            MountKind::Bind(m)
        }
        "cache" => {
            let mut m = CacheMount::default();
            for (k, v) in kv {
                match k.as_str() {
                    "id" => m.id = Some(need(&k, v)?),
                    "target" | "dst" | "destination" => m.target = Some(need(&k, v)?),
                    "from" => m.from = Some(need(&k, v)?),
                    "source" | "src" => m.source = Some(need(&k, v)?),
                    "sharing" => {
                        let v = need(&k, v)?;
                        m.sharing = Some(match v.to_ascii_lowercase().as_str() {
                            "shared" => Sharing::Shared,
                            "private" => Sharing::Private,
                            "locked" => Sharing::Locked,
                            _ => {
                                return Err(format!(
                                    "unsupported sharing value {v:?} (expected shared, private or locked)"
                                ))
                            }
                        });
                    }
                    "uid" => m.uid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    "gid" => m.gid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    "mode" => m.mode = Some(numeric(&k, &need(&k, v)?, 8)?),
                    "ro" | "readonly" => m.readonly = parse_bool_opt(&k, v.as_deref())?,
                    "rw" | "readwrite" => m.readonly = !parse_bool_opt(&k, v.as_deref())?,
                    _ => unexpected!(k),
                }
            }
            if m.target.is_none() {
                return Err("mount type cache requires a target".into());
            }
            MountKind::Cache(m)
        }
        "tmpfs" => {
            let mut m = TmpfsMount::default();
            for (k, v) in kv {
                match k.as_str() {
                    "target" | "dst" | "destination" => m.target = Some(need(&k, v)?),
                    "size" => m.size = Some(need(&k, v)?),
                    _ => unexpected!(k),
                }
            }
            if m.target.is_none() {
                return Err("mount type tmpfs requires a target".into());
            }
            MountKind::Tmpfs(m)
        }
        "secret" => {
            let mut m = SecretMount::default();
            for (k, v) in kv {
                match k.as_str() {
                    "id" => m.id = Some(need(&k, v)?),
                    "target" | "dst" | "destination" => m.target = Some(need(&k, v)?),
                    "env" => m.env = Some(need(&k, v)?),
                    "required" => m.required = parse_bool_opt(&k, v.as_deref())?,
                    "mode" => m.mode = Some(numeric(&k, &need(&k, v)?, 8)?),
                    "uid" => m.uid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    "gid" => m.gid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    _ => unexpected!(k),
                }
            }
            MountKind::Secret(m)
        }
        "ssh" => {
            let mut m = SshMount::default();
            for (k, v) in kv {
                match k.as_str() {
                    "id" => m.id = Some(need(&k, v)?),
                    "target" | "dst" | "destination" => m.target = Some(need(&k, v)?),
                    "required" => m.required = parse_bool_opt(&k, v.as_deref())?,
                    "mode" => m.mode = Some(numeric(&k, &need(&k, v)?, 8)?),
                    "uid" => m.uid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    "gid" => m.gid = Some(numeric(&k, &need(&k, v)?, 10)?),
                    _ => unexpected!(k),
                }
            }
            MountKind::Ssh(m)
        }
        other => {
            return Err(format!(
                "unsupported mount type {other:?} (expected bind, cache, tmpfs, secret or ssh)"
            ))
        }
    };
    Ok(kind)
}
