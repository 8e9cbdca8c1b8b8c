//! The `--cache-to` / `--cache-from` grammar: comma-separated `key=value` fields, as
//! BuildKit writes them (`type=local,dest=DIR,mode=max`).

use crate::ImportLimits;
use std::path::PathBuf;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An OCI layout directory ([`crate::LocalDir`]).
    Local(PathBuf),
    /// A registry reference (`type=registry,ref=…`).
    Registry(String),
}

/// Which steps an export records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The steps of the final stage chain: what the image's layers came from.
    Min,
    /// Every step, intermediate stages included.
    Max,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub transport: Transport,
    pub mode: Mode,
    /// Export `RUN --mount=type=cache` directories too.
    pub mounts: bool,
}

#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub transport: Transport,
    /// Restore cache mounts the cache holds (default true; `mounts=false` skips them).
    pub mounts: bool,
    pub limits: ImportLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {spec:?}: {message}")]
pub struct SpecError {
    pub flag: &'static str,
    pub spec: String,
    pub message: String,
}

fn fields<'a>(flag: &'static str, spec: &'a str) -> Result<Vec<(&'a str, &'a str)>, SpecError> {
    spec.split(',')
        .map(|f| {
            f.split_once('=').ok_or_else(|| SpecError {
                flag,
                spec: spec.to_string(),
                message: format!("field {f:?} is not key=value"),
            })
        })
        .collect()
}

fn boolean(flag: &'static str, spec: &str, key: &str, v: &str) -> Result<bool, SpecError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SpecError {
            flag,
            spec: spec.to_string(),
            message: format!("{key}={v:?}: expected true or false"),
        }),
    }
}

fn transport(
    flag: &'static str,
    spec: &str,
    kind: Option<&str>,
    path: Option<&str>,
    path_key: &str,
    reference: Option<&str>,
) -> Result<Transport, SpecError> {
    let err = |message: String| SpecError {
        flag,
        spec: spec.to_string(),
        message,
    };
    match kind {
        Some("local") => match path {
            Some(p) if !p.is_empty() => Ok(Transport::Local(PathBuf::from(p))),
            _ => Err(err(format!("type=local needs {path_key}=DIR"))),
        },
        Some("registry") => match reference {
            Some(r) if !r.is_empty() => Ok(Transport::Registry(r.to_string())),
            _ => Err(err("type=registry needs ref=REFERENCE".into())),
        },
        Some(other) => Err(err(format!(
            "unknown type {other:?} (expected local or registry)"
        ))),
        None => Err(err("missing type= (local or registry)".into())),
    }
}

/// Parses `--cache-to type=local,dest=DIR[,mode=min|max][,mounts=true]` or
/// `type=registry,ref=REF[,…]`.
pub fn parse_export(spec: &str) -> Result<ExportSpec, SpecError> {
    const FLAG: &str = "--cache-to";
    let (mut kind, mut dest, mut reference) = (None, None, None);
    let mut mode = Mode::Min;
    let mut mounts = false;
    for (k, v) in fields(FLAG, spec)? {
        match k {
            "type" => kind = Some(v),
            "dest" => dest = Some(v),
            "ref" => reference = Some(v),
            "mode" => {
                mode = match v {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    _ => {
                        return Err(SpecError {
                            flag: FLAG,
                            spec: spec.to_string(),
                            message: format!("mode={v:?}: expected min or max"),
                        })
                    }
                }
            }
            "mounts" => mounts = boolean(FLAG, spec, k, v)?,
            _ => {
                return Err(SpecError {
                    flag: FLAG,
                    spec: spec.to_string(),
                    message: format!(
                        "unknown field {k:?} (expected type, dest, ref, mode, mounts)"
                    ),
                })
            }
        }
    }
    Ok(ExportSpec {
        transport: transport(FLAG, spec, kind, dest, "dest", reference)?,
        mode,
        mounts,
    })
}

/// Parses `--cache-from type=local,src=DIR[,mounts=false][,max-manifest-size=BYTES]
/// [,max-config-size=BYTES][,max-layer-size=BYTES]` or `type=registry,ref=REF[,…]`.
pub fn parse_import(spec: &str) -> Result<ImportSpec, SpecError> {
    const FLAG: &str = "--cache-from";
    let (mut kind, mut src, mut reference) = (None, None, None);
    let mut mounts = true;
    let mut limits = ImportLimits::default();
    let bytes = |k: &str, v: &str| {
        v.parse::<u64>().map_err(|_| SpecError {
            flag: FLAG,
            spec: spec.to_string(),
            message: format!("{k}={v:?}: expected a number of bytes"),
        })
    };
    for (k, v) in fields(FLAG, spec)? {
        match k {
            "type" => kind = Some(v),
            "src" => src = Some(v),
            "ref" => reference = Some(v),
            "mounts" => mounts = boolean(FLAG, spec, k, v)?,
            "max-manifest-size" => limits.max_manifest_bytes = bytes(k, v)?,
            "max-config-size" => limits.max_config_bytes = bytes(k, v)?,
            // `kiln build` has no --max-layer-size flag; the decode budget of fetched
            // layers is raised here (the error names the limit max-layer-size).
            "max-layer-size" => limits.decode.max_total_bytes = bytes(k, v)?,
            _ => {
                return Err(SpecError {
                    flag: FLAG,
                    spec: spec.to_string(),
                    message: format!(
                        "unknown field {k:?} (expected type, src, ref, mounts, max-manifest-size, max-config-size, max-layer-size)"
                    ),
                })
            }
        }
    }
    Ok(ImportSpec {
        transport: transport(FLAG, spec, kind, src, "src", reference)?,
        mounts,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_specs() {
        let s = parse_export("type=local,dest=/c,mode=max,mounts=true").unwrap();
        assert_eq!(s.transport, Transport::Local("/c".into()));
        assert_eq!((s.mode, s.mounts), (Mode::Max, true));
        let s = parse_export("type=local,dest=/c").unwrap();
        assert_eq!((s.mode, s.mounts), (Mode::Min, false), "defaults");
        let s = parse_export("type=registry,ref=r.example/app:cache").unwrap();
        assert_eq!(
            s.transport,
            Transport::Registry("r.example/app:cache".into())
        );
        for bad in [
            "type=local",
            "type=local,dest=/c,mode=all",
            "type=s3,dest=/c",
            "dest=/c",
            "type=local,dest=/c,mounts=yes",
            "type=local,dest=/c,colour=red",
            "type=local,dest",
        ] {
            let e = parse_export(bad).unwrap_err();
            assert_eq!(e.flag, "--cache-to", "{bad}");
        }
    }

    #[test]
    fn import_specs_and_limits() {
        let s = parse_import("type=local,src=/c").unwrap();
        assert_eq!(s.transport, Transport::Local("/c".into()));
        assert!(s.mounts);
        let s = parse_import("type=local,src=/c,mounts=false,max-config-size=10,max-layer-size=99")
            .unwrap();
        assert!(!s.mounts);
        assert_eq!(s.limits.max_config_bytes, 10);
        assert_eq!(s.limits.decode.max_total_bytes, 99);
        assert!(parse_import("type=local,dest=/c").is_err(), "src, not dest");
        assert!(parse_import("type=local,src=/c,max-config-size=lots").is_err());
    }
}
