//! ARG / ENV scoping: a pure state machine the build frontend drives while it
//! walks a Dockerfile.
//!
//! Rules (BuildKit, `frontend/dockerfile/dockerfile2llb/convert.go`:
//! `defaultArgs`, `buildMetaArgs`, `dispatchArg`, `dispatchEnv`, `dispatch`):
//!
//! * [`GlobalScope`] holds the automatic platform ARGs and the ARGs declared
//!   before the first `FROM`. It is what `FROM` lines (image and
//!   `--platform`) are expanded with, and nothing else.
//! * A global ARG takes its `--build-arg` value when one is given, else its
//!   default expanded with the globals declared before it; with neither it
//!   is declared but unset.
//! * In a stage ([`StageScope`]) an ARG takes, in order: the `--build-arg`
//!   value; its own default (expanded with the stage environment, including
//!   ARGs declared earlier on the same line); with no default, the global
//!   value of the same name (platform ARGs included); else it is declared but
//!   unset.
//! * ENV and ARG values live in one ordered environment: whichever was set
//!   last wins, so an ENV after an ARG shadows it (and an ARG with a value
//!   after an ENV replaces it for the build, but not in the image config).
//! * `ENV a=1 b=$a`: the whole line is expanded with the environment as it
//!   was *before* the line, so `b` gets the old `a`.
//! * A stage built `FROM` another stage starts from a copy of that stage's
//!   scope ([`StageScope::inherit`]).
//! * Proxy ARGs (`HTTP_PROXY`, …) given as build-args reach RUN without being
//!   declared and are never written to history or the image config.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::expand::{ExpandError, Expanded, Expander, Lookup};

/// Build-args usable by RUN without an ARG declaration; never recorded in
/// history or the image config.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// ARGs BuildKit defines automatically in the global scope (`defaultArgs`).
pub const AUTOMATIC_ARGS: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// ARGs that configure the builder and are never put in the environment
/// (`nonEnvArgs`).
pub const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// Whether `name` is one of the predefined proxy ARGs.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// Whether `name` is an automatic (platform / target) ARG.
pub fn is_automatic_arg(name: &str) -> bool {
    AUTOMATIC_ARGS.contains(&name)
}

/// Whether a `--build-arg` of this name counts as consumed even when no ARG
/// declares it: proxies, automatic ARGs, `SOURCE_DATE_EPOCH` and builder
/// options (`BUILDKIT_*`).
pub fn is_builtin_build_arg(name: &str) -> bool {
    is_proxy_arg(name)
        || is_automatic_arg(name)
        || name == "SOURCE_DATE_EPOCH"
        || name.starts_with("BUILDKIT_")
}

/// An OCI platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub arch: String,
    /// e.g. `v7`, `v8`, or empty.
    pub variant: String,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, arch: &str, variant: &str) -> Self {
        Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: variant.to_owned(),
        }
    }

    /// The platform this process runs on, in OCI terms.
    pub fn host() -> Self {
        Self::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Maps Rust's `target_os` / `target_arch` names to OCI names.
    pub fn from_rust(os: &str, arch: &str) -> Self {
        let os = match os {
            "macos" => "darwin",
            o => o,
        };
        let little = cfg!(target_endian = "little");
        let (arch, variant) = match arch {
            "x86_64" => ("amd64", ""),
            "x86" => ("386", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "powerpc64" if little => ("ppc64le", ""),
            "powerpc64" => ("ppc64", ""),
            "mips64" if little => ("mips64le", ""),
            "mips" if little => ("mipsle", ""),
            "loongarch64" => ("loong64", ""),
            a => (a, ""),
        };
        Self::new(os, arch, variant)
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('/');
        let os = it.next().filter(|p| !p.is_empty())?;
        let arch = it.next().filter(|p| !p.is_empty())?;
        let variant = it.next().unwrap_or("");
        if it.next().is_some() {
            return None;
        }
        Some(Self::new(os, arch, variant))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// An ordered environment; setting an existing name replaces its value in
/// place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => value.clone_into(&mut slot.1),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.vars.retain(|(k, _)| k != name);
    }

    /// The variables, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `KEY=value` strings, as in an image config.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self, name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = Env::new();
        for (k, v) in iter {
            env.set(k.as_ref(), v.as_ref());
        }
        env
    }
}

/// The whole build's argument state: build-args, automatic ARGs, global ARGs,
/// and which build-args were consumed.
#[derive(Clone, Debug)]
pub struct GlobalScope {
    build_args: BTreeMap<String, String>,
    env: Env,
    declared: BTreeSet<String>,
    expander: Expander,
}

impl GlobalScope {
    /// Starts a build. `target_stage` is the `--target` (or the last stage's
    /// name), exposed as `TARGETSTAGE` (`default` when empty, like BuildKit).
    /// Build-args override automatic ARGs of the same name.
    pub fn new(
        build_args: BTreeMap<String, String>,
        target: &Platform,
        build: &Platform,
        target_stage: &str,
        escape: char,
    ) -> Self {
        let target_stage = if target_stage.is_empty() {
            "default"
        } else {
            target_stage
        };
        let build_platform = build.to_string();
        let target_platform = target.to_string();
        let defaults: [(&str, &str); 11] = [
            ("BUILDPLATFORM", &build_platform),
            ("BUILDOS", &build.os),
            ("BUILDOSVERSION", ""),
            ("BUILDARCH", &build.arch),
            ("BUILDVARIANT", &build.variant),
            ("TARGETPLATFORM", &target_platform),
            ("TARGETOS", &target.os),
            ("TARGETOSVERSION", ""),
            ("TARGETARCH", &target.arch),
            ("TARGETVARIANT", &target.variant),
            ("TARGETSTAGE", target_stage),
        ];
        let mut env = Env::new();
        for (k, v) in defaults {
            env.set(k, build_args.get(k).map_or(v, String::as_str));
        }
        Self {
            build_args,
            env,
            declared: BTreeSet::new(),
            expander: Expander::new(escape),
        }
    }

    /// The expander (escape character) this build uses.
    pub fn expander(&self) -> Expander {
        self.expander
    }

    /// `ARG name[=default]` before the first FROM. Returns the value the ARG
    /// got (`None`: declared but unset).
    pub fn declare_arg(
        &mut self,
        name: &str,
        default: Option<&str>,
    ) -> Result<Option<String>, ExpandError> {
        self.declared.insert(name.to_owned());
        let value = match (self.build_args.get(name), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(self.expander.word(d, &self.env)?),
            (None, None) => None,
        };
        if let Some(v) = &value {
            self.env.set(name, v);
        }
        Ok(value)
    }

    /// What FROM lines see: automatic ARGs and global ARGs with a value.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Expands a FROM image or `--platform` word with the global ARGs.
    pub fn expand_from(&self, word: &str) -> Result<Expanded, ExpandError> {
        self.expander.word_with_matches(word, &self.env)
    }

    /// The `--build-arg` value of `name`.
    pub fn build_arg(&self, name: &str) -> Option<&str> {
        self.build_args.get(name).map(String::as_str)
    }

    /// Marks `name` as declared by an ARG somewhere (done by the declare
    /// functions; exposed for frontends that skip unreachable stages).
    pub fn mark_consumed(&mut self, name: &str) {
        self.declared.insert(name.to_owned());
    }

    /// Build-args no ARG declared and that are not builtin, sorted.
    pub fn unconsumed_build_args(&self) -> Vec<String> {
        self.build_args
            .keys()
            .filter(|k| !self.declared.contains(*k) && !is_builtin_build_arg(k))
            .cloned()
            .collect()
    }

    /// Docker's warning for unconsumed build-args, if any.
    pub fn unconsumed_warning(&self) -> Option<String> {
        let names = self.unconsumed_build_args();
        (!names.is_empty()).then(|| {
            format!(
                "[Warning] One or more build-args [{}] were not consumed",
                names.join(" ")
            )
        })
    }

    /// Proxy build-args, for RUN (never for history or config).
    pub fn proxy_build_args(&self) -> Vec<(String, String)> {
        self.build_args
            .iter()
            .filter(|(k, _)| is_proxy_arg(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A new stage `FROM` an image whose config has `image_env`.
    pub fn stage_from_image<K, V>(&self, image_env: impl IntoIterator<Item = (K, V)>) -> StageScope
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let env: Env = image_env.into_iter().collect();
        StageScope {
            config_env: env.clone(),
            env,
            args: Vec::new(),
            expander: self.expander,
        }
    }
}

/// One stage's environment.
#[derive(Clone, Debug)]
pub struct StageScope {
    env: Env,
    config_env: Env,
    args: Vec<(String, Option<String>)>,
    expander: Expander,
}

impl StageScope {
    /// A stage `FROM` another stage starts with a copy of its scope (its ENV
    /// and its ARG values; BuildKit copies the state and the build args).
    pub fn inherit(&self) -> StageScope {
        self.clone()
    }

    /// `ARG name[=default]` inside the stage. Returns the value it got.
    pub fn declare_arg(
        &mut self,
        global: &mut GlobalScope,
        name: &str,
        default: Option<&str>,
    ) -> Result<Option<String>, ExpandError> {
        global.mark_consumed(name);
        let build_arg = global.build_args.get(name).cloned();
        let value = match (build_arg, default) {
            (Some(v), _) => Some(v),
            (None, Some(d)) => Some(self.expander.word(d, &self.env)?),
            (None, None) => global.env.get(name).map(str::to_owned),
        };
        if let Some(v) = &value {
            if !NON_ENV_ARGS.contains(&name) {
                self.env.set(name, v);
            }
        }
        self.args.push((name.to_owned(), value.clone()));
        Ok(value)
    }

    /// One ARG line with several names: each default sees the ones before.
    pub fn declare_args(
        &mut self,
        global: &mut GlobalScope,
        args: &[(&str, Option<&str>)],
    ) -> Result<Vec<Option<String>>, ExpandError> {
        args.iter()
            .map(|(n, d)| self.declare_arg(global, n, *d))
            .collect()
    }

    /// One ENV line (raw keys and values). Every key and value is expanded
    /// with the environment before the line, then applied in order. Returns
    /// the expanded pairs.
    pub fn set_env(
        &mut self,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, ExpandError> {
        let expanded = pairs
            .iter()
            .map(|(k, v)| {
                Ok((
                    self.expander.word(k, &self.env)?,
                    self.expander.word(v, &self.env)?,
                ))
            })
            .collect::<Result<Vec<_>, ExpandError>>()?;
        for (k, v) in &expanded {
            self.env.set(k, v);
            self.config_env.set(k, v);
        }
        Ok(expanded)
    }

    /// What instructions of this stage are expanded with (ENV and declared
    /// ARG values).
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Expands a word with the stage environment.
    pub fn expand(&self, word: &str) -> Result<Expanded, ExpandError> {
        self.expander.word_with_matches(word, &self.env)
    }

    /// The image config environment (ENV only, base image first).
    pub fn config_env(&self) -> &Env {
        &self.config_env
    }

    /// Declared ARGs in order (inherited ones first) with their values.
    pub fn declared_args(&self) -> &[(String, Option<String>)] {
        &self.args
    }

    /// ARG values to record in history / cache keys: declared ARGs with a
    /// value, proxies excluded, last declaration of a name wins.
    pub fn history_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let Some(v) = v else { continue };
            if is_proxy_arg(k) {
                continue;
            }
            out.retain(|(ok, _)| ok != k);
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// The environment of a RUN: the stage environment plus proxy build-args
    /// not already set.
    pub fn run_env(&self, global: &GlobalScope) -> Env {
        let mut env = self.env.clone();
        for (k, v) in global.proxy_build_args() {
            if env.get(&k).is_none() {
                env.set(&k, &v);
            }
        }
        env
    }
}
