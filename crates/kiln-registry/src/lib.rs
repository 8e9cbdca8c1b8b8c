//! kiln-registry: the OCI distribution-spec client.
//!
//! Owns: talking to registries — manifests and indexes (OCI and Docker schema2) with
//! platform selection, verified streaming of blobs into the store, pushes (HEAD first,
//! cross-repository mount, chunked upload, manifest last), retries with backoff (connection
//! resets, 5xx, 429 with `Retry-After`), credentials (docker's config.json, credential
//! helpers, `kiln login`) and the basic/bearer flows, transport policy (plain HTTP only for
//! loopback and named insecure registries; extra CAs from `certs.d`).
//!
//! Must not: log credentials or put them in errors; send them to any host but the
//! registry's (redirects are followed by hand, token realms off the registry's host are
//! refused); commit a byte to the store that was not verified (every blob goes through
//! `Store::ingest` with its expected size and digest); print (events go to a callback).
//! It depends on kiln-store, kiln-oci, kiln-fs (atomic writes) and kiln-cache (only to
//! implement its transport traits, [`cache`]) among kiln crates; nothing below kiln-cli
//! depends on it (the build reaches it through a resolver callback). Work that should start
//! as soon as a blob is in the store (kiln-cli unpacking layers into snapshots while the
//! others download) hooks in through [`PullObserver`], which names only digests and
//! manifests — this crate does not know about snapshots.
//!
//! Moving manifests for other features (build-cache export/import): make a [`Client`] for
//! the registry host (`Client::new(host, &Settings::load(&[])?)`), then
//! [`push_manifest`]`(store, &client, &descriptor, repo, Some(tag), &PushOptions::default(),
//! progress)` sends a manifest or index already in the store with every blob it names, and
//! [`pull_manifest`]`(store, &lease, &client, repo, tag_or_digest, &PullOptions { selection:
//! Selection::All, .. }, progress)` fetches one (verified) into the store under `lease`
//! without naming it — the caller tags or records it before dropping the lease. The build
//! cache's registry transport, [`RegistryCache`], is built on the same calls.

pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod error;
mod parallel;
pub mod progress;
pub mod pull;
pub mod push;
pub mod transport;

pub use auth::{Credential, CredentialStore};
pub use cache::RegistryCache;
pub use client::{Client, Retry, DEFAULT_MAX_MANIFEST};
pub use config::Settings;
pub use error::{RegistryError, Result};
pub use progress::{Event, Progress};
pub use pull::{
    pull_image, pull_manifest, PlatformSpec, PullObserver, PullOptions, Pulled, Selection,
};
pub use push::{push_image, push_manifest, PushOptions};
