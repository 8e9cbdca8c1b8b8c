//! Config edits named by Dockerfile instructions (`kiln import --change`, and later the
//! build frontend's metadata-only steps). Pure data in, config out: parsing the instruction
//! text belongs to `kiln-dockerfile`; this only knows what each one does to a config.

use crate::config::{EmptyObject, Healthcheck, RunConfig};
use crate::ImageConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// CMD; the shell form arrives already wrapped in the image's shell.
    Cmd(Vec<String>),
    /// ENTRYPOINT. A new entrypoint drops a CMD inherited from the base image (Docker's
    /// rule); `reset_cmd` is false when the CMD was set in the same build.
    Entrypoint {
        args: Vec<String>,
        reset_cmd: bool,
    },
    Env(Vec<(String, String)>),
    /// Ports as written (`80`, `53/udp`); `/tcp` is added when no protocol is given.
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    OnBuild(String),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
    Shell(Vec<String>),
    /// HEALTHCHECK; `HEALTHCHECK NONE` is `Test: ["NONE"]` (Docker's encoding).
    Healthcheck(Healthcheck),
}

impl ConfigChange {
    /// The instruction keyword, for history `created_by` lines.
    pub fn keyword(&self) -> &'static str {
        match self {
            ConfigChange::Cmd(_) => "CMD",
            ConfigChange::Entrypoint { .. } => "ENTRYPOINT",
            ConfigChange::Env(_) => "ENV",
            ConfigChange::Expose(_) => "EXPOSE",
            ConfigChange::Label(_) => "LABEL",
            ConfigChange::OnBuild(_) => "ONBUILD",
            ConfigChange::StopSignal(_) => "STOPSIGNAL",
            ConfigChange::User(_) => "USER",
            ConfigChange::Volume(_) => "VOLUME",
            ConfigChange::Workdir(_) => "WORKDIR",
            ConfigChange::Shell(_) => "SHELL",
            ConfigChange::Healthcheck(_) => "HEALTHCHECK",
        }
    }

    pub fn apply(&self, config: &mut ImageConfig) {
        apply_to(self, config.run_config_mut());
    }
}

fn apply_to(change: &ConfigChange, rc: &mut RunConfig) {
    match change {
        ConfigChange::Cmd(args) => rc.cmd = Some(args.clone()),
        ConfigChange::Entrypoint { args, reset_cmd } => {
            rc.entrypoint = Some(args.clone());
            if *reset_cmd {
                rc.cmd = None;
            }
        }
        ConfigChange::Env(pairs) => {
            let env = rc.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                set_env(env, k, v);
            }
        }
        ConfigChange::Expose(ports) => {
            let set = rc.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                set.insert(p, EmptyObject {});
            }
        }
        ConfigChange::Label(pairs) => {
            let labels = rc.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        ConfigChange::OnBuild(text) => rc.on_build.get_or_insert_with(Vec::new).push(text.clone()),
        ConfigChange::StopSignal(s) => rc.stop_signal = Some(s.clone()),
        ConfigChange::User(u) => rc.user = Some(u.clone()),
        ConfigChange::Volume(paths) => {
            let set = rc.volumes.get_or_insert_with(Default::default);
            for p in paths {
                set.insert(p.clone(), EmptyObject {});
            }
        }
        ConfigChange::Workdir(dir) => {
            let base = rc.working_dir.clone().unwrap_or_else(|| "/".to_string());
            rc.working_dir = Some(join_workdir(&base, dir));
        }
        ConfigChange::Shell(args) => rc.shell = Some(args.clone()),
        ConfigChange::Healthcheck(h) => rc.healthcheck = Some(h.clone()),
    }
}

/// Replaces `KEY=…` in place (keeping its position, as Docker does) or appends it.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// WORKDIR semantics: absolute paths replace, relative ones join the previous directory;
/// the result is cleaned lexically (`.`/`..`), never escaping `/`.
pub fn join_workdir(base: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{base}/{dir}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ImageConfig {
        ImageConfig::default()
    }

    #[test]
    fn env_replaces_in_place() {
        let mut c = cfg();
        ConfigChange::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]).apply(&mut c);
        ConfigChange::Env(vec![("A".into(), "3".into())]).apply(&mut c);
        assert_eq!(c.config.unwrap().env.unwrap(), vec!["A=3", "B=2"]);
    }

    #[test]
    fn entrypoint_resets_inherited_cmd() {
        let mut c = cfg();
        ConfigChange::Cmd(vec!["sh".into()]).apply(&mut c);
        ConfigChange::Entrypoint {
            args: vec!["/bin/app".into()],
            reset_cmd: true,
        }
        .apply(&mut c);
        assert_eq!(c.config.as_ref().unwrap().cmd, None);
    }

    #[test]
    fn expose_adds_protocol() {
        let mut c = cfg();
        ConfigChange::Expose(vec!["80".into(), "53/UDP".into()]).apply(&mut c);
        let ports: Vec<_> = c
            .config
            .unwrap()
            .exposed_ports
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
    }

    #[test]
    fn workdir_joins_and_cleans() {
        assert_eq!(join_workdir("/", "app"), "/app");
        assert_eq!(join_workdir("/app", "src/../lib"), "/app/lib");
        assert_eq!(join_workdir("/app", "/x/./y/"), "/x/y");
        assert_eq!(join_workdir("/", "../../.."), "/");
    }
}
