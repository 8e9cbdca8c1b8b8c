//! The parent ↔ helper protocol on the setup socket: length-prefixed JSON.
//!
//! Parent → helper: [`ToChild::Start`], then (with a user namespace)
//! [`ToChild::MapsWritten`] after the helper said [`ToParent::UserNsReady`].
//! Helper → parent: warnings, [`ToParent::Spawning`] right before the payload
//! is forked, and at most one [`ToParent::Failed`]. Every child-side copy of
//! the socket is close-on-exec or closed explicitly, so end-of-file after
//! `Spawning` means the payload's `execve` succeeded.

use crate::error::StepError;
use crate::spec::Spec;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Upper bound on one message, so a confused peer cannot make us allocate
/// without limit.
const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToChild {
    Start(Box<ChildConfig>),
    MapsWritten,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToParent {
    UserNsReady,
    Warning(String),
    /// Mountpoints (in-root paths) created in the rootfs because the image
    /// lacked them.
    CreatedMountpoints(Vec<String>),
    Spawning,
    Failed(StepError),
}

/// The spec plus what the parent decided for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildConfig {
    pub spec: Spec,
    /// Create a user namespace and wait for the parent to map it.
    pub userns: bool,
    /// `setgroups(2)` is usable (false after the single-id map's `deny`).
    pub setgroups: bool,
    /// Host ids in the namespace are a full range, so e.g. gid 5 for devpts
    /// exists.
    pub full_id_range: bool,
    /// Host files to bind over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_hosts: Option<PathBuf>,
    pub etc_hostname: Option<PathBuf>,
    pub etc_resolv_conf: Option<PathBuf>,
}

pub(crate) fn send<T: Serialize>(mut w: impl Write, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)
}

/// `Ok(None)` on a clean end-of-file before a message starts.
pub(crate) fn recv<T: DeserializeOwned>(mut r: impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
